"""The load knee: the highest offered rate two consumer agents keep up with.

Two `agents consumer` processes (dry-run AI, PROCESSING_TIME_MS=0, logs to files) consume while
`benchmarks.flood` processes offer a fixed rate for `seconds`. A step is *bounded* when the
summed ready depth, sampled once a second, neither grows over the second half of the step nor
ends above one second of traffic (`stats.is_bounded`), and the queues drain afterwards. The
search doubles the rate while steps are bounded, then bisects between the last bounded and the
first unbounded rate. End-to-end latency is the flood's send time to the consumer's
"Message consumed" line, joined on message id.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from agents.vocab import QUEUES
from benchmarks import rabbit, stats
from benchmarks.load import CONSUMED_MARK, REPO, DepthSampler, _wait_drained, stop_processes

CONSUMED_MARK_BYTES = CONSUMED_MARK.encode()


class LogTail:
    """Reads only what was appended to the consumer logs since the last call."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)
        self.offsets = {p: p.stat().st_size if p.exists() else 0 for p in self.paths}

    def consumed_since(self) -> dict[str, float]:
        """message_id -> epoch of its "Message consumed" line, for lines added since last time."""
        out: dict[str, float] = {}
        for path in self.paths:
            if not path.exists():
                continue
            with path.open("rb") as handle:
                handle.seek(self.offsets[path])
                data = handle.read()
            # Only whole lines; a partial last line is read next time.
            cut = data.rfind(b"\n") + 1
            self.offsets[path] += cut
            for raw in data[:cut].splitlines():
                if CONSUMED_MARK_BYTES not in raw:
                    continue
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue
                message_id = record.get("context", {}).get("message_id")
                if isinstance(message_id, str):
                    stamp = record["timestamp"].replace("Z", "+00:00")
                    out.setdefault(message_id, datetime.fromisoformat(stamp).timestamp())
        return out


@contextlib.contextmanager
def raw_consumers(vhost: str, workdir: Path, prefetch: int, count: int = 2) -> Iterator[list[Any]]:
    """`benchmarks.raw_consumer` processes: the bare-pika reference for one knee step."""
    import psutil

    procs = [
        subprocess.Popen(
            rabbit.raw_consumer_command(vhost, prefetch),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(count)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            proc.stdout.readline()  # "consuming": registered on both queues
        yield [psutil.Process(p.pid) for p in procs]
    finally:
        stop_processes(procs)


def read_sent(paths: Sequence[Path]) -> dict[str, float]:
    sent: dict[str, float] = {}
    for path in paths:
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) == 2:
                    sent[parts[0]] = float(parts[1])
    return sent


def latencies_ms(sent: dict[str, float], consumed: dict[str, float]) -> list[float]:
    return [max(0.0, (consumed[m] - t) * 1000.0) for m, t in sent.items() if m in consumed]


def offer(
    vhost: str, workdir: Path, rate: float, seconds: float, generators: int, step_no: int
) -> tuple[list[dict[str, Any]], list[Path]]:
    """Run `generators` flood processes sharing `rate`; their reports and sent files."""
    procs, sent_files = [], []
    for g in range(generators):
        sent = workdir / f"knee-{step_no}-sent-{g}.txt"
        sent_files.append(sent)
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.flood",
                    "--vhost",
                    vhost,
                    "--rate",
                    f"{rate / generators:.3f}",
                    "--seconds",
                    str(seconds),
                    "--sent",
                    str(sent),
                    "--seed",
                    str(step_no * 100 + g),
                ],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=seconds + 180)
        if proc.returncode != 0:
            raise RuntimeError(f"flood exited {proc.returncode}: {err[-500:]}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports, sent_files


def _broker_process() -> Any:
    """RabbitMQ's Erlang VM, if this user can see it (for where the CPU goes)."""
    import psutil

    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ("beam.smp", "beam"):
            return proc
    return None


def step(
    vhost: str,
    workdir: Path,
    procs: Sequence[Any],
    tail: LogTail,
    rate: float,
    seconds: float,
    generators: int,
    step_no: int,
) -> dict[str, Any]:
    import psutil

    broker = _broker_process()
    watched = [*procs, *([broker] if broker is not None else [])]
    cpu_before = [sum(proc.cpu_times()[:2]) for proc in watched]
    machine_before = psutil.cpu_times()
    started = time.monotonic()
    with DepthSampler(vhost) as sampler:
        reports, sent_files = offer(vhost, workdir, rate, seconds, generators, step_no)
    wall = time.monotonic() - started
    machine_after = psutil.cpu_times()
    cpu_all = [
        (sum(proc.cpu_times()[:2]) - before) / wall * 100.0
        for proc, before in zip(watched, cpu_before, strict=True)
    ]
    cpu = cpu_all[: len(procs)]
    busy = sum(machine_after) - machine_after.idle - (sum(machine_before) - machine_before.idle)
    offered = sum(r["sent"] for r in reports) / max(r["seconds"] for r in reports)
    # Judge by what was actually offered: a generator that fell behind offered less.
    bounded = stats.is_bounded(sampler.samples, offered)
    drained = _wait_drained(vhost, timeout=20.0)
    if not drained:
        # A backlog the consumers would need minutes for: the next step must start empty.
        rabbit.purge(vhost, QUEUES)
    time.sleep(0.5)  # the last lines reach the log files
    consumed = tail.consumed_since()
    sent = read_sent(sent_files)
    for path in sent_files:
        path.unlink(missing_ok=True)
    lat = latencies_ms(sent, consumed)
    result: dict[str, Any] = {
        "target_rate": rate,
        "offered_rate": round(offered, 1),
        "generator_limited": offered < 0.95 * rate,
        "bounded": bounded and drained,
        "sent": len(sent),
        "consumed_joined": len(lat),
        "final_depth": sampler.samples[-1][1] if sampler.samples else None,
        "max_depth": max((d for _, d in sampler.samples), default=None),
        "depth_slope_per_s": round(
            stats.slope_per_s(sampler.samples[len(sampler.samples) // 2 :]), 2
        ),
        "depth_samples": [(round(t, 1), d) for t, d in sampler.samples],
        "consumer_cpu_pct": [round(c, 1) for c in cpu],
        "broker_cpu_pct": round(cpu_all[-1], 1) if broker is not None else None,
        # All cores together (200 % = both busy): the generators and other sessions are the rest.
        "machine_cpu_pct": round(busy / wall * 100.0, 1),
        "consumer_rss_mb": [round(p.memory_info().rss / 2**20, 1) for p in procs],
        "generators": reports,
    }
    if lat:
        result["e2e_p50_ms"] = round(stats.percentile(lat, 50), 2)
        result["e2e_p99_ms"] = round(stats.percentile(lat, 99), 2)
    return result


def search(
    vhost: str,
    workdir: Path,
    procs: Sequence[Any],
    *,
    start: float,
    ceiling: float,
    seconds: float,
    generators: int,
    refine: int,
    confirm: int,
    log: Any,
    floor: float = 50.0,
) -> dict[str, Any]:
    tail = LogTail([workdir / f"consumer-{i + 1}.log" for i in range(len(procs))])
    steps: list[dict[str, Any]] = []

    def run(rate: float) -> dict[str, Any]:
        result = step(vhost, workdir, procs, tail, rate, seconds, generators, len(steps) + 1)
        steps.append(result)
        log(
            f"knee: offered {result['offered_rate']:.0f}/s (target {rate:.0f}) "
            f"bounded={result['bounded']} p50={result.get('e2e_p50_ms')} "
            f"p99={result.get('e2e_p99_ms')} ms max_depth={result['max_depth']} "
            f"cpu consumers={result['consumer_cpu_pct']}% broker={result['broker_cpu_pct']}% "
            f"machine={result['machine_cpu_pct']}%/200%"
        )
        return result

    low: dict[str, Any] | None = None
    high: float | None = None
    rate = start
    first = run(rate)
    if first["bounded"]:
        low = first
        while not low["generator_limited"] and rate * 2 <= ceiling:
            rate *= 2
            result = run(rate)
            if not result["bounded"]:
                high = rate
                break
            low = result
    else:
        # Below the start: halve until a step holds (a busy machine can be far below it).
        high = rate
        while low is None and rate / 2 >= floor:
            rate /= 2
            result = run(rate)
            if result["bounded"]:
                low = result
            else:
                high = rate
    for _ in range(refine if high is not None and low is not None else 0):
        assert low is not None and high is not None  # the range above is empty otherwise
        middle = (low["target_rate"] + high) / 2
        result = run(middle)
        if result["bounded"]:
            low = result
        else:
            high = middle
    confirms: list[dict[str, Any]] = []
    if low is not None:
        for _ in range(confirm):
            confirms.append(run(low["target_rate"]))
    at_knee = [s for s in ([low] if low else []) + confirms if s["bounded"]]
    limited_by = (
        "consumers (the backlog grew above the knee)"
        if high is not None
        else "load generator (could not offer more)"
        if steps and steps[-1]["generator_limited"]
        else "search ceiling"
    )
    return {
        "steps": steps,
        "knee_target_rate": low["target_rate"] if low else None,
        "at_knee": at_knee,
        "first_unbounded_rate": high,
        "limited_by": limited_by,
        "seconds_per_step": seconds,
        "generators": generators,
    }
