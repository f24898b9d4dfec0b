"""Scenarios only set existing settings and inject traffic: the settings they set are real,
valid variables; explicit ones win; the header says when intervals are shortened; the malformed
traffic is rejected by the consumer's own validation and the flood passes it."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime

import pytest

from agents import scenarios
from agents.core.settings import (
    ConsumerSettings,
    MonitorSettings,
    PublisherSettings,
    SettingsError,
    load_settings,
)
from agents.messages import Catalogue, InvalidMessage, parse_book

SETTINGS = (PublisherSettings, ConsumerSettings, MonitorSettings)


def known_variables() -> set[str]:
    names = set()
    for cls in SETTINGS:
        for name, info in cls.model_fields.items():
            names.add((info.alias or name).upper())
    return names


@pytest.mark.parametrize("name", scenarios.NAMES)
def test_a_scenario_sets_only_existing_valid_settings(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = scenarios.get(name)
    variables = set(scenario.settings) | {key for env in scenario.per_agent.values() for key in env}
    assert variables <= known_variables()
    for key, value in {**scenario.settings, **scenario.agent_env("consumer-2")}.items():
        monkeypatch.setenv(key, value)
    for cls in SETTINGS:
        load_settings(cls)  # raises SettingsError on an invalid value


def test_explicit_settings_win_and_the_header_says_what_was_shortened() -> None:
    surge = scenarios.get("surge")
    env = surge.environment({"DECISION_INTERVAL_SECONDS": "30", "PATH": "/bin"})
    assert env["DECISION_INTERVAL_SECONDS"] == "30" and env["PROCESSING_TIME_MS"] == "150"
    header = surge.header(env)
    assert "publishers decide every 30 s (normally 60)" in header
    assert "monitor checks every 15 s (120)" in header
    steady = scenarios.get("steady")
    assert steady.environment({"A": "1"}) == {"A": "1"}
    assert "demo timing" not in steady.header({})


def test_the_incident_stalls_only_consumer_2() -> None:
    incident = scenarios.get("incident")
    assert incident.agent_env("consumer-2") == {"PROCESSING_TIME_MS": "1500"}
    assert incident.agent_env("consumer-1") == {}


def test_unknown_scenario_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="steady, surge, incident"):
        scenarios.get("chaos")
    with pytest.raises(SettingsError):
        load_settings(ConsumerSettings, processing_time_ms=-1)


def test_every_malformed_message_is_rejected_by_the_consumers_validation() -> None:
    seen = set()
    for what, body, content_type in itertools.islice(scenarios.malformed_bodies(), 10):
        seen.add(what)
        with pytest.raises(InvalidMessage):
            parse_book(body, content_type)
    assert len(seen) == 5


def test_the_flood_is_valid_and_all_urgent() -> None:
    book = Catalogue.load().make(
        "fictional",
        "incident-import",
        random.Random(1),
        datetime.now(UTC),
    )
    urgent = book.model_copy(update={"priority": scenarios.FLOOD_PRIORITY})
    parsed = parse_book(urgent.to_json())
    assert parsed.priority == 5
