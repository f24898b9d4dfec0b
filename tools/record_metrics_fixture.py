"""Record fixtures/metrics-sample.lp from a real local run of the whole fleet.

The dashboards' data-tie test checks that every measurement, field and tag each panel filters on
occurs in that file, so no panel can point at a series the agents never write. This script makes
the file the honest way: it runs `agents run` (2 publishers, 2 consumers, 1 monitor as child
processes) against the local RabbitMQ in a throwaway vhost, with metrics going to the embedded
line-protocol file, and copies what the agents wrote.

Claude is played by a small scripted HTTP server on 127.0.0.1 that speaks the Messages API, so
the agents run in *live* mode through the real SDK, guard and parser (no key, no cost), and the
answers rotate through every action (slow_down/speed_up/continue, process/batch/flag,
healthy/warning/critical) so every series a dashboard shows occurs. A few malformed messages are
published mid-run so the error series exists too. Intervals are shortened so a short run covers
many decisions.

    .venv/bin/python tools/record_metrics_fixture.py [--seconds 75] [--out FILE]
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the repository's packages are importable

from agents.testing import clean_env  # noqa: E402
from agents.vocab import EXCHANGE, FICTIONAL  # noqa: E402
from benchmarks import rabbit  # noqa: E402
from benchmarks.footprint import scripted_claude  # noqa: E402

ANSWERS: dict[str, Iterator[dict[str, Any]]] = {
    "publisher": itertools.cycle(
        [
            {
                "action": "slow_down",
                "fictional_interval": 0.8,
                "nonfictional_interval": 1.5,
                "reasoning": "fictional backlog is growing",
            },
            {
                "action": "speed_up",
                "fictional_interval": 0.4,
                "nonfictional_interval": 0.8,
                "reasoning": "queues are nearly empty",
            },
            {
                "action": "continue",
                "fictional_interval": 0.5,
                "nonfictional_interval": 1.0,
                "reasoning": "queues are stable",
            },
        ]
    ),
    "consumer": itertools.cycle(
        [
            {"action": "process", "reasoning": "normal priority, short queue"},
            {"action": "batch", "reasoning": "low priority, batch with others"},
            {"action": "flag", "reasoning": "unusual title for this genre"},
        ]
    ),
    "monitor": itertools.cycle(
        [
            {"status": "healthy", "issues": [], "suggestions": []},
            {
                "status": "warning",
                "issues": ["fictional queue growing"],
                "suggestions": ["Consider scaling consumers"],
            },
            {
                "status": "critical",
                "issues": ["errors rising"],
                "suggestions": ["Check the dead-letter queue"],
            },
        ]
    ),
}
_lock = threading.Lock()


def answer(kind: str, prompt: str) -> tuple[dict[str, Any], dict[str, int]]:
    with _lock:
        content = next(ANSWERS[kind])
    return content, {"input_tokens": 90 + len(prompt) // 4, "output_tokens": 38}


def publish_malformed(vhost: str) -> None:
    with pika.BlockingConnection(rabbit.params(vhost)) as connection:
        channel = connection.channel()
        for body in (b"{not json", b'{"genre": "poetry"}', b"\xff\xfe"):
            channel.basic_publish(
                EXCHANGE,
                FICTIONAL,
                body,
                pika.BasicProperties(content_type="application/json", delivery_mode=2),
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=75)
    parser.add_argument("--out", type=Path, default=ROOT / "fixtures" / "metrics-sample.lp")
    args = parser.parse_args()

    with scripted_claude(answer) as claude_url, rabbit.bench_vhost("fixture") as vhost:
        return record(args.seconds, args.out, claude_url, vhost)


def record(seconds: float, out: Path, claude_url: str, vhost: str) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="fixture-run-"))
    metrics_file = workdir / "metrics.lp"
    env = {
        **clean_env(drop=("INFLUXDB_*", "ANTHROPIC_*", "BUDGET_*", "FLEET_*")),
        "ANTHROPIC_API_KEY": "fixture-run-not-a-real-key",
        "ANTHROPIC_BASE_URL": claude_url,
        "DRY_RUN": "false",
        "RABBITMQ_HOST": rabbit.HOST,
        "RABBITMQ_VHOST": vhost,
        "METRICS_FILE": str(metrics_file),
        "BUDGET_LEDGER": str(workdir / "budget.sqlite"),  # the live fleet's own spend ledger
        "DECISION_INTERVAL_SECONDS": "10",
        "AI_CALL_INTERVAL_SECONDS": "3",
        "AI_DECISION_RATE": "0.5",
        "CHECK_INTERVAL_SECONDS": "15",
        "QUEUE_SAMPLE_INTERVAL_SECONDS": "3",
        "FICTIONAL_INTERVAL_SECONDS": "0.5",
        "NONFICTIONAL_INTERVAL_SECONDS": "1",
        "MIN_PUBLISH_INTERVAL_SECONDS": "0.2",
        "BATCH_MAX_WAIT_SECONDS": "2",
    }
    fleet = subprocess.Popen(  # noqa: S603 (our own CLI)
        [
            sys.executable,
            "-m",
            "agents",
            "run",
            "--duration",
            str(seconds),
            "--log-file",
            str(workdir / "fleet.log"),
        ],
        cwd=ROOT,
        env=env,
    )
    time.sleep(seconds / 2)
    publish_malformed(vhost)
    code = fleet.wait(timeout=seconds + 120)
    if code != 0:
        print(f"agents run exited {code}; logs in {workdir}", file=sys.stderr)
        return 1
    lines = metrics_file.read_text().splitlines()
    header = (
        "# fixtures/metrics-sample.lp - InfluxDB line protocol, one point per line.\n"
        f"# Written by a real local run of the fleet ({seconds:.0f} s of `agents run`, "
        "5 agents,\n"
        "# shortened intervals) against RabbitMQ; Claude played by a scripted local Messages API\n"
        "# server (live mode through the real SDK). publish and consume are aggregates per\n"
        "# 1 s flush interval (counts, duration count/sum/max/p50/p99); the other measurements\n"
        "# are one point per event. Regenerate: tools/record_metrics_fixture.py\n"
    )
    out.write_text(header + "\n".join(lines) + "\n")
    print(f"wrote {len(lines)} points to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
