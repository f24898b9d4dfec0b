"""Log lines as data for tests, in the spirit of `structlog.testing.capture_logs()`.

Agents take their logger as an argument, so capturing is handing them a real `JsonLogger` whose
stream is a `LogCapture`: every line still goes through the contract's rendering (key order,
redaction, stringified context), and the test reads back decoded event dicts instead of parsing
captured stdout by hand. `parse_lines` does the same decoding for a subprocess's output or a log
file.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from agents.core.logs import REQUIRED_KEYS, JsonLogger, Level, Redactor
from agents.ports import Clock

LogEvent = dict[str, Any]


def parse_line(line: str | bytes) -> LogEvent:
    """One JSON log line as a dict; ValueError (naming the line) if it is not a JSON object."""
    try:
        event = json.loads(line)
    except ValueError as exc:
        raise ValueError(f"not a JSON log line: {line[:200]!r}") from exc
    if not isinstance(event, dict):
        raise ValueError(f"not a JSON object: {line[:200]!r}")
    return event


def parse_lines(text: str | bytes, *, only_json: bool = False) -> list[LogEvent]:
    """Every line of `text` as an event dict.

    Strict by default: stdout of an agent is JSON lines and nothing else, so any other line
    (a blank one too) raises. `only_json=True` skips lines that do not start with `{`, for
    output that mixes log lines with other text.
    """
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = text.splitlines()
    if only_json:
        lines = [line for line in lines if line.startswith("{")]
    return [parse_line(line) for line in lines]


def select(
    events: list[LogEvent], message: str | None = None, level: str | None = None
) -> list[LogEvent]:
    """The events with this message and/or level (None matches any)."""
    return [
        event
        for event in events
        if (message is None or event["message"] == message)
        and (level is None or event["level"] == level)
    ]


class LogCapture(io.StringIO):
    """A stream for `JsonLogger` that keeps what it was written and decodes it on demand.

    Several loggers (one per agent in a test) may share one capture; `JsonLogger` writes each
    line (or group of lines) in one `write`, so lines never interleave.
    """

    def logger(
        self,
        agent_id: str,
        agent_type: str,
        *,
        clock: Clock | None = None,
        redactor: Redactor | None = None,
        min_level: Level | str = Level.INFO,
    ) -> JsonLogger:
        """A real `JsonLogger` writing into this capture."""
        return JsonLogger(
            agent_id,
            agent_type,
            stream=self,
            clock=clock,
            redactor=redactor,
            min_level=min_level,
        )

    @property
    def events(self) -> list[LogEvent]:
        """Every line written so far, decoded (strictly: a line that is not JSON raises)."""
        return parse_lines(self.getvalue())

    def where(self, message: str | None = None, level: str | None = None) -> list[LogEvent]:
        """The events with this message and/or level (None matches any)."""
        return select(self.events, message, level)

    def messages(self) -> list[str]:
        return [str(event["message"]) for event in self.events]

    def check_contract(self) -> None:
        """Every line is one JSON object with exactly the contract's keys, in order."""
        for event in self.events:
            if tuple(event) != REQUIRED_KEYS:
                raise AssertionError(f"log line off the contract: {event!r}")


@contextmanager
def capture_logs(
    agent_id: str = "test-1",
    agent_type: str = "test",
    *,
    clock: Clock | None = None,
    redactor: Redactor | None = None,
    min_level: Level | str = Level.INFO,
) -> Iterator[tuple[JsonLogger, LogCapture]]:
    """A `JsonLogger` for the code under test and the capture it writes into.

        with capture_logs("consumer-1", "consumer") as (logger, logs):
            run_something(logger)
        assert logs.where(level="ERROR") == []

    On a clean exit every line written is checked against the log contract, so a test that
    captures also proves the lines it asserted on are the ones Loki would get.
    """
    capture = LogCapture()
    logger = capture.logger(
        agent_id, agent_type, clock=clock, redactor=redactor, min_level=min_level
    )
    yield logger, capture
    capture.check_contract()
