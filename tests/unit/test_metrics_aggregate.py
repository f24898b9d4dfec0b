"""Aggregated publish/consume metrics: one point per interval and tag set, counts that add up,
summaries that are exact, nothing lost on close, mistakes refused at the call."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.core.metrics.aggregate import Aggregator
from agents.core.metrics.line_protocol import parse_line
from agents.core.metrics.reader import FileMetricsReader
from agents.core.metrics.recorder import Metrics
from agents.core.metrics.schema import ANOMALY, CONSUME, PUBLISH
from agents.core.metrics.sinks import FileSink, MemorySink
from agents.ports import MetricPoint
from agents.testing.clock import FakeClock

BASE = {"agent_id": "consumer-1", "agent_type": "consumer"}


def rig(interval: float = 1.0) -> tuple[FakeClock, MemorySink, Aggregator]:
    clock = FakeClock()
    sink = MemorySink()
    return clock, sink, Aggregator(sink, BASE, clock, interval)


def test_one_interval_becomes_one_point_with_counts_and_an_exact_summary() -> None:
    clock, sink, agg = rig()
    for ms in range(100, 0, -1):  # 100 .. 1, out of order
        agg.count(CONSUME, "messages_consumed", 1, queue="fictional", action="process")
        agg.observe(
            CONSUME, "processing_duration_ms", float(ms), queue="fictional", action="process"
        )
    agg.count(CONSUME, "ai_decisions_used", 3, queue="fictional", action="process")
    assert sink.points == []  # nothing before the interval ends
    clock.advance(1.0)
    assert agg.tick() == 1
    (point,) = sink.points
    assert point.measurement == "consume"
    assert point.tags == {**BASE, "queue": "fictional", "action": "process"}
    assert point.fields == {
        "messages_consumed": 100,
        "ai_decisions_used": 3,
        "processing_duration_ms_count": 100,
        "processing_duration_ms_sum": 5050.0,
        "processing_duration_ms_max": 100.0,
        "processing_duration_ms_p50": 50.0,
        "processing_duration_ms_p99": 99.0,
    }
    assert point.time == clock.now()  # stamped at the end of its interval
    assert agg.tick() == 0  # the next interval is empty: no point


def test_tag_sets_are_separate_series_whatever_the_keyword_order() -> None:
    _, sink, agg = rig()
    agg.count(CONSUME, "messages_consumed", 1, queue="fictional", action="process")
    agg.count(CONSUME, "messages_consumed", 1, action="process", queue="fictional")
    agg.count(CONSUME, "messages_consumed", 1, queue="fictional", action="flag")
    agg.count(PUBLISH, "messages_published", 4, queue="fictional")
    assert agg.flush() == 3
    counts = {
        (p.measurement, p.tags.get("action")): p.fields.get("messages_consumed")
        or p.fields.get("messages_published")
        for p in sink.points
    }
    assert counts == {("consume", "process"): 2, ("consume", "flag"): 1, ("publish", None): 4}
    # One flush, one timestamp: the series differ by tags, so none overwrites another.
    assert len({p.time_ns for p in sink.points}) == 1


def test_a_record_after_the_interval_flushes_the_old_interval_first() -> None:
    clock, sink, agg = rig(interval=2.0)
    agg.observe(PUBLISH, "publish_duration_ms", 5.0, queue="fictional")
    clock.advance(1.9)
    agg.observe(PUBLISH, "publish_duration_ms", 7.0, queue="fictional")
    assert sink.points == []
    clock.advance(0.2)
    agg.observe(PUBLISH, "publish_duration_ms", 1000.0, queue="fictional")  # next interval
    (first,) = sink.points
    assert first.fields["publish_duration_ms_count"] == 2
    assert first.fields["publish_duration_ms_max"] == 7.0
    agg.flush()
    assert sink.points[1].fields["publish_duration_ms_max"] == 1000.0


def test_mistakes_are_refused_at_the_call_not_at_the_flush() -> None:
    _, sink, agg = rig()
    with pytest.raises(ValueError, match="not a counter"):
        agg.count(CONSUME, "processing_duration_ms", 1, queue="fictional", action="process")
    with pytest.raises(ValueError, match="not a duration summary"):
        agg.observe(CONSUME, "messages_consumed", 1.0, queue="fictional", action="process")
    with pytest.raises(ValueError, match="unknown tags"):
        agg.count(PUBLISH, "messages_published", 1, message_id="abc")
    with pytest.raises(ValueError, match="finite"):
        agg.observe(PUBLISH, "publish_duration_ms", math.nan, queue="fictional")
    assert agg.flush() == 0 and sink.points == []


def test_metrics_write_folds_the_per_message_consume_fields() -> None:
    clock = FakeClock()
    sink = MemorySink()
    metrics = Metrics(sink, "consumer-1", "consumer", clock=clock)
    # The call the consumer made per message before aggregation still works, and aggregates.
    for used, ms in ((True, 2.0), (False, 4.0), (False, 6.0)):
        fields = {"messages_consumed": 1, "processing_duration_ms": ms, "ai_decision_used": used}
        metrics.write(CONSUME, fields, queue="fictional", action="process")
    with pytest.raises(ValueError, match="neither a counter nor a summary"):
        metrics.write(CONSUME, {"tokens_used": 1}, queue="fictional", action="process")
    metrics.write(ANOMALY, {"anomaly_count": 1}, queue="fictional")
    metrics.write(ANOMALY, {"anomaly_count": 1}, queue="fictional")
    assert len(sink.where("anomaly")) == 2  # event measurements: one point each, at once
    assert sink.where("consume") == []
    metrics.close()
    (point,) = sink.where("consume")
    assert point.fields["messages_consumed"] == 3
    assert point.fields["ai_decisions_used"] == 1
    assert point.fields["processing_duration_ms_p50"] == 4.0


def test_close_writes_the_open_interval_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.lp"
    metrics = Metrics(FileSink(path), "publisher-1", "publisher", clock=FakeClock())
    for _ in range(5):
        metrics.count(PUBLISH, "messages_published", 1, queue="non-fictional")
        metrics.observe(PUBLISH, "publish_duration_ms", 1.5, queue="non-fictional")
    metrics.close()
    (line,) = path.read_text().splitlines()
    parsed = parse_line(line)
    assert parsed.fields["messages_published"] == 5
    assert parsed.fields["publish_duration_ms_sum"] == 7.5
    reader = FileMetricsReader(path)
    since = FakeClock().now().replace(year=2000)
    assert reader.sum_field("publish", "messages_published", since, "queue") == {
        "non-fictional": 5.0
    }


def test_the_background_flusher_writes_an_idle_agents_last_interval() -> None:
    sink = MemorySink()
    agg = Aggregator(sink, BASE, interval_seconds=0.05)  # the system clock
    agg.start_flusher()
    try:
        agg.count(CONSUME, "messages_consumed", 2, queue="fictional", action="batch")
        deadline = time.monotonic() + 5.0
        while not sink.points and time.monotonic() < deadline:
            time.sleep(0.01)
        (point,) = sink.points
        assert point.fields["messages_consumed"] == 2
    finally:
        agg.close()
    assert not any(t.name == "metrics-flusher" for t in threading.enumerate())


@given(
    events=st.lists(
        st.tuples(
            st.sampled_from(["fictional", "non-fictional"]),
            st.floats(min_value=0, max_value=1e6, allow_nan=False),
            st.integers(min_value=0, max_value=3),  # whole seconds to advance before it
        ),
        max_size=200,
    )
)
def test_counts_and_sums_add_up_and_percentiles_are_observed_values(
    events: list[tuple[str, float, int]],
) -> None:
    clock, sink, agg = rig()
    seen: dict[str, list[float]] = {"fictional": [], "non-fictional": []}
    for queue, ms, gap in events:
        clock.advance(gap)
        agg.count(PUBLISH, "messages_published", 1, queue=queue)
        agg.observe(PUBLISH, "publish_duration_ms", ms, queue=queue)
        seen[queue].append(ms)
    agg.flush()
    for queue, values in seen.items():
        points: list[MetricPoint] = [p for p in sink.points if p.tags["queue"] == queue]
        assert sum(int(p.fields["messages_published"]) for p in points) == len(values)
        assert sum(int(p.fields["publish_duration_ms_count"]) for p in points) == len(values)
        total = sum(float(p.fields["publish_duration_ms_sum"]) for p in points)
        assert total == pytest.approx(math.fsum(values), rel=1e-9, abs=1e-9)
        for p in points:
            p50, p99 = p.fields["publish_duration_ms_p50"], p.fields["publish_duration_ms_p99"]
            assert p50 in values and p99 in values
            assert float(p50) <= float(p99) <= float(p.fields["publish_duration_ms_max"])
        if values:
            assert max(float(p.fields["publish_duration_ms_max"]) for p in points) == max(values)
