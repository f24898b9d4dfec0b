"""Every exception the anthropic SDK can raise becomes a named fallback reason (httpx's "every
error mapped"): the classes are enumerated from the installed SDK, so an upgrade that adds one
fails here until `agents.core.ai.sdk` says what it means.

Status errors go through the real SDK: a MockTransport answers with the status and error code
the SDK's own table turns into that class. Connection errors are raised in the transport. The
rest (credentials, middleware, validation) cannot come from an HTTP answer and are raised from a
stand-in for `messages.create`.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic import _error_classes

from agents.core.ai.sdk import AnthropicClient
from agents.ports import AIError, ModelRequest
from agents.testing.claude import mock_client
from agents.testing.clock import FakeClock

URL = "https://api.anthropic.com/v1/messages"
REQUEST = ModelRequest("consumer", "Message received: genre=fictional", 64, {"type": "object"})

# Reasons that say nothing about the error: no SDK class may end there...
UNMAPPED = "unexpected_error"
# ...and this one only for the SDK's base classes raised as such.
BASE_ONLY = ("api_client_error", (anthropic.AnthropicError, anthropic.APIError))

# Status classes the SDK builds without a table entry (make_status_error's fallbacks).
UNLISTED_STATUS = {
    anthropic.APIStatusError: (418, None),
    anthropic.InternalServerError: (599, None),
}


def public_classes() -> list[type[anthropic.AnthropicError]]:
    exported = {
        value
        for value in vars(anthropic).values()
        if inspect.isclass(value) and issubclass(value, anthropic.AnthropicError)
    }
    # Every class a response can become, exported or not (most Beta* ones are not).
    listed = set(_error_classes.ERROR_CLASSES.values())
    return sorted(exported | listed, key=lambda cls: cls.__name__)


def status_and_code(cls: type[anthropic.APIStatusError]) -> tuple[int, str | None]:
    for key, value in _error_classes.ERROR_CLASSES.items():
        if value is cls:
            return key
    if cls in UNLISTED_STATUS:
        return UNLISTED_STATUS[cls]
    raise AssertionError(f"{cls.__name__}: no status makes the SDK raise it; teach this test")


def build(cls: type[BaseException]) -> BaseException:
    """An instance of `cls` from its signature's parameter names (the SDK's classes vary)."""
    request = httpx2.Request("POST", URL)
    values: dict[str, Any] = {
        "message": "injected",
        "request": request,
        "response": httpx2.Response(500, request=request),
        "body": None,
        "path": Path("/nonexistent/token"),
    }
    params = [
        p
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self"
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        and (p.default is p.empty or p.name in values)
    ]
    if not params:
        return cls("injected")
    args = [values[p.name] for p in params if p.kind == p.POSITIONAL_OR_KEYWORD]
    kwargs = {p.name: values[p.name] for p in params if p.kind == p.KEYWORD_ONLY}
    return cls(*args, **kwargs)


def reason_for(cls: type[anthropic.AnthropicError]) -> str:
    clock = FakeClock()
    if issubclass(cls, anthropic.APIStatusError):
        status, code = status_and_code(cls)
        error: dict[str, Any] = {"type": "api_error", "message": "injected"}
        if code is not None:
            error["details"] = {"error_code": code}
        body = {"type": "error", "error": error}
        client = mock_client(lambda request: httpx2.Response(status, json=body), clock)
        seen: list[type[BaseException]] = []
        original = client.sdk.messages.create

        def create(**kwargs: Any) -> Any:
            try:
                return original(**kwargs)
            except anthropic.APIStatusError as exc:
                seen.append(type(exc))
                raise

        client.sdk.messages.create = create  # type: ignore[method-assign]
        reason = complete(client)
        assert seen == [cls], f"the SDK raised {seen} for {status} {code}, not {cls.__name__}"
        return reason
    if issubclass(cls, anthropic.APIConnectionError):
        wanted = httpx2.ReadTimeout if issubclass(cls, anthropic.APITimeoutError) else None

        def fail(request: httpx2.Request) -> httpx2.Response:
            raise (wanted or httpx2.ConnectError)("injected", request=request)

        return complete(mock_client(fail, clock))

    def raise_it(**kwargs: Any) -> Any:
        raise build(cls)

    sdk: Any = SimpleNamespace(messages=SimpleNamespace(create=raise_it))
    return complete(AnthropicClient(sdk, "claude-haiku-5-5", "live", clock))


def complete(client: AnthropicClient) -> str:
    with pytest.raises(AIError) as caught:
        client.complete(REQUEST)
    return caught.value.reason


def test_the_sdk_has_the_classes_this_test_expects() -> None:
    # A guard against enumerating nothing (a renamed table, a moved module).
    classes = public_classes()
    assert len(classes) > 50
    assert {anthropic.RateLimitError, anthropic.APITimeoutError, anthropic.APIError} <= set(classes)


@pytest.mark.parametrize("cls", public_classes(), ids=lambda cls: cls.__name__)
def test_every_sdk_exception_maps_to_a_named_fallback_reason(
    cls: type[anthropic.AnthropicError],
) -> None:
    reason = reason_for(cls)
    assert reason != UNMAPPED, f"{cls.__name__} has no mapping in agents.core.ai.sdk"
    if reason == BASE_ONLY[0]:
        assert cls in BASE_ONLY[1], f"{cls.__name__} only reached the base-class catch-all"
