"""Dashboard 3, Logs + Metrics Correlation: the same time range in metrics and logs, one above
the other, with a shared crosshair so a spike in a graph points at the log lines around it."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import DashboardCursorSync

from agents.core.logs import Level
from agents.core.metrics.schema import ERRORS
from agents.dashboards import common as c
from agents.dashboards import logql
from agents.dashboards.flux import query, rate, window

UID = "books-correlation"


def build() -> c.Dashboard:
    depth = c.timeseries(
        "Queue depth",
        "Messages waiting per queue over time (queue_depth.queue_depth, mean per window, as "
        "sampled by the monitor). Queues are shared, so the agent filters do not apply.",
        c.MESSAGES,
        c.queue_depths(window("mean")),
        width=24,
    )
    logs = c.log_stream(
        "Logs in the same time range",
        "Every log line of the selected agents in the dashboard's time range (Loki). Hover a "
        "graph: the crosshair marks the same moment here.",
        logql.selector(),
        max_lines=500,
    )
    errors = c.timeseries(
        "Error rate",
        "Errors per minute by agent and kind (errors.error_count: dead-lettered messages, "
        "publish failures, broker reconnects, ...).",
        c.ERRORS_PER_MIN,
        c.influx(
            query(
                ERRORS,
                "error_count",
                group_by=["agent_id", "kind"],
                steps=[window("sum"), rate(60)],
            )
        ),
        width=24,
    )
    error_logs = c.log_stream(
        "Error logs",
        'ERROR log lines of the selected agents (Loki, {level="ERROR"}).',
        logql.selector(logql.eq("level", Level.ERROR)),
        max_lines=200,
    )
    return (
        c.dashboard(
            UID,
            "Logs + Metrics Correlation",
            "Metrics and the logs of the same moments: find a spike, read what the agents said.",
        )
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .with_panel(depth)
        .with_panel(logs)
        .with_panel(errors)
        .with_panel(error_logs)
    )
