"""Scenarios 1 and 3 (and their long variants 2 and 8 live in test_long_faults.py): the real
agents as processes on a test vhost, faults injected, every confirmed message accounted for."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from agents.testing.claude import FakeMessagesAPI
from agents.testing.waiting import wait_until
from tests.support.fleet import fleet_process

from .toolkit.procs import Fleet
from .toolkit.rabbit import QueueInspector, agent_connections, close_connections
from .toolkit.report import FaultReport
from .toolkit.scenario import assert_no_loss, consumed_count, run_fleet_scenario

pytestmark = [pytest.mark.faults, pytest.mark.rabbitmq]


def reconnected_count(running: Fleet) -> int:
    return sum(len(p.messages("RabbitMQ reconnected")) for p in running.procs.values())


def test_connection_loss_several_times(
    vhost: str, tmp_path: Path, inspector: QueueInspector, fault_report: FaultReport
) -> None:
    """Scenario 1: every agent connection of the vhost is force-closed three times mid-run."""
    agents = 4

    def inject(running: Fleet) -> list[float]:
        times = []
        for round_ in range(1, 4):
            wait_until(lambda: len(agent_connections(vhost)) >= agents, 20, "all agents connected")
            times.append(time.time())
            assert close_connections(vhost, f"fault injection round {round_}") >= agents

            def all_reconnected(rounds: int = round_) -> bool:
                return reconnected_count(running) >= agents * rounds

            wait_until(all_reconnected, 30, f"every agent reconnected after round {round_}")
            seen = consumed_count(running)

            def traffic_again(before: int = seen) -> bool:
                return consumed_count(running) > before + 10

            wait_until(traffic_again, 20, "traffic again")
        return times

    outcome = run_fleet_scenario("connection_loss", vhost, tmp_path, inspector, inject)
    fault_report.add(outcome.summary)
    assert_no_loss(outcome)
    for process in outcome.fleet.procs.values():
        lost = process.messages("RabbitMQ connection lost")
        assert len(lost) >= 3 and all(line["level"] == "ERROR" for line in lost), process.name
        assert not process.messages("Agent crashed")
    assert all(code == 0 for code in outcome.exit_codes.values())


def test_consumer_sigkill_mid_batch(
    vhost: str, tmp_path: Path, inspector: QueueInspector, fault_report: FaultReport
) -> None:
    """Scenario 3: consumer-1 holds a batch and a full prefetch of unacked messages when it is
    SIGKILLed; the broker hands them to consumer-2, and nothing is lost."""
    with FakeMessagesAPI(["ok"], consumer_action="batch") as claude:
        killed: dict[str, float] = {}

        def inject(running: Fleet) -> list[float]:
            victim = running.procs["consumer-1"]
            # Wait until it is holding a batch (unacked until flushed), then kill it.
            victim.wait_for_line(
                lambda line: (
                    line.get("level") == "AI_DECISION"
                    and line["context"].get("ai_action") == "batch"
                ),
                what="a message held for batching",
            )
            before = inspector.redelivered("fictional") + inspector.redelivered("non-fictional")
            killed["at"] = time.time()
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait(10)
            killed["redelivered_before"] = before
            return [killed["at"]]

        outcome = run_fleet_scenario(
            "consumer_sigkill",
            vhost,
            tmp_path,
            inspector,
            inject,
            env={"PROCESSING_TIME_MS": "15", "PREFETCH_COUNT": "20"},
            per_agent_env={
                "consumer-1": {
                    "DRY_RUN": "false",
                    "ANTHROPIC_API_KEY": "sk-ant-fake-sigkill",
                    "ANTHROPIC_BASE_URL": claude.url,
                    "AI_DECISION_RATE": "1",
                    "AI_CALL_INTERVAL_SECONDS": "1",
                    "BATCH_MAX_WAIT_SECONDS": "30",
                }
            },
        )
    fault_report.add(outcome.summary)
    assert_no_loss(outcome)
    assert outcome.fleet.procs["consumer-1"].proc.returncode == -signal.SIGKILL
    # The broker redelivered what consumer-1 held (statistics refresh every few seconds).
    wait_until(
        lambda: (
            inspector.redelivered("fictional") + inspector.redelivered("non-fictional")
            > killed["redelivered_before"]
        ),
        15,
        "redeliveries counted by the broker",
    )
    survivor = outcome.fleet.procs["consumer-2"]
    assert survivor.messages("Message consumed")
    assert outcome.exit_codes["consumer-2"] == 0


def test_a_killed_agent_is_restarted_and_one_restart_too_many_stops_the_fleet(
    rabbit_env: dict[str, str], tmp_path: Path
) -> None:
    """`agents run` supervises: SIGKILL consumer-1 and it is back after its backoff, with a
    WARNING and an `errors` point (kind=agent_restarted); kill it again with
    FLEET_MAX_RESTARTS=1 and the fleet stops, exit 1, saying which agent and why."""
    metrics = tmp_path / "metrics.lp"
    env = {
        "FLEET_MAX_RESTARTS": "1",
        "FLEET_RESTART_BACKOFF_SECONDS": "0.5",
        "METRICS_FILE": str(metrics),
    }
    with fleet_process(env, tmp_path) as fleet:
        fleet.wait_for(lambda: len(fleet.starting()) == 5, 180, "all five agents started")
        first = fleet.pids()["consumer-1"]
        os.kill(first, signal.SIGKILL)
        [restarted] = fleet.wait_for(
            lambda: fleet.messages("Agent restarted"), 60, "consumer-1 restarted"
        )
        assert restarted["level"] == "WARNING"
        context = restarted["context"]
        assert context["agent"] == "consumer-1"
        assert context["exit_code"] == -signal.SIGKILL
        assert context["restart_count"] == 1
        assert context["pid"] != first
        fleet.wait_for(
            lambda: len([s for s in fleet.starting() if s["agent_id"] == "consumer-1"]) == 2,
            180,
            "the new consumer-1 started",
        )
        os.kill(context["pid"], signal.SIGKILL)
        code = fleet.wait_exit(60)
    assert code == 1
    # One line says why; the closing hint naming the metrics file (`agents report`) follows.
    [line] = [
        line
        for line in fleet.stderr.strip().splitlines()
        if not line.startswith("agents run: metrics ")
    ]
    assert "consumer-1" in line and "FLEET_MAX_RESTARTS=1" in line
    assert "Traceback" not in fleet.stderr
    [gave_up] = fleet.messages("Agent keeps failing; stopping the fleet")
    assert gave_up["level"] == "ERROR" and gave_up["context"]["agent"] == "consumer-1"
    [stopped] = fleet.messages("Fleet stopped")
    assert stopped["context"]["restarts"] == {"consumer-1": 1}
    codes = stopped["context"]["exit_codes"]
    assert codes.pop("consumer-1") == -signal.SIGKILL
    assert set(codes.values()) == {0}, "the others stopped cleanly"
    restart_points = [
        line
        for line in metrics.read_text().splitlines()
        if line.startswith("errors,") and "kind=agent_restarted" in line
    ]
    assert len(restart_points) == 1
    assert "agent_id=consumer-1" in restart_points[0]
    assert "agent_type=consumer" in restart_points[0]
