"""Replay: recorded cassettes answer through the same SDK path as live, with no network at all,
and a miss fails at once and loudly instead of calling the API."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
import yaml

from agents.core.ai import cassettes as cs
from agents.core.ai.client import load_cassette
from agents.core.settings import (
    ConsumerSettings,
    MonitorSettings,
    PublisherSettings,
    load_settings,
)
from agents.devtools import seed
from agents.testing import AI_VARIABLES
from agents.testing.claude import engine_rig
from agents.testing.clock import FakeClock
from agents.vocab import AGENT_TYPES, Event
from tests.support.env import scrub_env

REPO_CASSETTES = Path(__file__).resolve().parents[2] / "cassettes"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    scrub_env(monkeypatch, AI_VARIABLES)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("replay tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copytree(REPO_CASSETTES, tmp_path / "cassettes")
    return tmp_path


def test_publisher_replays_the_nearest_recording(workdir: Path) -> None:
    rig = engine_rig(load_settings(PublisherSettings), cwd=workdir)
    assert rig.engine.mode == "replay"
    backlog = rig.engine.decide_publisher(600, 250, 5.0, 10.0)
    assert backlog.action == "slow_down" and backlog.ai_used
    assert 1.0 <= backlog.fictional_interval <= 300.0
    rig.clock.advance(60)
    calm = rig.engine.decide_publisher(10, 9, 5.0, 10.0)
    assert calm.action == "continue"
    lines = rig.lines("AI_DECISION")
    assert [line["context"]["ai_mode"] for line in lines] == ["replay", "replay"]
    point = rig.points()[0]
    assert point.tags["mode"] == "replay"
    tokens = point.fields["tokens_used"]
    assert isinstance(tokens, int) and not isinstance(tokens, bool), tokens  # an integer field
    assert tokens > 0 and point.fields["cost_usd"] == 0.0


def test_consumer_and_monitor_replay(workdir: Path) -> None:
    consumer = engine_rig(load_settings(ConsumerSettings), cwd=workdir)
    assert consumer.engine.decide_consumer("fictional", 1, 900).action == "batch"
    monitor = engine_rig(load_settings(MonitorSettings), cwd=workdir)
    analysis = monitor.engine.analyse(20, {"fictional": 4500, "non-fictional": 3000}, 70)
    assert analysis.status == "critical" and analysis.issues and analysis.ai_used


def test_a_miss_is_a_loud_immediate_fallback(workdir: Path) -> None:
    path = workdir / "cassettes" / "consumer.yaml"
    data = yaml.safe_load(path.read_text())
    for interaction in data["interactions"]:  # same template, but another max_tokens
        interaction["request"]["body"] = interaction["request"]["body"].replace(
            '"max_tokens":200', '"max_tokens":199'
        )
    data["interactions"].append(data["interactions"][0])
    path.write_text(yaml.safe_dump(data))
    from agents.core.ai.sdk import AnthropicClient, replay_sdk

    settings = load_settings(ConsumerSettings)
    sdk = replay_sdk(load_cassette(path), timeout_s=5)
    rig = engine_rig(settings, AnthropicClient(sdk, settings.claude_model, "replay", FakeClock()))
    decision = rig.engine.decide_consumer("fictional", 1, 0)
    assert decision.fallback == "replay_miss"
    (warning,) = [line for line in rig.lines("WARNING") if line["message"] == Event.AI_FALLBACK]
    assert "no recording" in warning["context"]["error"]
    assert sdk.max_retries == 0


@pytest.mark.parametrize("agent_type", AGENT_TYPES)
def test_shipped_cassettes_are_synthetic_seeds_or_real_recordings(agent_type: str) -> None:
    cassette = load_cassette(REPO_CASSETTES / f"{agent_type}.yaml")
    assert len(cassette.data) >= 5
    metadata = cassette._metadata
    assert isinstance(metadata.get("synthetic"), bool)
    for key in ("recorded_at", "model", "sdk", "api_version", "endpoint", "generator"):
        assert metadata.get(key), key


# The states the scenarios drive the fleet into (agents/scenarios.py), and the action nearest-match
# replay must give in each: every action the AI can take, from the shipped cassettes.
PUBLISHER_STATES = [
    ((0, 0, 5.0, 10.0), "continue"),  # steady
    ((2, 1, 5.0, 10.0), "continue"),
    ((380, 190, 5.0, 10.0), "slow_down"),  # surge: a bulk import lands
    ((160, 90, 5.0, 10.0), "slow_down"),
    ((2400, 5, 5.0, 10.0), "slow_down"),  # incident: the flood
    ((171, 3, 5.0, 10.0), "slow_down"),
    ((3, 160, 5.0, 10.0), "slow_down"),
    ((300, 120, 20.0, 40.0), "continue"),  # slowed, draining
    ((4, 0, 20.0, 40.0), "speed_up"),  # drained: back to normal
    ((0, 0, 20.0, 40.0), "speed_up"),
    ((0, 0, 0.2, 0.4), "continue"),  # the integration tests' fast intervals
]
CONSUMER_STATES = [
    (("fictional", 3, 0), "process"),
    (("non-fictional", 1, 0), "process"),
    (("fictional", 1, 450), "batch"),  # surge
    (("non-fictional", 2, 180), "batch"),
    (("fictional", 4, 450), "process"),
    (("fictional", 5, 500), "process"),  # a surge never looks like the flood
    (("fictional", 5, 2200), "flag"),  # incident: urgent and stuck behind the flood
    (("fictional", 5, 1200), "flag"),
    (("fictional", 1, 2200), "batch"),
]
MONITOR_STATES = [
    ((36, {"fictional": 0, "non-fictional": 0}, 0), "healthy"),
    ((180, {"fictional": 2, "non-fictional": 1}, 0), "healthy"),
    ((9, {"fictional": 0, "non-fictional": 0}, 0), "healthy"),
    ((12, {"fictional": 171, "non-fictional": 3}, 0), "warning"),  # seen in a surge run
    ((0, {"fictional": 0, "non-fictional": 0}, 0), "warning"),  # nothing published
    ((20, {"fictional": 380, "non-fictional": 190}, 0), "warning"),  # surge
    ((40, {"fictional": 150, "non-fictional": 60}, 0), "warning"),
    ((40, {"fictional": 2300, "non-fictional": 10}, 0), "warning"),  # the flood alone
    ((40, {"fictional": 5, "non-fictional": 0}, 2), "warning"),
    ((40, {"fictional": 2300, "non-fictional": 10}, 20), "critical"),  # incident
    ((30, {"fictional": 0, "non-fictional": 0}, 25), "critical"),
    ((20, {"fictional": 4500, "non-fictional": 3000}, 70), "critical"),
]


def test_replay_gives_every_action_in_the_scenarios_states(workdir: Path) -> None:
    assert_every_action_replays(workdir)


def assert_every_action_replays(workdir: Path) -> None:
    """Replays each state through the real engine (SDK, cassette transport, guard, parser)."""
    publisher = engine_rig(load_settings(PublisherSettings), cwd=workdir)
    consumer = engine_rig(load_settings(ConsumerSettings), cwd=workdir)
    monitor = engine_rig(load_settings(MonitorSettings), cwd=workdir)
    got: list[tuple[tuple[object, ...], str, str, str | None]] = []  # (state, got, wanted, why)
    for args, expected in PUBLISHER_STATES:
        publisher.clock.advance(3600)
        decision = publisher.engine.decide_publisher(*args)
        got.append((args, decision.action, expected, decision.fallback))
    for c_args, expected in CONSUMER_STATES:
        consumer.clock.advance(3600)
        c_decision = consumer.engine.decide_consumer(*c_args)
        got.append((c_args, c_decision.action, expected, c_decision.fallback))
    for m_args, expected in MONITOR_STATES:
        monitor.clock.advance(3600)
        analysis = monitor.engine.analyse(*m_args)
        got.append((m_args, analysis.status, expected, analysis.fallback))
    wrong = [g for g in got if g[1] != g[2] or g[3] is not None]
    assert wrong == []
    actions = {g[1] for g in got}
    assert actions == {
        "continue",
        "slow_down",
        "speed_up",
        "process",
        "batch",
        "flag",
        "healthy",
        "warning",
        "critical",
    }


def test_seed_generator_reproduces_the_shipped_seeds(tmp_path: Path) -> None:
    assert seed.main([str(tmp_path)]) == 0
    for agent_type in AGENT_TYPES:
        shipped = yaml.safe_load((REPO_CASSETTES / f"{agent_type}.yaml").read_text())
        if not shipped["metadata"]["synthetic"]:
            continue  # replaced by real recordings: nothing to compare
        generated = yaml.safe_load((tmp_path / f"{agent_type}.yaml").read_text())
        for cassette in (generated, shipped):
            cassette["metadata"].pop("recorded_at")  # the only field that differs per run
        assert generated == shipped


def test_no_cassette_holds_anything_shaped_like_a_key() -> None:
    files = sorted(REPO_CASSETTES.rglob("*"))
    assert files
    for path in files:
        if path.is_file():
            text = path.read_text(errors="replace")
            assert cs.scan_for_keys(text) == [], path
            assert "authorization" not in text.lower(), path


def test_the_key_scanner_catches_keys() -> None:
    assert cs.scan_for_keys("x-api-key: sk-ant-api03-AbCdEfGhIjKlMnOp")
    assert cs.scan_for_keys("authorization:\n- Bearer abcdefghijklmnopqrstuvwxyz")
    assert cs.scan_for_keys("content-type: application/json") == []
