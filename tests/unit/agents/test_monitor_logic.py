"""The monitor's sampling and health checks with a FakeClock, a real line-protocol metrics file
to summarise, and the real engine around a scripted model."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from agents.core.metrics import ERRORS, PUBLISH, FileSink, Metrics
from agents.core.metrics.reader import FileMetricsReader
from agents.core.settings import MonitorSettings
from agents.monitor import Monitor
from agents.testing import monitor_reply
from tests.support.rig import Rig


def monitor_for(
    make_rig: Callable[..., Rig], path: Path, **overrides: object
) -> tuple[Rig, Monitor, io.StringIO]:
    rig = make_rig(
        MonitorSettings,
        check_interval_seconds=120,
        queue_sample_interval_seconds=10,
        metrics_file=path,
        **overrides,
    )
    console = io.StringIO()
    monitor = Monitor(rig.wiring, FileMetricsReader(path), console=console)
    return rig, monitor, console


def test_samples_queue_depths_on_its_interval(make_rig: Callable[..., Rig], tmp_path: Path) -> None:
    rig, monitor, _ = monitor_for(make_rig, tmp_path / "m.lp")
    rig.broker.depths = {"fictional": 7, "non-fictional": 2}
    for _ in range(30):  # 30 s in 1 s steps: samples at 0, 10, 20
        monitor.step()
        rig.clock.advance(1.0)
    points = rig.sink.where("queue_depth", queue="fictional")
    assert [p.fields for p in points] == [{"queue_depth": 7}] * 3
    assert len(rig.sink.where("queue_depth", queue="non-fictional")) == 3


def test_health_check_summarises_the_window_and_writes_health(
    make_rig: Callable[..., Rig], tmp_path: Path
) -> None:
    path = tmp_path / "m.lp"
    rig, monitor, console = monitor_for(make_rig, path)
    # Other agents' points in the shared metrics file: per-interval publish counts of 2 and 1
    # in the window and 5 too old, 2 errors.
    sink = FileSink(path)
    writer = Metrics(sink, "publisher-1", "publisher")
    now_ns = int(rig.clock.now().timestamp() * 1e9)
    old_ns = int((rig.clock.now() - timedelta(minutes=10)).timestamp() * 1e9)
    tags = {"agent_id": "publisher-1", "agent_type": "publisher", "queue": "fictional"}
    for count, t in ((2, now_ns - 1), (1, now_ns - 2), (5, old_ns)):
        sink.write(PUBLISH.point(tags, {"messages_published": count}, t))
    for t in (now_ns - 4, now_ns - 5):
        writer.write(ERRORS, {"error_count": 1}, t, kind="publish_failed")
    writer.close()
    rig.broker.depths = {"fictional": 40, "non-fictional": 0}
    monitor.step()  # samples at t=0
    rig.clock.advance(120.0)
    monitor.step()  # samples and checks
    (request,) = rig.client.requests
    assert "messages_published=3" in request.prompt
    assert "errors=2" in request.prompt
    (analysis,) = rig.lines("System health check", level="AI_ANALYSIS")
    assert analysis["context"]["status"] == "healthy"
    assert {"status", "issues", "suggestions"} <= set(analysis["context"])
    (health,) = rig.sink.where("health", status="healthy")
    assert health.fields["status_code"] == 0
    summary = rig.lines("Metrics summary")[0]["context"]
    assert summary["messages_published"] == 3
    assert summary["queue_depths"] == {"fictional": 40, "non-fictional": 0}
    assert console.getvalue() == ""


def test_critical_status_prints_a_banner_and_logs_an_error(
    make_rig: Callable[..., Rig], tmp_path: Path
) -> None:
    rig, monitor, console = monitor_for(make_rig, tmp_path / "m.lp")
    rig.client.script("monitor", monitor_reply("critical", ["consumers stalled"]))
    monitor.check()
    assert "CRITICAL" in console.getvalue()
    assert "consumers stalled" in console.getvalue()
    (error,) = rig.lines("CRITICAL system health", level="ERROR")
    assert error["context"]["issues"] == ["consumers stalled"]
    (health,) = rig.sink.where("health", status="critical")
    assert health.fields["status_code"] == 2


def test_an_unreadable_metrics_store_still_gives_an_analysis(
    make_rig: Callable[..., Rig], tmp_path: Path
) -> None:
    rig, monitor, _ = monitor_for(make_rig, tmp_path / "m.lp")
    monitor.reader = BrokenReader()
    analysis = monitor.check()
    assert analysis.status == "healthy"
    summary = rig.lines("Metrics summary")[0]["context"]
    assert summary["messages_published"] is None
    assert "unavailable" in summary


class BrokenReader:
    def sum_field(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        from agents.ports import MetricsReadError

        raise MetricsReadError("InfluxDB query failed: 500")

    last_field = sum_field

    def count(self, *args: Any, **kwargs: Any) -> dict[str, int]:
        raise NotImplementedError


def test_checks_on_schedule_are_never_refused_by_the_rate_limiter(
    make_rig: Callable[..., Rig], tmp_path: Path
) -> None:
    # Sampling the broker takes time before the check in the same step; the schedule must not
    # come back before the cost guard's interval (counted from the call) has passed.
    rig, monitor, _ = monitor_for(make_rig, tmp_path / "m.lp")
    rig.slow("queue_depths", seed=3)
    rig.drive(monitor.step, 10 * 120 + 1)
    analyses = rig.sink.where("ai_decision")
    assert len(analyses) == 10
    assert [p.tags.get("fallback") for p in analyses] == [None] * 10
