"""QUEUE_TYPE, the consumer's worst-case unacked wait against the broker's consumer timeout, the
quorum prefetch cap, and per-replica agent ids from `{hostname}`."""

from __future__ import annotations

import pytest

from agents.core.settings import (
    CONSUMER_TIMEOUT_MARGIN_SECONDS,
    DEFAULT_CONSUMER_TIMEOUT_SECONDS,
    QUORUM_MAX_PREFETCH,
    BrokerSettings,
    ConsumerSettings,
    MonitorSettings,
    PublisherSettings,
    SettingsError,
    expand_agent_id,
    load_settings,
)
from tests.support.env import scrub_env


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    scrub_env(
        monkeypatch,
        (
            "QUEUE_TYPE",
            "PREFETCH_COUNT",
            "BATCH_MAX_WAIT_SECONDS",
            "PROCESSING_TIME_MS",
            "RABBITMQ_CONSUMER_TIMEOUT_SECONDS",
            "CONSUMER_ID",
            "PUBLISHER_ID",
            "AGENT_ID",
        ),
    )


def test_queue_type_defaults_to_quorum_and_names_itself_when_wrong(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings(BrokerSettings).queue_type == "quorum"
    monkeypatch.setenv("QUEUE_TYPE", "classic")
    assert load_settings(ConsumerSettings).queue_type == "classic"
    monkeypatch.setenv("QUEUE_TYPE", "stream")
    with pytest.raises(SettingsError) as caught:
        load_settings(PublisherSettings)
    assert caught.value.variable == "QUEUE_TYPE"


def test_the_defaults_leave_the_consumer_far_inside_the_timeout() -> None:
    settings = load_settings(ConsumerSettings)
    # 5 s batch wait + 50 x 0 ms work + 10 s x (1 + 1) Claude attempts.
    assert settings.longest_unacked_seconds() == 25.0
    assert settings.rabbitmq_consumer_timeout_seconds == DEFAULT_CONSUMER_TIMEOUT_SECONDS == 1800


@pytest.mark.parametrize(
    "env",
    [
        {"BATCH_MAX_WAIT_SECONDS": "1800"},
        {"PROCESSING_TIME_MS": "60000", "PREFETCH_COUNT": "50"},  # 50 messages x 60 s each
    ],
)
def test_a_consumer_that_could_outwait_the_timeout_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(ConsumerSettings)
    assert caught.value.variable == "BATCH_MAX_WAIT_SECONDS"
    assert "RABBITMQ_CONSUMER_TIMEOUT_SECONDS (1800)" in str(caught.value)


def test_the_limit_is_the_timeout_minus_the_margin(monkeypatch: pytest.MonkeyPatch) -> None:
    budget = DEFAULT_CONSUMER_TIMEOUT_SECONDS - CONSUMER_TIMEOUT_MARGIN_SECONDS
    monkeypatch.setenv("BATCH_MAX_WAIT_SECONDS", str(budget - 20))  # + 20 s of Claude attempts
    assert load_settings(ConsumerSettings).longest_unacked_seconds() == budget
    monkeypatch.setenv("BATCH_MAX_WAIT_SECONDS", str(budget - 19))
    with pytest.raises(SettingsError):
        load_settings(ConsumerSettings)
    # A broker configured with a longer consumer_timeout allows a longer wait.
    monkeypatch.setenv("RABBITMQ_CONSUMER_TIMEOUT_SECONDS", "3600")
    assert load_settings(ConsumerSettings).batch_max_wait_seconds == budget - 19


def test_quorum_caps_the_prefetch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFETCH_COUNT", str(QUORUM_MAX_PREFETCH))
    assert load_settings(ConsumerSettings).prefetch_count == 2000
    monkeypatch.setenv("PREFETCH_COUNT", str(QUORUM_MAX_PREFETCH + 1))
    with pytest.raises(SettingsError) as caught:
        load_settings(ConsumerSettings)
    assert caught.value.variable == "PREFETCH_COUNT" and "QUEUE_TYPE=quorum" in str(caught.value)
    monkeypatch.setenv("QUEUE_TYPE", "classic")
    assert load_settings(ConsumerSettings).prefetch_count == 2001


@pytest.mark.parametrize(
    ("template", "hostname", "expected"),
    [
        ("consumer-{hostname}", "3f2a1b4c5d6e", "consumer-3f2a1b4c5d6e"),
        ("{hostname}", "consumer-7d9f8b6c4-x2k9p", "consumer-7d9f8b6c4-x2k9p"),
        ("publisher-{hostname}", "Build_Host.example.org", "publisher-build-host"),
        ("consumer-1", "ignored", "consumer-1"),
        ("consumer-{hostname}", "x" * 80, "consumer-" + "x" * 54),
    ],
)
def test_hostname_templates(template: str, hostname: str, expected: str) -> None:
    assert expand_agent_id(template, hostname=hostname) == expected
    assert len(str(expand_agent_id(template, hostname=hostname))) <= 63


def test_each_agent_type_expands_its_id_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    monkeypatch.setattr(socket, "gethostname", lambda: "abc123def456")
    monkeypatch.setenv("PUBLISHER_ID", "publisher-{hostname}")
    monkeypatch.setenv("CONSUMER_ID", "consumer-{hostname}")
    monkeypatch.setenv("AGENT_ID", "monitor-{hostname}")
    assert load_settings(PublisherSettings).agent_id == "publisher-abc123def456"
    assert load_settings(ConsumerSettings).agent_id == "consumer-abc123def456"
    assert load_settings(MonitorSettings).agent_id == "monitor-abc123def456"
    monkeypatch.setenv("CONSUMER_ID", "Consumer-{hostname}")  # still checked against the pattern
    with pytest.raises(SettingsError) as caught:
        load_settings(ConsumerSettings)
    assert caught.value.variable == "CONSUMER_ID"
