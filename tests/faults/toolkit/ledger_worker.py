"""One hammering agent (`main(spec.json, agent)`, in its own process) reserves, "calls" (sleeps a
random latency), then settles, releases or keeps the worst case, as fast as its guard allows,
until the spec's stop file appears. A process of its own, so the parent can SIGKILL it mid-call."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

from agents.core.ai.guard import CostGuard, GuardLimits, Refused
from agents.core.ai.ledger import RedisLedger, SqliteLedger
from agents.core.ai.prices import PRICES
from agents.core.clock import SystemClock
from agents.ports import Ledger


def open_ledger(spec: dict[str, object]) -> Ledger:
    if spec["backend"] == "redis":
        return RedisLedger.from_url(str(spec["url"]), str(spec["prefix"]), retention_s=1e9)
    return SqliteLedger(str(spec["path"]), retention_s=1e9, busy_timeout_s=10.0)


def main(spec_path: str, agent: str) -> None:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    limits = GuardLimits(**spec["limits"])
    # No local back-off after a refusal: every attempt goes to the ledger.
    guard = CostGuard(limits, SystemClock(), open_ledger(spec), agent, refusal_backoff_s=0.0)
    price = PRICES["claude-sonnet-4-5"]
    rng = random.Random()
    low, high = spec["latency_s"]
    stop = Path(spec["stop_file"])
    Path(spec["ready_dir"], f"{agent}.{os.getpid()}").touch()
    while not stop.exists():
        try:
            reservation = guard.reserve(rng.randint(0, 1000), price)
        except Refused:
            time.sleep(rng.uniform(0.0, 0.01))
            continue
        flag = Path(spec["inflight_dir"], agent)
        flag.write_text(str(reservation.id))  # tells the parent where to aim a SIGKILL
        time.sleep(rng.uniform(low, high))  # the call in flight: a SIGKILL here leaves it open
        flag.unlink()
        outcome = rng.random()
        if outcome < 0.6:
            upper = reservation.tokens - limits.max_tokens
            guard.settle(
                reservation, rng.randint(0, upper), rng.randint(0, limits.max_tokens), price
            )
        elif outcome < 0.8:
            guard.release(reservation)
        else:
            guard.keep_worst_case(reservation)
