"""Untrusted replies: tolerant extraction, strict validation, clamping; fuzzed with hypothesis."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.core.ai.schemas import (
    INVALID_REPLY,
    ConsumerDecision,
    MonitorAnalysis,
    PublisherDecision,
    extract_json_object,
    parse_consumer,
    parse_monitor,
    parse_publisher,
)

CURRENT, BOUNDS = (5.0, 10.0), (1.0, 300.0)


@pytest.mark.parametrize(
    "text",
    [
        '{"action": "slow_down", "fictional_interval": 8, "nonfictional_interval": 12, '
        '"reasoning": "deep"}',
        'Here you go:\n```json\n{"action": "slow_down", "fictional_interval": 8, '
        '"nonfictional_interval": 12, "reasoning": "deep"}\n```',
        'I suggest {"action": "Slow-Down", "fictional_interval": "8s", '
        '"nonfictional_interval": 12.0, "reasoning": "deep"} because the queue grows.',
    ],
)
def test_publisher_reply_found_in_bare_fenced_or_wrapped_json(text: str) -> None:
    decision = parse_publisher(text, CURRENT, BOUNDS)
    assert decision == PublisherDecision(
        action="slow_down", fictional_interval=8.0, nonfictional_interval=12.0, reasoning="deep"
    )
    assert decision.ai_used


def test_intervals_are_clamped_and_missing_ones_keep_the_current_rate() -> None:
    decision = parse_publisher(
        '{"action": "speed_up", "fictional_interval": 0.001}', CURRENT, BOUNDS
    )
    assert (decision.fictional_interval, decision.nonfictional_interval) == (1.0, 10.0)
    decision = parse_publisher(
        '{"action": "slow_down", "fictional_interval": 1e308}', CURRENT, BOUNDS
    )
    assert decision.fictional_interval == 300.0


def test_dry_run_mock_answer_keeps_the_intervals() -> None:
    decision = parse_publisher(
        '{"action": "continue", "reasoning": "DRY RUN MODE"}', CURRENT, BOUNDS
    )
    assert decision.action == "continue" and decision.reasoning == "DRY RUN MODE"
    assert (decision.fictional_interval, decision.nonfictional_interval) == CURRENT


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no json here",
        '{"action": "delete_all_queues"}',
        '{"action": "continue", "fictional_interval": true}',
        '["continue"]',
        '{"action": ["continue"]}',
        "{" * 5000,
        '{"a":' * 3000,
    ],
)
def test_anything_else_is_the_default_decision(text: str) -> None:
    decision = parse_publisher(text, CURRENT, BOUNDS)
    assert decision.fallback == INVALID_REPLY
    assert decision.action == "continue"
    assert (decision.fictional_interval, decision.nonfictional_interval) == CURRENT


def test_consumer_synonyms_select_only_allowed_actions() -> None:
    assert parse_consumer('{"action": "process_immediately"}').action == "process"
    assert parse_consumer('{"action": "c) flag_anomaly", "reasoning": "odd"}').action == "flag"
    assert parse_consumer('{"action": "drop"}').fallback == INVALID_REPLY


def test_monitor_lists_are_cleaned_and_bounded() -> None:
    reply = {
        "status": "Warning",
        "issues": ["a\nb", 3, None, {"x": 1}] + ["i"] * 50,
        "suggestions": "scale consumers",
    }
    analysis = parse_monitor(json.dumps(reply))
    assert analysis.status == "warning"
    assert analysis.issues[:2] == ["a b", "3"] and len(analysis.issues) == 10
    assert analysis.suggestions == ["scale consumers"]


def test_monitor_fallback_still_reports_errors() -> None:
    analysis = parse_monitor("garbage", errors=4)
    assert analysis.status == "warning" and analysis.fallback == INVALID_REPLY
    assert parse_monitor("garbage", errors=0).status == "healthy"


def test_reasoning_is_one_short_line() -> None:
    text = json.dumps({"action": "process", "reasoning": "x\r\n\u2028" + "y" * 5000})
    reasoning = parse_consumer(text).reasoning
    assert "\n" not in reasoning and len(reasoning) <= 300


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
reply_like = st.fixed_dictionaries(
    {},
    optional={
        "action": st.sampled_from(
            ["continue", "slow_down", "speed_up", "process", "batch", "flag", "Slow Down", "nope"]
        )
        | json_values,
        "status": st.sampled_from(["healthy", "warning", "critical", "bad"]) | json_values,
        "fictional_interval": st.floats(allow_nan=True) | json_values,
        "nonfictional_interval": st.floats(allow_infinity=True) | json_values,
        "reasoning": json_values,
        "issues": json_values,
        "suggestions": json_values,
    },
)
any_reply = (
    st.text()
    | reply_like.map(lambda d: json.dumps(d, allow_nan=True))
    | st.tuples(st.text(max_size=30), reply_like, st.text(max_size=30)).map(
        lambda t: f"{t[0]}```json\n{json.dumps(t[1])}\n```{t[2]}"
    )
)


@given(any_reply)
def test_any_string_gives_a_valid_publisher_decision(text: str) -> None:
    decision = parse_publisher(text, CURRENT, BOUNDS)
    PublisherDecision.model_validate(decision.model_dump())
    for interval in (decision.fictional_interval, decision.nonfictional_interval):
        assert math.isfinite(interval) and BOUNDS[0] <= interval <= BOUNDS[1]
    assert decision.action in ("continue", "slow_down", "speed_up")
    assert "\n" not in decision.reasoning and len(decision.reasoning) <= 300


@given(any_reply)
def test_any_string_gives_a_valid_consumer_decision(text: str) -> None:
    decision = parse_consumer(text)
    ConsumerDecision.model_validate(decision.model_dump())
    assert decision.action in ("process", "batch", "flag")


@given(any_reply, st.integers(0, 10**6))
def test_any_string_gives_a_valid_monitor_analysis(text: str, errors: int) -> None:
    analysis = parse_monitor(text, errors)
    MonitorAnalysis.model_validate(analysis.model_dump())
    assert len(analysis.issues) <= 10 and all("\n" not in i for i in analysis.issues)


@given(st.text())
def test_extraction_never_raises(text: str) -> None:
    found = extract_json_object(text)
    assert found is None or isinstance(found, dict)
