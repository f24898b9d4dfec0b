"""Whole processes measured from outside: how fast a consumer process drains a prefilled queue.

The queues are prefilled while nothing consumes; then the process starts, and a separate
connection samples the summed ready depth every few milliseconds. The rate is the prefill
divided by the time from the first sample below the prefill (the process started taking
messages: its start-up is excluded) to the first sample at zero. Both sides run with the same
prefetch and the same messages; the agent is `agents consumer` exactly as deployed (dry-run
AI, logs to a file as stdout, metrics to the embedded file).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pika

from agents.core.broker import passive_depth
from agents.vocab import QUEUES
from benchmarks import rabbit
from benchmarks.load import REPO, agent_env, stop_processes


def _spawn(kind: str, vhost: str, workdir: Path, prefetch: int) -> subprocess.Popen[bytes]:
    if kind == "raw":
        command = rabbit.raw_consumer_command(vhost, prefetch)
        env = agent_env(vhost, workdir, "raw")
    else:
        command = [sys.executable, "-m", "agents", "consumer"]
        env = agent_env(vhost, workdir, "consumer-1")
        env.update(
            {
                "CONSUMER_ID": "consumer-1",
                "DRY_RUN": "true",
                "PROCESSING_TIME_MS": "0",
                "PREFETCH_COUNT": str(prefetch),
            }
        )
    log = (workdir / f"drain-{kind}.log").open("ab")
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def drain_rate(
    vhost: str,
    workdir: Path,
    kind: str,
    bodies: Sequence[tuple[str, bytes, str]],
    prefetch: int,
    timeout: float = 180.0,
) -> float:
    """Messages/s of one `kind` ("raw" or "agent") process draining `bodies`."""
    count = len(bodies)
    rabbit.prefill(vhost, bodies)
    rabbit.wait_for_depth(vhost, QUEUES, count)
    connection = pika.BlockingConnection(rabbit.params(vhost))
    channel = connection.channel()

    def depth() -> int:
        return sum(passive_depth(channel, q) for q in QUEUES)

    proc = _spawn(kind, vhost, workdir, prefetch)
    try:
        deadline = time.monotonic() + timeout
        first = last = None
        while time.monotonic() < deadline:
            seen, now = depth(), time.perf_counter()
            if first is None and seen < count:
                first = now
            if first is not None and seen == 0:
                last = now
                break
            if proc.poll() is not None:
                raise RuntimeError(f"{kind} consumer exited {proc.returncode}")
            connection.sleep(0.003)
        if first is None or last is None:
            raise TimeoutError(f"{kind} consumer did not drain {count} messages in {timeout}s")
    finally:
        stop_processes([proc], timeout=20)
        connection.close()
    # What it held unacked when the process stopped went back to the queue: empty it.
    rabbit.purge(vhost, QUEUES)
    return count / (last - first)
