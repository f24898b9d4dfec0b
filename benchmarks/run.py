"""`nox -s bench` entry point: every measurement of issues 7 and 13, then latest.{json,csv,md,png}.

    python -m benchmarks.run                       # the default profile (~10 min on 2 cores)
    python -m benchmarks.run --rounds 7 --rss-seconds 300   # the long one
    python -m benchmarks.run --skip tests,knee      # a quick look

Every headline figure is a median over rounds with its spread; the throughput figures are
ratios against raw clients measured in the same rounds, in rotating order, on a throwaway vhost.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from agents.core.settings import ConsumerSettings
from benchmarks import (
    agent_paths,
    baselines,
    cost,
    footprint,
    knee,
    load,
    process_drain,
    profiling,
    rabbit,
    report,
    resources,
)
from benchmarks.stats import (
    HEADLINE_KEYS,
    by_type_and_mode,
    headline,
    median,
    missing_keys,
    ratios,
    spread,
)

RESULTS = Path(__file__).resolve().parent / "results"
PHASES = ("ratios", "process", "footprint", "locust", "knee", "cost", "rss", "tests")
T = TypeVar("T")


def log(message: str) -> None:
    print(f"[bench {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def retrying(what: str, fn: Callable[[], T], attempts: int = 3) -> T:
    """A shared broker on a shared machine: a round that hits a dropped connection is rerun."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts:
                raise
            log(f"{what} failed ({type(exc).__name__}: {exc}); retrying")
    raise AssertionError("unreachable")


# --- part 2: ratios ---------------------------------------------------------------------------


def measure_ratios(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    n_cons, n_pub, prefetch = args.consumer_messages, args.publisher_messages, args.prefetch
    rates: dict[str, list[float]] = {
        k: []
        for k in (
            "pika_consumer",
            "agent_consumer",
            "aio_pika_consumer",
            "pika_publisher",
            "agent_publisher",
            "agent_publisher_no_disk",
        )
    }
    profiles: dict[str, Any] = {}
    with rabbit.bench_vhost("bench-ratio") as vhost, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        rabbit.declare(vhost)
        queues = baselines.QUEUES
        bodies = baselines.make_bodies(n_cons)

        def consume_once(kind: str, count: int, around: Any = None) -> float:
            rabbit.prefill(vhost, bodies[:count])
            rabbit.wait_for_depth(vhost, queues, count)
            if kind == "pika_consumer":
                rate = baselines.pika_consume(vhost, count, prefetch)
            elif kind == "aio_pika_consumer":
                rate = baselines.aio_pika_consume(vhost, count, prefetch)
            else:
                rate = agent_paths.consumer_agent(vhost, count, prefetch, workdir, around=around)
            rabbit.wait_for_depth(vhost, queues, 0)
            return rate

        def publish_once(kind: str, count: int, around: Any = None) -> float:
            rabbit.purge(vhost, queues)
            if kind == "pika_publisher":
                rate = baselines.pika_publish(vhost, baselines.make_bodies(count, seed=count))
            else:
                files = kind == "agent_publisher"
                rate = agent_paths.publisher_agent(vhost, count, workdir, around, files)
            rabbit.wait_for_depth(vhost, queues, count)
            rabbit.purge(vhost, queues)
            return rate

        log("ratios: warm-up round (untimed: imports, first connections)")
        for kind in ("pika_consumer", "agent_consumer", "aio_pika_consumer"):
            consume_once(kind, min(500, n_cons))
        for kind in ("pika_publisher", "agent_publisher"):
            publish_once(kind, min(300, n_pub))

        consumer_kinds = ["pika_consumer", "agent_consumer", "aio_pika_consumer"]
        # The no-disk variant is a diagnostic (logs to /dev/null, metrics in memory): it tells
        # whether the agent's two appends per message slow the broker's confirms (shared disk).
        publisher_kinds = ["pika_publisher", "agent_publisher", "agent_publisher_no_disk"]
        for round_no in range(args.rounds):
            # Rotate the order so no side always runs first (or last) in a round.
            shift = round_no % 3
            for kind in consumer_kinds[shift:] + consumer_kinds[:shift]:
                rates[kind].append(retrying(kind, functools.partial(consume_once, kind, n_cons)))
            for kind in publisher_kinds[shift:] + publisher_kinds[:shift]:
                rates[kind].append(retrying(kind, functools.partial(publish_once, kind, n_pub)))
            log(
                f"ratios: round {round_no + 1}/{args.rounds}: "
                + ", ".join(f"{k}={v[-1]:.0f}/s" for k, v in rates.items())
            )

        if args.profile:
            log("ratios: profiling the agent paths (one extra, untimed round each)")
            consume_once("agent_consumer", n_cons, profiling.profiled(out, "consumer", profiles))
            publish_once("agent_publisher", n_pub, profiling.profiled(out, "publisher", profiles))

    series = {
        "consumer_ratio": ratios(rates["agent_consumer"], rates["pika_consumer"]),
        "publisher_ratio": ratios(rates["agent_publisher"], rates["pika_publisher"]),
        "peer_ratio": ratios(rates["agent_consumer"], rates["aio_pika_consumer"]),
        "publisher_no_disk_ratio": ratios(
            rates["agent_publisher_no_disk"], rates["pika_publisher"]
        ),
    }
    return {
        "series": series,
        "rates": rates,
        "profile_self_time_pct": profiles,
    }


# --- issue 13: whole processes, footprint, the knee -------------------------------------------


def measure_process(args: argparse.Namespace) -> dict[str, Any]:
    rates: dict[str, list[float]] = {"raw": [], "agent": []}
    with rabbit.bench_vhost("bench-drain") as vhost, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        rabbit.declare(vhost)
        bodies = baselines.make_bodies(args.process_messages, seed=5)
        log("process: warm-up (untimed)")
        for kind in ("raw", "agent"):
            process_drain.drain_rate(vhost, workdir, kind, bodies[:500], args.prefetch)
        for round_no in range(args.rounds):
            order = ["raw", "agent"] if round_no % 2 == 0 else ["agent", "raw"]
            for kind in order:
                rates[kind].append(
                    retrying(
                        f"process {kind}",
                        functools.partial(
                            process_drain.drain_rate, vhost, workdir, kind, bodies, args.prefetch
                        ),
                    )
                )
            log(
                f"process: round {round_no + 1}/{args.rounds}: raw={rates['raw'][-1]:.0f}/s "
                f"agent={rates['agent'][-1]:.0f}/s"
            )
    return {"rates": rates, "series": ratios(rates["agent"], rates["raw"])}


def measure_footprint(args: argparse.Namespace) -> list[dict[str, Any]]:
    with rabbit.bench_vhost("bench-footprint") as vhost, tempfile.TemporaryDirectory() as tmp:
        rabbit.declare(vhost)
        return footprint.rounds(vhost, Path(tmp), args.footprint_rounds, args.footprint_settle, log)


def measure_knee(args: argparse.Namespace) -> dict[str, Any]:
    with rabbit.bench_vhost("bench-knee") as vhost, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        rabbit.declare(vhost)
        with load.consumer_agents(vhost, workdir) as procs:
            found = knee.search(
                vhost,
                workdir,
                procs,
                start=args.knee_start_rate,
                ceiling=args.knee_max_rate,
                seconds=args.knee_seconds,
                generators=args.knee_generators,
                refine=args.knee_refine,
                confirm=args.knee_confirm_rounds,
                log=log,
            )
        reference = found["first_unbounded_rate"]
        if args.knee_raw_check and reference:
            # Where the time goes: at the rate the agents fell behind, do two bare pika consumer
            # processes (json.loads + ack) keep up on this machine?
            with knee.raw_consumers(vhost, workdir, args.prefetch) as raw_procs:
                tail = knee.LogTail([])
                raw = knee.step(
                    vhost,
                    workdir,
                    raw_procs,
                    tail,
                    reference,
                    args.knee_seconds,
                    args.knee_generators,
                    999,
                )
            raw.pop("depth_samples", None)
            found["raw_consumers_at_first_unbounded"] = raw
            log(
                f"knee: 2 bare pika consumers at {raw['offered_rate']:.0f}/s: "
                f"bounded={raw['bounded']} max_depth={raw['max_depth']} "
                f"cpu={raw['consumer_cpu_pct']}% broker={raw['broker_cpu_pct']}%"
            )
        return found


# --- part 1: Locust ---------------------------------------------------------------------------


def measure_locust(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    with rabbit.bench_vhost("bench-locust") as vhost:
        rabbit.declare(vhost)
        for round_no in range(args.locust_rounds):
            rows = load.run_locust(
                vhost,
                out / "locust" / f"round{round_no + 1}",
                users=args.locust_users,
                seconds=args.locust_seconds,
                classes=["PublisherUser", "ConsumerUser"],
                env={"BENCH_PREFETCH": str(args.prefetch)},
            )
            run = {name: load.locust_figures(row) for name, row in rows.items() if name}
            runs.append(run)
            pub = run.get("publish", {})
            log(
                f"locust: round {round_no + 1}: publish {pub.get('msgs_per_s', 0):.0f}/s, "
                f"p99 {pub.get('p99_ms')} ms, failures {pub.get('failures')}"
            )
            rabbit.purge(vhost, baselines.QUEUES)
    summary: dict[str, Any] = {}
    for name in ("publish", "consume e2e"):
        for figure in ("msgs_per_s", "p50_ms", "p95_ms", "p99_ms", "failures"):
            values = [r[name][figure] for r in runs if name in r]
            if values:
                summary[f"{name} {figure}"] = {"median": median(values), **spread(values)}
    return {"runs": runs, "summary": summary, "users": args.locust_users}


# --- part 4 and 5 -----------------------------------------------------------------------------


def measure_cost(args: argparse.Namespace) -> dict[str, Any]:
    runs = [cost.simulate(seconds=600.0, seed=i + 1) for i in range(args.cost_rounds)]
    totals = [cost.totals(r) for r in runs]
    return {
        "per_agent": runs[0],
        "totals": totals,
        "spec_budget_10min_usd": cost.SPEC_BUDGET_10MIN_USD,
        **cost.plan_bound(),
        "cassettes": cost.cassette_provenance(),
    }


def machine() -> dict[str, Any]:
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_start": list(os.getloadavg()),
    }
    try:
        info["rabbitmq"] = rabbit.management("GET", "/api/overview").get("rabbitmq_version")
    except Exception:
        info["rabbitmq"] = None
    return info


# --- assembly ---------------------------------------------------------------------------------


def assemble(
    args: argparse.Namespace, parts: dict[str, Any], errors: dict[str, str], info: dict[str, Any]
) -> dict[str, Any]:
    results: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds")}
    series: dict[str, list[float]] = {}
    raw: dict[str, Any] = {}
    notes: list[str] = []
    if "ratios" in parts:
        series.update(parts["ratios"]["series"])
        raw["rates_msgs_per_s"] = {
            k: {"median": median(v), "rounds": v} for k, v in parts["ratios"]["rates"].items()
        }
        raw["ratio_rounds"] = parts["ratios"]["series"]
        raw["profile_self_time_pct"] = parts["ratios"]["profile_self_time_pct"]
    if "process" in parts:
        series["consumer_process_ratio"] = parts["process"]["series"]
        raw["process_drain_msgs_per_s"] = {
            k: {"median": median(v), "rounds": v} for k, v in parts["process"]["rates"].items()
        }
        notes.append(
            f"consumer_process_ratio: `agents consumer` and a bare pika consumer process "
            f"(json.loads + ack), each draining {args.process_messages} prefilled messages, "
            f"timed from outside by sampling the queue depth, prefetch {args.prefetch}."
        )
    footprint_rows = parts.get("footprint") or []
    results["agent_rss_mb"] = by_type_and_mode(footprint_rows, "rss_mb") or None
    results["startup_s"] = by_type_and_mode(footprint_rows, "startup_s") or None
    if footprint_rows:
        raw["footprint"] = footprint_rows
        wrong = [r for r in footprint_rows if r.get("actual_mode") != r["mode"]]
        if wrong:
            notes.append(f"footprint: {len(wrong)} runs resolved another AI mode than asked")
        notes.append(
            f"agent_rss_mb / startup_s: one `agents <type>` process per type and AI mode, "
            f"{args.footprint_rounds} rounds; start-up = spawn to the 'RabbitMQ connected' line, "
            f"RSS {args.footprint_settle:.0f} s later; metrics to the embedded file "
            "(INFLUXDB_URL unset); live mode against a local scripted Messages API."
        )
    if "knee" in parts:
        kn = parts["knee"]
        raw["knee"] = kn
        if kn["at_knee"]:
            offered = [s["offered_rate"] for s in kn["at_knee"]]
            p99 = [s["e2e_p99_ms"] for s in kn["at_knee"] if "e2e_p99_ms" in s]
            series["knee_msgs_per_s"] = offered
            series["knee_p99_ms"] = p99
            series["max_sustained_rate_msgs_per_s"] = offered
            series["e2e_latency_p99_ms"] = p99
            raw["knee_p50_ms"] = [s.get("e2e_p50_ms") for s in kn["at_knee"]]
            raw["consumer_cpu_pct_at_knee"] = [s["consumer_cpu_pct"] for s in kn["at_knee"]]
        notes.append(
            f"Knee: 2 consumer agents, load from {args.knee_generators} publisher processes "
            f"without per-message confirms, {args.knee_seconds:.0f} s per step; limited by: "
            f"{kn['limited_by']}; first unbounded offered rate: {kn['first_unbounded_rate']}."
        )
    if "locust" in parts:
        raw["locust"] = parts["locust"]
    if "cost" in parts:
        c = parts["cost"]
        series["cost_10min_usd"] = [t["usd"] for t in c["totals"]]
        raw["cost"] = c
        synthetic = sum(v["synthetic"] for v in c["cassettes"].values())
        if synthetic:
            notes.append(
                f"Cost replays {synthetic} seeded (synthetic) cassette answers: their "
                "usage numbers are estimates until `nox -s record` re-records them live."
            )
    if "rss" in parts:
        rss_runs = parts["rss"]
        series["agent_rss_mb_max"] = [max(r.values()) for r in rss_runs if r]
        raw["agent_rss_mb"] = rss_runs
        if args.rss_seconds < 300:
            notes.append(
                f"RSS read after {args.rss_seconds:.0f} s of `agents run` "
                "(the issue's 5 minutes: --rss-seconds 300)."
            )
    if "tests" in parts:
        series["tests_wall_s"] = [t["seconds"] for t in parts["tests"]]
        raw["tests"] = parts["tests"]
        last = parts["tests"][-1]
        notes.append(
            f"Test suite timed as `nox -s tests` selects it: {last['summary']} "
            f"(exit {last['exit_code']})."
        )
    for key in HEADLINE_KEYS:
        values = series.get(key) or []
        if values:
            results[key], results[f"{key}_spread"] = headline(values)
            results[key] = round(results[key], 6)
        else:
            results[key], results[f"{key}_spread"] = None, None
    info["load_average_end"] = list(os.getloadavg())
    results["machine"] = info
    results["parameters"] = {k: v for k, v in vars(args).items() if k != "out"}
    results["raw"] = raw
    results["notes"] = notes
    results["errors"] = errors
    missing = missing_keys(results)
    if missing:
        raise AssertionError(f"results lack keys {missing}")
    return results


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--rounds", type=int, default=5, help="ratio rounds (>= 3)")
    p.add_argument("--consumer-messages", type=int, default=5000)
    p.add_argument("--publisher-messages", type=int, default=2000)
    p.add_argument(
        "--prefetch",
        type=int,
        default=int(ConsumerSettings.model_fields["prefetch_count"].default),
        help="the consumer agent's default",
    )
    p.add_argument("--process-messages", type=int, default=10000)
    p.add_argument("--footprint-rounds", type=int, default=3)
    p.add_argument("--footprint-settle", type=float, default=3.0)
    p.add_argument("--knee-seconds", type=float, default=60.0, help="per step (the issue: 60)")
    p.add_argument("--knee-generators", type=int, default=2)
    p.add_argument("--knee-start-rate", type=float, default=2000.0)
    p.add_argument("--knee-max-rate", type=float, default=12000.0)
    p.add_argument("--knee-refine", type=int, default=2)
    p.add_argument("--knee-confirm-rounds", type=int, default=2)
    p.add_argument("--no-knee-raw-check", dest="knee_raw_check", action="store_false")
    p.add_argument("--no-profile", dest="profile", action="store_false")
    p.add_argument("--locust-rounds", type=int, default=3)
    p.add_argument("--locust-users", type=int, default=6)
    p.add_argument("--locust-seconds", type=int, default=10)
    p.add_argument("--cost-rounds", type=int, default=3)
    p.add_argument("--rss-seconds", type=float, default=60.0, help="the issue says 300")
    p.add_argument("--tests-rounds", type=int, default=1)
    p.add_argument("--skip", default="", help=f"comma-separated phases from {','.join(PHASES)}")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.rounds < 3:
        p.error("--rounds must be at least 3 (median and spread need them)")
    unknown = set(filter(None, args.skip.split(","))) - set(PHASES)
    if unknown:
        p.error(f"unknown phases in --skip: {sorted(unknown)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    out: Path = args.out
    info = machine()
    parts: dict[str, Any] = {}
    errors: dict[str, str] = {}
    started = time.monotonic()
    phases: dict[str, Callable[[], Any]] = {
        "ratios": lambda: measure_ratios(args, out),
        "process": lambda: measure_process(args),
        "footprint": lambda: measure_footprint(args),
        "locust": lambda: measure_locust(args, out),
        "knee": lambda: measure_knee(args),
        "cost": lambda: measure_cost(args),
        "rss": lambda: [resources.with_vhost_fleet_rss(args.rss_seconds)],
        # Last and alone: the suite is timed on a machine the benchmarks no longer load.
        "tests": lambda: [resources.tests_wall_seconds() for _ in range(args.tests_rounds)],
    }
    for name in PHASES:
        if name in skip:
            continue
        log(f"phase {name} ({time.monotonic() - started:.0f} s in)")
        try:
            parts[name] = phases[name]()
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"
            log(f"phase {name} FAILED: {errors[name]}")
            traceback.print_exc()
        # Written after every phase, so a run stopped part way keeps what it measured.
        partial = assemble(args, parts, errors, dict(info))
        partial["duration_s"] = round(time.monotonic() - started, 1)
        partial["notes"].append(f"phases completed: {', '.join(parts) or 'none'}")
        report.write_all(partial, out)
    results = assemble(args, parts, errors, info)
    results["duration_s"] = round(time.monotonic() - started, 1)
    paths = report.write_all(results, out)
    print(report.markdown(results))
    log(f"wrote {', '.join(str(p) for p in paths.values())} in {results['duration_s']} s")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
