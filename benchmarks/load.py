"""Locust runs (always a subprocess: Locust monkey-patches with gevent on import) and the
end-to-end search for the highest rate two consumer agents sustain."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from agents.core.broker import passive_consumers
from agents.testing import clean_env
from agents.testing.waiting import wait_until
from agents.vocab import QUEUES, Event
from benchmarks import rabbit, stats

REPO = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
# How a consumer agent's "Message consumed" JSON line is told apart without parsing every line.
CONSUMED_MARK = f'"{Event.MESSAGE_CONSUMED}"'


def locust_bin() -> str:
    candidate = Path(sys.executable).parent / "locust"
    return str(candidate) if candidate.exists() else "locust"


def run_locust(
    vhost: str,
    csv_prefix: Path,
    *,
    users: int,
    seconds: int,
    classes: Sequence[str],
    env: dict[str, str] | None = None,
) -> dict[str, dict[str, float]]:
    """One headless Locust run; returns its stats rows by name (`publish`, `consume e2e`)."""
    csv_prefix.parent.mkdir(parents=True, exist_ok=True)
    command = [
        locust_bin(),
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{seconds}s",
        "--host",
        rabbit.amqp_url(vhost),
        "--csv",
        str(csv_prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--stop-timeout",
        "5",
        *classes,
    ]
    result = subprocess.run(
        command,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=False,
    )
    stats_file = Path(f"{csv_prefix}_stats.csv")
    if not stats_file.exists():
        raise RuntimeError(
            f"locust wrote no stats (exit {result.returncode}): {result.stderr[-800:]}"
        )
    return parse_stats_csv(stats_file.read_text(encoding="utf-8"))


def parse_stats_csv(text: str) -> dict[str, dict[str, float]]:
    """Locust's `_stats.csv` as {name: {column: number}} (non-numeric cells dropped)."""
    rows: dict[str, dict[str, float]] = {}
    for row in csv.DictReader(text.splitlines()):
        name = row.get("Name") or ""
        numbers: dict[str, float] = {}
        for key, value in row.items():
            try:
                numbers[key] = float(value)
            except (TypeError, ValueError):
                continue
        rows[name] = numbers
    return rows


def locust_figures(row: dict[str, float]) -> dict[str, float]:
    return {
        "msgs_per_s": row.get("Requests/s", 0.0),
        "p50_ms": row.get("50%", 0.0),
        "p95_ms": row.get("95%", 0.0),
        "p99_ms": row.get("99%", 0.0),
        "requests": row.get("Request Count", 0.0),
        "failures": row.get("Failure Count", 0.0),
    }


# --- end to end --------------------------------------------------------------------------------


class DepthSampler:
    """Samples the summed ready depth of both queues once a second on its own connection."""

    def __init__(self, vhost: str) -> None:
        self.vhost = vhost
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import pika

        connection = pika.BlockingConnection(rabbit.params(self.vhost))
        channel = connection.channel()
        started = time.monotonic()
        try:
            while not self._stop.is_set():
                total = sum(
                    int(channel.queue_declare(q, passive=True).method.message_count) for q in QUEUES
                )
                self.samples.append((time.monotonic() - started, float(total)))
                connection.sleep(1.0)
        finally:
            connection.close()

    def __enter__(self) -> DepthSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def agent_env(vhost: str, workdir: Path, agent_id: str) -> dict[str, str]:
    env = clean_env(drop=("RABBITMQ_*", "INFLUXDB_*", "ANTHROPIC_API_KEY"))
    env.update(
        {
            "RABBITMQ_HOST": rabbit.HOST,
            "RABBITMQ_PORT": str(rabbit.PORT),
            "RABBITMQ_USER": rabbit.USER,
            "RABBITMQ_PASS": rabbit.PASSWORD,
            "RABBITMQ_VHOST": vhost,
            "METRICS_FILE": str(workdir / f"{agent_id}.lp"),
            "PYTHONPATH": str(REPO),
        }
    )
    return env


@contextlib.contextmanager
def consumer_agents(vhost: str, workdir: Path, count: int = 2) -> Iterator[list[Any]]:
    """`agents consumer` processes (PROCESSING_TIME_MS=0, AI in dry-run), logs to files."""
    import psutil

    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(1, count + 1):
            agent_id = f"consumer-{i}"
            env = agent_env(vhost, workdir, agent_id)
            env.update({"CONSUMER_ID": agent_id, "PROCESSING_TIME_MS": "0", "DRY_RUN": "true"})
            log = (workdir / f"{agent_id}.log").open("ab")
            procs.append(spawn_agent("consumer", env, log))
        _wait_consuming(vhost, count, timeout=30.0)
        warm_up(vhost, [workdir / f"consumer-{i}.log" for i in range(1, count + 1)])
        yield [psutil.Process(p.pid) for p in procs]
    finally:
        stop_processes(procs)


def spawn_agent(
    kind: str, env: Mapping[str, str], log: IO[bytes], cwd: Path = REPO
) -> subprocess.Popen[bytes]:
    """`python -m agents <kind>` with its stdout and stderr going to `log`."""
    return subprocess.Popen(
        [sys.executable, "-m", "agents", kind],
        cwd=cwd,
        env=dict(env),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def stop_processes(procs: Sequence[subprocess.Popen[Any]], timeout: float = 15.0) -> None:
    """SIGTERM every process still running, then wait; whatever outlives `timeout` is killed."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def consumed_lines(paths: Sequence[Path]) -> int:
    # Counted in bytes, without decoding: prefetch_choice polls this every few ms on 2 cores
    # shared with the agent it measures.
    mark = CONSUMED_MARK.encode()
    total = 0
    for path in paths:
        try:
            total += path.read_bytes().count(mark)
        except OSError:  # not created yet
            continue
    return total


def warm_up(vhost: str, logs: Sequence[Path], count: int = 40, timeout: float = 60.0) -> None:
    """Push a few messages through before measuring: an agent's first messages pay one-off
    costs (first-use imports and caches, seconds on a busy 2-core machine) that belong to
    start-up, not to the sustained rate."""
    from benchmarks.baselines import make_bodies

    before = consumed_lines(logs)
    rabbit.prefill(vhost, make_bodies(count, seed=99))
    wait_until(
        lambda: consumed_lines(logs) >= before + count,
        timeout,
        f"consumer agents to handle {count} warm-up messages",
    )


def _wait_consuming(vhost: str, count: int, timeout: float) -> None:
    """Until each queue has `count` consumers (agents connected and registered)."""
    import pika

    def consuming() -> bool:
        try:
            connection = pika.BlockingConnection(rabbit.params(vhost))
            try:
                channel = connection.channel()
                seen = [passive_consumers(channel, q) for q in QUEUES]
            finally:
                connection.close()
        except Exception:  # queues not declared yet: the agents declare them
            return False
        return all(c >= count for c in seen)

    wait_until(consuming, timeout, f"{count} consumer agents consuming", interval=0.2)


def e2e_latencies(sent_log: Path, agent_logs: Sequence[Path]) -> list[float]:
    """Published_at (the Locust publisher's side file) to the consumer agents' `Message consumed`
    log line timestamp, joined on message_id, in ms."""
    sent: dict[str, float] = {}
    if sent_log.exists():
        for line in sent_log.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) == 2:
                sent[parts[0]] = float(parts[1])
    out: list[float] = []
    for path in agent_logs:
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if CONSUMED_MARK not in line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            published = sent.get(str(record.get("context", {}).get("message_id")))
            if published is None:
                continue
            done = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()
            out.append(max(0.0, (done - published) * 1000.0))
    return out


def e2e_step(
    vhost: str,
    workdir: Path,
    procs: Sequence[Any],
    rate: float,
    seconds: int,
    users: int,
    step_no: int,
) -> dict[str, Any]:
    """Offer `rate` msgs/s for `seconds` and judge whether the consumers kept depth bounded."""
    sent_log = workdir / f"sent-{step_no}.txt"
    for proc in procs:
        proc.cpu_percent(None)  # start the CPU window
    cpu_before = [sum(proc.cpu_times()[:2]) for proc in procs]
    started = time.monotonic()
    with DepthSampler(vhost) as sampler:
        rows = run_locust(
            vhost,
            workdir / f"e2e-{step_no}",
            users=users,
            seconds=seconds,
            classes=["PublisherUser"],
            env={"BENCH_RATE_PER_USER": f"{rate / users:.3f}", "BENCH_SENT_LOG": str(sent_log)},
        )
    wall = time.monotonic() - started
    cpu = [
        (sum(proc.cpu_times()[:2]) - before) / wall * 100.0
        for proc, before in zip(procs, cpu_before, strict=True)
    ]
    rss = [proc.memory_info().rss / 2**20 for proc in procs]
    achieved = rows.get("publish", {}).get("Requests/s", 0.0)
    bounded = stats.is_bounded(sampler.samples, rate)
    drained = _wait_drained(vhost, timeout=30.0)
    latencies = e2e_latencies(
        sent_log, [workdir / f"consumer-{i + 1}.log" for i in range(len(procs))]
    )
    step: dict[str, Any] = {
        "target_rate": rate,
        "achieved_rate": round(achieved, 1),
        "publisher_limited": achieved < 0.9 * rate,
        "bounded": bounded and drained,
        "depth_samples": sampler.samples,
        "final_depth": sampler.samples[-1][1] if sampler.samples else None,
        "depth_slope_per_s": round(
            stats.slope_per_s(sampler.samples[len(sampler.samples) // 2 :]), 2
        ),
        "consumer_cpu_pct": [round(c, 1) for c in cpu],
        "consumer_rss_mb": [round(r, 1) for r in rss],
        "latencies_joined": len(latencies),
    }
    if latencies:
        step["e2e_p50_ms"] = round(stats.percentile(latencies, 50), 2)
        step["e2e_p99_ms"] = round(stats.percentile(latencies, 99), 2)
    return step


def _wait_drained(vhost: str, timeout: float) -> bool:
    try:
        rabbit.wait_for_depth(vhost, QUEUES, 0, timeout=timeout)
    except TimeoutError:
        return False
    return True
