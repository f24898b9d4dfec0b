"""latest.json, latest.csv, latest.md (the README table) and latest.png from one results dict."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmarks.stats import HEADLINE_KEYS, RSS_TARGETS_MB, TARGETS, target_status

LABELS: dict[str, tuple[str, str]] = {
    "consumer_ratio": ("Consumer agent / bare pika consumer (in-process)", "x"),
    "consumer_process_ratio": ("Consumer agent / bare pika consumer (processes, drain)", "x"),
    "publisher_ratio": ("Publisher agent / bare pika publisher", "x"),
    "peer_ratio": ("Consumer agent / bare aio-pika consumer", "x"),
    "knee_msgs_per_s": ("Load knee, 2 consumer agents (backlog bounded)", "msg/s"),
    "knee_p99_ms": ("End-to-end latency p99 at the knee", "ms"),
    "max_sustained_rate_msgs_per_s": ("Max sustained rate, 2 consumer agents", "msg/s"),
    "e2e_latency_p99_ms": ("End-to-end latency p99 at that rate", "ms"),
    "cost_10min_usd": ("Cost of a simulated 10-minute run", "USD"),
    "agent_rss_mb_max": ("Largest agent RSS after the local run", "MB"),
    "tests_wall_s": ("Test suite wall time (unit + integration)", "s"),
}


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if unit == "USD":
            return f"${value:.4f}"
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.0f}"
    return str(value)


def csv_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key in HEADLINE_KEYS:
        spread = results.get(f"{key}_spread") or {}
        op, bound = TARGETS.get(key, ("", None))
        rows.append(
            {
                "key": key,
                "median": results.get(key),
                "min": spread.get("min"),
                "max": spread.get("max"),
                "range_pct": spread.get("range_pct"),
                "rounds": spread.get("n"),
                "target": f"{op} {bound}" if bound is not None else "",
                "status": target_status(key, results.get(key)),
            }
        )
    return rows


def markdown(results: Mapping[str, Any]) -> str:
    machine = results.get("machine", {})
    rounds = results.get("parameters", {}).get("rounds", "?")
    lines = [
        f"Benchmarks of {results.get('date', '?')} on {machine.get('cpu_model', '?')} "
        f"({machine.get('cores', '?')} cores), `nox -s bench`; medians of "
        f"{rounds} interleaved rounds, spread = min..max.",
        "",
        "| figure | median | spread (min..max) | target | |",
        "|---|---:|---|---|---|",
    ]
    for row in csv_rows(results):
        label, unit = LABELS[row["key"]]
        spread = (
            f"{_fmt(row['min'], unit)}..{_fmt(row['max'], unit)} (n={row['rounds']})"
            if row["min"] is not None
            else "n/a"
        )
        status = {"met": "met", "missed": "**missed**"}.get(row["status"], "")
        unit_text = "" if unit in ("x", "USD") or row["median"] is None else f" {unit}"
        lines.append(
            f"| {label} | {_fmt(row['median'], unit)}{unit_text} | {spread} | {row['target']} "
            f"| {status} |"
        )
    rss = results.get("agent_rss_mb") or {}
    startup = results.get("startup_s") or {}
    if rss:
        lines += [
            "",
            "Footprint per agent type and AI mode (median, min..max):",
            "",
            "| agent | mode | RSS | target | start-up |",
            "|---|---|---:|---|---:|",
        ]
        for kind in sorted(rss):
            for mode in sorted(rss[kind]):
                r = rss[kind][mode]
                t = (startup.get(kind) or {}).get(mode) or {}
                bound = RSS_TARGETS_MB.get(mode)
                status = "" if bound is None else ("met" if r["median"] <= bound else "**missed**")
                lines.append(
                    f"| {kind} | {mode} | {r['median']:.0f} MB ({r['min']:.0f}..{r['max']:.0f}) "
                    f"| <= {bound:.0f} MB {status} | {t.get('median', 0):.2f} s "
                    f"({t.get('min', 0):.2f}..{t.get('max', 0):.2f}) |"
                )
    raw = results.get("raw", {})
    rates = raw.get("rates_msgs_per_s", {})
    if rates:
        lines += ["", "Raw rates behind the ratios (msg/s, median of rounds):", ""]
        lines += [f"- {name}: {_fmt(data.get('median'))}" for name, data in rates.items()]
    notes = results.get("notes", [])
    if notes:
        lines += ["", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"


def chart(results: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    raw = results.get("raw", {})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ratio_keys = ["consumer_ratio", "consumer_process_ratio", "publisher_ratio", "peer_ratio"]
    medians = [results.get(k) or 0.0 for k in ratio_keys]
    lows = [
        m - ((results.get(f"{k}_spread") or {}).get("min", m))
        for k, m in zip(ratio_keys, medians, strict=True)
    ]
    highs = [
        ((results.get(f"{k}_spread") or {}).get("max", m)) - m
        for k, m in zip(ratio_keys, medians, strict=True)
    ]
    ax = axes[0]
    ax.bar(
        ["consumer", "consumer\n(processes)", "publisher", "peer"],
        medians,
        yerr=[lows, highs],
        capsize=6,
        color="#4c72b0",
    )
    for i, key in enumerate(ratio_keys):
        ax.hlines(TARGETS[key][1], i - 0.4, i + 0.4, colors="#c44e52", linestyles="dashed")
    ax.set_title("Agent / raw client throughput (target dashed)")
    ax.set_ylabel("ratio (median, min..max)")
    ax = axes[1]
    steps = sorted(raw.get("knee", {}).get("steps", []), key=lambda s: s["offered_rate"])
    if steps:
        offered = [s["offered_rate"] for s in steps]
        ax.plot(offered, [s.get("e2e_p99_ms") or 0 for s in steps], "o-", label="e2e p99 (ms)")
        ax.plot(offered, [s.get("e2e_p50_ms") or 0 for s in steps], "^-", label="e2e p50 (ms)")
        for s in steps:
            if not s["bounded"]:
                ax.axvline(s["offered_rate"], color="#c44e52", alpha=0.3)
        ax.set_yscale("log")
        ax.set_xlabel("offered rate (msg/s); red lines: backlog not bounded")
        ax.set_ylabel("end-to-end latency (ms)")
        ax2 = ax.twinx()
        ax2.plot(offered, [s.get("max_depth") or 0 for s in steps], "s--", color="#8c8c8c")
        ax2.set_ylabel("max queue depth (grey)")
        ax.legend(loc="upper left")
    ax.set_title("Load knee: 2 consumer agents")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(results: Mapping[str, Any], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "latest.json",
        "csv": out / "latest.csv",
        "md": out / "latest.md",
        "png": out / "latest.png",
    }
    paths["json"].write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    with paths["csv"].open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(csv_rows(results)[0]))
        writer.writeheader()
        writer.writerows(csv_rows(results))
    paths["md"].write_text(markdown(results), encoding="utf-8")
    chart(results, paths["png"])
    return paths
