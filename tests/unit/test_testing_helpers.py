"""The helpers tests read logs and build child environments with: they must decode exactly what
the real JsonLogger writes, refuse what it never would, and drop only what they are told to."""

from __future__ import annotations

import pytest

from agents.core.logs import REQUIRED_KEYS, Level, Redactor
from agents.testing import (
    AGENT_VARIABLES,
    AI_VARIABLES,
    LogCapture,
    capture_logs,
    clean_env,
    parse_line,
    parse_lines,
)
from agents.testing.clock import FakeClock


def test_capture_goes_through_the_real_json_logger() -> None:
    with capture_logs("consumer-1", "consumer", clock=FakeClock()) as (logger, logs):
        logger.info("Message consumed", message_id="m-1", when=FakeClock().now())
        logger.log(Level.AI_DECISION, "AI decision", action="process")
    first, second = logs.events
    assert tuple(first) == REQUIRED_KEYS
    assert first["agent_id"] == "consumer-1" and first["agent_type"] == "consumer"
    assert first["timestamp"].endswith("Z")
    # Context values are rendered as the contract renders them (a datetime as its timestamp).
    assert first["context"] == {"message_id": "m-1", "when": first["timestamp"]}
    assert second["level"] == "AI_DECISION"
    assert logs.messages() == ["Message consumed", "AI decision"]


def test_capture_keeps_the_logger_threshold_and_redaction() -> None:
    with capture_logs(redactor=Redactor(["s3cret-value"])) as (logger, logs):
        logger.debug("not shown at INFO")
        logger.error("Boom", detail="token s3cret-value")
    [event] = logs.events
    assert event["context"]["detail"] == "token ***"
    assert "s3cret-value" not in logs.getvalue()


def test_where_filters_by_message_and_level() -> None:
    logs = LogCapture()
    a, b = logs.logger("publisher-1", "publisher"), logs.logger("consumer-1", "consumer")
    a.info("Message published", queue="fictional")
    b.warning("Slow", queue="fictional")
    b.info("Message published", queue="non-fictional")
    assert [e["agent_id"] for e in logs.where("Message published")] == [
        "publisher-1",
        "consumer-1",
    ]
    assert [e["message"] for e in logs.where(level="WARNING")] == ["Slow"]
    assert logs.where("Message published", level="WARNING") == []


def test_a_line_off_the_contract_fails_the_capture() -> None:
    with pytest.raises(AssertionError, match="off the contract"), capture_logs() as (_, logs):
        logs.write('{"message": "hand-written"}\n')


def test_parse_lines_is_strict_unless_told_to_skip_other_text() -> None:
    text = '{"message": "a"}\nwarming up\n{"message": "b"}\n'
    with pytest.raises(ValueError, match="warming up"):
        parse_lines(text)
    assert parse_lines(text, only_json=True) == [{"message": "a"}, {"message": "b"}]
    assert parse_lines(text.encode(), only_json=True)[1] == {"message": "b"}
    with pytest.raises(ValueError, match="not a JSON log line"):
        parse_lines('{"message": "a"}\n\n')  # the contract never writes a blank line
    with pytest.raises(ValueError, match="not a JSON object"):
        parse_line("[1, 2]")
    assert parse_lines("") == []


def test_clean_env_drops_prefixes_and_exact_names_only() -> None:
    base = {
        "PATH": "/bin",
        "RABBITMQ_HOST": "prod",
        "ANTHROPIC_API_KEY": "sk-real",
        "DRY_RUN": "false",
        "DRY_RUNNER": "kept unless a prefix says so",
        "CASSETTES_DIR": "/tmp/c",
    }
    assert clean_env(base) == {"PATH": "/bin", "CASSETTES_DIR": "/tmp/c"}
    assert clean_env(base, drop=AI_VARIABLES, METRICS_FILE="m.lp") == {
        "PATH": "/bin",
        "RABBITMQ_HOST": "prod",
        "DRY_RUNNER": "kept unless a prefix says so",
        "METRICS_FILE": "m.lp",
    }
    assert clean_env(base, drop=(), RABBITMQ_HOST="127.0.0.1")["RABBITMQ_HOST"] == "127.0.0.1"
    assert "DRY_RUN*" in AGENT_VARIABLES


def test_clean_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFLUXDB_TOKEN", "t")
    monkeypatch.setenv("SOMETHING_ELSE", "kept")
    env = clean_env()
    assert "INFLUXDB_TOKEN" not in env and env["SOMETHING_ELSE"] == "kept"
