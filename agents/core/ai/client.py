"""One decision client, three modes: live (the API), replay (cassettes), dry-run (no network).

Live and replay share one code path: the official `anthropic` SDK's `messages.create`. Replay
swaps only the HTTP transport underneath it for one that answers from a vcrpy cassette, scoped to
this client (vcrpy's usual process-wide patching would also capture the InfluxDB writer's
traffic). Replay runs with `max_retries=0`, so a cassette miss fails at once and loudly.

Retries are ours, not the SDK's: the SDK honours any `retry-after` without a cap and would send a
second, unreserved, possibly billed request after a timeout. We retry only answers the API refused
outright (429, 5xx, 529: never billed), a bounded number of times, with a capped delay.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

import anthropic
import httpx2

from agents.core.ai import cassettes as cs
from agents.core.clock import Clock

Mode = Literal["live", "dry-run", "replay"]
Billing = Literal["none", "unknown"]

DRY_RUN_REPLIES: dict[str, str] = {
    # The specification's mock response, and the analogous answers for the other agents.
    "publisher": '{"action": "continue", "reasoning": "DRY RUN MODE"}',
    "consumer": '{"action": "process", "reasoning": "DRY RUN MODE"}',
    "monitor": '{"status": "healthy", "issues": [], "suggestions": []}',
}

REPLAY_BASE_URL = "https://api.anthropic.com"
MAX_RETRY_DELAY_S = 2.0


@dataclass(frozen=True)
class ModelRequest:
    agent_type: str
    prompt: str
    max_tokens: int
    schema: Mapping[str, object]


@dataclass(frozen=True)
class ModelReply:
    text: str
    input_tokens: int
    output_tokens: int
    model: str
    stop_reason: str | None = None


class AIError(Exception):
    """A call that produced no usable reply. `reason` goes to the log and the metric as the
    fallback; `billing` tells the guard whether the call may still have been charged."""

    def __init__(
        self, reason: str, billing: Billing, detail: str = "", resume_at: float | None = None
    ) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.billing = billing
        self.detail = detail
        # Set for Anthropic's own spend limits: no call may be sent before this time (epoch s).
        self.resume_at = resume_at


class DecisionClient(Protocol):
    mode: Mode
    model: str

    def complete(self, request: ModelRequest) -> ModelReply: ...


class DryRunClient:
    """No network, no cost: the specification's mock answers."""

    mode: Mode = "dry-run"

    def __init__(self, model: str) -> None:
        self.model = model

    def complete(self, request: ModelRequest) -> ModelReply:
        return ModelReply(DRY_RUN_REPLIES[request.agent_type], 0, 0, "dry-run", "end_turn")


class ReplayMiss(Exception):
    """No recording matches the request: a loud failure, never a live call."""


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


def load_cassette(path: Path) -> Any:
    """A vcrpy cassette in replay-only mode, matched on method, path and normalised body."""
    from vcr.cassette import Cassette
    from vcr.matchers import method
    from vcr.matchers import path as path_matcher
    from vcr.record_mode import RecordMode

    return Cassette.load(
        path=str(path),
        match_on=(method, path_matcher, cs.body_template),
        record_mode=RecordMode.NONE,
        allow_playback_repeats=True,
    )


def cassette_metadata(cassette: Any) -> dict[str, Any]:
    metadata = getattr(cassette, "_metadata", None)
    return dict(metadata) if isinstance(metadata, dict) else {}


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
        except (anthropic.APIResponseValidationError, ValueError) as exc:
            # A 200 whose body is not a message: the call itself may have been billed.
            raise AIError("invalid_response", "unknown", type(exc).__name__) from exc
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


# Anthropic's own limits are final: not transient, so never retried (every retry fails until
# access resumes). A 429 whose error.details.error_code names a spend limit, and a 400 saying a
# self-set workspace limit is reached. We stop until the reset the error names, or an hour.
API_SPEND_LIMIT = "api_spend_limit"
API_USAGE_LIMIT = "api_usage_limit"
SPEND_LIMIT_CODES = frozenset({"enforced_spend_limit_reached", "contract_spend_limit_reached"})
WORKSPACE_LIMIT = re.compile(r"reached your specified (workspace )?API usage limits", re.I)
DEFAULT_PAUSE_S = 3600.0
MAX_PAUSE_S = 32 * 86_400.0
_RESET = re.compile(
    r"(\d{4}-\d{2}-\d{2})(?:(?:T|\s+at\s+|\s+)(\d{1,2}:\d{2}(?::\d{2})?))?\s*(UTC|Z|[+-]\d{2}:\d{2})?"
)


def resume_time(message: str, now: datetime) -> datetime:
    """The reset the error names ("... regain access on 2026-01-01 at 00:00 UTC"), clamped to
    between a minute and 32 days from now; an hour from now when it names none."""
    found = _RESET.search(message)
    if found is not None:
        day, clock, zone = found.groups()
        offset = "+00:00" if zone in (None, "UTC", "Z") else zone
        try:
            at: datetime | None = datetime.fromisoformat(f"{day}T{clock or '00:00'}{offset}")
        except ValueError:  # e.g. 2026-13-45: not a date after all
            at = None
        if at is not None:
            wait = (at - now).total_seconds()
            return now + timedelta(seconds=min(max(wait, 60.0), MAX_PAUSE_S))
    return now + timedelta(seconds=DEFAULT_PAUSE_S)


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


def recorded_for(cassette: Any, model: str, max_tokens: int) -> int:
    """How many recordings in `cassette` were made with this model and max_tokens."""
    count = 0
    for recorded, _ in cassette.data:
        body = cs.normalised_body(recorded)
        if body["model"] == model and body["max_tokens"] == max_tokens:
            count += 1
    return count


def dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True)
