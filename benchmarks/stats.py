"""Pure statistics and result-shape helpers (no I/O, unit-tested in tests/unit/test_bench_*)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# The top-level keys latest.json must carry (issue 7), each a median with `<key>_spread` beside it.
HEADLINE_KEYS: tuple[str, ...] = (
    "consumer_ratio",
    "consumer_process_ratio",
    "publisher_ratio",
    "peer_ratio",
    "knee_msgs_per_s",
    "knee_p99_ms",
    "max_sustained_rate_msgs_per_s",
    "e2e_latency_p99_ms",
    "cost_10min_usd",
    "agent_rss_mb_max",
    "tests_wall_s",
)
# Per agent type and AI mode ({"consumer": {"dry-run": {"median", "min", "max", "n"}}}), issue 13.
NESTED_KEYS: tuple[str, ...] = ("agent_rss_mb", "startup_s")
CONTEXT_KEYS: tuple[str, ...] = ("machine", "date", "raw")

# Issue 13's targets.
TARGETS: dict[str, tuple[str, float]] = {
    "consumer_ratio": (">=", 1.0),
    "consumer_process_ratio": (">=", 1.0),
    "publisher_ratio": (">=", 0.95),
    "peer_ratio": (">=", 1.2),
    "knee_msgs_per_s": (">=", 6000.0),
    "knee_p99_ms": ("<=", 100.0),
    "cost_10min_usd": ("<=", 0.10),
    "tests_wall_s": ("<=", 180.0),
}
# Per mode: dry-run <= 60 MB, live and replay <= 100 MB.
RSS_TARGETS_MB: dict[str, float] = {"dry-run": 60.0, "replay": 100.0, "live": 100.0}


def median(values: Iterable[float]) -> float:
    data = [float(v) for v in values]
    if not data:
        raise ValueError("median of no values")
    return float(statistics.median(data))


def spread(values: Iterable[float]) -> dict[str, float | int]:
    """Min, max and the range relative to the median (in %), so rounds can be judged at a glance."""
    data = [float(v) for v in values]
    if not data:
        raise ValueError("spread of no values")
    mid = median(data)
    low, high = min(data), max(data)
    rel = (high - low) / abs(mid) * 100.0 if mid else 0.0
    return {"min": low, "max": high, "range_pct": round(rel, 2), "n": len(data)}


def ratios(agent: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """Round-by-round ratios: round i of the agent against round i of the baseline.

    Pairing rounds (rather than dividing medians) cancels the slow drift of a shared machine:
    both sides of one ratio ran back to back.
    """
    if len(agent) != len(baseline) or not agent:
        raise ValueError("agent and baseline need the same, non-zero number of rounds")
    if any(b <= 0 for b in baseline):
        raise ValueError("a baseline rate must be positive")
    return [a / b for a, b in zip(agent, baseline, strict=True)]


def headline(values: Sequence[float]) -> tuple[float, dict[str, float | int]]:
    return median(values), spread(values)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (what Locust reports), pct in (0, 100]."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 < pct <= 100:
        raise ValueError("pct must be in (0, 100]")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return float(ordered[rank - 1])


def slope_per_s(samples: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (t, value) samples: how fast a queue grows, in messages/s."""
    if len(samples) < 2:
        return 0.0
    ts = [t for t, _ in samples]
    vs = [v for _, v in samples]
    mt, mv = statistics.fmean(ts), statistics.fmean(vs)
    den = sum((t - mt) ** 2 for t in ts)
    if den == 0:
        return 0.0
    return sum((t - mt) * (v - mv) for t, v in samples) / den


def is_bounded(
    samples: Sequence[tuple[float, float]], rate: float, *, bound_seconds: float = 1.0
) -> bool:
    """Queue depth stayed bounded: over the second half of the window it neither grew by more
    than 2 % of the offered rate per second nor ended above `bound_seconds` of traffic."""
    if not samples:
        return False
    half = samples[len(samples) // 2 :]
    ceiling = max(50.0, rate * bound_seconds)
    return slope_per_s(half) <= 0.02 * rate and half[-1][1] <= ceiling


def missing_keys(results: Mapping[str, Any]) -> list[str]:
    """Keys latest.json must carry but does not (each headline key needs its `_spread`)."""
    needed = [
        *HEADLINE_KEYS,
        *(f"{k}_spread" for k in HEADLINE_KEYS),
        *NESTED_KEYS,
        *CONTEXT_KEYS,
    ]
    return [k for k in needed if k not in results]


def by_type_and_mode(
    measurements: Iterable[Mapping[str, Any]], field: str
) -> dict[str, dict[str, dict[str, float | int]]]:
    """{type: {mode: {median, min, max, range_pct, n}}} of `field` over rounds."""
    grouped: dict[str, dict[str, list[float]]] = {}
    for m in measurements:
        grouped.setdefault(str(m["type"]), {}).setdefault(str(m["mode"]), []).append(
            float(m[field])
        )
    return {
        kind: {mode: {"median": median(v), **spread(v)} for mode, v in modes.items()}
        for kind, modes in grouped.items()
    }


def target_status(key: str, value: float | None) -> str:
    """'met', 'missed' or '' (no target) for the summary table."""
    if key not in TARGETS or value is None:
        return ""
    op, bound = TARGETS[key]
    ok = value >= bound if op == ">=" else value <= bound
    return "met" if ok else "missed"
