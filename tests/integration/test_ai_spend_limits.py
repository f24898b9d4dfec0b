"""Anthropic's own spend limits are final, through the real SDK at the HTTP boundary (httpx2's
MockTransport): a 429 `enforced_spend_limit_reached` (no retry-after) and a 400 "You have
reached your specified workspace API usage limits" are never retried; the agent logs one ERROR,
counts it, falls back, and no agent sharing the ledger sends another request until the reset
the error names (or an hour)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx2
import pytest

from agents.core.ai.client import resume_time
from agents.core.ai.ledger import memory_ledger
from agents.core.ai.prices import UNKNOWN_MODEL_PRICE
from agents.core.settings import ConsumerSettings, load_settings
from agents.ports import Ledger
from agents.testing.claude import EngineRig, engine_rig, message_json, mock_client
from agents.testing.clock import FakeClock
from agents.vocab import Event

OK = '{"action": "process", "reasoning": "fine"}'

Handler = Callable[[httpx2.Request], httpx2.Response]


def spend_limit_429(request: httpx2.Request) -> httpx2.Response:
    body = {
        "type": "error",
        "error": {
            "type": "rate_limit_error",
            "message": "Your organization has reached its monthly API spend limit.",
            "details": {"error_code": "enforced_spend_limit_reached"},
        },
    }
    return httpx2.Response(429, json=body)  # and no retry-after: it is not transient


def workspace_limit_400(reset: datetime) -> Handler:
    message = (
        "You have reached your specified workspace API usage limits. You will regain access "
        f"on {reset:%Y-%m-%d} at {reset:%H:%M} UTC."
    )
    body = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    return lambda request: httpx2.Response(400, json=body)


class Script:
    """Answers with `first` until told otherwise, counting requests."""

    def __init__(self, first: Handler) -> None:
        self.handler = first
        self.requests = 0

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests += 1
        return self.handler(request)


def consumer(name: str, script: Script, clock: FakeClock, ledger: Ledger) -> EngineRig:
    settings = load_settings(ConsumerSettings, consumer_id=name, ai_call_interval_seconds=1)
    client = mock_client(script, clock, retries=3)  # retries allowed: they must not be used
    return engine_rig(settings, client, clock=clock, ledger=ledger)


@pytest.mark.parametrize("kind", ["429 enforced_spend_limit_reached", "400 workspace limit"])
def test_spend_limit_is_final_for_every_agent_until_the_reset(kind: str) -> None:
    clock = FakeClock()
    first: Handler
    if kind.startswith("429"):
        first, expected_pause, reason = spend_limit_429, timedelta(hours=1), "api_spend_limit"
    else:
        reset = clock.now() + timedelta(hours=5)
        first, expected_pause, reason = (
            workspace_limit_400(reset),
            timedelta(hours=5),
            ("api_usage_limit"),
        )
    script = Script(first)
    ledger = memory_ledger()
    one = consumer("consumer-1", script, clock, ledger)
    two = consumer("consumer-2", script, clock, ledger)

    decision = one.engine.decide_consumer("fictional", 3, 10)
    assert decision.fallback == reason and decision.action == "process"
    assert script.requests == 1  # not retried, although the client may retry three times

    # Neither agent calls again before the reset, whatever they are asked.
    for _ in range(5):
        clock.advance(60)
        for rig in (one, two):
            refused = rig.engine.decide_consumer("fictional", 3, 10)
            assert refused.fallback == "api_spend_limit_paused"
    assert script.requests == 1

    # One ERROR for the whole episode, counted as an error metric.
    errors = [line for rig in (one, two) for line in rig.lines("ERROR")]
    assert len(errors) == 1
    assert errors[0]["message"] == Event.API_SPEND_LIMIT
    assert errors[0]["context"]["ai_fallback"] == reason
    resume = datetime.fromisoformat(errors[0]["context"]["resume_at"])
    assert abs(resume - (FakeClock().now() + expected_pause)) < timedelta(minutes=2)
    assert one.sink.where("errors", kind=reason)
    # The fallback decision is visible as such.
    (point, *_) = one.points()
    assert point.tags["fallback"] == reason and point.fields["ai_call_count"] == 1
    # The rejected request cost nothing in the ledger.
    assert one.engine.guard.usage()["usd_last_10min"] == 0.0

    # After the reset, calls resume.
    script.handler = lambda request: httpx2.Response(200, json=message_json(OK))
    clock.advance(expected_pause.total_seconds())
    assert two.engine.decide_consumer("fictional", 3, 10).fallback is None
    assert script.requests == 2


def test_an_ordinary_429_is_still_retried() -> None:
    """Only the spend limit is final: a plain rate limit stays a retryable, unbilled refusal."""
    clock = FakeClock()
    answers = iter(
        [
            httpx2.Response(
                429,
                json={"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}},
                headers={"retry-after": "1"},
            ),
            httpx2.Response(200, json=message_json(OK)),
        ]
    )
    rig = engine_rig(
        load_settings(ConsumerSettings),
        mock_client(lambda request: next(answers), clock, retries=1),
        clock=clock,
    )
    assert rig.engine.decide_consumer("fictional", 3, 10).fallback is None


NOW = datetime(2026, 1, 31, 10, 15, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "You will regain access on 2026-01-31 at 15:15 UTC.",
            datetime(2026, 1, 31, 15, 15, tzinfo=UTC),
        ),
        ("resets at 2026-01-31T12:15:30Z", NOW + timedelta(hours=2)),
        ("no date here", NOW + timedelta(hours=1)),
        ("You will regain access on 2026-01-01 at 00:00 UTC.", NOW + timedelta(minutes=1)),
        ("You will regain access on 2027-06-01 at 00:00 UTC.", NOW + timedelta(days=32)),
    ],
    ids=["named reset", "iso reset", "none named: an hour", "past: a minute", "clamped"],
)
def test_resume_time_reads_the_reset_the_error_names(message: str, expected: datetime) -> None:
    assert resume_time(message, NOW) == expected


def test_an_unpriced_model_is_reserved_at_the_dearest_price_before_the_call() -> None:
    """LiteLLM #35524: calls to a model missing from the price table were not reserved. Here the
    worst case is in the shared ledger before the request leaves, priced at the conservative
    unknown-model price, and the actual usage is settled at that price afterwards."""
    clock = FakeClock()
    ledger = memory_ledger()
    seen: list[list[tuple[str, float]]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append([(e.state, e.usd) for e in ledger.entries()])
        return httpx2.Response(200, json=message_json(OK, input_tokens=100, output_tokens=20))

    # Caps high enough for one worst case at that price (the defaults refuse it outright).
    settings = load_settings(
        ConsumerSettings,
        claude_model="claude-future-9",
        max_cost_per_10min_usd=1,
        max_cost_per_hour_usd=1,
        fleet_max_cost_per_10min_usd=1,
        fleet_max_cost_per_hour_usd=1,
    )
    rig = engine_rig(
        settings, mock_client(handler, clock, model="claude-future-9"), clock=clock, ledger=ledger
    )
    decision = rig.engine.decide_consumer("fictional", 3, 10)
    assert decision.fallback is None
    ((state, reserved),) = seen[0]
    assert state == "reserved"
    assert reserved >= UNKNOWN_MODEL_PRICE.cost(1, settings.max_tokens)
    (entry,) = ledger.entries()
    assert (entry.state, entry.usd) == ("settled", UNKNOWN_MODEL_PRICE.cost(100, 20))
