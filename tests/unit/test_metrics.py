from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import influxdb_client  # noqa: F401  (the reference encoder; imported lazily by agents)
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.core.metrics.line_protocol import influx_point, line_protocol, parse_line
from agents.core.metrics.reader import FileMetricsReader, flux_query, flux_string
from agents.core.metrics.recorder import Metrics
from agents.core.metrics.schema import AI_DECISION, ANOMALY, CONSUME, PUBLISH, QUEUE_DEPTH, SCHEMA
from agents.core.metrics.sinks import FileSink, MemorySink
from agents.ports import MetricPoint

TAGS = {"agent_id": "publisher-1", "agent_type": "publisher"}

SPEC_FIELDS = {
    "messages_published",
    "publish_duration_ms",
    "queue_depth_at_decision",
    "ai_decision_count",
    "ai_reasoning_text",
    "tokens_used",
    "decision_latency_ms",
    "messages_consumed",
    "processing_duration_ms",
    "input_tokens",
    "output_tokens",
    "error_count",
}


def test_schema_keeps_the_specification_field_names() -> None:
    # A duration "histogram" of the specification is an aggregated summary under its name.
    defined = {name for m in SCHEMA.values() for name in [*m.fields, *m.summaries]}
    assert defined >= SPEC_FIELDS
    assert PUBLISH.summary_fields("publish_duration_ms")["p99"] in PUBLISH.fields
    assert CONSUME.summary_fields("processing_duration_ms")["p50"] in CONSUME.fields


def test_no_measurement_tags_a_message_id() -> None:
    for measurement in SCHEMA.values():
        assert not {"message_id", "id", "title"} & measurement.tags


def test_point_rejects_unknown_fields_tags_and_wrong_types() -> None:
    with pytest.raises(ValueError, match="unknown fields"):
        PUBLISH.point({**TAGS, "queue": "fictional"}, {"messages_publishd": 1})
    with pytest.raises(ValueError, match="unknown tags"):
        PUBLISH.point({**TAGS, "message_id": "x"}, {"messages_published": 1})
    with pytest.raises(ValueError, match="missing tags"):
        PUBLISH.point({"queue": "fictional"}, {"messages_published": 1})
    with pytest.raises(TypeError, match="expected int"):
        PUBLISH.point(TAGS, {"messages_published": "one"})
    with pytest.raises(ValueError, match="finite"):
        PUBLISH.point(TAGS, {"publish_duration_ms_max": float("inf")})


def test_ints_widen_to_float_fields_and_strings_lose_newlines() -> None:
    point = AI_DECISION.point(
        {**TAGS, "mode": "dry-run", "action": "continue"},
        {"decision_latency_ms": 3, "ai_reasoning_text": "line one\nline two"},
    )
    assert point.fields["decision_latency_ms"] == 3.0
    assert point.fields["ai_reasoning_text"] == "line one line two"
    assert "\n" not in line_protocol(point)


@given(
    agent_id=st.text(min_size=1, max_size=30).filter(
        lambda s: s.strip() == s and s.isprintable() and "\\" not in s
    ),
    text=st.text(max_size=200).filter(lambda s: "\\" not in s),
    number=st.integers(min_value=-(2**62), max_value=2**62),
    ms=st.floats(allow_nan=False, allow_infinity=False, width=32),
)
def test_line_protocol_round_trips_through_the_file_parser(
    agent_id: str, text: str, number: int, ms: float
) -> None:
    point = AI_DECISION.point(
        {"agent_id": agent_id, "agent_type": "publisher", "mode": "live", "action": "continue"},
        {"ai_reasoning_text": text, "tokens_used": number, "decision_latency_ms": ms},
        time_ns=1_769_854_530_000_000_000,
    )
    parsed = parse_line(line_protocol(point))
    assert parsed.measurement == "ai_decision"
    assert parsed.tags["agent_id"] == agent_id
    assert parsed.fields["ai_reasoning_text"] == " ".join(text.splitlines())
    assert parsed.fields["tokens_used"] == number
    assert parsed.fields["decision_latency_ms"] == pytest.approx(ms)
    assert parsed.time_ns == 1_769_854_530_000_000_000


def test_file_sink_and_reader_answer_sum_last_count(tmp_path: Path) -> None:
    path = tmp_path / "var" / "metrics.lp"
    now = datetime(2026, 1, 31, 10, 0, tzinfo=UTC)

    def ns(t: datetime) -> int:
        return int(t.timestamp() * 1e9)

    sink = FileSink(path)
    metrics = Metrics(sink, "consumer-1", "consumer")
    old = now - timedelta(minutes=10)
    metrics.write(ANOMALY, {"anomaly_count": 1}, ns(old), queue="fictional")
    for i in range(3):
        t = ns(now + timedelta(seconds=i))
        metrics.write(ANOMALY, {"anomaly_count": 2}, t, queue="fictional")
        metrics.write(QUEUE_DEPTH, {"queue_depth": 10 + i}, t, queue="fictional")
    metrics.write(QUEUE_DEPTH, {"queue_depth": 7}, ns(now), queue="non-fictional")
    metrics.close()
    with path.open("a") as handle:  # a torn line from a crashed writer must not break reads
        handle.write("consume,agent_id=x messages_cons")

    reader = FileMetricsReader(path)
    since = now - timedelta(minutes=5)
    assert reader.sum_field("anomaly", "anomaly_count", since) == {"": 6.0}
    assert reader.count("anomaly", "anomaly_count", old, group_by="queue") == {"fictional": 4}
    assert reader.last_field("queue_depth", "queue_depth", since, group_by="queue") == {
        "fictional": 12.0,
        "non-fictional": 7.0,
    }
    assert FileMetricsReader(tmp_path / "missing.lp").sum_field("consume", "x", since) == {}


def test_memory_sink_filters_by_tags() -> None:
    sink = MemorySink()
    metrics = Metrics(sink, "publisher-1", "publisher")
    metrics.write(PUBLISH, {"messages_published": 1}, queue="fictional")
    metrics.error("publish_failed")
    metrics.flush()
    assert len(sink.where("publish", queue="fictional")) == 1
    assert sink.where("errors")[0].tags["kind"] == "publish_failed"


def test_flux_strings_cannot_break_out_of_the_literal() -> None:
    assert flux_string('a"b\\c${x}') == '"a\\"b\\\\c\\${x}"'
    query = flux_query(
        "agent_metrics",
        "sum",
        "consume",
        "messages_consumed",
        datetime(2026, 1, 31, tzinfo=UTC),
        "queue",
    )
    assert 'from(bucket: "agent_metrics")' in query
    assert "range(start: 2026-01-31T00:00:00.000000Z)" in query
    assert 'group(columns: ["queue"])' in query and query.endswith("sum()")


_tag_text = st.text(max_size=20)
_field_value = (
    st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.booleans()
)


@given(
    measurement=st.text(min_size=1, max_size=20).filter(lambda s: not s.startswith("#")),
    tags=st.dictionaries(st.text(min_size=1, max_size=10), _tag_text, max_size=4),
    fields=st.dictionaries(st.text(min_size=1, max_size=10), _field_value, min_size=1, max_size=4),
    time_ns=st.integers(min_value=0, max_value=2**62),
)
def test_our_line_protocol_encoder_matches_influxdb_client_point(
    measurement: str,
    tags: dict[str, str],
    fields: dict[str, int | float | str | bool],
    time_ns: int,
) -> None:
    point = MetricPoint(measurement, tags, fields, time_ns)
    assert line_protocol(point) == influx_point(point).to_line_protocol()
