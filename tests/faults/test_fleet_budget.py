"""The whole fleet in live mode against a fake Messages API that counts what it bills (usage x
price): many consumers asking Claude on every message, a small fleet cap, consumers SIGKILLed
and restarted mid-run. What the API billed stays within the fleet cap.

What this rules out:
- LiteLLM #34732 / #40095 (budget bypass under concurrency): four consumer processes racing for
  the last dollars of one fleet budget;
- LiteLLM #34733 (window resets overwrite spend): restarted consumers find the spent budget in
  the ledger and are refused, instead of starting with empty windows;
- LiteLLM #35524 (unpriced calls not reserved): the model is priced from the table before the
  call and every call reserves its worst case, so even a model missing from the table is capped
  (tests/integration/test_ai_spend_limits.py checks the reservation of an unpriced model).

The negative control runs the same fleet with one ledger per process (what a per-process guard
amounts to) and shows the bill exceeding the cap: the assertion can fail.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from agents.testing.claude import FakeMessagesAPI
from agents.testing.waiting import wait_until

from .toolkit.procs import AgentProcess, Fleet, agent_env, consumer_env, fleet, publisher_env
from .toolkit.report import FaultReport

pytestmark = [pytest.mark.faults, pytest.mark.rabbitmq]

FLEET_CAP = 0.06  # USD, both windows; a worst-case consumer call costs ~$0.033 with this model
MODEL = "claude-opus-4-1"  # dear: few calls reach the cap, so a short run crosses it
CONSUMERS = 4


def fallbacks(process: AgentProcess, reason: str) -> int:
    return sum(
        1
        for line in process.lines()
        if line.get("level") == "AI_DECISION" and line["context"].get("ai_fallback") == reason
    )


def ai_lines(process: AgentProcess) -> int:
    return sum(1 for line in process.lines() if line.get("level") == "AI_DECISION")


def run_budget_fleet(
    vhost: str,
    workdir: Path,
    claude: FakeMessagesAPI,
    *,
    ledger_env: Mapping[str, str],
    per_process_ledger: bool = False,
    restarts: int = 1,
) -> dict[str, Any]:
    env = agent_env(
        vhost,
        workdir,
        DRY_RUN="false",
        ANTHROPIC_API_KEY="sk-ant-fake-budget",
        ANTHROPIC_BASE_URL=claude.url,
        CLAUDE_MODEL=MODEL,
        AI_MAX_RETRIES="0",
        FLEET_MAX_COST_PER_10MIN_USD=str(FLEET_CAP),
        FLEET_MAX_COST_PER_HOUR_USD=str(FLEET_CAP),
        # Each agent's own caps far above the fleet's: only the fleet cap can bind.
        MAX_COST_PER_10MIN_USD="5",
        MAX_COST_PER_HOUR_USD="5",
        MAX_TOKENS_PER_HOUR="10000000",
        **ledger_env,
    )

    def ask_always(index: int) -> dict[str, str]:
        extra = (
            {"BUDGET_LEDGER": str(workdir / f"own-{index}.sqlite")} if per_process_ledger else {}
        )
        return consumer_env(index, AI_DECISION_RATE="1", AI_CALL_INTERVAL_SECONDS="1", **extra)

    with fleet(workdir, env) as running:
        for i in range(1, CONSUMERS + 1):
            running.start(f"consumer-{i}", "consumer", **ask_always(i))
        running.start("publisher-1", "publisher", **publisher_env(1, 0.05))
        for process in running.procs.values():
            process.wait_connected(timeout=120)
        refused = "fleet_spend_cap_10min"

        def capped(run: Fleet) -> bool:
            return all(fallbacks(p, refused) >= 1 for p in run.consumers())

        wait_until(lambda: capped(running), 90, "every consumer refused by the fleet cap")
        restarted: list[AgentProcess] = []
        for round_ in range(restarts):
            name = f"consumer-{round_ % CONSUMERS + 1}"
            victim = running.procs[name]
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait(10)
            again = AgentProcess(
                f"{name}-restart-{round_ + 1}",
                ("consumer",),
                {**running.base_env, **ask_always(round_ % CONSUMERS + 1)},
                workdir,
            )
            running.procs[again.name] = again
            restarted.append(again)
            again.wait_connected(timeout=120)
        # Every restarted consumer has asked several times since its start.
        for again in restarted:

            def asked_three_times(_line: dict[str, Any], process: AgentProcess = again) -> bool:
                return ai_lines(process) >= 3

            again.wait_for_line(asked_three_times, 60, "three AI decisions after the restart")
        alive = {n: p for n, p in running.procs.items() if p.proc.poll() is None}
        for process in alive.values():  # all at once: each agent's shutdown takes a moment
            process.proc.send_signal(signal.SIGTERM)
        codes = {name: process.proc.wait(20) for name, process in alive.items()}
        return {
            "scenario": "fleet_budget" + ("_per_process_ledgers" if per_process_ledger else ""),
            "ledger": (
                "one BUDGET_LEDGER file per consumer (the control)"
                if per_process_ledger
                else dict(ledger_env) or "var/budget.sqlite (the default, shared)"
            ),
            "fleet_cap_usd": FLEET_CAP,
            "billed_usd": round(claude.billed_usd, 6),
            "billed_calls": claude.billed_calls,
            "requests": len(claude.requests),
            "restarts": restarts,
            "refused_by_fleet_cap": sum(fallbacks(p, refused) for p in running.consumers()),
            "refused_after_restart": sum(fallbacks(p, refused) for p in restarted),
            "exit_codes": codes,
        }


def test_live_fleet_bills_within_the_fleet_cap_across_kills_and_restarts(
    vhost: str, tmp_path: Path, fault_report: FaultReport
) -> None:
    with FakeMessagesAPI(["ok"]) as claude:
        summary = run_budget_fleet(vhost, tmp_path, claude, ledger_env={})
    fault_report.add(summary)
    assert summary["billed_usd"] <= FLEET_CAP
    assert summary["billed_calls"] >= 3  # not vacuous: real calls were billed
    assert summary["refused_by_fleet_cap"] >= CONSUMERS
    # The restarted consumer did not start with empty windows: the ledger refused it.
    assert summary["refused_after_restart"] >= 1
    assert (tmp_path / "var" / "budget.sqlite").is_file()  # the default shared file
    assert all(code == 0 for code in summary["exit_codes"].values()), summary["exit_codes"]


@pytest.mark.long_fault
def test_live_fleet_on_redis_bills_within_the_fleet_cap(
    vhost: str, tmp_path: Path, fault_report: FaultReport, redis_space: Any
) -> None:
    with FakeMessagesAPI(["ok"]) as claude:
        summary = run_budget_fleet(
            vhost,
            tmp_path,
            claude,
            ledger_env={
                "BUDGET_REDIS_URL": redis_space.url,
                "BUDGET_REDIS_PREFIX": redis_space.prefix,
            },
            restarts=4,
        )
    fault_report.add(summary)
    assert summary["billed_usd"] <= FLEET_CAP
    assert summary["billed_calls"] >= 3 and summary["refused_after_restart"] >= 4


@pytest.mark.long_fault
def test_negative_control_one_ledger_per_process_overspends(
    vhost: str, tmp_path: Path, fault_report: FaultReport
) -> None:
    """Today's failure mode, reproduced: each process guards only itself, so four consumers
    (and every restart) spend the 'fleet' cap several times over."""
    with FakeMessagesAPI(["ok"]) as claude:
        summary = run_budget_fleet(
            vhost, tmp_path, claude, ledger_env={}, per_process_ledger=True, restarts=0
        )
    fault_report.add(summary)
    assert summary["billed_usd"] > FLEET_CAP, summary
