"""The monitor agent on the real broker: the depths it samples are the broker's, and a health
check reads back what it and the other agents wrote to the shared metrics file."""

from __future__ import annotations

import io
from pathlib import Path

import pika
import pytest

from agents.core.broker import connection_parameters
from agents.core.metrics import PUBLISH, FileSink, Metrics
from agents.core.metrics.reader import FileMetricsReader, iter_file
from agents.core.settings import MonitorSettings, load_settings
from agents.monitor import Monitor
from agents.runtime import wire
from agents.testing import ScriptedClient, monitor_reply
from agents.testing.clock import FakeClock

pytestmark = pytest.mark.rabbitmq


def test_samples_real_depths_and_analyses_the_shared_metrics_file(
    rabbit_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "metrics.lp"
    settings = load_settings(MonitorSettings, metrics_file=path, check_interval_seconds=30)
    clock = FakeClock()
    out, console = io.StringIO(), io.StringIO()
    client = ScriptedClient()
    client.script("monitor", monitor_reply("critical", ["fictional backlog"]))
    wiring = wire(settings, clock=clock, stream=out, sink=FileSink(path), client=client)
    broker, metrics = wiring.broker, wiring.metrics
    broker.connect()
    try:
        connection = pika.BlockingConnection(connection_parameters(settings))
        channel = connection.channel()
        channel.confirm_delivery()
        for _ in range(5):
            channel.basic_publish("books", "fictional", b"{}", mandatory=True)
        connection.close()
        publisher_metrics = Metrics(FileSink(path), "publisher-1", "publisher", clock=clock)
        for _ in range(5):
            publisher_metrics.count(PUBLISH, "messages_published", 1, queue="fictional")
            publisher_metrics.observe(PUBLISH, "publish_duration_ms", 2.0, queue="fictional")
        publisher_metrics.close()  # one aggregate point: messages_published=5

        monitor = Monitor(wiring, FileMetricsReader(path), console=console)
        monitor.step()
        clock.advance(30)
        monitor.step()
    finally:
        broker.close()
        metrics.close()
    depths = [
        (p.tags["queue"], p.fields["queue_depth"])
        for p in iter_file(path)
        if p.measurement == "queue_depth"
    ]
    assert depths.count(("fictional", 5)) == 2
    assert depths.count(("non-fictional", 0)) == 2
    (request,) = client.requests
    assert "messages_published=5" in request.prompt
    assert "fictional" in request.prompt
    assert "CRITICAL" in console.getvalue()
    health = [p for p in iter_file(path) if p.measurement == "health"]
    assert [p.tags["status"] for p in health] == ["critical"]
