"""Per-message counts and durations folded into one point per flush interval and tag set: how
the `publish` and `consume` measurements stay cheap at thousands of messages per second."""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from agents.core.clock import SystemClock
from agents.core.metrics.schema import SCHEMA, Measurement, tag_value
from agents.ports import Clock, MetricsSink


def _nearest_rank(ordered: list[float], q: float) -> float:
    """The q-quantile of sorted values by the nearest-rank method (an observed value)."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class _Series:
    """One (measurement, tag set)'s facts in the current interval."""

    __slots__ = ("counts", "tags", "values")

    def __init__(self, tags: dict[str, str]) -> None:
        self.tags = tags
        self.counts: dict[str, int] = {}
        self.values: dict[str, list[float]] = {}


class Aggregator:
    """Folds per-message counts and durations into one point per interval and tag set.

    The consumer and publisher call, per message::

        aggregator.count(CONSUME, "messages_consumed", 1, queue="fictional", action="process")
        aggregator.observe(CONSUME, "processing_duration_ms", 0.42, queue=..., action=...)

    and every `interval_seconds` (on the injected clock) each tag set seen in the interval becomes
    one point: counters as counts in the interval, each duration as `<field>_count`, `_sum`,
    `_max`, `_p50`, `_p99` (nearest rank over every value of the interval, so exact). Tag sets
    with nothing in an interval write nothing.

    When points are written: `count`/`observe` first flush a finished interval (one clock read
    and a compare); `tick()` does the same for an idle agent (agent loops, or the background
    thread `start_flusher` starts in production); `flush()` writes everything at once, and
    `Metrics.close` calls it, so a stopping agent loses nothing. Field names and tag names are
    checked against the schema at the call (a tag set once, when first seen), never later.
    Thread-safe; points go to the sink outside the lock.
    """

    def __init__(
        self,
        sink: MetricsSink,
        base_tags: Mapping[str, str],
        clock: Clock | None = None,
        interval_seconds: float = 1.0,
    ) -> None:
        if not interval_seconds > 0:
            raise ValueError("interval_seconds must be > 0")
        self.sink = sink
        self.interval_seconds = interval_seconds
        self._base_tags = dict(base_tags)
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._series: dict[tuple[str, tuple[tuple[str, str], ...]], _Series] = {}
        self._by_call: dict[tuple[str, tuple[tuple[str, str], ...]], _Series] = {}
        self._monotonic = self._clock.monotonic
        self._due = self._monotonic() + interval_seconds
        self._flusher: threading.Thread | None = None
        self._stopped = threading.Event()

    # --- recording -------------------------------------------------------------------------

    def _get(self, measurement: Measurement, tags: Mapping[str, str]) -> _Series:
        # Caller holds the lock. The per-message path: keyed on the tags as the call gave them
        # (no sort), mapped once per call shape to the series of the sorted tag set, so one
        # tag set is one series whatever the keyword order.
        call_key = (measurement.name, tuple(tags.items()))
        series = self._by_call.get(call_key)
        if series is None:
            key = (measurement.name, tuple(sorted(tags.items())))
            series = self._series.get(key)
            if series is None:
                full = {**self._base_tags, **{k: tag_value(v) for k, v in tags.items()}}
                measurement.check_tags(full)
                series = self._series[key] = _Series(full)
            self._by_call[call_key] = series
        return series

    def count(self, measurement: Measurement, field: str, n: int = 1, **tags: str) -> None:
        """Add `n` to a counter of the current interval."""
        if field not in measurement.counters:
            raise ValueError(f"{measurement.name}: {field!r} is not a counter")
        if self._monotonic() >= self._due:
            self.flush()
        with self._lock:
            counts = self._get(measurement, tags).counts
            counts[field] = counts.get(field, 0) + int(n)

    def observe(self, measurement: Measurement, field: str, value: float, **tags: str) -> None:
        """Add one duration (or any non-negative amount) to a summary of the current interval."""
        if field not in measurement.summaries:
            raise ValueError(f"{measurement.name}: {field!r} is not a duration summary")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{measurement.name}.{field}: not a finite number")
        if self._monotonic() >= self._due:
            self.flush()
        with self._lock:
            values = self._get(measurement, tags).values
            if field in values:
                values[field].append(value)
            else:
                values[field] = [value]

    def event(self, measurement: Measurement, fields: Mapping[str, Any], **tags: str) -> None:
        """Fold one message's fields: counters add (a bool counts 1 or 0), summaries observe."""
        if self._monotonic() >= self._due:
            self.flush()
        with self._lock:
            series = self._get(measurement, tags)
            for name, value in fields.items():
                name = measurement.aliases.get(name, name)
                if name in measurement.counters:
                    series.counts[name] = series.counts.get(name, 0) + int(value)
                elif name in measurement.summaries:
                    number = float(value)
                    if not math.isfinite(number):
                        raise ValueError(f"{measurement.name}.{name}: not a finite number")
                    series.values.setdefault(name, []).append(number)
                else:
                    raise ValueError(
                        f"{measurement.name}: {name!r} is neither a counter nor a summary"
                    )

    # --- writing ---------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> int:
        """Flush if the current interval is over (at `now`, else the clock's monotonic time)."""
        if (self._clock.monotonic() if now is None else now) < self._due:
            return 0
        return self.flush()

    def flush(self) -> int:
        """Write every series of the current interval now and start the next; points written."""
        with self._lock:
            series, self._series, self._by_call = self._series, {}, {}
            self._due = self._monotonic() + self.interval_seconds
        if not series:
            return 0
        time_ns = _datetime_ns(self._clock.now())
        written = 0
        for (name, _), one in series.items():
            measurement = SCHEMA[name]
            fields: dict[str, int | float] = dict(one.counts)
            for summary, values in one.values.items():
                ordered = sorted(values)
                names = measurement.summary_fields(summary)
                fields[names["count"]] = len(ordered)
                fields[names["sum"]] = math.fsum(ordered)
                fields[names["max"]] = ordered[-1]
                fields[names["p50"]] = _nearest_rank(ordered, 0.50)
                fields[names["p99"]] = _nearest_rank(ordered, 0.99)
            if fields:
                self.sink.write(measurement.point(one.tags, fields, time_ns))
                written += 1
        return written

    def start_flusher(self) -> None:
        """Tick from a daemon thread, so an idle agent's last interval is not held back."""
        if self._flusher is not None:
            return

        def run() -> None:
            while not self._stopped.wait(min(0.25, self.interval_seconds / 2)):
                self.tick()

        self._flusher = threading.Thread(target=run, name="metrics-flusher", daemon=True)
        self._flusher.start()

    def close(self) -> None:
        """Stop the flusher thread and write what is left."""
        self._stopped.set()
        if self._flusher is not None:
            self._flusher.join(timeout=2.0)
        self.flush()


def _datetime_ns(moment: datetime) -> int:
    # Integer arithmetic: timestamp() as a float loses the last digits of the nanoseconds.
    from datetime import UTC

    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
