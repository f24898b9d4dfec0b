"""Decisions, and how an untrusted reply becomes one.

A reply is parsed tolerantly (bare JSON, JSON in a code fence, JSON wrapped in prose), then
validated against a strict schema per agent. Whatever the model writes can only *select* among
the allowed actions; numbers are clamped into configured bounds; text is cut to one short line.
Anything else becomes the agent's default decision with `fallback` naming why, so any string in
gives a valid decision out (a hypothesis test holds the parser to that).
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

PublisherAction = Literal["continue", "slow_down", "speed_up"]
ConsumerAction = Literal["process", "batch", "flag"]
HealthStatus = Literal["healthy", "warning", "critical"]

MAX_REASONING_CHARS = 300
MAX_LIST_ITEMS = 10
MAX_ITEM_CHARS = 200
MAX_REPLY_CHARS = 20_000  # a 400-token reply is ~2 kB; bounds the parser's work on garbage
MAX_JSON_ATTEMPTS = 64

INVALID_REPLY = "invalid_reply"

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def clean_text(value: object, limit: int = MAX_REASONING_CHARS) -> str:
    """One line of printable text at most `limit` characters long."""
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    text = " ".join(_CONTROL.sub(" ", text).split())
    # Lone surrogates cannot be encoded anywhere downstream (JSON logs, line protocol).
    text = text.encode("utf-8", errors="replace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Decision(BaseModel):
    """What every agent's decision has: `fallback` names why the default was used."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fallback: str | None = None

    @property
    def ai_used(self) -> bool:
        """True when the answer came from the model (live, replayed or dry-run)."""
        return self.fallback is None


class PublisherDecision(Decision):
    action: PublisherAction
    fictional_interval: float
    nonfictional_interval: float
    reasoning: str


class ConsumerDecision(Decision):
    action: ConsumerAction
    reasoning: str


class MonitorAnalysis(Decision):
    status: HealthStatus
    issues: list[str] = Field(default_factory=list)
    suggestions: list[str] = Field(default_factory=list)

    @property
    def action(self) -> str:
        return self.status

    @property
    def reasoning(self) -> str:
        return "; ".join(self.issues)


# --- what we accept from the model ---------------------------------------------------------


def _token(value: object) -> object:
    """`"Slow Down"`, `"slow-down"` -> `"slow_down"`; non-strings pass through to fail."""
    if isinstance(value, str):
        return "_".join(value.strip().lower().replace("-", " ").split())
    return value


class _Reply(BaseModel):
    model_config = ConfigDict(extra="ignore")

    reasoning: str = ""

    @field_validator("reasoning", mode="before")
    @classmethod
    def _text(cls, value: object) -> str:
        if value is not None and not isinstance(value, str | int | float):
            raise ValueError("reasoning must be text")
        return clean_text(value)


class PublisherReply(_Reply):
    action: Annotated[PublisherAction, BeforeValidator(_token)]
    fictional_interval: float | None = None
    nonfictional_interval: float | None = None

    @field_validator("fictional_interval", "nonfictional_interval", mode="before")
    @classmethod
    def _number(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError("an interval is a number")
        if isinstance(value, str):
            value = value.strip().removesuffix("s").strip()
        return value


_CONSUMER_SYNONYMS = {
    "process_immediately": "process",
    "a": "process",
    "b": "batch",
    "flag_anomaly": "flag",
    "c": "flag",
}


class ConsumerReply(_Reply):
    action: ConsumerAction

    @field_validator("action", mode="before")
    @classmethod
    def _action(cls, value: object) -> object:
        token = _token(value)
        if isinstance(token, str):
            token = token.removeprefix("a)").removeprefix("b)").removeprefix("c)").strip("_")
            return _CONSUMER_SYNONYMS.get(token, token)
        return token


class MonitorReply(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Annotated[HealthStatus, BeforeValidator(_token)]
    issues: list[str] = Field(default_factory=list)
    suggestions: list[str] = Field(default_factory=list)

    @field_validator("issues", "suggestions", mode="before")
    @classmethod
    def _texts(cls, value: object) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ValueError("must be a list of strings")
        items = [clean_text(v, MAX_ITEM_CHARS) for v in value if isinstance(v, str | int | float)]
        return [item for item in items if item][:MAX_LIST_ITEMS]


# --- JSON schemas for the API's structured-output format -----------------------------------

PUBLISHER_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {
        "action": {"type": "string", "enum": ["continue", "slow_down", "speed_up"]},
        "fictional_interval": {"type": "number"},
        "nonfictional_interval": {"type": "number"},
        "reasoning": {"type": "string"},
    },
    "required": ["action", "fictional_interval", "nonfictional_interval", "reasoning"],
    "additionalProperties": False,
}
CONSUMER_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {
        "action": {"type": "string", "enum": ["process", "batch", "flag"]},
        "reasoning": {"type": "string"},
    },
    "required": ["action", "reasoning"],
    "additionalProperties": False,
}
MONITOR_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["healthy", "warning", "critical"]},
        "issues": {"type": "array", "items": {"type": "string"}},
        "suggestions": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["status", "issues", "suggestions"],
    "additionalProperties": False,
}


# --- tolerant extraction -------------------------------------------------------------------

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def extract_json_object(text: object) -> dict[str, Any] | None:
    """The first JSON object in `text`: bare, inside a code fence, or wrapped in prose."""
    if not isinstance(text, str):
        return None
    text = text[:MAX_REPLY_CHARS]
    candidates = [text.strip(), *(m.strip() for m in _FENCE.findall(text))]
    for candidate in candidates:
        found = _loads_object(candidate)
        if found is not None:
            return found
    decoder = json.JSONDecoder(strict=False)  # models put raw newlines in strings
    start, attempts = text.find("{"), 0
    while start != -1 and attempts < MAX_JSON_ATTEMPTS:
        attempts += 1
        try:
            value, _ = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            value = None
        if isinstance(value, dict):
            return value
        start = text.find("{", start + 1)
    return None


def _loads_object(candidate: str) -> dict[str, Any] | None:
    try:
        value = json.loads(candidate, strict=False)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


# --- replies -> decisions ------------------------------------------------------------------


def clamp_interval(value: float | None, current: float, low: float, high: float) -> float:
    """`value` within [low, high]; the (clamped) current interval when missing or not finite."""
    chosen = value if value is not None and math.isfinite(value) else current
    if not math.isfinite(chosen):
        chosen = low
    return min(max(chosen, low), high)


def default_publisher(
    current: tuple[float, float], bounds: tuple[float, float], reason: str
) -> PublisherDecision:
    low, high = bounds
    return PublisherDecision(
        action="continue",
        fictional_interval=clamp_interval(None, current[0], low, high),
        nonfictional_interval=clamp_interval(None, current[1], low, high),
        reasoning=f"default decision ({reason})",
        fallback=reason,
    )


def default_consumer(reason: str) -> ConsumerDecision:
    return ConsumerDecision(
        action="process", reasoning=f"default decision ({reason})", fallback=reason
    )


def default_monitor(errors: int, reason: str) -> MonitorAnalysis:
    # Without the model, still say what the numbers plainly show rather than "healthy".
    if errors > 0:
        return MonitorAnalysis(
            status="warning", issues=[f"{errors} errors in the window"], fallback=reason
        )
    return MonitorAnalysis(status="healthy", fallback=reason)


def parse_publisher(
    text: object, current: tuple[float, float], bounds: tuple[float, float]
) -> PublisherDecision:
    try:
        reply = PublisherReply.model_validate(extract_json_object(text))
    except ValidationError:
        return default_publisher(current, bounds, INVALID_REPLY)
    low, high = bounds
    return PublisherDecision(
        action=reply.action,
        fictional_interval=clamp_interval(reply.fictional_interval, current[0], low, high),
        nonfictional_interval=clamp_interval(reply.nonfictional_interval, current[1], low, high),
        reasoning=reply.reasoning,
    )


def parse_consumer(text: object) -> ConsumerDecision:
    try:
        reply = ConsumerReply.model_validate(extract_json_object(text))
    except ValidationError:
        return default_consumer(INVALID_REPLY)
    return ConsumerDecision(action=reply.action, reasoning=reply.reasoning)


def parse_monitor(text: object, errors: int = 0) -> MonitorAnalysis:
    try:
        reply = MonitorReply.model_validate(extract_json_object(text))
    except ValidationError:
        return default_monitor(errors, INVALID_REPLY)
    return MonitorAnalysis(status=reply.status, issues=reply.issues, suggestions=reply.suggestions)
