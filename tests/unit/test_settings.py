from __future__ import annotations

import json
import subprocess
import sys

import pytest

from agents.core.settings import (
    ConsumerSettings,
    FleetSettings,
    MonitorSettings,
    PublisherSettings,
    SettingsError,
    load_settings,
)
from tests.support.env import scrub_env


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    scrub_env(
        monkeypatch, ("DECISION_INTERVAL_SECONDS", "AI_DECISION_RATE", "MAX_TOKENS", "DRY_RUN")
    )


def test_specification_defaults() -> None:
    pub = load_settings(PublisherSettings)
    con = load_settings(ConsumerSettings)
    mon = load_settings(MonitorSettings)
    assert (pub.agent_id, pub.max_tokens, pub.decision_interval_seconds) == ("publisher-1", 300, 60)
    assert (pub.fictional_interval_seconds, pub.nonfictional_interval_seconds) == (5, 10)
    assert (con.agent_id, con.max_tokens, con.ai_decision_rate) == ("consumer-1", 200, 0.1)
    assert con.ai_min_interval_seconds == 30
    assert con.queues == ("fictional", "non-fictional")
    assert (mon.agent_id, mon.max_tokens, mon.check_interval_seconds) == ("monitor-1", 400, 120)
    assert (pub.influxdb_org, pub.influxdb_bucket, pub.rabbitmq_port) == (
        "monitoring",
        "agent_metrics",
        5672,
    )
    assert pub.dry_run is False


def test_ids_come_from_the_specification_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUBLISHER_ID", "publisher-2")
    monkeypatch.setenv("CONSUMER_ID", "consumer-2")
    monkeypatch.setenv("AGENT_ID", "monitor-1")
    monkeypatch.setenv("DRY_RUN", "true")
    assert load_settings(PublisherSettings).agent_id == "publisher-2"
    assert load_settings(ConsumerSettings).agent_id == "consumer-2"
    assert load_settings(MonitorSettings).dry_run is True


@pytest.mark.parametrize(
    ("cls", "variable", "value", "expected"),
    [
        (PublisherSettings, "DECISION_INTERVAL_SECONDS", "-5", "[1, 86400]"),
        (ConsumerSettings, "AI_DECISION_RATE", "3", "[0, 1]"),
        (PublisherSettings, "MAX_TOKENS", "abc", "[16, 4096]"),
        (ConsumerSettings, "CONSUMER_QUEUES", "fictional,poetry", "subset"),
        (PublisherSettings, "RABBITMQ_PORT", "70000", "[1, 65535]"),
        (PublisherSettings, "INFLUXDB_URL", "ftp://x", "http"),
    ],
)
def test_bad_value_names_the_variable_and_the_allowed_range(
    monkeypatch: pytest.MonkeyPatch, cls: type, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(cls)
    assert caught.value.variable == variable
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_bad_secret_value_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RABBITMQ_PORT", "5672")
    with pytest.raises(SettingsError) as caught:
        load_settings(PublisherSettings, anthropic_api_key=12345)
    assert "12345" not in str(caught.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("DECISION_INTERVAL_SECONDS", "-5"), ("AI_DECISION_RATE", "3"), ("MAX_TOKENS", "abc")],
)
def test_cli_exits_2_with_one_line(variable: str, value: str) -> None:
    agent = "consumer" if variable == "AI_DECISION_RATE" else "publisher"
    result = subprocess.run(
        [sys.executable, "-m", "agents", "config", agent],
        env={"PATH": "/usr/bin:/bin", variable: value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert variable in line and "allowed range" in line


def test_config_prints_settings_with_secrets_masked() -> None:
    canaries = {
        "ANTHROPIC_API_KEY": "sk-ant-canary-0123456789",
        "INFLUXDB_TOKEN": "influx-canary-token",
        "RABBITMQ_PASS": "rabbit-canary-pass",
    }
    result = subprocess.run(
        [sys.executable, "-m", "agents", "config", "monitor"],
        env={"PATH": "/usr/bin:/bin", **canaries},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for secret in canaries.values():
        assert secret not in result.stdout + result.stderr
    shown = json.loads(result.stdout)
    assert shown["ANTHROPIC_API_KEY"] == "**********"
    assert shown["AGENT_ID"] == "monitor-1"
    assert shown["CHECK_INTERVAL_SECONDS"] == 120


def test_secrets_are_listed_for_redaction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFLUXDB_TOKEN", "tok-123")
    monkeypatch.setenv("RABBITMQ_PASS", "pw-456")
    assert set(load_settings(PublisherSettings).secrets()) == {"tok-123", "pw-456"}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CLAUDE_MODEL", "   "),
        ("CLAUDE_MODEL", "claude haiku 5"),
        ("ANTHROPIC_BASE_URL", "http://proxy host:8080"),
        ("ANTHROPIC_BASE_URL", "https://proxy.example/v1 beta"),
        ("INFLUXDB_URL", "http://influx db:8086"),
        ("RABBITMQ_HOST", " "),
        ("RABBITMQ_HOST", "rabbit host"),
    ],
)
def test_values_the_type_accepts_but_that_can_never_work_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(ConsumerSettings)
    assert caught.value.variable == variable
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CLAUDE_MODEL", "claude-haiku-5-5"),
        ("ANTHROPIC_BASE_URL", "http://127.0.0.1:8080"),
        ("ANTHROPIC_BASE_URL", "https://proxy.example/anthropic/v1"),
        ("RABBITMQ_HOST", "rabbitmq.internal"),
    ],
)
def test_ordinary_values_still_pass(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    settings = load_settings(ConsumerSettings)
    assert getattr(settings, variable.lower()) == value


def test_settings_can_be_read_from_a_mapping_instead_of_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the fleet uses to validate each child's environment before starting any."""
    monkeypatch.setenv("PREFETCH_COUNT", "0")  # the process environment is not read
    settings = load_settings(
        ConsumerSettings, env={"prefetch_count": "7", "CONSUMER_ID": "consumer-9", "BATCH_SIZE": ""}
    )
    assert (settings.prefetch_count, settings.consumer_id, settings.batch_size) == (
        7,
        "consumer-9",
        10,
    )
    with pytest.raises(SettingsError) as caught:
        load_settings(ConsumerSettings, env={"PREFETCH_COUNT": "0"})
    assert caught.value.variable == "PREFETCH_COUNT"
    assert load_settings(MonitorSettings, env={"AGENT_ID": "monitor-2"}).agent_id == "monitor-2"


def test_fleet_restart_policy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = load_settings(FleetSettings)
    assert (defaults.fleet_max_restarts, defaults.fleet_restart_window_seconds) == (5, 300.0)
    monkeypatch.setenv("FLEET_RESTART_WINDOW_SECONDS", "0")
    with pytest.raises(SettingsError) as caught:
        load_settings(FleetSettings)
    assert caught.value.variable == "FLEET_RESTART_WINDOW_SECONDS"
