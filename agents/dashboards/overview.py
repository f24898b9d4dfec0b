"""Dashboard 1, System Overview: throughput, durations, queue depths, the latest agent logs."""

from __future__ import annotations

from agents.core.metrics import CONSUME, PUBLISH, QUEUE_DEPTH
from agents.dashboards import common as c
from agents.dashboards import logql
from agents.dashboards.flux import query, rate, reduce, window

UID = "books-overview"


def build() -> c.Dashboard:
    throughput = c.timeseries(
        "Messages published and consumed",
        "Messages per second, per queue: confirmed publishes (publish.messages_published) and "
        "handled messages (consume.messages_consumed). Agents write these as counts per flush "
        "interval (1 s); the panel sums them per window and divides by its length, so the "
        "scale does not change with the zoom.",
        c.MSG_PER_S,
        c.influx(
            query(
                PUBLISH,
                "messages_published",
                group_by=["_field", "queue"],
                steps=[window("sum"), rate(1)],
            ),
            "A",
        ),
        c.influx(
            query(
                CONSUME,
                "messages_consumed",
                group_by=["_field", "queue"],
                steps=[window("sum"), rate(1)],
            ),
            "B",
        ),
        width=16,
    )
    durations = c.timeseries(
        "Publish and processing duration (p50 / p99)",
        "Publisher-confirm round trip (publish.publish_duration_ms) and consumer processing time "
        "(consume.processing_duration_ms), per queue. Agents write exact p50 and p99 per 1 s "
        "interval; percentiles do not add up across intervals or agents, so each window shows "
        "the worst (max) of them, an upper bound rather than a fleet-wide percentile.",
        c.MS,
        c.influx(
            query(
                PUBLISH,
                "publish_duration_ms_p50",
                "publish_duration_ms_p99",
                group_by=["_field", "queue"],
                steps=[window("max")],
            ),
            "A",
        ),
        c.influx(
            query(
                CONSUME,
                "processing_duration_ms_p50",
                "processing_duration_ms_p99",
                group_by=["_field", "queue"],
                steps=[window("max")],
            ),
            "B",
        ),
        width=24,
    )
    depths = c.gauge(
        "Queue depths",
        "Messages waiting in each queue, as last sampled by the monitor "
        "(queue_depth.queue_depth). Queues are shared, so the agent filters do not apply.",
        c.MESSAGES,
        c.influx(
            query(
                QUEUE_DEPTH,
                "queue_depth",
                group_by=["queue"],
                agent_filter=False,
                steps=[reduce("last")],
            )
        ),
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
