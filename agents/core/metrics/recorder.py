"""`Metrics`, what an agent holds: it fills in agent_id/agent_type, sends event points to the
sink and folds the per-message ones into an `Aggregator`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agents.core.metrics.aggregate import Aggregator
from agents.core.metrics.schema import ERRORS, Measurement
from agents.ports import Clock, MetricsSink


class Metrics:
    """The agent-facing writer: fills in agent_id/agent_type and hands points to a sink.

    `write` sends one point per call for event measurements and folds the fields of aggregated
    ones (`publish`, `consume`) into the `aggregator`; `count` and `observe` are the cheaper
    direct calls for the per-message hot paths. `close` flushes the aggregates first.
    """

    def __init__(
        self,
        sink: MetricsSink,
        agent_id: str,
        agent_type: str,
        *,
        clock: Clock | None = None,
        flush_interval_seconds: float = 1.0,
    ) -> None:
        self.sink = sink
        self._base_tags = {"agent_id": agent_id, "agent_type": agent_type}
        self.aggregator = Aggregator(sink, self._base_tags, clock, flush_interval_seconds)
        self.count = self.aggregator.count
        self.observe = self.aggregator.observe
        self.tick = self.aggregator.tick
        self.flush = self.aggregator.flush

    def write(
        self,
        measurement: Measurement,
        fields: Mapping[str, Any],
        time_ns: int | None = None,
        **tags: str,
    ) -> None:
        if measurement.aggregated:
            self.aggregator.event(measurement, fields, **tags)
            return
        self.sink.write(measurement.point({**self._base_tags, **tags}, fields, time_ns))

    def error(self, kind: str) -> None:
        self.write(ERRORS, {"error_count": 1}, kind=kind)

    def close(self) -> None:
        try:
            self.aggregator.close()
        finally:
            self.sink.close()
