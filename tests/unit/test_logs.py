from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from agents.core.logs import REQUIRED_KEYS, JsonLogger, Level, Redactor, format_timestamp
from agents.testing.clock import FakeClock

RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def make_logger(**kwargs: Any) -> tuple[JsonLogger, io.StringIO]:
    stream = io.StringIO()
    logger = JsonLogger("publisher-1", "publisher", stream=stream, clock=FakeClock(), **kwargs)
    return logger, stream


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_line_has_the_specification_shape_and_key_order() -> None:
    logger, stream = make_logger()
    logger.log(Level.AI_DECISION, "AI decision", queue="fictional", ai_action="slow_down")
    [record] = lines(stream)
    assert tuple(record) == REQUIRED_KEYS
    assert record == {
        "timestamp": "2026-01-31T10:15:30.000Z",
        "level": "AI_DECISION",
        "agent_id": "publisher-1",
        "agent_type": "publisher",
        "message": "AI decision",
        "context": {"queue": "fictional", "ai_action": "slow_down"},
    }


def test_timestamp_is_utc_rfc3339_with_z() -> None:
    moment = datetime(2026, 1, 31, 10, 15, 30, 123456, tzinfo=UTC)
    assert format_timestamp(moment) == "2026-01-31T10:15:30.123Z"


def test_exception_goes_into_context_error_on_one_line_without_secrets() -> None:
    logger, stream = make_logger(redactor=Redactor(["s3cr3t-token"]))
    try:
        raise ConnectionError("login failed\nfor password s3cr3t-token")
    except ConnectionError as exc:
        logger.exception("Broker connection failed", exc)
    text = stream.getvalue()
    assert text.count("\n") == 1
    assert "s3cr3t-token" not in text
    [record] = lines(stream)
    assert record["level"] == "ERROR"
    assert record["context"] == {
        "error": {"type": "ConnectionError", "message": "login failed for password ***"}
    }


def test_unserialisable_context_is_stringified_not_fatal() -> None:
    class Weird:
        def __str__(self) -> str:
            return "weird!"

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

    logger, stream = make_logger()
    logger.info("x", obj=Weird(), broken=Broken(), nan=float("nan"), raw=b"\xff\xfe", s={1})
    [record] = lines(stream)
    context = record["context"]
    assert isinstance(context, dict)
    assert context["obj"] == "weird!"
    assert context["broken"] == "<unprintable Broken>"
    assert context["nan"] == "nan"
    assert context["s"] == [1]


def test_debug_is_filtered_below_the_threshold_but_ai_lines_never_are() -> None:
    logger, stream = make_logger(min_level=Level.ERROR)
    logger.debug("hidden")
    logger.warning("hidden too")
    logger.log(Level.AI_ANALYSIS, "System health check", status="healthy")
    assert [r["level"] for r in lines(stream)] == ["AI_ANALYSIS"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@given(
    message=st.text(),
    context=st.dictionaries(
        st.text(min_size=1, max_size=20).filter(lambda k: k.isidentifier()),
        json_values | st.binary() | st.sets(st.integers()) | st.builds(object),
        max_size=6,
    ),
    level=st.sampled_from(list(Level)),
)
def test_any_message_and_context_yield_one_valid_json_line(
    message: str, context: dict[str, object], level: Level
) -> None:
    logger, stream = make_logger(min_level=Level.DEBUG)
    logger.log(level, message, **context)
    text = stream.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1
    record = json.loads(text)
    assert tuple(record) == REQUIRED_KEYS
    assert record["message"] == message
    assert RFC3339_Z.match(record["timestamp"])
    assert set(record["context"]) == set(context)


def test_context_may_use_the_envelope_key_names() -> None:
    logger, stream = make_logger()
    logger.info("Message consumed", message="a reply's text", level="high", agent_id="x")
    [record] = lines(stream)
    assert record["message"] == "Message consumed"
    assert record["level"] == "INFO"
    assert record["agent_id"] == "publisher-1"
    assert record["context"] == {"message": "a reply's text", "level": "high", "agent_id": "x"}


def test_each_line_carries_its_own_millisecond() -> None:
    # Timestamps are formatted once per millisecond; a line in the next one must not reuse it.
    clock = FakeClock(wall=datetime(2026, 1, 31, 10, 15, 30, 999_400, tzinfo=UTC))
    stream = io.StringIO()
    logger = JsonLogger("publisher-1", "publisher", stream=stream, clock=clock)
    stamps = []
    for step in (0.0, 0.0005, 0.0002, 0.0005, 59.0):
        clock.advance(step)
        logger.info("tick")
        stamps.append(json.loads(stream.getvalue().splitlines()[-1])["timestamp"])
    assert stamps == [
        "2026-01-31T10:15:30.999Z",
        "2026-01-31T10:15:30.999Z",
        "2026-01-31T10:15:31.000Z",
        "2026-01-31T10:15:31.000Z",
        "2026-01-31T10:16:30.000Z",
    ]
