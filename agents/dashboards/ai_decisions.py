"""Dashboard 2, AI Decisions: what the agents asked Claude, what it answered, at what cost in
tokens and time."""

from __future__ import annotations

from grafana_foundation_sdk.builders import table as table_builders

from agents.core.logs import Level
from agents.core.metrics.schema import AI_DECISION
from agents.dashboards import common as c
from agents.dashboards import logql
from agents.dashboards.flux import query, window

UID = "books-ai-decisions"


def _json_lines(
    level: Level, title: str, description: str, *, max_lines: int, height: int = 10
) -> table_builders.Panel:
    """One level's log lines, newest first, with their JSON parsed so the context shows."""
    expr = logql.selector(logql.eq("level", level), pipeline="| json")
    return c.log_table(title, description, expr, max_lines=max_lines, height=height)


def build() -> c.Dashboard:
    decisions = c.stacked_bars(
        c.timeseries(
            "AI decisions by agent and action",
            "Decisions per minute, stacked by agent and the action it took "
            "(ai_decision.ai_decision_count by agent_id, action). Fallbacks (no model answer) "
            "count too; the fallback panel below shows why they happened.",
            c.DECISIONS,
            c.influx(
                query(
                    AI_DECISION,
                    "ai_decision_count",
                    group_by=["agent_id", "action"],
                    steps=[window("sum")],
                )
            ),
        ),
        "1m",
        80,
    )
    tokens = (
        c.timeseries(
            "Token usage per agent",
            "Tokens (input + output, ai_decision.tokens_used) per minute, stacked by agent.",
            c.TOKENS,
            c.influx(
                query(AI_DECISION, "tokens_used", group_by=["agent_id"], steps=[window("sum")])
            ),
        )
        .interval("1m")
        .fill_opacity(40)
        .stacking(c.STACKED)
    )
    latency = c.timeseries(
        "Decision latency",
        "Mean time from asking for a decision to having one, per agent "
        "(ai_decision.decision_latency_ms): the model round trip, or near zero for fallbacks.",
        c.MS,
        c.influx(
            query(AI_DECISION, "decision_latency_ms", group_by=["agent_id"], steps=[window("mean")])
        ),
    )
    fallbacks = c.stacked_bars(
        c.timeseries(
            "Fallbacks by reason",
            "Decisions answered by the default behaviour instead of the model, per minute, by "
            "reason (ai_decision.ai_fallback_count by fallback: rate limit, token budget, "
            "spend cap, API error, invalid reply).",
            c.DECISIONS,
            c.influx(
                query(
                    AI_DECISION, "ai_fallback_count", group_by=["fallback"], steps=[window("sum")]
                )
            ),
        ),
        "1m",
        80,
    )
    reasoning = _json_lines(
        Level.AI_DECISION,
        "AI reasoning",
        'The agents\' AI_DECISION log lines (Loki, {level="AI_DECISION"}), newest first: the '
        "decision, the model's reasoning and any fallback reason are in the JSON context.",
        max_lines=100,
    )
    analyses = _json_lines(
        Level.AI_ANALYSIS,
        "Monitor analyses",
        'The monitor\'s AI_ANALYSIS log lines (Loki, {level="AI_ANALYSIS"}): health status, '
        "issues and suggestions.",
        max_lines=50,
        height=8,
    )
    return (
        c.dashboard(
            UID,
            "AI Decision Dashboard",
            "What the agents decided with Claude, why, and what it cost in tokens and latency.",
        )
        .with_panel(decisions)
        .with_panel(reasoning)
        .with_panel(tokens)
        .with_panel(latency)
        .with_panel(fallbacks)
        .with_panel(analyses)
    )
