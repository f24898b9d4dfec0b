"""Metrics, split by concern:

- `schema`: every measurement, tag and field the agents write (the InfluxDB contract);
- `line_protocol`: encoding points as InfluxDB line protocol and parsing it back;
- `sinks`: where points go (memory, a line-protocol file, InfluxDB);
- `aggregate`: per-message counts and durations folded into one point per interval;
- `recorder`: `Metrics`, the writer an agent holds;
- `reader`: the questions the monitor, the publishers and `agents cost report` ask back.

The names agents and their tests use are re-exported here (the measurements, `Metrics`, the
sinks), so `from agents.core.metrics import CONSUME, Metrics` keeps working; code that works on
one concern imports its module. Nothing here imports influxdb_client: the InfluxDB sink and reader
load it when they are built.
"""

from __future__ import annotations

from agents.core.metrics.recorder import Metrics
from agents.core.metrics.schema import (
    AI_DECISION,
    ANOMALY,
    BUDGET,
    BUDGET_THRESHOLD,
    COMMON_TAGS,
    CONSUME,
    ERRORS,
    HEALTH,
    PUBLISH,
    QUEUE_DEPTH,
    SCHEMA,
    Measurement,
)
from agents.core.metrics.sinks import FileSink, InfluxSink, MemorySink, sink_from_settings

__all__ = [
    "AI_DECISION",
    "ANOMALY",
    "BUDGET",
    "BUDGET_THRESHOLD",
    "COMMON_TAGS",
    "CONSUME",
    "ERRORS",
    "HEALTH",
    "PUBLISH",
    "QUEUE_DEPTH",
    "SCHEMA",
    "FileSink",
    "InfluxSink",
    "Measurement",
    "MemorySink",
    "Metrics",
    "sink_from_settings",
]
