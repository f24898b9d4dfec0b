"""The cost guard for tests: limits that are open except for what a test names (so a refusal can
only come from a limit the test chose), and the replay check that the hammer (tests/faults) and
the ledger's state machine trust: the recorded ledger alone shows whether any cap was exceeded."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from typing import Any

from agents.core.ai.guard import GuardLimits
from agents.core.ai.ledger import max_window_sum
from agents.ports import Entry

_OPEN = GuardLimits(
    min_interval_s=0.0,
    max_tokens=300,
    max_tokens_per_hour=10**9,  # a budget no test spends
    max_usd_per_10min=math.inf,  # an infinite cap is not checked at all
    max_usd_per_hour=math.inf,
)


def guard_limits(**named: Any) -> GuardLimits:
    """No rate limit, 300 tokens a call, no budget and no cap but those `named` (GuardLimits
    field names; the windows too, where a test compresses time)."""
    return dataclasses.replace(_OPEN, **named)


def worst_windows(entries: Sequence[Entry], lim: GuardLimits) -> dict[str, float]:
    """The worst window of every cap, and each agent's shortest gap between two admissions,
    from the recorded ledger alone: what the guards admitted, whatever they believed."""
    worst = {
        "fleet_10min": max_window_sum([(e.at, e.usd) for e in entries], lim.short_window_s),
        "fleet_hour": max_window_sum([(e.at, e.usd) for e in entries], lim.long_window_s),
        "agent_10min": 0.0,
        "agent_hour": 0.0,
        "agent_tokens_hour": 0.0,
        "min_gap_s": math.inf,
    }
    for name in {e.agent for e in entries}:
        mine = [e for e in entries if e.agent == name]
        usd = [(e.at, e.usd) for e in mine]
        worst["agent_10min"] = max(worst["agent_10min"], max_window_sum(usd, lim.short_window_s))
        worst["agent_hour"] = max(worst["agent_hour"], max_window_sum(usd, lim.long_window_s))
        tokens = max_window_sum([(e.at, float(e.tokens)) for e in mine], lim.long_window_s)
        worst["agent_tokens_hour"] = max(worst["agent_tokens_hour"], tokens)
        times = sorted(e.at for e in mine)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        worst["min_gap_s"] = min([worst["min_gap_s"], *gaps])
    return worst


def assert_within_caps(worst: dict[str, float], lim: GuardLimits) -> None:
    eps = 1e-9
    assert worst["fleet_10min"] <= lim.fleet_max_usd_per_10min + eps, worst
    assert worst["fleet_hour"] <= lim.fleet_max_usd_per_hour + eps, worst
    assert worst["agent_10min"] <= lim.max_usd_per_10min + eps, worst
    assert worst["agent_hour"] <= lim.max_usd_per_hour + eps, worst
    assert worst["agent_tokens_hour"] <= lim.max_tokens_per_hour, worst
    assert worst["min_gap_s"] + 1e-6 >= lim.min_interval_s, worst


def check_replay(entries: Sequence[Entry], lim: GuardLimits) -> dict[str, float]:
    """No sliding window of the recorded ledger exceeds a cap, per agent or for the fleet, and
    each agent's admissions are at least its interval apart; the worst windows, for a report."""
    worst = worst_windows(entries, lim)
    assert_within_caps(worst, lim)
    return worst
