"""The InfluxDB contract: every measurement, tag and field the agents write, in one place.

Agents write only through `Measurement.point(...)`, which rejects unknown tags or fields and
wrong field types, so a typo cannot create a series no dashboard reads. The dashboards build
their Flux queries from the same objects. Tags stay low-cardinality: never a message id.

Two kinds of measurement:
- *event* measurements (AI decisions, anomalies, errors, health, queue depths): one point per
  event, written as it happens;
- *aggregated* measurements (`publish`, `consume`): per-message facts are folded by an
  `Aggregator` into one point per flush interval (default 1 s) and tag set, holding counters
  (counts in the interval) and duration summaries (`<name>_count/_sum/_max/_p50/_p99`). One point
  per message does not scale to thousands of messages per second.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.core.clock import SystemClock
from agents.core.logs import Logger, describe_error
from agents.ports import Clock, MetricPoint, MetricsSink

if TYPE_CHECKING:
    # influxdb_client costs ~2 s and tens of MB to import: only InfluxSink (INFLUXDB_URL set)
    # and the reference encoder in tests load it.
    from influxdb_client import Point

    from agents.core.settings import CommonSettings

FieldType = type[int] | type[float] | type[str] | type[bool]

COMMON_TAGS = frozenset({"agent_id", "agent_type"})

# The fields one duration summary writes, as suffixes of its name (processing_duration_ms_p99).
SUMMARY_STATS: dict[str, FieldType] = {
    "count": int,
    "sum": float,
    "max": float,
    "p50": float,
    "p99": float,
}


@dataclass(frozen=True)
class Measurement:
    name: str
    tags: frozenset[str]
    fields: Mapping[str, FieldType]
    description: str = ""
    # Aggregated measurements only: what an agent reports per message.
    counters: frozenset[str] = frozenset()
    summaries: frozenset[str] = frozenset()
    # Per-message names used before aggregation, still accepted by `Metrics.write`.
    aliases: Mapping[str, str] = field(default_factory=dict)

    @property
    def aggregated(self) -> bool:
        return bool(self.counters or self.summaries)

    def summary_fields(self, name: str) -> dict[str, str]:
        """{stat: written field name} of one duration summary: {"p99": "x_ms_p99", ...}."""
        if name not in self.summaries:
            raise ValueError(f"{self.name}: {name!r} is not a duration summary")
        return {stat: f"{name}_{stat}" for stat in SUMMARY_STATS}

    def check_tags(self, tags: Mapping[str, str]) -> None:
        unknown_tags = set(tags) - self.tags
        missing_tags = COMMON_TAGS - set(tags)
        if unknown_tags or missing_tags:
            raise ValueError(
                f"{self.name}: unknown tags {sorted(unknown_tags)}, "
                f"missing tags {sorted(missing_tags)}"
            )

    def point(
        self,
        tags: Mapping[str, str],
        fields: Mapping[str, Any],
        time_ns: int | None = None,
    ) -> MetricPoint:
        unknown_tags = set(tags) - self.tags
        missing_tags = COMMON_TAGS - set(tags)
        unknown_fields = set(fields) - set(self.fields)
        if unknown_tags or missing_tags or unknown_fields or not fields:
            raise ValueError(
                f"{self.name}: unknown tags {sorted(unknown_tags)}, missing tags "
                f"{sorted(missing_tags)}, unknown fields {sorted(unknown_fields)}"
            )
        coerced: dict[str, int | float | str | bool] = {}
        for key, value in fields.items():
            kind = self.fields[key]
            if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
                value = float(value)
                if not math.isfinite(value):
                    raise ValueError(f"{self.name}.{key}: not a finite number")
            elif kind is int and isinstance(value, bool):
                value = int(value)
            elif kind is str and isinstance(value, str):
                # One point per line in the file sink and in the write body: no raw newlines.
                value = " ".join(value.splitlines())[:4096]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise TypeError(f"{self.name}.{key}: expected {kind.__name__}, got {value!r}")
            coerced[key] = value
        return MetricPoint(
            measurement=self.name,
            tags={k: _tag_value(v) for k, v in tags.items() if str(v) != ""},
            fields=coerced,
            time_ns=time_ns if time_ns is not None else time.time_ns(),
        )


def _tag_value(value: object) -> str:
    # Line protocol has no escape for control characters in tags; they would split the line.
    text = str(value)
    if text.isprintable():  # the hot path: agent ids, queues and actions always are
        return text[:256]
    return "".join(ch if ch.isprintable() else "_" for ch in text)[:256]


def _m(name: str, extra_tags: set[str], fields: Mapping[str, FieldType], doc: str) -> Measurement:
    return Measurement(name, COMMON_TAGS | frozenset(extra_tags), dict(fields), doc)


def _aggregated(
    name: str,
    extra_tags: set[str],
    counters: set[str],
    summaries: set[str],
    doc: str,
    aliases: Mapping[str, str] | None = None,
) -> Measurement:
    fields: dict[str, FieldType] = {counter: int for counter in counters}
    for summary in summaries:
        fields.update({f"{summary}_{stat}": kind for stat, kind in SUMMARY_STATS.items()})
    return Measurement(
        name,
        COMMON_TAGS | frozenset(extra_tags),
        fields,
        doc,
        frozenset(counters),
        frozenset(summaries),
        dict(aliases or {}),
    )


PUBLISH = _aggregated(
    "publish",
    {"queue"},
    {"messages_published"},
    {"publish_duration_ms"},
    "Per flush interval and queue: confirmed publishes (a count) and the publisher-confirm "
    "round trip (publish_duration_ms_count/_sum/_max/_p50/_p99).",
)
CONSUME = _aggregated(
    "consume",
    {"queue", "action"},
    {"messages_consumed", "ai_decisions_used"},
    {"processing_duration_ms"},
    "Per flush interval, queue and action: messages handled (processed, batched-then-processed "
    "or flagged), how many of them on an AI decision, and the processing time summary.",
    # Named per message before aggregation (a bool); now a count, under a new name so InfluxDB
    # never sees one field change type.
    aliases={"ai_decision_used": "ai_decisions_used"},
)
AI_DECISION = _m(
    "ai_decision",
    {"mode", "action", "fallback", "model"},
    {
        "ai_decision_count": int,
        "ai_fallback_count": int,
        "ai_call_count": int,  # 1 when a request reached the client (live, replay, dry-run)
        "ai_reasoning_text": str,
        "tokens_used": int,
        "input_tokens": int,
        "output_tokens": int,
        "cost_usd": float,
        "decision_latency_ms": float,
        "queue_depth_fictional": int,
        "queue_depth_non_fictional": int,
        "fictional_interval_s": float,
        "nonfictional_interval_s": float,
    },
    "One point per AI decision (live, replayed, dry-run or fallback), with tokens and cost.",
)
QUEUE_DEPTH = _m(
    "queue_depth",
    {"queue"},
    {"queue_depth": int, "queue_depth_at_decision": int, "consumers": int},
    "Queue depths: sampled by the monitor (queue_depth) and read by publishers when deciding.",
)
ERRORS = _m(
    "errors",
    {"kind"},
    {"error_count": int},
    "One point per error an agent handled (dead-lettered message, publish failure, ...).",
)
ANOMALY = _m(
    "anomaly",
    {"queue"},
    {"anomaly_count": int},
    "One point per message a consumer flagged as an anomaly.",
)
HEALTH = _m(
    "health",
    {"status"},
    {"status_code": int, "issues_count": int, "issues": str, "suggestions": str},
    "The monitor's health analyses: status_code 0 healthy, 1 warning, 2 critical.",
)

# --- The spend ledger's view (issue 14) ---------------------------------------------------------
BUDGET = _m(
    "ai_budget",
    {"scope", "window"},
    {
        "reserved_usd": float,  # worst cases of calls in flight or of unknown outcome
        "settled_usd": float,  # actual usage of answered calls
        "remaining_usd": float,  # the cap minus both
        "cap_usd": float,
        "used_ratio": float,
    },
    "Spend-cap gauges per window, for the agent (scope=agent) and the whole fleet "
    "(scope=fleet), as the shared ledger saw them at each reservation.",
)
BUDGET_THRESHOLD = _m(
    "ai_budget_threshold",
    {"scope", "window", "threshold"},
    {"budget_threshold_count": int, "used_ratio": float, "cap_usd": float},
    "One point each time the fleet's spend in a window crosses 50, 80 or 100 % of its cap.",
)
# ---------------------------------------------------------------------------------------------

SCHEMA: dict[str, Measurement] = {
    m.name: m
    for m in (
        PUBLISH,
        CONSUME,
        AI_DECISION,
        QUEUE_DEPTH,
        ERRORS,
        ANOMALY,
        HEALTH,
        BUDGET,
        BUDGET_THRESHOLD,
    )
}


class WriteErrorCounter:
    """Counts failed writes and logs them at most once per `interval` seconds."""

    def __init__(self, logger: Logger | None, interval: float = 30.0) -> None:
        self._logger = logger
        self._interval = interval
        self._lock = threading.Lock()
        self._last_log = -math.inf
        self._suppressed = 0
        self.failed_points = 0
        self.written_points = 0

    def succeeded(self, count: int) -> None:
        with self._lock:
            self.written_points += count

    def failed(self, count: int, exc: BaseException, where: str) -> None:
        now = time.monotonic()
        with self._lock:
            self.failed_points += count
            if now - self._last_log < self._interval:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last_log = self._suppressed, 0, now
            total = self.failed_points
        if self._logger is not None:
            self._logger.error(
                "Metrics write failed; points dropped",
                sink=where,
                error=describe_error(exc),
                dropped_points_total=total,
                similar_errors_suppressed=suppressed,
            )


class MemorySink:
    """Keeps points in a list: for unit tests and the in-process benchmarks."""

    description = "memory"

    def __init__(self) -> None:
        self.points: list[MetricPoint] = []
        self._lock = threading.Lock()

    def write(self, point: MetricPoint) -> None:
        with self._lock:
            self.points.append(point)

    def close(self) -> None:
        return None

    def where(self, measurement: str, **tags: str) -> list[MetricPoint]:
        with self._lock:
            return [
                p
                for p in self.points
                if p.measurement == measurement and all(p.tags.get(k) == v for k, v in tags.items())
            ]


class FileSink:
    """Appends line protocol to a file: the embedded default when INFLUXDB_URL is unset.

    Several agents may share the file: each point is one `write` of one line to a file opened
    in append mode, which POSIX keeps whole for writes of this size.
    """

    def __init__(self, path: Path, logger: Logger | None = None) -> None:
        self.path = path
        self.errors = WriteErrorCounter(logger)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._lock = threading.Lock()

    @property
    def description(self) -> str:
        return f"file:{self.path}"

    def write(self, point: MetricPoint) -> None:
        data = (line_protocol(point) + "\n").encode()
        with self._lock:
            if self._fd is None:
                return
            try:
                os.write(self._fd, data)
            except OSError as exc:
                self.errors.failed(1, exc, self.description)
            else:
                self.errors.succeeded(1)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class InfluxSink:
    """Batched writes to InfluxDB 2 on influxdb-client's background thread.

    `write` only enqueues, so a slow or dead InfluxDB never blocks an agent loop; failed batches
    are counted and logged (rate-limited) through the client's callbacks, never raised.
    """

    def __init__(
        self,
        url: str,
        token: str,
        org: str,
        bucket: str,
        logger: Logger | None = None,
        *,
        batch_size: int = 500,
        flush_interval_ms: int = 1_000,
        timeout_ms: int = 5_000,
        max_retries: int = 2,
        close_timeout_s: float = 2.0,
    ) -> None:
        from influxdb_client import InfluxDBClient, WriteOptions
        from reactivex.scheduler import EventLoopScheduler

        self.url, self.org, self.bucket = url, org, bucket
        self._logger = logger
        self._close_timeout_s = close_timeout_s
        self._enqueued = 0
        self.dropped_at_close = 0
        self.errors = WriteErrorCounter(logger)
        self._client = InfluxDBClient(url=url, token=token, org=org, timeout=timeout_ms)
        options = WriteOptions(
            batch_size=batch_size,
            flush_interval=flush_interval_ms,
            retry_interval=500,
            max_retries=max_retries,
            max_retry_delay=2_000,
            max_retry_time=5_000,
            max_close_wait=5_000,  # shutdown must finish within the agents' 10 s budget
            # One daemon thread for the HTTP writes (the default pool's threads are joined at
            # interpreter exit): a write blocked on a dead InfluxDB never holds up the exit.
            write_scheduler=EventLoopScheduler(),
        )
        silence_client_logging()
        self._write_api = self._client.write_api(
            write_options=options,
            success_callback=self._on_success,
            error_callback=self._on_error,
        )
        self._closed = False
        self._lock = threading.Lock()

    @property
    def description(self) -> str:
        return f"influxdb:{self.url} org={self.org} bucket={self.bucket}"

    def _on_success(self, conf: Any, data: str | bytes) -> None:
        self.errors.succeeded(_line_count(data))

    def _on_error(self, conf: Any, data: str | bytes, exc: BaseException) -> None:
        self.errors.failed(_line_count(data), exc, self.description)

    def write(self, point: MetricPoint) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._write_api.write(bucket=self.bucket, org=self.org, record=line_protocol(point))
            except Exception as exc:  # the client raises only on misuse; still never propagate
                self.errors.failed(1, exc, self.description)
            else:
                self._enqueued += 1

    def close(self) -> None:
        """Flush for at most `close_timeout_s`, then give up: shutdown must fit the agents' 10 s
        even when InfluxDB is unreachable (a black-holed write used to hold exit for 40 s and
        more). Points still unwritten then are dropped, counted in `dropped_points` and logged.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        flushed = threading.Event()

        def flush() -> None:
            try:
                self._write_api.close()
            except Exception as exc:  # reported below as dropped points, never raised
                self.errors.failed(0, exc, self.description)
            finally:
                flushed.set()

        threading.Thread(target=flush, name="influx-close", daemon=True).start()
        in_time = flushed.wait(self._close_timeout_s)
        settled = self.errors.written_points + self.errors.failed_points
        self.dropped_at_close = max(0, self._enqueued - settled)
        if in_time:
            self._client.close()
        # else: the client's threads are daemons, blocked on a dead socket; leave them.
        if self._logger is not None and (self.dropped_at_close or not in_time):
            self._logger.warning(
                "Metrics not flushed in time; points dropped",
                sink=self.description,
                timeout_s=self._close_timeout_s,
                dropped_points=self.dropped_at_close,
                written_points=self.errors.written_points,
                failed_points=self.errors.failed_points,
            )

    @property
    def dropped_points(self) -> int:
        """Points that never reached InfluxDB: failed writes plus those abandoned at close."""
        return self.errors.failed_points + self.dropped_at_close


_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_KEY = str.maketrans(
    {",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"}
)
_ESCAPE_STRING = str.maketrans({'"': r"\"", "\\": r"\\"})


@functools.lru_cache(maxsize=4096)
def _escape_key(key: str) -> str:
    return key.translate(_ESCAPE_KEY)


@functools.lru_cache(maxsize=4096)  # tags are low-cardinality by design: the cache stays warm
def _escape_tag_value(value: str) -> str:
    escaped = value.translate(_ESCAPE_KEY)
    # A trailing backslash would escape the separator that follows.
    return escaped + " " if escaped.endswith("\\") else escaped


def _field_text(value: int | float | str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        text = str(value)
        return text[:-2] if text.endswith(".0") else text
    return '"' + value.translate(_ESCAPE_STRING) + '"'


def line_protocol(point: MetricPoint) -> str:
    """InfluxDB line protocol, byte for byte what influxdb-client's `Point` produces.

    Encoded here because this runs once per message on the consumer's hot path, where
    building a `Point` cost several times more; tests/unit/test_metrics.py proves the two
    agree on arbitrary points.
    """
    tags = "".join(
        f",{_escape_key(key)}={_escape_tag_value(value)}"
        for key, value in sorted(point.tags.items())
        if value != ""
    )
    fields = ",".join(
        f"{_escape_key(key)}={_field_text(value)}" for key, value in sorted(point.fields.items())
    )
    return f"{point.measurement.translate(_ESCAPE_MEASUREMENT)}{tags} {fields} {point.time_ns}"


def influx_point(point: MetricPoint) -> Point:
    """The same point as influxdb-client's `Point` (the reference encoder)."""
    from influxdb_client import Point, WritePrecision

    result = Point(point.measurement)
    for key in sorted(point.tags):
        result.tag(key, point.tags[key])
    for key in sorted(point.fields):
        result.field(key, point.fields[key])
    result.time(point.time_ns, WritePrecision.NS)
    return result


def silence_client_logging() -> None:
    """Stop influxdb-client's own `logging` output: it goes to stderr as multi-line, non-JSON
    text that echoes the server's error body. Failures reach our JSON log, redacted and
    rate-limited, through the write callbacks instead."""
    # `disabled`, not a level: the client resets its loggers' levels whenever it is constructed.
    for name in list(logging.root.manager.loggerDict):
        if name == "influxdb_client" or name.startswith("influxdb_client."):
            logging.getLogger(name).disabled = True


def _line_count(data: str | bytes) -> int:
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    return max(1, text.count("\n") + (0 if text.endswith("\n") else 1))


def sink_from_settings(settings: CommonSettings, logger: Logger | None = None) -> MetricsSink:
    """InfluxDB when INFLUXDB_URL is set, else the embedded line-protocol file."""
    if settings.influxdb_url:
        token = settings.influxdb_token.get_secret_value() if settings.influxdb_token else ""
        return InfluxSink(
            settings.influxdb_url,
            token,
            settings.influxdb_org,
            settings.influxdb_bucket,
            logger,
        )
    if logger is not None:
        # DEBUG, not WARNING: the file is the intended default of a local run, and the start-up
        # line names it (metrics_destination); `agents run` says it once for the fleet.
        logger.debug(
            "INFLUXDB_URL is not set: metrics go to an embedded line-protocol file",
            metrics_file=str(settings.metrics_file),
        )
    return FileSink(settings.metrics_file, logger)


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
                full = {**self._base_tags, **{k: _tag_value(v) for k, v in tags.items()}}
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
