"""Failures at the HTTP boundary, fed to the real anthropic SDK through httpx2's MockTransport:
each maps to a fallback reason, with the AI_DECISION log line and the metric point to show it."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx2
import pytest

from agents.core.settings import PublisherSettings, load_settings
from agents.testing.claude import engine_rig, message_json, mock_client
from agents.testing.clock import FakeClock

Handler = Callable[[httpx2.Request], httpx2.Response]


pytestmark = pytest.mark.usefixtures("no_ambient_ai")


def _raise(exc: Exception) -> Handler:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise exc

    return handler


def _status(code: int, error_type: str, headers: dict[str, str] | None = None) -> Handler:
    body = {"type": "error", "error": {"type": error_type, "message": "nope"}}
    return lambda request: httpx2.Response(code, json=body, headers=headers)


CASES: list[tuple[str, Handler, str, bool]] = [
    # (name, handler, fallback reason, whether the guard still counts spend for the call)
    ("timeout", _raise(httpx2.ReadTimeout("slow")), "api_timeout", True),
    ("connect error", _raise(httpx2.ConnectError("refused")), "api_connection_error", True),
    ("429", _status(429, "rate_limit_error"), "api_rate_limited", False),
    ("500", _status(500, "api_error"), "api_server_error", False),
    ("529", _status(529, "overloaded_error"), "api_overloaded", False),
    ("401", _status(401, "authentication_error"), "api_auth_error", False),
    ("400", _status(400, "invalid_request_error"), "api_http_400", False),
    (
        "invalid JSON body",
        lambda request: httpx2.Response(
            200, content=b"{not json", headers={"content-type": "application/json"}
        ),
        "invalid_response",
        True,
    ),
    (
        "HTML body",
        lambda request: httpx2.Response(
            200, content=b"<html>gateway</html>", headers={"content-type": "text/html"}
        ),
        "invalid_response",
        True,
    ),
    (
        "a message without JSON",
        lambda request: httpx2.Response(200, json=message_json("I cannot decide.")),
        "invalid_reply",
        True,  # answered and billed: settled to the actual usage
    ),
]


@pytest.mark.parametrize(
    ("handler", "reason", "kept"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_failure_maps_to_a_fallback_log_line_and_metric(
    handler: Handler, reason: str, kept: bool
) -> None:
    clock = FakeClock()
    settings = load_settings(PublisherSettings, claude_model="claude-sonnet-4-6")
    rig = engine_rig(settings, mock_client(handler, clock, model="claude-sonnet-4-6"), clock=clock)

    decision = rig.engine.decide_publisher(40, 2, 5.0, 10.0)

    assert decision.fallback == reason
    assert (decision.action, decision.fictional_interval, decision.nonfictional_interval) == (
        "continue",
        5.0,
        10.0,
    )
    (line,) = rig.lines("AI_DECISION")
    assert line["context"]["ai_fallback"] == reason
    assert line["context"]["ai_mode"] == "live"
    assert line["context"]["queue_depth_fictional"] == 40
    (point,) = rig.points()
    assert point.tags["fallback"] == reason
    assert point.fields["ai_fallback_count"] == 1 and point.fields["ai_call_count"] == 1
    spent = rig.engine.guard.usage()["usd_last_10min"]
    assert (spent > 0) is kept
    # Nothing secret on any line.
    assert "sk-ant-test" not in rig.stream.getvalue()


def test_retryable_status_is_retried_a_bounded_number_of_times_with_a_capped_delay() -> None:
    clock = FakeClock()
    seen: list[float] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(clock.monotonic())
        if len(seen) < 3:
            body = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
            return httpx2.Response(529, json=body, headers={"retry-after": "3600"})
        text = '{"action": "slow_down", "fictional_interval": 9, "nonfictional_interval": 20}'
        return httpx2.Response(200, json=message_json(text))

    rig = engine_rig(
        load_settings(PublisherSettings), mock_client(handler, clock, retries=2), clock=clock
    )
    decision = rig.engine.decide_publisher(400, 2, 5.0, 10.0)
    assert decision.action == "slow_down" and decision.fallback is None
    # Two retries, each waiting at most 2 s although the server asked for an hour.
    assert len(seen) == 3 and seen[-1] - seen[0] <= 4.0


def test_retries_run_out_into_a_fallback() -> None:
    clock = FakeClock()
    calls: list[int] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(1)
        return httpx2.Response(429, json={"type": "error", "error": {"type": "rate_limit_error"}})

    rig = engine_rig(
        load_settings(PublisherSettings), mock_client(handler, clock, retries=1), clock=clock
    )
    assert rig.engine.decide_publisher(1, 1, 5.0, 10.0).fallback == "api_rate_limited"
    assert len(calls) == 2


def test_live_request_is_what_the_issue_asks_for() -> None:
    clock = FakeClock()
    sent: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(request)
        return httpx2.Response(200, json=message_json('{"action": "process", "reasoning": "ok"}'))

    from agents.core.settings import ConsumerSettings

    rig = engine_rig(load_settings(ConsumerSettings), mock_client(handler, clock), clock=clock)
    decision = rig.engine.decide_consumer("non-fictional", 3, 12)
    assert decision.action == "process" and decision.ai_used
    body = json.loads(sent[0].content)
    assert body["max_tokens"] == 200
    assert body["thinking"] == {"type": "disabled"}
    assert body["output_config"]["format"]["type"] == "json_schema"
    assert body["messages"][0]["content"].startswith("Message received: genre=non-fictional")
    assert sent[0].headers["authorization"].startswith("Bearer ")
    (point,) = rig.points()
    assert point.fields["input_tokens"] == 120 and point.fields["output_tokens"] == 30
    assert point.fields["cost_usd"] == pytest.approx((120 * 0.10 + 30 * 0.50) / 1e6)
