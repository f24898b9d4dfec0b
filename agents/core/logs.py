"""The log contract Loki and Promtail rely on: one JSON object per line on stdout.

Shape (from the specification, keys in this order):
    {"timestamp": "2026-01-31T10:15:30.123Z", "level": "INFO", "agent_id": "publisher-1",
     "agent_type": "publisher", "message": "...", "context": {...}}

Promtail promotes `level`, `agent_id` and `agent_type` to labels and parses `timestamp` as
RFC3339Nano, so these must never change shape. Logging must never crash an agent: context values
that JSON cannot encode are stringified, and every known secret is scrubbed from the line.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import IO, Any, Protocol
from urllib.parse import urlsplit

from agents.core.clock import SystemClock
from agents.ports import Clock

REDACTED = "***"


class Level(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    AI_DECISION = "AI_DECISION"
    AI_ANALYSIS = "AI_ANALYSIS"


# AI lines are the point of the system: they are shown at every threshold, like errors.
_RANK = {
    Level.DEBUG: 10,
    Level.INFO: 20,
    Level.AI_DECISION: 40,
    Level.AI_ANALYSIS: 40,
    Level.WARNING: 30,
    Level.ERROR: 40,
}

REQUIRED_KEYS = ("timestamp", "level", "agent_id", "agent_type", "message", "context")

# What json.dumps(record, ensure_ascii=True, default=str) does, without building an encoder per
# line (a third of the cost of a short line).
_ENCODE = json.JSONEncoder(ensure_ascii=True, default=str).encode


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with millisecond precision and a `Z` suffix."""
    # isoformat is several times cheaper than strftime, and this runs once per log line.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def describe_error(exc: BaseException) -> dict[str, str]:
    """An exception as `{"type", "message"}` on one line (redaction happens when rendered)."""
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return {"type": exc.__class__.__name__, "message": text[:500]}


class Redactor:
    """Replaces every known secret value in a string with `***`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is scrubbed whole.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


def display_url(url: str) -> str:
    """A URL as it may be printed: scheme, host, port and path only. Userinfo and the query
    string can carry credentials (`user:pass@`, `?token=`)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


class Logger(Protocol):
    def log(self, level: Level, message: str, /, **context: Any) -> None: ...
    def debug(self, message: str, /, **context: Any) -> None: ...
    def info(self, message: str, /, **context: Any) -> None: ...
    def warning(self, message: str, /, **context: Any) -> None: ...
    def error(self, message: str, /, **context: Any) -> None: ...


class JsonLogger:
    """Writes the contract's JSON lines to a stream (stdout by default), one write per line."""

    def __init__(
        self,
        agent_id: str,
        agent_type: str,
        *,
        stream: IO[str] | None = None,
        clock: Clock | None = None,
        redactor: Redactor | None = None,
        min_level: Level | str = Level.INFO,
    ) -> None:
        self.agent_id = agent_id
        self.agent_type = agent_type
        self._stream = stream
        self._clock = clock or SystemClock()
        self._redact = redactor or Redactor()
        self._min_rank = _RANK[Level(min_level)]
        self._lock = threading.Lock()
        self._stamp: tuple[datetime | None, str] = (None, "")

    def _timestamp(self) -> str:
        # Lines come in bursts within one millisecond: format each millisecond once.
        now = self._clock.now()
        moment = now.replace(microsecond=now.microsecond - now.microsecond % 1000)
        cached, text = self._stamp
        if moment != cached:
            text = format_timestamp(moment)
            self._stamp = (moment, text)  # one tuple: safe without the lock
        return text

    def render(self, level: Level, message: str, context: Mapping[str, Any]) -> str:
        record = {
            "timestamp": self._timestamp(),
            "level": str(level),
            "agent_id": self.agent_id,
            "agent_type": self.agent_type,
            "message": str(message),
            "context": {str(k): _jsonable(v) for k, v in context.items()},
        }
        # ensure_ascii keeps the line 7-bit clean whatever the context holds (lone surrogates too).
        return self._redact(_ENCODE(record))

    def log(self, level: Level, message: str, /, **context: Any) -> None:
        if _RANK[level] < self._min_rank:
            return
        line = self.render(level, message, context)
        stream = self._stream or sys.stdout
        with self._lock:
            try:
                stream.write(line + "\n")
                stream.flush()
            except (OSError, ValueError):  # closed pipe at shutdown: nowhere left to log to
                pass

    def enabled(self, level: Level) -> bool:
        """Whether a line of `level` would be written."""
        return _RANK[level] >= self._min_rank

    def write_rendered(self, lines: Sequence[str]) -> bool:
        """Write lines made by `render` in one write and one flush; False if that failed.

        Group commit: the consumer writes a batch of lines, and acks the messages they describe
        only if this returned True.
        """
        if not lines:
            return True
        stream = self._stream or sys.stdout
        with self._lock:
            try:
                stream.write("\n".join(lines) + "\n")
                stream.flush()
            except (OSError, ValueError):  # closed pipe at shutdown: nowhere left to log to
                return False
        return True

    def debug(self, message: str, /, **context: Any) -> None:
        self.log(Level.DEBUG, message, **context)

    def info(self, message: str, /, **context: Any) -> None:
        self.log(Level.INFO, message, **context)

    def warning(self, message: str, /, **context: Any) -> None:
        self.log(Level.WARNING, message, **context)

    def error(self, message: str, /, **context: Any) -> None:
        self.log(Level.ERROR, message, **context)

    def exception(self, message: str, exc: BaseException, /, **context: Any) -> None:
        self.log(Level.ERROR, message, error=describe_error(exc), **context)


def _jsonable(value: Any, depth: int = 0) -> Any:
    """Reduce a value to JSON types; anything else becomes its `str()`."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if depth > 8:
        return str(value)
    if isinstance(value, BaseException):
        return describe_error(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v, depth + 1) for v in value]
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    try:
        return str(value)
    except Exception:  # a broken __str__ must not take the agent down
        return f"<unprintable {type(value).__name__}>"
