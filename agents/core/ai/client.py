"""One decision client, three modes: live (the API), replay (cassettes), dry-run (no network).

This module holds what every mode shares (requests, replies, errors, the dry-run client and the
cassette helpers) and imports no HTTP stack: the `anthropic` SDK costs ~80 MB and ~2 s to import,
so it lives in `agents.core.ai.sdk`, which only live and replay load.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agents.core.ai import cassettes as cs
from agents.ports import Mode, ModelReply, ModelRequest

DRY_RUN_REPLIES: dict[str, str] = {
    # The specification's mock response, and the analogous answers for the other agents.
    "publisher": '{"action": "continue", "reasoning": "DRY RUN MODE"}',
    "consumer": '{"action": "process", "reasoning": "DRY RUN MODE"}',
    "monitor": '{"status": "healthy", "issues": [], "suggestions": []}',
}


class DryRunClient:
    """No network, no cost: the specification's mock answers."""

    mode: Mode = "dry-run"

    def __init__(self, model: str) -> None:
        self.model = model

    def complete(self, request: ModelRequest) -> ModelReply:
        return ModelReply(DRY_RUN_REPLIES[request.agent_type], 0, 0, "dry-run", "end_turn")


class ReplayMiss(Exception):
    """No recording matches the request: a loud failure, never a live call."""


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
