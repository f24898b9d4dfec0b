"""One fleet run with faults, then the accounting: the shape every fleet scenario shares.

start consumers and publishers -> wait for traffic -> inject the faults (the scenario's own
function, which returns when each fault happened) -> keep running until traffic flows again ->
stop the publishers -> wait until the consumers have drained the queues -> stop the consumers ->
read every log file and the anomaly/dead-letter queues into a Ledger.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.testing.waiting import wait_until

from .ledger import MAIN_QUEUES, Ledger
from .procs import Fleet, agent_env, consumer_env, fleet, publisher_env
from .rabbit import QueueInspector

Injector = Callable[[Fleet], list[float]]


@dataclass
class Outcome:
    ledger: Ledger
    fleet: Fleet
    fault_times: list[float]
    summary: dict[str, Any]
    exit_codes: dict[str, int | None] = field(default_factory=dict)

    def lines(self, name: str) -> list[dict[str, Any]]:
        return self.fleet.procs[name].lines()


def consumed_count(running: Fleet) -> int:
    return sum(len(p.messages("Message consumed")) for p in running.consumers())


def all_published_consumed(running: Fleet) -> bool:
    """Every id a publisher logged as confirmed has a "Message consumed" line somewhere. Exact,
    unlike the broker's unacked statistics, which lag by seconds: stopping the consumers on a
    stale zero would leave messages in flight (they return to the queue, not lost, but the run
    would not have drained)."""
    published = {
        line["context"].get("message_id")
        for p in running.publishers()
        for line in p.messages("Message published")
    }
    consumed = {
        line["context"].get("message_id")
        for p in running.consumers()
        for line in p.messages("Message consumed")
    }
    return published <= consumed


def settled(inspector: QueueInspector) -> bool:
    """Nothing ready in the book queues and nothing unacked (statistics may lag a few seconds)."""
    if any(inspector.depth(q) for q in MAIN_QUEUES):
        return False
    return not any(inspector.unacked(q) for q in MAIN_QUEUES)


def run_fleet_scenario(
    name: str,
    vhost: str,
    workdir: Path,
    inspector: QueueInspector,
    inject: Injector,
    *,
    publishers: int = 2,
    consumers: int = 2,
    interval: float = 0.05,
    env: Mapping[str, str] | None = None,
    per_agent_env: Mapping[str, Mapping[str, str]] | None = None,
    after_fault_seconds: float = 1.0,
    drain_timeout: float = 60.0,
    monitor: Mapping[str, str] | None = None,
) -> Outcome:
    base = agent_env(vhost, workdir, **dict(env or {}))
    extra = per_agent_env or {}
    with fleet(workdir, base) as running:
        for i in range(1, consumers + 1):
            cname = f"consumer-{i}"
            running.start(cname, "consumer", **{**consumer_env(i), **extra.get(cname, {})})
        for i in range(1, publishers + 1):
            pname = f"publisher-{i}"
            running.start(
                pname, "publisher", **{**publisher_env(i, interval), **extra.get(pname, {})}
            )
        if monitor is not None:
            running.start("monitor-1", "monitor", **dict(monitor))
        for process in running.procs.values():
            process.wait_connected()
        wait_until(lambda: consumed_count(running) >= 20, 30, "traffic before the faults")

        fault_times = inject(running)

        # Traffic must flow again after the last fault: more consumed than at that point.
        after = consumed_count(running)
        wait_until(lambda: consumed_count(running) > after + 20, 60, "traffic after the faults")
        time.sleep(after_fault_seconds)  # steady traffic after recovery, not a condition wait

        for process in running.publishers():
            assert process.stop() == 0, f"{process.name} exited badly: {process.stderr()[-500:]}"
        with contextlib.suppress(AssertionError):  # a loss shows in the ledger below, by id
            wait_until(
                lambda: all_published_consumed(running), drain_timeout, "every message consumed"
            )
        wait_until(lambda: settled(inspector), drain_timeout, "the consumers drained the queues")
        codes: dict[str, int | None] = {}
        for process in [*running.consumers(), *running.monitors()]:
            codes[process.name] = process.stop() if process.proc.poll() is None else None
        ledger = Ledger().read_logs(running.log_files()).read_queues(inspector)
        recover = [ledger.recovery_seconds(t) for t in fault_times]
        known = [r for r in recover if r is not None]
        summary = ledger.summary(name, max(known) if known else None)
        return Outcome(ledger, running, fault_times, summary, codes)


def assert_no_loss(outcome: Outcome) -> None:
    ledger = outcome.ledger
    lost = sorted(ledger.lost())
    assert not lost, f"{len(lost)} confirmed messages lost, e.g. {lost[:5]}"
    assert not ledger.pending, f"{len(ledger.pending)} messages never consumed"
    assert not ledger.repeats_within_lifetime, (
        f"a consumer handled the same message twice: {ledger.repeats_within_lifetime[:5]}"
    )
    assert not ledger.malformed_lines, f"non-JSON stdout lines: {ledger.malformed_lines[:3]}"
    assert outcome.summary["published"] > 0
