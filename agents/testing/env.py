"""One environment cleaner for everything that starts agents in a test, a benchmark or a tool.

A developer's shell may hold a real API key, a production broker or an InfluxDB token; an agent
started under test must see only what the test gives it. Each caller says what it drops, because
they differ on purpose (a replay run keeps the broker variables the `rabbit_env` fixture set, a
benchmark keeps the developer's CLAUDE_MODEL): the cleaner only makes the rule one rule.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

# Every variable family the agents read. A pattern ending in `*` is a prefix, anything else an
# exact name.
AGENT_VARIABLES = (
    "ANTHROPIC_*",
    "INFLUXDB_*",
    "RABBITMQ_*",
    "CLAUDE_*",
    "AI_*",
    "MAX_*",
    "DRY_RUN*",
    "BUDGET_*",
    "FLEET_*",
)

# What picks the AI mode (live, replay, dry-run) and its request: tests choose it themselves.
AI_VARIABLES = ("ANTHROPIC_API_KEY", "DRY_RUN", "CLAUDE_MODEL", "CASSETTES_DIR", "MAX_TOKENS")


def matches(name: str, patterns: Iterable[str]) -> bool:
    """Whether `name` is one of `patterns` (exact names, or prefixes written `PREFIX*`)."""
    return any(
        name.startswith(pattern[:-1]) if pattern.endswith("*") else name == pattern
        for pattern in patterns
    )


def clean_env(
    base: Mapping[str, str] | None = None,
    /,
    *,
    drop: Iterable[str] = AGENT_VARIABLES,
    **overrides: str,
) -> dict[str, str]:
    """`base` (the process environment by default) without the variables `drop` names, then
    `overrides` on top: the environment for a child process."""
    patterns = tuple(drop)
    source = os.environ if base is None else base
    env = {name: value for name, value in source.items() if not matches(name, patterns)}
    env.update(overrides)
    return env
