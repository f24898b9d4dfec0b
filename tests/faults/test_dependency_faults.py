"""Scenarios 4 and 5: the agents' other dependencies fail while RabbitMQ is fine.

4. InfluxDB answers 500, then refuses connections, then recovers: agents keep publishing and
   consuming, count and log the failed writes at a bounded rate, and write again afterwards.
5. The Claude API (the real SDK against a local endpoint) times out, rate-limits, fails, answers
   garbage, absurd numbers and instructions: agents keep their cadence, fall back, log and count,
   and the cost guard never charges a failed call beyond its reservation.
"""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path
from typing import Any

import pytest

from agents.testing.claude import BEHAVIOURS, INJECTION_MARKER, FakeMessagesAPI
from agents.testing.influx import FakeInflux
from agents.testing.waiting import wait_until

from .toolkit.ledger import parse_ts
from .toolkit.procs import Fleet
from .toolkit.rabbit import QueueInspector
from .toolkit.report import FaultReport
from .toolkit.scenario import assert_no_loss, consumed_count, run_fleet_scenario

pytestmark = [pytest.mark.faults, pytest.mark.rabbitmq]


def published_between(outcome_lines: list[dict[str, Any]], start: float, end: float) -> int:
    return sum(
        1
        for line in outcome_lines
        if line.get("message") == "Message published" and start <= parse_ts(line["timestamp"]) < end
    )


def test_influxdb_down_then_back(
    vhost: str, tmp_path: Path, inspector: QueueInspector, fault_report: FaultReport
) -> None:
    window: dict[str, float] = {}
    with FakeInflux() as influx:

        def agents_writing(since: float) -> set[str]:
            tags = set()
            for line in influx.lines_since(since):
                match = re.search(r",agent_id=([a-z0-9-]+)", line)
                if match:
                    tags.add(match.group(1))
            return tags

        def inject(running: Fleet) -> list[float]:
            names = set(running.procs)
            wait_until(lambda: agents_writing(0) >= names, 20, "every agent writing metrics")
            window["start"] = time.time()
            influx.set_mode("error")
            # Until every agent has given up on a batch (the client retries for up to 5 s).
            wait_until(
                lambda: all(p.messages("Metrics write failed") for p in running.procs.values()),
                30,
                "every agent logging its failed metric writes",
            )
            influx.set_mode("refuse")
            seen = consumed_count(running)
            wait_until(lambda: consumed_count(running) > seen + 40, 20, "traffic while refused")
            window["end"] = time.time()
            influx.set_mode("up")
            wait_until(
                lambda: agents_writing(window["end"]) >= names, 30, "every agent writing again"
            )
            window["recovered"] = time.time()
            return [window["start"]]

        outcome = run_fleet_scenario(
            "influxdb_down_then_back",
            vhost,
            tmp_path,
            inspector,
            inject,
            env={"INFLUXDB_URL": influx.url, "INFLUXDB_TOKEN": "fault-influx-token"},
        )
    summary = {
        **outcome.summary,
        "seconds_to_recover": round(window["recovered"] - window["end"], 3),
    }
    fault_report.add(summary)
    assert_no_loss(outcome)
    outage = window["end"] - window["start"]
    for process in outcome.fleet.procs.values():
        lines = process.lines()
        failures = [
            line for line in lines if line.get("message", "").startswith("Metrics write failed")
        ]
        assert failures, f"{process.name} did not log its failed metric writes"
        # Rate-limited: one line per 30 s at most, however many batches failed.
        assert len(failures) <= 1 + int(outage // 30) + 1, (process.name, len(failures))
        assert all(line["level"] == "ERROR" for line in failures)
        assert max(line["context"]["dropped_points_total"] for line in failures) >= 1
        assert "fault-influx-token" not in process.log_path.read_text()
    for publisher in outcome.fleet.publishers():
        assert published_between(publisher.lines(), window["start"], window["end"]) >= 10


def ai_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("level") in ("AI_DECISION", "AI_ANALYSIS")]


# The worst a call can cost: input bound plus MAX_TOKENS, at the dearest listed price.
MAX_COST_PER_CALL = 0.01
# The publishers' clamp in this scenario: an absurd interval from a reply lands here at worst.
MAX_INTERVAL = 2.0


def test_claude_api_faults(
    vhost: str, tmp_path: Path, inspector: QueueInspector, fault_report: FaultReport
) -> None:
    # huge_usage has its own test below (it exposes a cost-guard bug that would block the rest).
    script = [b for b in BEHAVIOURS if b not in ("echo_key_401", "huge_usage")] + ["ok", "ok"]
    ai_env = {
        "DRY_RUN": "false",
        "ANTHROPIC_API_KEY": "sk-ant-fake-faults",
        "AI_TIMEOUT_SECONDS": "1",
        "AI_MAX_RETRIES": "0",  # each 429/5xx must surface as a fallback
        "MAX_TOKENS_PER_HOUR": "20000",
        "MAX_COST_PER_10MIN_USD": "0.02",
    }
    with FakeMessagesAPI(script, retry_after=0.2, hang=5) as claude:
        ai_env["ANTHROPIC_BASE_URL"] = claude.url
        faults_from: dict[str, float] = {}

        def inject(running: Fleet) -> list[float]:
            faults_from["at"] = time.time()
            # Run until every behaviour has been served at least twice.
            wait_until(
                lambda: all(claude.counts.get(b, 0) >= 2 for b in script),
                90,
                "every API fault served",
            )
            # Then the API behaves again: every agent must use a real answer again.
            healed = time.time()
            claude.set_script(["ok"])

            def answered_since(process: Any) -> bool:
                return any(
                    line["context"].get("ai_fallback") is None
                    and parse_ts(line["timestamp"]) >= healed
                    for line in ai_lines(process.lines())
                )

            wait_until(
                lambda: all(answered_since(p) for p in running.procs.values()),
                30,
                "every agent using real answers again",
            )
            faults_from["healed"] = time.time() - healed
            return [faults_from["at"]]

        outcome = run_fleet_scenario(
            "claude_api_faults",
            vhost,
            tmp_path,
            inspector,
            inject,
            interval=0.2,
            env=ai_env,
            per_agent_env={
                **{
                    f"publisher-{i}": {
                        "DECISION_INTERVAL_SECONDS": "1",
                        "MAX_PUBLISH_INTERVAL_SECONDS": str(MAX_INTERVAL),
                    }
                    for i in (1, 2)
                },
                **{
                    f"consumer-{i}": {"AI_DECISION_RATE": "1", "AI_CALL_INTERVAL_SECONDS": "1"}
                    for i in (1, 2)
                },
            },
            monitor={**ai_env, "CHECK_INTERVAL_SECONDS": "1", "QUEUE_SAMPLE_INTERVAL_SECONDS": "1"},
        )
        prompts = claude.prompts()
    fault_report.add({**outcome.summary, "seconds_to_recover": round(faults_from["healed"], 3)})
    assert_no_loss(outcome)

    # No reply text ever made it into a later prompt.
    assert prompts and not [p for p in prompts if INJECTION_MARKER in p]

    fallbacks: dict[str, int] = {}
    for process in outcome.fleet.procs.values():
        lines = process.lines()
        decisions = ai_lines(lines)
        assert decisions, f"{process.name} made no AI decisions"
        for line in decisions:
            context = line["context"]
            reason = context.get("ai_fallback")
            if reason:
                fallbacks[reason] = fallbacks.get(reason, 0) + 1
            assert 0 <= float(context.get("cost_usd", 0)) <= MAX_COST_PER_CALL, context
            # Nothing the endpoint said about tokens is charged beyond the call's reservation.
            assert int(context.get("tokens_used", 0)) <= 10_000, context
        assert not process.messages("Agent crashed")
        for line in process.messages("Publishing intervals changed"):
            for key in ("fictional_interval", "nonfictional_interval"):
                assert 0.01 <= line["context"][key] <= MAX_INTERVAL, line
    # The guard's budget survived: failed and absurd calls did not eat it.
    assert not {r for r in fallbacks if "spend_cap" in r or "token_budget" in r}, fallbacks
    assert "api_timeout" in fallbacks, fallbacks
    assert {r for r in fallbacks if r.startswith("api_") and r != "api_timeout"}, fallbacks
    assert {"invalid_reply", "invalid_response"} & set(fallbacks), fallbacks
    # Cadence: whatever the replies said, no genre went quiet for longer than the clamp allows
    # (plus one decision's worth of slack), between publishes nor before the publisher stopped.
    # (A count would be timing-dependent: slow_down answers legitimately halve it.)
    for publisher in outcome.fleet.publishers():
        [stopping] = publisher.messages("Publisher stopping")
        for genre in ("fictional", "non-fictional"):
            times = [
                parse_ts(line["timestamp"])
                for line in publisher.messages("Message published")
                if line["context"]["queue"] == genre
            ]
            gaps = [b - a for a, b in itertools.pairwise([*times, parse_ts(stopping["timestamp"])])]
            assert len(times) >= 5 and max(gaps) <= MAX_INTERVAL + 1.5, (publisher.name, genre)


def test_absurd_reported_usage_is_not_charged_beyond_the_reservation(tmp_path: Path) -> None:
    """A reply cannot really use more output tokens than MAX_TOKENS, nor more input tokens than
    the prompt has: usage beyond the reservation is a lie (or a proxy bug), and charging it would
    let one bad reply lock the agent out of the AI for an hour and poison the cost dashboards."""
    from agents.core.ai import build_engine
    from agents.core.metrics import MemorySink, Metrics
    from agents.core.settings import ConsumerSettings, load_settings
    from agents.testing import LogCapture
    from agents.testing.clock import FakeClock

    with FakeMessagesAPI(["huge_usage", "ok"]) as claude:
        settings = load_settings(
            ConsumerSettings,
            anthropic_api_key="sk-ant-fake-usage",
            anthropic_base_url=claude.url,
            ai_call_interval_seconds=1,
            dry_run=False,
            # Its own ledger: the default file in the working directory keeps this agent's
            # last call, and the fake clock starts at the same instant in every run.
            budget_ledger=tmp_path / "budget.sqlite",
        )
        out = LogCapture()
        clock = FakeClock()
        logger = out.logger("consumer-1", "consumer")
        engine = build_engine(
            settings, logger, Metrics(MemorySink(), "consumer-1", "consumer"), clock
        )
        first = engine.decide_consumer("fictional", 3, 0)
        clock.advance(2)
        second = engine.decide_consumer("fictional", 3, 0)
    decisions = [d["context"] for d in out.where(level="AI_DECISION")]
    assert first.action == "process" and second.fallback is None, second
    assert decisions[0]["cost_usd"] <= MAX_COST_PER_CALL, decisions[0]
