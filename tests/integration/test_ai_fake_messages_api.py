"""The one fake Messages API: each fault mode reaches the engine as the fallback a real failure
of that kind gives, in-process (the SDK on a MockTransport) and served on 127.0.0.1 (the same
handler behind a local HTTP server, as agents in other processes use it)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from agents.core.settings import ConsumerSettings, PublisherSettings, load_settings
from agents.testing.claude import (
    BEHAVIOURS,
    INJECTION_MARKER,
    FakeMessagesAPI,
    engine_rig,
    mock_client,
)
from agents.testing.clock import FakeClock

# The consumer's decision for each behaviour: (action, fallback).
EXPECTED = {
    "ok": ("process", None),
    "timeout": ("process", "api_timeout"),
    "429": ("process", "api_rate_limited"),
    "500": ("process", "api_server_error"),
    "529": ("process", "api_overloaded"),
    "non_json": ("process", "invalid_response"),
    "out_of_range": ("flag", None),  # the action is valid; the absurd extras are dropped
    "huge_usage": ("process", None),  # answered; the guard charges the reservation at most
    "injection": ("process", None),  # the JSON in the prose is the decision; the prose is not
    "empty_content": ("process", "invalid_reply"),
    "echo_key_401": ("process", "api_auth_error"),
}


def test_every_behaviour_has_an_expectation() -> None:
    assert set(EXPECTED) == set(BEHAVIOURS)


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
def test_each_fault_reaches_the_engine_as_its_fallback(behaviour: str) -> None:
    api = FakeMessagesAPI([behaviour])
    clock = FakeClock()
    rig = engine_rig(load_settings(ConsumerSettings), mock_client(api.handle, clock), clock=clock)
    decision = rig.engine.decide_consumer("fictional", 3, 10)
    assert (decision.action, decision.fallback) == EXPECTED[behaviour]
    assert api.counts == {behaviour: 1}
    headers = api.requests[0].headers
    assert "sk-ant-test-not-a-real-key" in headers.get("authorization", "") + headers.get(
        "x-api-key", ""
    )
    assert INJECTION_MARKER not in decision.reasoning or behaviour == "injection"


def test_the_script_cycles_and_the_answer_and_usage_are_the_callers() -> None:
    api = FakeMessagesAPI(
        ["500", "ok"],
        answer=lambda prompt: {"action": "batch", "reasoning": "given"},
        usage=lambda prompt, text: (7, 3),
    )
    clock = FakeClock()
    rig = engine_rig(load_settings(ConsumerSettings), mock_client(api.handle, clock), clock=clock)
    fallbacks = []
    for _ in range(4):
        clock.advance(3600)
        fallbacks.append(rig.engine.decide_consumer("fictional", 3, 10).fallback)
    assert fallbacks == ["api_server_error", None, "api_server_error", None]
    answered = rig.lines("AI_DECISION")[1]["context"]
    assert (answered["ai_action"], answered["input_tokens"], answered["output_tokens"]) == (
        "batch",
        7,
        3,
    )
    assert api.billed_calls == 2 and api.billed_usd > 0


def test_served_it_answers_over_http_as_it_does_in_process() -> None:
    settings = load_settings(PublisherSettings)
    with FakeMessagesAPI(["ok", "429"], retry_after=0.5) as api:
        body = json.dumps(
            {
                "model": settings.claude_model,
                "max_tokens": 64,
                "messages": [{"role": "user", "content": "You are a publisher agent. 1 2"}],
            }
        ).encode()
        request = urllib.request.Request(
            api.url + "/v1/messages", data=body, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as reply:
            message = json.loads(reply.read())
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(api.url + "/v1/other", timeout=5)
    assert message["type"] == "message" and message["model"] == settings.claude_model
    assert json.loads(message["content"][0]["text"])["action"] == "continue"
    assert refused.value.code == 429 and refused.value.headers["retry-after"] == "0.5"
    assert missing.value.code == 404
    assert [r.behaviour for r in api.requests] == ["ok", "429"]
