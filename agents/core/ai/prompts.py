"""The specification's prompts, word for word, filled with live numbers that are validated first.

Only validated values reach a prompt: queue names from the allowed set, integers and finite
numbers. A crafted message therefore cannot smuggle instructions in through its genre or priority:
an unknown genre or a non-integer priority raises `PromptInputError` before any prompt is built.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Final

from agents.vocab import QUEUES

PUBLISHER_TEMPLATE: Final = (
    "You are a publisher agent. Current queue depths: fictional={X}, non-fictional={Y}.\n"
    "Should I adjust my publishing rate? Current: fictional={F}s, non-fictional={N}s.\n"
    'Respond ONLY with JSON: {{"action": "continue|slow_down|speed_up", '
    '"fictional_interval": X, "nonfictional_interval": Y, "reasoning": "brief explanation"}}'
)

CONSUMER_TEMPLATE: Final = (
    "Message received: genre={genre}, priority={priority}, queue_depth={depth}.\n"
    "Should I: a) process_immediately, b) batch, c) flag_anomaly?\n"
    'Respond ONLY with JSON: {{"action": "process|batch|flag", "reasoning": "brief"}}'
)

MONITOR_TEMPLATE: Final = (
    "System metrics: messages_published={X}, queue_depths={Y}, errors={Z}.\n"
    "Detect issues? Status: healthy|warning|critical?\n"
    'Respond ONLY with JSON: {{"status": "healthy|warning|critical", "issues": [], '
    '"suggestions": []}}'
)

MAX_COUNT = 10**12  # far above anything real; keeps every number a short token run
PRIORITY_RANGE = (0, 255)  # the AMQP priority octet


class PromptInputError(ValueError):
    """A value meant for a prompt failed validation; `str()` names the field, never echoes it."""


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PromptInputError(f"{name} must be an integer")
    if not 0 <= value <= MAX_COUNT:
        raise PromptInputError(f"{name} out of range [0, {MAX_COUNT}]")
    return value


def _seconds(name: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PromptInputError(f"{name} must be a finite number")
    if not 0 < value <= 86_400:
        raise PromptInputError(f"{name} out of range (0, 86400]")
    return f"{float(value):g}"


def publisher_prompt(
    fictional_depth: int,
    nonfictional_depth: int,
    fictional_interval: float,
    nonfictional_interval: float,
) -> str:
    return PUBLISHER_TEMPLATE.format(
        X=_count("fictional_depth", fictional_depth),
        Y=_count("nonfictional_depth", nonfictional_depth),
        F=_seconds("fictional_interval", fictional_interval),
        N=_seconds("nonfictional_interval", nonfictional_interval),
    )


def consumer_prompt(genre: str, priority: int, queue_depth: int) -> str:
    if not isinstance(genre, str) or genre not in QUEUES:
        raise PromptInputError(f"genre must be one of {', '.join(QUEUES)}")
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise PromptInputError("priority must be an integer")
    low, high = PRIORITY_RANGE
    if not low <= priority <= high:
        raise PromptInputError(f"priority out of range [{low}, {high}]")
    return CONSUMER_TEMPLATE.format(
        genre=genre, priority=priority, depth=_count("queue_depth", queue_depth)
    )


def monitor_prompt(messages_published: int, queue_depths: Mapping[str, int], errors: int) -> str:
    if not isinstance(queue_depths, Mapping):
        raise PromptInputError("queue_depths must be a mapping")
    unknown = [k for k in queue_depths if k not in QUEUES]
    if unknown:
        raise PromptInputError(f"queue_depths keys must be among {', '.join(QUEUES)}")
    depths = {q: _count(f"queue_depths[{q}]", queue_depths[q]) for q in QUEUES if q in queue_depths}
    return MONITOR_TEMPLATE.format(
        X=_count("messages_published", messages_published),
        Y=json.dumps(depths),
        Z=_count("errors", errors),
    )


_GENRE = re.compile(r"genre=[a-z-]+")
_DEPTHS = re.compile(r"queue_depths=\{[^}]*\}")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?")


def template_of(prompt: str) -> str:
    """The prompt with its live values blanked: what replay matches on."""
    blanked = _DEPTHS.sub("queue_depths=<depths>", _GENRE.sub("genre=<genre>", prompt))
    return _NUMBER.sub("#", blanked)


def numbers_of(prompt: str) -> list[float]:
    """The live numbers in a prompt, in order: replay picks the recording nearest to them."""
    return [float(n) for n in _NUMBER.findall(prompt)]


def genre_of(prompt: str) -> str | None:
    match = _GENRE.search(prompt)
    return match.group(0).removeprefix("genre=") if match else None
