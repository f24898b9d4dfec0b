"""Cassettes: recorded Claude answers, one YAML file per agent type, in vcrpy's format.

Matching is method + path + a normalised body (model, max_tokens and the prompt *template*, the
prompt with its live numbers blanked), so a recording answers any later prompt of the same shape.
Among the recordings that match, replay plays the one whose numbers are nearest the live ones,
which keeps a replayed fleet's decisions plausible (a long backlog gets the "slow_down" answer).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.core.ai.prompts import genre_of, numbers_of, template_of
from agents.data import data_path

# Credentials never reach a cassette; volatile headers would only make diffs noisy.
SCRUBBED_REQUEST_HEADERS = ("authorization", "x-api-key", "anthropic-api-key", "cookie")
KEPT_RESPONSE_HEADERS = ("content-type",)

# Anything shaped like a credential: Anthropic keys, bearer tokens, long opaque secrets.
KEY_PATTERNS = (
    re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)bearer\s+[A-Za-z0-9._\-]{12,}"),
    re.compile(
        r"(?i)(?:x-api-key|authorization)['\"]?\s*[:=]\s*['\"]?\[?['\"]?[A-Za-z0-9._\-]{12,}"
    ),
)


def packaged_cassettes_dir() -> Path:
    """The cassettes shipped inside the package (`cassettes/` in a checkout links here)."""
    return data_path("cassettes")


def resolve_cassettes_dir(configured: Path, cwd: Path | None = None) -> Path:
    """CASSETTES_DIR as given when absolute; else relative to the working directory (the image's
    /app), falling back to the package's data directory, so the default `cassettes` finds the
    shipped cassettes from any directory, in a checkout and in an installed wheel alike."""
    if configured.is_absolute():
        return configured
    here = (cwd or Path.cwd()) / configured
    if here.is_dir():
        return here
    beside = data_path() / configured
    return beside if beside.is_dir() else here


def cassette_path(directory: Path, agent_type: str) -> Path:
    return directory / f"{agent_type}.yaml"


def _body(request: Any) -> dict[str, Any]:
    raw = request.body
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def prompt_of(body: dict[str, Any]) -> str:
    """The user prompt text of a Messages API request body."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return ""
    content = messages[-1].get("content") if isinstance(messages[-1], dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(block.get("text", "") for block in content if isinstance(block, dict))
    return ""


def normalised_body(request: Any) -> dict[str, Any]:
    body = _body(request)
    return {
        "model": body.get("model"),
        "max_tokens": body.get("max_tokens"),
        "template": template_of(prompt_of(body)),
    }


def body_template(r1: Any, r2: Any) -> None:
    """vcrpy matcher: equal model, max_tokens and prompt template."""
    a, b = normalised_body(r1), normalised_body(r2)
    if a != b:
        raise AssertionError(f"{a} != {b}")


MATCH_ON: tuple[str | Any, ...] = ("method", "path", body_template)


def distance(live_prompt: str, recorded_prompt: str) -> float:
    """How far apart two prompts of the same template are: log-scaled number gaps."""
    live, recorded = numbers_of(live_prompt), numbers_of(recorded_prompt)
    gap = sum(
        abs(math.log1p(abs(a)) - math.log1p(abs(b))) for a, b in zip(live, recorded, strict=False)
    )
    gap += 10.0 * abs(len(live) - len(recorded))
    if genre_of(live_prompt) != genre_of(recorded_prompt):
        gap += 1.0
    return gap


def nearest(live_prompt: str, recorded_prompts: Sequence[str]) -> int:
    """Index of the recorded prompt nearest the live one (the first on ties)."""
    scores = [distance(live_prompt, p) for p in recorded_prompts]
    return scores.index(min(scores))


def scan_for_keys(text: str) -> list[str]:
    """Every substring of `text` shaped like a credential."""
    return [m.group(0) for pattern in KEY_PATTERNS for m in pattern.finditer(text)]
