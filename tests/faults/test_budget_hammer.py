"""Many processes hammer one spend ledger (SQLite file, real Redis) while some are SIGKILLed
mid-call and restarted; replaying the ledger afterwards, no sliding window ever exceeded a cap.

Windows are compressed (seconds instead of ten minutes and an hour) so that caps bind, windows
slide and restarts happen many times within a short run. What this rules out:
- LiteLLM #34732 / #40095 (budget bypass under concurrency): concurrent check-and-reserve from
  8+ processes never admits past a fleet or agent cap;
- LiteLLM #34733 (a reset overwrites spend): a restarted agent continues with the ledger's
  windows and its last call (its rate limit holds across restarts);
- a crash mid-call: the reservation stays at its worst case (`reserved`) until its window passes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import pytest

from agents.core.ai.ledger import RedisLedger, SqliteLedger
from agents.ports import Ledger
from agents.testing.waiting import wait_until
from tests.support.guard import assert_within_caps, guard_limits, worst_windows

from .toolkit.ledger_worker import main as worker_main
from .toolkit.report import FaultReport

pytestmark = [pytest.mark.faults]

FORK = multiprocessing.get_context("fork")

LIMITS = guard_limits(
    min_interval_s=0.05,
    max_tokens_per_hour=6_000,
    max_usd_per_10min=0.009,
    max_usd_per_hour=0.02,
    fleet_max_usd_per_10min=0.025,
    fleet_max_usd_per_hour=0.05,
    short_window_s=1.0,  # "ten minutes"
    long_window_s=3.0,  # "an hour"
)


@dataclass
class Hammer:
    """Worker processes forked from this one (the imports are done once, so a restart takes
    milliseconds and the run is spent hammering, not importing)."""

    spec_path: Path
    agents: list[str]
    procs: dict[str, BaseProcess] = field(default_factory=dict)
    kills: int = 0
    restarts: int = 0

    def start(self, agent: str) -> None:
        process = FORK.Process(target=worker_main, args=(str(self.spec_path), agent), daemon=True)
        process.start()
        self.procs[agent] = process

    def kill(self, agent: str) -> None:
        process = self.procs[agent]
        if process.is_alive():
            os.kill(process.pid or 0, signal.SIGKILL)
            self.kills += 1
        process.join(10)

    def stop_all(self) -> None:
        for process in self.procs.values():
            if process.is_alive():
                process.kill()
            process.join(10)


@pytest.fixture(params=["sqlite", "redis"])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[dict[str, Any], Ledger]]:
    if request.param == "sqlite":
        path = tmp_path / "budget.sqlite"
        yield {"backend": "sqlite", "path": str(path)}, SqliteLedger(path, retention_s=1e9)
    else:
        space = request.getfixturevalue("redis_space")
        spec = {"backend": "redis", "url": space.url, "prefix": space.prefix}
        yield spec, RedisLedger(space.client, space.prefix, retention_s=1e9)


def run_hammer(
    tmp_path: Path,
    spec: dict[str, Any],
    ledger: Ledger,
    *,
    workers: int,
    seconds: float,
    min_crashed: int,
) -> dict[str, Any]:
    agents = [f"agent-{i}" for i in range(workers)]
    spec = {
        **spec,
        "limits": {k: getattr(LIMITS, k) for k in LIMITS.__dataclass_fields__},
        "latency_s": [0.02, 0.15],
        "stop_file": str(tmp_path / "stop"),
        "ready_dir": str(tmp_path / "ready"),
        "inflight_dir": str(tmp_path / "inflight"),
    }
    (tmp_path / "ready").mkdir()
    (tmp_path / "inflight").mkdir()
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    hammer = Hammer(spec_path, agents)
    rng = random.Random(14)
    crashed: set[int] = set()
    try:
        for name in agents:
            hammer.start(name)
        wait_until(
            lambda: len(list((tmp_path / "ready").iterdir())) >= workers, 60, "every worker ready"
        )
        # Kill a random worker every ~0.3 s and restart it under the same agent id; any entry of
        # a dead worker still `reserved` was a call in flight when it died.
        # At least `seconds`, and on until enough calls died mid-flight (a loaded machine kills
        # fewer per second), within a hard limit.
        started = time.monotonic()
        while time.monotonic() < started + seconds or (
            len(crashed) < min_crashed and time.monotonic() < started + 4 * seconds
        ):
            time.sleep(rng.uniform(0.1, 0.3))
            # Mostly a worker with a call in flight (an open reservation of a live
            # worker); otherwise anyone, wherever it is in its loop.
            in_flight = sorted(p.name for p in (tmp_path / "inflight").iterdir())
            victim = rng.choice(in_flight if in_flight and rng.random() < 0.7 else agents)
            hammer.kill(victim)
            (tmp_path / "inflight" / victim).unlink(missing_ok=True)
            crashed |= {
                e.id for e in ledger.entries() if e.agent == victim and e.state == "reserved"
            }
            hammer.start(victim)
            hammer.restarts += 1
        Path(spec["stop_file"]).touch()
        for name, process in hammer.procs.items():
            process.join(60)
            assert process.exitcode == 0, f"{name} exited with {process.exitcode}"
    finally:
        hammer.stop_all()
    entries = ledger.entries()
    worst = worst_windows(entries, LIMITS)
    states = {
        s: sum(e.state == s for e in entries) for s in ("reserved", "settled", "released", "kept")
    }
    summary = {
        "scenario": f"budget_hammer_{spec['backend']}",
        "workers": workers,
        "seconds": seconds,
        "reservations": len(entries),
        "states": states,
        "kills": hammer.kills,
        "crashed_mid_call": len(crashed),
        "worst_windows": {k: round(v, 6) for k, v in worst.items()},
        "caps": {
            "fleet_10min": LIMITS.fleet_max_usd_per_10min,
            "fleet_hour": LIMITS.fleet_max_usd_per_hour,
            "agent_10min": LIMITS.max_usd_per_10min,
            "agent_hour": LIMITS.max_usd_per_hour,
        },
    }
    assert_within_caps(worst, LIMITS)
    # Not vacuous: calls were admitted, the fleet cap was nearly reached, calls died mid-flight.
    assert len(entries) > 20, summary
    assert worst["fleet_10min"] > 0.5 * LIMITS.fleet_max_usd_per_10min, summary
    assert len(crashed) >= min_crashed, summary
    # Crashed calls were never settled: they still count at their worst case.
    by_id = {e.id: e for e in entries}
    assert all(by_id[i].usd == by_id[i].reserved_usd for i in crashed if i in by_id)
    return summary


def test_eight_processes_hammer_one_ledger_with_kills(
    backend: tuple[dict[str, Any], Ledger], tmp_path: Path, fault_report: FaultReport
) -> None:
    spec, ledger = backend
    fault_report.add(run_hammer(tmp_path, spec, ledger, workers=8, seconds=6.0, min_crashed=3))


@pytest.mark.long_fault
def test_sixteen_processes_hammer_one_ledger_for_a_minute(
    backend: tuple[dict[str, Any], Ledger], tmp_path: Path, fault_report: FaultReport
) -> None:
    spec, ledger = backend
    fault_report.add(run_hammer(tmp_path, spec, ledger, workers=16, seconds=60.0, min_crashed=10))
