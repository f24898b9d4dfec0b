"""Where points go: a list in memory (tests, in-process benchmarks), a line-protocol file (the
embedded default when INFLUXDB_URL is unset), or InfluxDB 2 through influxdb-client's batching
writer. Every sink follows `agents.ports.MetricsSink`: `write` never raises into an agent loop.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.core.logs import Logger, describe_error, display_url
from agents.core.metrics.line_protocol import line_protocol
from agents.ports import MetricPoint, MetricsSink
from agents.vocab import Event

if TYPE_CHECKING:
    from agents.core.settings import CommonSettings


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
                Event.METRICS_WRITE_FAILED,
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
        # Shown in every start-up line and write error: never the URL's userinfo or query.
        return f"influxdb:{display_url(self.url)} org={self.org} bucket={self.bucket}"

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
                Event.METRICS_NOT_FLUSHED,
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
            Event.METRICS_TO_FILE,
            metrics_file=str(settings.metrics_file),
        )
    return FileSink(settings.metrics_file, logger)
