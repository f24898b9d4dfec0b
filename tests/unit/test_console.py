"""The human view of `agents run`: which log lines become an event line, what the status line and
the stop summary count. Fed the agents' real JSON lines (rendered by the real JsonLogger)."""

from __future__ import annotations

import io

from rich.console import Console
from rich.text import Text

from agents.console import Header, HumanView, Tally, event_line
from agents.core.logs import JsonLogger, Level


def lines_from(
    agent_id: str, agent_type: str, *calls: tuple[Level, str, dict[str, object]]
) -> list[str]:
    out = io.StringIO()
    logger = JsonLogger(agent_id, agent_type, stream=out)
    for level, message, context in calls:
        logger.log(level, message, **context)
    return out.getvalue().splitlines()


def decision(
    action: str, fallback: str | None = None, **context: object
) -> tuple[Level, str, dict[str, object]]:
    return (
        Level.AI_DECISION,
        "AI decision",
        {
            "ai_action": action,
            "reasoning": f"because {action}",
            "ai_fallback": fallback,
            "tokens_used": 0 if fallback else 250,
            "cost_usd": 0.0,
            **context,
        },
    )


def view() -> tuple[HumanView, io.StringIO, io.StringIO]:
    screen = io.StringIO()
    log = io.StringIO()
    console = Console(file=screen, width=160, force_terminal=False, color_system=None)
    now = [1000.0]
    human = HumanView(
        console, Header("scenario surge: test", "file:x", "y"), log, clock=lambda: now[0]
    )
    return human, screen, log


def test_every_ai_action_anomaly_dead_letter_and_alert_gets_one_line() -> None:
    human, screen, log = view()
    lines = (
        lines_from(
            "publisher-1",
            "publisher",
            decision(
                "slow_down",
                fictional_interval=20.0,
                nonfictional_interval=40.0,
                queue_depth_fictional=600,
                queue_depth_non_fictional=3,
            ),
            decision("continue", "rate_limited"),
        )
        + lines_from(
            "consumer-1",
            "consumer",
            decision("batch", genre="fictional", priority=1, queue_depth=450),
            (
                Level.WARNING,
                "Anomaly flagged",
                {"queue": "fictional", "priority": 5, "reasoning": "odd"},
            ),
            (
                Level.ERROR,
                "Invalid message dead-lettered",
                {"queue": "fictional", "reason": "body is not valid JSON"},
            ),
            (Level.INFO, "Message consumed", {"action": "batch"}),
            (Level.WARNING, "message rejected to the dead-letter queue", {"queue": "fictional"}),
        )
        + lines_from(
            "monitor-1",
            "monitor",
            (
                Level.AI_ANALYSIS,
                "System health check",
                {
                    "ai_action": "critical",
                    "status": "critical",
                    "issues": ["20 errors"],
                    "ai_fallback": None,
                },
            ),
            (
                Level.ERROR,
                "CRITICAL system health",
                {"issues": ["20 errors"], "suggestions": ["look"]},
            ),
        )
    )
    for line in lines:
        human.write(line + "\n")
    text = screen.getvalue()
    assert "AI slow_down" in text and "every 20.0s/40.0s (queues 600/3)" in text
    assert "because slow_down" in text
    assert "rate_limited" not in text  # counted in the status line, not one line each
    assert "AI batch" in text and "fictional p1 depth 450" in text
    assert "FLAGGED" in text and "DEAD-LETTERED" in text and "body is not valid JSON" in text
    assert "health CRITICAL" in text and "ALERT system health is CRITICAL" in text
    assert "Message consumed" not in text  # routine
    assert "message rejected" not in text  # the broker's own line repeats the DEAD-LETTERED one
    # --log-file keeps every line, as written
    assert log.getvalue().splitlines() == lines
    status_line = human.status().renderables[0]
    assert isinstance(status_line, Text)
    status = status_line.plain
    assert "1 rate-limited" in status and "con-1=1" in status


def test_the_summary_is_the_fleets_own_count() -> None:
    tally = Tally()
    records = [
        {"message": "Message published", "agent_id": "publisher-1", "level": "INFO", "context": {}},
        {"message": "Message published", "agent_id": "publisher-2", "level": "INFO", "context": {}},
        {
            "message": "Scenario traffic injected",
            "agent_id": "fleet",
            "level": "INFO",
            "context": {"count": 10, "valid": True},
        },
        {
            "message": "Scenario traffic injected",
            "agent_id": "fleet",
            "level": "INFO",
            "context": {"count": 1, "valid": False},
        },
        # an aggregated line (a count per interval) counts its count
        {
            "message": "Message consumed",
            "agent_id": "consumer-1",
            "level": "INFO",
            "context": {"action": "process", "count": 11},
        },
        {
            "message": "Drain timed out",
            "agent_id": "fleet",
            "level": "INFO",
            "context": {"queue_depths": {"fictional": 1, "non-fictional": 0}},
        },
    ]
    for record in records:
        tally.add(record, 0.0)
    assert sum(tally.published.values()) == 2 and tally.injected_valid == 10
    assert tally.injected_malformed == 1 and tally.consumed["consumer-1"] == 11
    human, _, _ = view()
    human.tally = tally
    summary = "\n".join(t.plain for t in human.summary())
    assert "2 confirmed by the broker + 10 injected" in summary
    assert "11 consumed (process 11)" in summary and "1 still queued" in summary
    assert "= 0 (nothing unaccounted)" in summary


def test_spend_is_summed_over_the_last_ten_minutes_against_the_fleet_cap() -> None:
    tally = Tally()
    mode = {
        "message": "AI mode: live",
        "agent_id": "publisher-1",
        "level": "INFO",
        "context": {
            "why": "key",
            "model": "m",
            "max_cost_per_10min_usd": 0.02,
            "max_cost_per_hour_usd": 0.09,
            # The ledger's fleet cap, deliberately not 5 x the per-agent cap.
            "fleet_max_cost_per_10min_usd": 0.07,
            "fleet_max_cost_per_hour_usd": 0.3,
        },
    }
    tally.add(mode, 0.0)
    for at, cost in ((0.0, 0.01), (300.0, 0.002), (650.0, 0.003)):
        tally.add(
            {
                "level": "AI_DECISION",
                "agent_id": "publisher-1",
                "message": "AI decision",
                "context": {"ai_action": "continue", "tokens_used": 300, "cost_usd": cost},
            },
            at,
        )
    assert round(tally.spend_10min(650.0), 6) == 0.005
    assert tally.fleet_cap_10min() == 0.07
    assert tally.calls == 3 and round(tally.cost_usd, 6) == 0.015


def test_a_stray_non_json_line_is_shown_and_kept() -> None:
    human, screen, log = view()
    human.write("!!! CRITICAL (monitor-1): system health is critical\n")
    assert "!!! CRITICAL" in screen.getvalue()
    assert event_line({"message": "Message published", "level": "INFO", "context": {}}) is None
    assert "!!! CRITICAL" in log.getvalue()
