"""The InfluxDB contract: every measurement, tag and field the agents write, in one place.

Agents write only through `Measurement.point(...)`, which rejects unknown tags or fields and
wrong field types, so a typo cannot create a series no dashboard reads. The dashboards and the
report build their queries from the same objects. Tags stay low-cardinality: never a message id.

Two kinds of measurement:
- *event* measurements (AI decisions, anomalies, errors, health, queue depths): one point per
  event, written as it happens;
- *aggregated* measurements (`publish`, `consume`): per-message facts are folded by an
  `Aggregator` (aggregate.py) into one point per flush interval (default 1 s) and tag set,
  holding counters (counts in the interval) and duration summaries
  (`<name>_count/_sum/_max/_p50/_p99`). One point per message does not scale to thousands of
  messages per second.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agents.ports import MetricPoint

FieldType = type[int] | type[float] | type[str] | type[bool]

COMMON_TAGS = frozenset({"agent_id", "agent_type"})

# The fields one duration summary writes, as suffixes of its name (processing_duration_ms_p99).
SUMMARY_STATS: dict[str, FieldType] = {
    "count": int,
    "sum": float,
    "max": float,
    "p50": float,
    "p99": float,
}


@dataclass(frozen=True)
class Measurement:
    name: str
    tags: frozenset[str]
    fields: Mapping[str, FieldType]
    description: str = ""
    # Aggregated measurements only: what an agent reports per message.
    counters: frozenset[str] = frozenset()
    summaries: frozenset[str] = frozenset()
    # Per-message names used before aggregation, still accepted by `Metrics.write`.
    aliases: Mapping[str, str] = field(default_factory=dict)

    @property
    def aggregated(self) -> bool:
        return bool(self.counters or self.summaries)

    def summary_fields(self, name: str) -> dict[str, str]:
        """{stat: written field name} of one duration summary: {"p99": "x_ms_p99", ...}."""
        if name not in self.summaries:
            raise ValueError(f"{self.name}: {name!r} is not a duration summary")
        return {stat: f"{name}_{stat}" for stat in SUMMARY_STATS}

    def check_tags(self, tags: Mapping[str, str]) -> None:
        unknown_tags = set(tags) - self.tags
        missing_tags = COMMON_TAGS - set(tags)
        if unknown_tags or missing_tags:
            raise ValueError(
                f"{self.name}: unknown tags {sorted(unknown_tags)}, "
                f"missing tags {sorted(missing_tags)}"
            )

    def point(
        self,
        tags: Mapping[str, str],
        fields: Mapping[str, Any],
        time_ns: int | None = None,
    ) -> MetricPoint:
        unknown_tags = set(tags) - self.tags
        missing_tags = COMMON_TAGS - set(tags)
        unknown_fields = set(fields) - set(self.fields)
        if unknown_tags or missing_tags or unknown_fields or not fields:
            raise ValueError(
                f"{self.name}: unknown tags {sorted(unknown_tags)}, missing tags "
                f"{sorted(missing_tags)}, unknown fields {sorted(unknown_fields)}"
            )
        coerced: dict[str, int | float | str | bool] = {}
        for key, value in fields.items():
            kind = self.fields[key]
            if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
                value = float(value)
                if not math.isfinite(value):
                    raise ValueError(f"{self.name}.{key}: not a finite number")
            elif kind is int and isinstance(value, bool):
                value = int(value)
            elif kind is str and isinstance(value, str):
                # One point per line in the file sink and in the write body: no raw newlines.
                value = " ".join(value.splitlines())[:4096]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise TypeError(f"{self.name}.{key}: expected {kind.__name__}, got {value!r}")
            coerced[key] = value
        return MetricPoint(
            measurement=self.name,
            tags={k: tag_value(v) for k, v in tags.items() if str(v) != ""},
            fields=coerced,
            time_ns=time_ns if time_ns is not None else time.time_ns(),
        )


def tag_value(value: object) -> str:
    # Line protocol has no escape for control characters in tags; they would split the line.
    text = str(value)
    if text.isprintable():  # the hot path: agent ids, queues and actions always are
        return text[:256]
    return "".join(ch if ch.isprintable() else "_" for ch in text)[:256]


def _m(name: str, extra_tags: set[str], fields: Mapping[str, FieldType], doc: str) -> Measurement:
    return Measurement(name, COMMON_TAGS | frozenset(extra_tags), dict(fields), doc)


def _aggregated(
    name: str,
    extra_tags: set[str],
    counters: set[str],
    summaries: set[str],
    doc: str,
    aliases: Mapping[str, str] | None = None,
) -> Measurement:
    fields: dict[str, FieldType] = {counter: int for counter in counters}
    for summary in summaries:
        fields.update({f"{summary}_{stat}": kind for stat, kind in SUMMARY_STATS.items()})
    return Measurement(
        name,
        COMMON_TAGS | frozenset(extra_tags),
        fields,
        doc,
        frozenset(counters),
        frozenset(summaries),
        dict(aliases or {}),
    )


PUBLISH = _aggregated(
    "publish",
    {"queue"},
    {"messages_published"},
    {"publish_duration_ms"},
    "Per flush interval and queue: confirmed publishes (a count) and the publisher-confirm "
    "round trip (publish_duration_ms_count/_sum/_max/_p50/_p99).",
)
CONSUME = _aggregated(
    "consume",
    {"queue", "action"},
    {"messages_consumed", "ai_decisions_used"},
    {"processing_duration_ms"},
    "Per flush interval, queue and action: messages handled (processed, batched-then-processed "
    "or flagged), how many of them on an AI decision, and the processing time summary.",
    # Named per message before aggregation (a bool); now a count, under a new name so InfluxDB
    # never sees one field change type.
    aliases={"ai_decision_used": "ai_decisions_used"},
)
AI_DECISION = _m(
    "ai_decision",
    {"mode", "action", "fallback", "model"},
    {
        "ai_decision_count": int,
        "ai_fallback_count": int,
        "ai_call_count": int,  # 1 when a request reached the client (live, replay, dry-run)
        "ai_reasoning_text": str,
        "tokens_used": int,
        "input_tokens": int,
        "output_tokens": int,
        "cost_usd": float,
        "decision_latency_ms": float,
        "queue_depth_fictional": int,
        "queue_depth_non_fictional": int,
        "fictional_interval_s": float,
        "nonfictional_interval_s": float,
    },
    "One point per AI decision (live, replayed, dry-run or fallback), with tokens and cost.",
)
QUEUE_DEPTH = _m(
    "queue_depth",
    {"queue"},
    {"queue_depth": int, "queue_depth_at_decision": int, "consumers": int},
    "Queue depths: sampled by the monitor (queue_depth) and read by publishers when deciding.",
)
ERRORS = _m(
    "errors",
    {"kind"},
    {"error_count": int},
    "One point per error an agent handled (dead-lettered message, publish failure, ...).",
)
ANOMALY = _m(
    "anomaly",
    {"queue"},
    {"anomaly_count": int},
    "One point per message a consumer flagged as an anomaly.",
)
HEALTH = _m(
    "health",
    {"status"},
    {"status_code": int, "issues_count": int, "issues": str, "suggestions": str},
    "The monitor's health analyses: status_code 0 healthy, 1 warning, 2 critical.",
)

# --- The spend ledger's view (issue 14) ---------------------------------------------------------
BUDGET = _m(
    "ai_budget",
    {"scope", "window"},
    {
        "reserved_usd": float,  # worst cases of calls in flight or of unknown outcome
        "settled_usd": float,  # actual usage of answered calls
        "remaining_usd": float,  # the cap minus both
        "cap_usd": float,
        "used_ratio": float,
    },
    "Spend-cap gauges per window, for the agent (scope=agent) and the whole fleet "
    "(scope=fleet), as the shared ledger saw them at each reservation.",
)
BUDGET_THRESHOLD = _m(
    "ai_budget_threshold",
    {"scope", "window", "threshold"},
    {"budget_threshold_count": int, "used_ratio": float, "cap_usd": float},
    "One point each time the fleet's spend in a window crosses 50, 80 or 100 % of its cap.",
)
# ---------------------------------------------------------------------------------------------

SCHEMA: dict[str, Measurement] = {
    m.name: m
    for m in (
        PUBLISH,
        CONSUME,
        AI_DECISION,
        QUEUE_DEPTH,
        ERRORS,
        ANOMALY,
        HEALTH,
        BUDGET,
        BUDGET_THRESHOLD,
    )
}
