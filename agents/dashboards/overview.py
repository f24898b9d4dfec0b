"""Dashboard 1, System Overview: throughput, durations, queue depths, the latest agent logs."""

from __future__ import annotations

from agents.core.metrics.schema import CONSUME, PUBLISH, Measurement
from agents.dashboards import common as c
from agents.dashboards import logql
from agents.dashboards.flux import query, rate, reduce, window

UID = "books-overview"


def _per_queue(
    ref_id: str, measurement: Measurement, *fields: str, steps: list[str]
) -> c.FluxTarget:
    """One series per field and queue (publish and consume alike)."""
    return c.influx(query(measurement, *fields, group_by=["_field", "queue"], steps=steps), ref_id)


def _percentiles(ref_id: str, measurement: Measurement, summary: str) -> c.FluxTarget:
    """A duration summary's p50 and p99 per queue, the worst of each window: percentiles do not
    add up across intervals or agents."""
    stats = measurement.summary_fields(summary)
    return _per_queue(ref_id, measurement, stats["p50"], stats["p99"], steps=[window("max")])


def build() -> c.Dashboard:
    throughput = c.timeseries(
        "Messages published and consumed",
        "Messages per second, per queue: confirmed publishes (publish.messages_published) and "
        "handled messages (consume.messages_consumed). Agents write these as counts per flush "
        "interval (1 s); the panel sums them per window and divides by its length, so the "
        "scale does not change with the zoom.",
        c.MSG_PER_S,
        _per_queue("A", PUBLISH, "messages_published", steps=[window("sum"), rate(1)]),
        _per_queue("B", CONSUME, "messages_consumed", steps=[window("sum"), rate(1)]),
        width=16,
    )
    durations = c.timeseries(
        "Publish and processing duration (p50 / p99)",
        "Publisher-confirm round trip (publish.publish_duration_ms) and consumer processing time "
        "(consume.processing_duration_ms), per queue. Agents write exact p50 and p99 per 1 s "
        "interval; percentiles do not add up across intervals or agents, so each window shows "
        "the worst (max) of them, an upper bound rather than a fleet-wide percentile.",
        c.MS,
        _percentiles("A", PUBLISH, "publish_duration_ms"),
        _percentiles("B", CONSUME, "processing_duration_ms"),
        width=24,
    )
    depths = c.gauge(
        "Queue depths",
        "Messages waiting in each queue, as last sampled by the monitor "
        "(queue_depth.queue_depth). Queues are shared, so the agent filters do not apply.",
        c.MESSAGES,
        c.queue_depths(reduce("last")),
        steps=c.thresholds((None, "green"), (100, "orange"), (500, "red")),
        maximum=1000,
        width=8,
    )
    logs = c.log_table(
        "Agent logs (last 50 lines)",
        "The 50 newest log lines of the selected agents, from Loki (every level).",
        logql.selector(),
        max_lines=50,
    )
    return (
        c.dashboard(
            UID,
            "System Overview",
            "Is the fleet moving messages? Throughput, queue depths and the latest agent logs.",
        )
        .with_panel(throughput)
        .with_panel(depths)
        .with_panel(durations)
        .with_panel(logs)
    )
