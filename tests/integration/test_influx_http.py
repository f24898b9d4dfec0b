"""InfluxDB 2 at the HTTP boundary: what our sink and reader send, and how they survive failures.

pytest-httpserver plays the documented v2 API (`POST /api/v2/write`, `POST /api/v2/query`);
our own classes are the real ones.
"""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from agents.core.logs import JsonLogger, Redactor
from agents.core.metrics import ANOMALY, InfluxSink, Metrics
from agents.core.metrics.reader import InfluxMetricsReader
from agents.ports import MetricsReadError
from agents.testing import LogCapture

TOKEN = "influx-test-token-abc"


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def make_sink(url: str, stream: io.StringIO | None = None) -> InfluxSink:
    logger = JsonLogger("publisher-1", "publisher", stream=stream, redactor=Redactor([TOKEN]))
    return InfluxSink(
        url, TOKEN, "monitoring", "agent_metrics", logger, flush_interval_ms=50, max_retries=0
    )


def test_write_sends_exact_line_protocol_org_bucket_and_token(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/v2/write", method="POST").respond_with_data("", status=204)
    sink = make_sink(httpserver.url_for("/"))
    metrics = Metrics(sink, "publisher-1", "publisher")
    metrics.write(
        ANOMALY,
        {"anomaly_count": 1},
        time_ns=1_769_854_530_000_000_000,
        queue="fictional",
    )
    sink.close()

    [(request, _)] = httpserver.log
    assert request.args["org"] == "monitoring"
    assert request.args["bucket"] == "agent_metrics"
    assert request.args["precision"] == "ns"
    assert request.headers["Authorization"] == f"Token {TOKEN}"
    assert request.get_data(as_text=True) == (
        "anomaly,agent_id=publisher-1,agent_type=publisher,queue=fictional "
        "anomaly_count=1i 1769854530000000000"
    )
    assert sink.errors.written_points == 1


def test_a_500_is_counted_and_logged_once_never_raised(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/v2/write").respond_with_json(
        {"code": "internal error", "message": "boom"}, status=500
    )
    stream = LogCapture()
    sink = make_sink(httpserver.url_for("/"), stream)
    metrics = Metrics(sink, "publisher-1", "publisher")
    for _ in range(3):
        metrics.write(ANOMALY, {"anomaly_count": 1}, queue="fictional")
        wait_for(lambda: sink.errors.failed_points > 0)
    sink.close()
    assert sink.errors.failed_points >= 3
    records = stream.events
    assert len(records) == 1  # rate-limited: one line for the burst
    assert records[0]["level"] == "ERROR"
    assert TOKEN not in stream.getvalue()


def test_refused_connection_leaves_the_caller_running() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    sink = make_sink(f"http://127.0.0.1:{port}")
    metrics = Metrics(sink, "publisher-1", "publisher")
    started = time.monotonic()
    for _ in range(100):
        metrics.write(ANOMALY, {"anomaly_count": 1}, queue="fictional")
    assert time.monotonic() - started < 1.0  # writes only enqueue
    wait_for(lambda: sink.errors.failed_points >= 1)
    sink.close()
    assert time.monotonic() - started < 10.0


CSV = (
    "#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,string,string,string,double\r\n"
    "#group,false,false,true,true,true,true,true,false\r\n"
    "#default,_result,,,,,,,\r\n"
    ",result,table,_start,_stop,_field,_measurement,queue,_value\r\n"
    ",,0,2026-01-31T10:00:00Z,2026-01-31T10:05:00Z,queue_depth,queue_depth,fictional,12\r\n"
    ",,1,2026-01-31T10:00:00Z,2026-01-31T10:05:00Z,queue_depth,queue_depth,non-fictional,7\r\n"
    "\r\n"
)


def test_reader_sends_flux_and_parses_annotated_csv(httpserver: HTTPServer) -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: Request) -> Response:
        seen.append(
            {
                "org": request.args.get("org"),
                "body": request.get_json(),
                "auth": request.headers.get("Authorization"),
            }
        )
        return Response(CSV, content_type="text/csv; charset=utf-8")

    httpserver.expect_request("/api/v2/query", method="POST").respond_with_handler(handler)
    reader = InfluxMetricsReader(httpserver.url_for("/"), TOKEN, "monitoring", "agent_metrics")
    since = datetime(2026, 1, 31, 10, 0, tzinfo=UTC)
    depths = reader.last_field("queue_depth", "queue_depth", since, group_by="queue")
    reader.close()
    assert depths == {"fictional": 12.0, "non-fictional": 7.0}
    [call] = seen
    assert call["org"] == "monitoring" and call["auth"] == f"Token {TOKEN}"
    query = call["body"]["query"]
    assert 'from(bucket: "agent_metrics")' in query
    assert 'r._measurement == "queue_depth" and r._field == "queue_depth"' in query


def test_reader_translates_http_errors(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/v2/query").respond_with_json({"message": "nope"}, status=401)
    reader = InfluxMetricsReader(httpserver.url_for("/"), TOKEN, "monitoring", "agent_metrics")
    with pytest.raises(MetricsReadError) as caught:
        reader.sum_field("consume", "messages_consumed", datetime(2026, 1, 31, tzinfo=UTC))
    assert TOKEN not in str(caught.value)
