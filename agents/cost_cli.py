"""`agents cost plan` (what the configuration allows) and `agents cost report` (what was spent).

The plan prices every agent as if it ran live, whatever mode it would resolve to. Per agent and
per window the bound is the smallest of three independent limits: the spend cap, the rate limiter
(calls that fit in the window x the worst case of one call) and, per hour, the token budget
priced at the dearer of the two token prices. The fleet's bound is its own caps
(FLEET_MAX_COST_PER_10MIN_USD, FLEET_MAX_COST_PER_HOUR_USD), enforced in the ledger every agent
shares, so it holds for any number of agents on any number of hosts; for the five agents of
`agents run` it is also at most the sum of their own bounds.

The report reads the ledger (spend per agent and for the fleet in the current windows, against
the caps) and the metrics (tokens, calls and cost over 24 hours).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agents.core.ai import prompts, schemas
from agents.core.ai.engine import input_tokens_upper
from agents.core.ai.guard import HOUR, TEN_MINUTES, GuardLimits
from agents.core.ai.ledger import open_ledger
from agents.core.ai.prices import lookup, price_for
from agents.core.settings import (
    BrokerSettings,
    CommonSettings,
    ConsumerSettings,
    MonitorSettings,
    PublisherSettings,
    load_settings,
)
from agents.ports import Entry, LedgerUnavailable

FLEET: tuple[tuple[str, str], ...] = (
    ("publisher-1", "publisher"),
    ("publisher-2", "publisher"),
    ("consumer-1", "consumer"),
    ("consumer-2", "consumer"),
    ("monitor-1", "monitor"),
)

SCHEMAS: dict[str, Mapping[str, object]] = {
    "publisher": schemas.PUBLISHER_SCHEMA,
    "consumer": schemas.CONSUMER_SCHEMA,
    "monitor": schemas.MONITOR_SCHEMA,
}

# Typical reply sizes in tokens (a short JSON object), for the expected-spend estimate.
TYPICAL_OUTPUT_TOKENS = {"publisher": 45, "consumer": 30, "monitor": 60}
BIG = prompts.MAX_COUNT


def longest_prompt(agent_type: str) -> str:
    """The longest prompt an agent can send: every number at its maximum width."""
    if agent_type == "publisher":
        return prompts.publisher_prompt(BIG, BIG, 86_399.999, 86_399.999)
    if agent_type == "consumer":
        return prompts.consumer_prompt("non-fictional", prompts.PRIORITY_RANGE[1], BIG)
    return prompts.monitor_prompt(BIG, {"fictional": BIG, "non-fictional": BIG}, BIG)


def typical_prompt(agent_type: str) -> str:
    if agent_type == "publisher":
        return prompts.publisher_prompt(25, 18, 5.0, 10.0)
    if agent_type == "consumer":
        return prompts.consumer_prompt("fictional", 3, 25)
    return prompts.monitor_prompt(150, {"fictional": 25, "non-fictional": 18}, 0)


def calls_in(window: float, interval: float) -> float:
    """Most calls the rate limiter admits in any window of `window` seconds."""
    return math.inf if interval <= 0 else math.floor(window / interval) + 1


def typical_calls_per_hour(settings: CommonSettings, publisher: PublisherSettings) -> float:
    cap = 3600.0 / settings.ai_min_interval_seconds
    if isinstance(settings, ConsumerSettings):
        # Two publishers' messages shared by two consumers; only AI_DECISION_RATE of them ask.
        per_publisher = (
            1 / publisher.fictional_interval_seconds + 1 / publisher.nonfictional_interval_seconds
        )
        per_consumer = 2 * per_publisher / 2
        return min(cap, per_consumer * settings.ai_decision_rate * 3600.0)
    return cap


def agent_plan(settings: CommonSettings, publisher: PublisherSettings) -> dict[str, Any]:
    limits = GuardLimits.from_settings(settings)
    price = price_for(settings.claude_model)
    schema = SCHEMAS[settings.agent_type]
    worst_input = input_tokens_upper(longest_prompt(settings.agent_type), schema)
    worst_call = price.cost(worst_input, limits.max_tokens)
    by_tokens = limits.max_tokens_per_hour * price.dearest_per_token

    def bound(window: float, cap: float) -> float:
        return min(cap, calls_in(window, limits.min_interval_s) * worst_call, by_tokens)

    typical_input = (
        len(typical_prompt(settings.agent_type).encode()) // 4 + len(json.dumps(schema)) // 4
    )
    typical_call = price.cost(typical_input, TYPICAL_OUTPUT_TOKENS[settings.agent_type])
    typical_hour = min(
        bound(HOUR, limits.max_usd_per_hour),
        typical_call * typical_calls_per_hour(settings, publisher),
    )
    return {
        "agent_type": settings.agent_type,
        "model": settings.claude_model,
        "model_price_known": lookup(settings.claude_model) is not None,
        "usd_per_mtok_input": price.input_per_mtok,
        "usd_per_mtok_output": price.output_per_mtok,
        "min_interval_s": limits.min_interval_s,
        "max_tokens": limits.max_tokens,
        "max_tokens_per_hour": limits.max_tokens_per_hour,
        "max_cost_per_10min_usd": limits.max_usd_per_10min,
        "max_cost_per_hour_usd": limits.max_usd_per_hour,
        "worst_case_call_usd": worst_call,
        "max_calls_per_10min": calls_in(TEN_MINUTES, limits.min_interval_s),
        "max_calls_per_hour": calls_in(HOUR, limits.min_interval_s),
        "usd_per_10min": bound(TEN_MINUTES, limits.max_usd_per_10min),
        "usd_per_hour": bound(HOUR, limits.max_usd_per_hour),
        "typical_calls_per_hour": typical_calls_per_hour(settings, publisher),
        "typical_usd_per_hour": typical_hour,
        # A call whose worst case exceeds a cap is always refused: worth knowing up front.
        "always_refused": worst_call > min(limits.max_usd_per_10min, limits.max_usd_per_hour),
    }


def plan(env_overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    overrides = dict(env_overrides or {})
    publisher = load_settings(PublisherSettings, **overrides)
    by_type: dict[str, CommonSettings] = {
        "publisher": publisher,
        "consumer": load_settings(ConsumerSettings, **overrides),
        "monitor": load_settings(MonitorSettings, **overrides),
    }
    agents = {name: agent_plan(by_type[kind], publisher) for name, kind in FLEET}
    typical_hour = sum(a["typical_usd_per_hour"] for a in agents.values())
    five_10min = sum(a["usd_per_10min"] for a in agents.values())
    five_hour = sum(a["usd_per_hour"] for a in agents.values())
    return {
        "agents": agents,
        "fleet": {
            # Whatever the number of agents: the fleet caps, checked in the shared ledger.
            "max_cost_per_10min_usd": publisher.fleet_max_cost_per_10min_usd,
            "max_cost_per_hour_usd": publisher.fleet_max_cost_per_hour_usd,
            # These five agents: also bounded by the sum of their own bounds.
            "usd_per_10min": min(publisher.fleet_max_cost_per_10min_usd, five_10min),
            "usd_per_hour": min(publisher.fleet_max_cost_per_hour_usd, five_hour),
            "sum_of_agent_bounds_per_10min": five_10min,
            "sum_of_agent_bounds_per_hour": five_hour,
            "typical_usd_per_10min": typical_hour / 6,
            "typical_usd_per_hour": typical_hour,
            "typical_usd_per_24h": typical_hour * 24,
        },
    }


def _usd(value: float) -> str:
    return f"${value:.4f}" if value >= 0.001 or value == 0 else f"${value:.6f}"


def render_plan(data: Mapping[str, Any]) -> str:
    header = (
        f"{'agent':<12} {'model':<20} {'calls/10min':>11} {'worst call':>11} "
        f"{'max/10min':>10} {'max/hour':>10} {'typical/h':>10}"
    )
    lines = ["Worst case if every agent ran live (whatever the resolved mode):", header]
    for name, a in data["agents"].items():
        lines.append(
            f"{name:<12} {a['model']:<20} {a['max_calls_per_10min']:>11} "
            f"{_usd(a['worst_case_call_usd']):>11} {_usd(a['usd_per_10min']):>10} "
            f"{_usd(a['usd_per_hour']):>10} {_usd(a['typical_usd_per_hour']):>10}"
        )
        if a["always_refused"]:
            lines.append(f"{'':<12} ! one call's worst case exceeds a cap: every call is refused")
        if not a["model_price_known"]:
            lines.append(f"{'':<12} ! unknown model: priced at the conservative default")
    fleet = data["fleet"]
    lines.append(
        f"{'fleet':<12} {'':<20} {'':>11} {'':>11} {_usd(fleet['usd_per_10min']):>10} "
        f"{_usd(fleet['usd_per_hour']):>10} {_usd(fleet['typical_usd_per_hour']):>10}"
    )
    lines.append(
        f"Provable bound for any number of agents sharing the ledger (fleet caps): at most "
        f"{_usd(fleet['max_cost_per_10min_usd'])} in any 10 minutes and "
        f"{_usd(fleet['max_cost_per_hour_usd'])} in any hour."
    )
    lines.append(
        f"These five agents: at most {_usd(fleet['usd_per_10min'])} in any 10 minutes and "
        f"{_usd(fleet['usd_per_hour'])} in any hour. Typical: about "
        f"{_usd(fleet['typical_usd_per_10min'])} per 10 minutes, "
        f"{_usd(fleet['typical_usd_per_24h'])} per 24 h."
    )
    return "\n".join(lines)


REPORT_FIELDS = (
    "tokens_used",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "ai_call_count",
    "ai_decision_count",
    "ai_fallback_count",
)


def report(reader: Any, now: datetime | None = None) -> dict[str, Any]:
    """Tokens, calls and cost per agent over the last 24 h, and the 24 h projection of the
    last hour's rate."""
    now = now or datetime.now(UTC)
    day, hour = now - timedelta(hours=24), now - timedelta(hours=1)
    per_field = {
        field: reader.sum_field("ai_decision", field, day, group_by="agent_id")
        for field in REPORT_FIELDS
    }
    last_hour = reader.sum_field("ai_decision", "cost_usd", hour, group_by="agent_id")
    names = sorted({name for values in per_field.values() for name in values})
    agents: dict[str, dict[str, float]] = {}
    for name in names:
        row = {field: float(per_field[field].get(name, 0.0)) for field in REPORT_FIELDS}
        row["usd_last_hour"] = float(last_hour.get(name, 0.0))
        row["projected_usd_24h"] = row["usd_last_hour"] * 24
        agents[name] = row
    total = {
        key: sum(row[key] for row in agents.values())
        for key in (*REPORT_FIELDS, "usd_last_hour", "projected_usd_24h")
    }
    return {"window_hours": 24, "agents": agents, "total": total}


def ledger_report(entries: Sequence[Entry], settings: CommonSettings, now: float) -> dict[str, Any]:
    """Spend per agent and for the fleet in the current 10-minute and one-hour windows, from the
    ledger: settled (answered calls), reserved (in flight, or outcome unknown: worst case)."""
    windows = {"10min": TEN_MINUTES, "hour": HOUR}

    def totals(selected: Sequence[Entry]) -> dict[str, float]:
        row: dict[str, float] = {}
        for label, seconds in windows.items():
            inside = [e for e in selected if e.at > now - seconds]
            row[f"calls_{label}"] = float(sum(e.state != "released" for e in inside))
            row[f"settled_usd_{label}"] = sum(e.usd for e in inside if e.state == "settled")
            row[f"reserved_usd_{label}"] = sum(
                e.usd for e in inside if e.state in ("reserved", "kept")
            )
            row[f"usd_{label}"] = row[f"settled_usd_{label}"] + row[f"reserved_usd_{label}"]
        return row

    recent = [e for e in entries if e.at > now - HOUR]
    fleet = totals(recent)
    caps = {
        "10min": settings.fleet_max_cost_per_10min_usd,
        "hour": settings.fleet_max_cost_per_hour_usd,
    }
    for label, cap in caps.items():
        fleet[f"cap_usd_{label}"] = cap
        fleet[f"remaining_usd_{label}"] = max(0.0, cap - fleet[f"usd_{label}"])
    names = sorted({e.agent for e in recent})
    return {
        "agents": {name: totals([e for e in recent if e.agent == name]) for name in names},
        "fleet": fleet,
    }


def render_ledger(data: Mapping[str, Any], where: str) -> str:
    header = (
        f"{'agent':<12} {'calls 10m':>9} {'spent 10m':>10} {'in flight':>10} "
        f"{'calls 1h':>8} {'spent 1h':>10}"
    )
    lines = [f"Spend in the current windows (from the ledger, {where}):", header]
    for name, r in [*data["agents"].items(), ("fleet", data["fleet"])]:
        lines.append(
            f"{name:<12} {int(r['calls_10min']):>9} {_usd(r['usd_10min']):>10} "
            f"{_usd(r['reserved_usd_10min']):>10} {int(r['calls_hour']):>8} "
            f"{_usd(r['usd_hour']):>10}"
        )
    fleet = data["fleet"]
    lines.append(
        f"Fleet remaining: {_usd(fleet['remaining_usd_10min'])} of "
        f"{_usd(fleet['cap_usd_10min'])} per 10 minutes, {_usd(fleet['remaining_usd_hour'])} of "
        f"{_usd(fleet['cap_usd_hour'])} per hour."
    )
    return "\n".join(lines)


def render_report(data: Mapping[str, Any]) -> str:
    header = (
        f"{'agent':<12} {'calls':>6} {'decisions':>9} {'fallbacks':>9} {'tokens':>9} "
        f"{'cost 24h':>10} {'last hour':>10} {'24h proj.':>10}"
    )
    lines = ["AI usage over the last 24 h (from the metrics):", header]
    rows = [*data["agents"].items(), ("total", data["total"])]
    for name, r in rows:
        lines.append(
            f"{name:<12} {int(r['ai_call_count']):>6} {int(r['ai_decision_count']):>9} "
            f"{int(r['ai_fallback_count']):>9} {int(r['tokens_used']):>9} "
            f"{_usd(r['cost_usd']):>10} {_usd(r['usd_last_hour']):>10} "
            f"{_usd(r['projected_usd_24h']):>10}"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    if args.cost_command == "plan":
        data = plan()
        print(json.dumps(data, indent=2, default=_json_default) if args.json else render_plan(data))
        return 0
    from agents.core.metrics.reader import reader_from_settings
    from agents.ports import MetricsReadError

    settings = load_settings(BrokerSettings)
    code = 0
    ledger_data: dict[str, Any] | None = None
    where = _ledger_where(settings)
    try:
        ledger_data = ledger_report(_read_ledger(settings), settings, time.time())
    except LedgerUnavailable as exc:
        print(f"agents cost report: cannot read the ledger ({where}): {exc}", file=sys.stderr)
        code = 1
    metrics_data: dict[str, Any] | None = None
    try:
        metrics_data = report(reader_from_settings(settings))
    except MetricsReadError as exc:
        print(f"agents cost report: cannot read the metrics: {exc}", file=sys.stderr)
        code = 1
    if args.json:
        print(json.dumps({"ledger": ledger_data, "metrics": metrics_data}, indent=2))
    else:
        parts = [render_ledger(ledger_data, where)] if ledger_data is not None else []
        parts += [render_report(metrics_data)] if metrics_data is not None else []
        print("\n\n".join(parts))
    return code


def _ledger_where(settings: CommonSettings) -> str:
    if settings.budget_redis_url is not None:
        return f"redis prefix={settings.budget_redis_prefix}"
    return f"sqlite:{settings.budget_ledger}"


def _read_ledger(settings: CommonSettings) -> list[Entry]:
    if settings.budget_redis_url is None and not Path(settings.budget_ledger).is_file():
        return []  # nothing spent yet on this machine; do not create the file for a report
    ledger = open_ledger(settings).ledger
    try:
        return ledger.entries(time.time() - HOUR - 60)
    finally:
        ledger.close()


def _json_default(value: object) -> object:
    return str(value)
