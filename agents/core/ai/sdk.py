"""Live and replay: the official `anthropic` SDK's `messages.create`, one code path for both.

Replay swaps only the HTTP transport underneath the SDK for one that answers from a vcrpy
cassette, scoped to this client (vcrpy's usual process-wide patching would also capture the
InfluxDB writer's traffic). Replay runs with `max_retries=0`, so a cassette miss fails at once and
loudly.

Retries are ours, not the SDK's: the SDK honours any `retry-after` without a cap and would send a
second, unreserved, possibly billed request after a timeout. We retry only answers the API refused
outright (429, 5xx, 529: never billed), a bounded number of times, with a capped delay.

Imported only by the modes that call the SDK (see `build_engine`): the import alone costs ~80 MB
and ~2 s, more than a dry-run agent needs in total.
"""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2

from agents.core.ai import cassettes as cs
from agents.core.ai.client import (
    API_SPEND_LIMIT,
    API_USAGE_LIMIT,
    SPEND_LIMIT_CODES,
    WORKSPACE_LIMIT,
    ReplayMiss,
    resume_time,
)
from agents.ports import AIError, Clock, Mode, ModelReply, ModelRequest

REPLAY_BASE_URL = "https://api.anthropic.com"
MAX_RETRY_DELAY_S = 2.0


class CassetteTransport(httpx2.BaseTransport):
    """Answers the SDK's HTTP requests from one vcrpy cassette, nearest recording first."""

    def __init__(self, cassette: Any) -> None:
        self.cassette = cassette

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        from vcr.matchers import requests_match
        from vcr.request import Request as VcrRequest

        body = request.read()
        live = VcrRequest(request.method, str(request.url), body, dict(request.headers))
        matches = [
            (recorded, response)
            for recorded, response in self.cassette.data
            if requests_match(live, recorded, self.cassette._match_on)
        ]
        if not matches:
            wanted = cs.normalised_body(live)
            raise ReplayMiss(
                f"{self.cassette.path} has no recording for model={wanted['model']} "
                f"max_tokens={wanted['max_tokens']} and this prompt template"
            )
        prompts = [cs.prompt_of(cs._body(recorded)) for recorded, _ in matches]
        _, response = matches[cs.nearest(cs.prompt_of(cs._body(live)), prompts)]
        headers = [
            (name, value) for name, values in response["headers"].items() for value in values
        ]
        return httpx2.Response(
            response["status"]["code"],
            headers=headers,
            content=response["body"]["string"],
            request=request,
        )


class AnthropicClient:
    """`messages.create` on the official SDK: structured JSON output, thinking disabled."""

    def __init__(
        self,
        sdk: anthropic.Anthropic,
        model: str,
        mode: Mode,
        clock: Clock,
        retries: int = 0,
    ) -> None:
        self.sdk = sdk
        self.model = model
        self.mode = mode
        self._clock = clock
        self._retries = retries if mode == "live" else 0

    def complete(self, request: ModelRequest) -> ModelReply:
        attempt = 0
        while True:
            try:
                return self._once(request)
            except _Retryable as exc:
                if attempt >= self._retries:
                    raise exc.error from exc.__cause__
                attempt += 1
                self._clock.sleep(exc.delay(attempt))

    def _once(self, request: ModelRequest) -> ModelReply:
        try:
            message = self.sdk.messages.create(
                model=self.model,
                max_tokens=request.max_tokens,
                messages=[{"role": "user", "content": request.prompt}],
                # Thinking would spend max_tokens before any answer text on models where it
                # is on by default; these are tiny JSON decisions.
                thinking={"type": "disabled"},
                output_config={"format": {"type": "json_schema", "schema": dict(request.schema)}},
            )
        except anthropic.APITimeoutError as exc:
            raise AIError("api_timeout", "unknown", "no answer within the timeout") from exc
        except anthropic.APIConnectionError as exc:
            if isinstance(exc.__cause__, ReplayMiss):
                raise AIError("replay_miss", "none", str(exc.__cause__)) from exc
            raise AIError("api_connection_error", "unknown", _cause(exc)) from exc
        except anthropic.RateLimitError as exc:
            if exc.error_code in SPEND_LIMIT_CODES:
                raise _spend_limit(API_SPEND_LIMIT, exc, self._clock) from exc
            raise _Retryable(AIError("api_rate_limited", "none", "HTTP 429"), exc) from exc
        except anthropic.OverloadedError as exc:
            raise _Retryable(AIError("api_overloaded", "none", "HTTP 529"), exc) from exc
        except anthropic.InternalServerError as exc:
            error = AIError("api_server_error", "none", f"HTTP {exc.status_code}")
            raise _Retryable(error, exc) from exc
        except (anthropic.AuthenticationError, anthropic.PermissionDeniedError) as exc:
            raise AIError("api_auth_error", "none", f"HTTP {exc.status_code}") from exc
        except anthropic.APIStatusError as exc:
            if exc.status_code == 400 and WORKSPACE_LIMIT.search(_api_message(exc)):
                raise _spend_limit(API_USAGE_LIMIT, exc, self._clock) from exc
            raise AIError(f"api_http_{exc.status_code}", "none", _api_message(exc)) from exc
        except (
            anthropic.APIResponseValidationError,
            anthropic.APIWebhookValidationError,
            ValueError,
        ) as exc:
            # A 200 whose body is not a message: the call itself may have been billed.
            raise AIError("invalid_response", "unknown", type(exc).__name__) from exc
        except (anthropic.CredentialsError, anthropic.WorkloadIdentityError) as exc:
            # No credentials to send: the request never reached the Messages API.
            raise AIError("api_credentials_error", "none", type(exc).__name__) from exc
        except anthropic.RetryableError as exc:
            # Middleware asked for a retry the SDK may not make (ours are at most max_retries=0).
            raise AIError("api_retryable_error", "unknown", type(exc).__name__) from exc
        except anthropic.AnthropicError as exc:
            # The SDK's base classes raised as such (e.g. a credentials provider's bad answer);
            # every subclass has its own reason above (tests/unit/ai/test_sdk_errors.py).
            raise AIError("api_client_error", "unknown", type(exc).__name__) from exc
        except Exception as exc:  # the SDK is a dependency; the agent loop must never see it fail
            raise AIError("unexpected_error", "unknown", type(exc).__name__) from exc
        if not isinstance(message, anthropic.types.Message):
            raise AIError("invalid_response", "unknown", "the body is not a message")
        usage = message.usage
        input_tokens = (
            usage.input_tokens
            + (usage.cache_creation_input_tokens or 0)
            + (usage.cache_read_input_tokens or 0)
        )
        text = "".join(block.text for block in message.content if block.type == "text")
        return ModelReply(
            text, input_tokens, usage.output_tokens, message.model, message.stop_reason
        )


def _spend_limit(reason: str, exc: anthropic.APIStatusError, clock: Clock) -> AIError:
    message = _api_message(exc)
    resume = resume_time(message, clock.now())
    return AIError(
        reason,
        "none",  # refused before any work: not billed
        f"HTTP {exc.status_code} {exc.error_code or ''} {message}".strip()[:300],
        resume.timestamp(),
    )


class _Retryable(Exception):
    def __init__(self, error: AIError, exc: anthropic.APIStatusError) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = _retry_after(exc.response.headers)

    def delay(self, attempt: int) -> float:
        backoff = 0.5 * 2 ** (attempt - 1)
        wanted = self.retry_after if self.retry_after is not None else backoff
        return min(max(wanted, 0.0), MAX_RETRY_DELAY_S)


def _retry_after(headers: httpx2.Headers) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            return float(headers[name]) * scale
        except (KeyError, ValueError):
            continue
    return None


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__
    return type(cause).__name__ if cause is not None else "connection failed"


def _api_message(exc: anthropic.APIStatusError) -> str:
    message = exc.api_message if isinstance(exc.api_message, str) else ""
    return " ".join(message.split())[:200]


def live_sdk(
    api_key: str,
    base_url: str | None,
    timeout_s: float,
    http_client: httpx2.Client | None = None,
) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key=api_key,
        base_url=base_url,
        timeout=httpx2.Timeout(timeout_s, connect=min(5.0, timeout_s)),
        max_retries=0,
        http_client=http_client,
    )


def replay_sdk(cassette: Any, timeout_s: float) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key="replay-mode-no-key",
        base_url=REPLAY_BASE_URL,
        timeout=timeout_s,
        max_retries=0,
        http_client=anthropic.DefaultHttpxClient(transport=CassetteTransport(cassette)),
    )
