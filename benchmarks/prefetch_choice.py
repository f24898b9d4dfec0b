"""How the consumer agent's PREFETCH_COUNT default was chosen (issue 13: in RabbitMQ's
recommended 100-300 range, by measurement).

One `agents consumer` process (dry-run, PROCESSING_TIME_MS=0, the default group commit) drains a
prefilled queue; the time runs from the first message taken (ready depth below the prefill, so
start-up is excluded) until the process has written the "Message consumed" line of the last
message (a line is written before its ack, so this is "all handled", not merely "all handed
over", which would flatter a large prefetch). Prefetch values are interleaved over rounds and
the median per value is reported with its spread. Writes benchmarks/results/prefetch.json.

    uv run python -m benchmarks.prefetch_choice --rounds 4 --messages 20000
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pika

from agents.core.broker import declare_topology
from agents.vocab import QUEUES
from benchmarks import rabbit
from benchmarks.baselines import make_bodies
from benchmarks.load import REPO, agent_env, consumed_lines, spawn_agent, stop_processes

RESULTS = REPO / "benchmarks" / "results" / "prefetch.json"


def drain_once(vhost: str, workdir: Path, prefetch: int, count: int, timeout: float) -> float:
    rabbit.prefill(vhost, make_bodies(count, seed=prefetch))
    rabbit.wait_for_depth(vhost, QUEUES, count)
    log = workdir / f"prefetch-{prefetch}-{time.monotonic_ns()}.log"
    env = agent_env(vhost, workdir, "consumer-1")
    env.update(
        {
            "CONSUMER_ID": "consumer-1",
            "DRY_RUN": "true",
            "AI_DECISION_RATE": "0",
            "PROCESSING_TIME_MS": "0",
            "PREFETCH_COUNT": str(prefetch),
        }
    )
    connection = pika.BlockingConnection(rabbit.params(vhost))
    channel = connection.channel()

    def depth() -> int:
        return sum(int(channel.queue_declare(q, passive=True).method.message_count) for q in QUEUES)

    with log.open("wb") as out:
        proc = spawn_agent("consumer", env, out)
    try:
        deadline = time.monotonic() + timeout
        first = None
        while first is None:
            if depth() < count:
                first = time.perf_counter()
            elif time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"prefetch {prefetch}: the consumer never started taking")
            else:
                connection.sleep(0.003)
        while consumed_lines([log]) < count:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"prefetch {prefetch}: {consumed_lines([log])}/{count} handled")
            connection.sleep(0.005)
        last = time.perf_counter()
    finally:
        stop_processes([proc], timeout=20)
        connection.close()
    rabbit.purge(vhost, QUEUES)
    return count / (last - first)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--prefetch", type=int, nargs="+", default=[50, 100, 200, 300])
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args(argv)
    rates: dict[int, list[float]] = {p: [] for p in args.prefetch}
    rng = random.Random(13)
    with rabbit.bench_vhost("prefetch") as vhost, tempfile.TemporaryDirectory() as tmp:
        connection = pika.BlockingConnection(rabbit.params(vhost))
        declare_topology(connection.channel())
        connection.close()
        for round_ in range(1, args.rounds + 1):
            order = list(args.prefetch)
            rng.shuffle(order)  # interleaved, so machine load drifts hit every value alike
            for prefetch in order:
                rate = drain_once(vhost, Path(tmp), prefetch, args.messages, args.timeout)
                rates[prefetch].append(rate)
                print(f"round {round_} prefetch {prefetch}: {rate:,.0f} msg/s", flush=True)
    summary = {
        str(p): {
            "median_msgs_per_s": round(statistics.median(r), 1),
            "min": round(min(r), 1),
            "max": round(max(r), 1),
            "rounds": len(r),
        }
        for p, r in rates.items()
    }
    document = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "messages_per_round": args.messages,
        "what": "one consumer agent process draining a prefilled queue; from the first message "
        "taken to the last 'Message consumed' line written",
        "prefetch": summary,
    }
    RESULTS.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
