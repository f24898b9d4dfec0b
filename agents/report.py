"""`agents report`: a picture of a run without Docker, from the embedded metrics file.

One PNG with the panels that matter most (messages published and consumed, queue depths, the AI's
decisions by agent and action over time, tokens and cost against the caps) and one HTML page
around it with the decisions' reasoning. It reads measurement and field names from the same schema
module the Grafana dashboards are built from (agents/core/metrics/schema.py), so a renamed field
breaks both the same way.

Counts are *sums* of the count fields, not numbers of points, so the report reads both a point per
message and per-interval aggregates (a point carrying `messages_consumed=37`).
"""

from __future__ import annotations

import argparse
import base64
import html
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.core.metrics.line_protocol import ParsedPoint
from agents.core.metrics.reader import iter_file
from agents.core.metrics.schema import AI_DECISION, CONSUME, PUBLISH, QUEUE_DEPTH
from agents.vocab import Event

if TYPE_CHECKING:
    from agents.core.settings import CommonSettings

BUCKET_S = 5.0
ACTION_COLOURS = {
    "continue": "#2ca02c",
    "slow_down": "#ff7f0e",
    "speed_up": "#17becf",
    "process": "#98df8a",
    "batch": "#1f77b4",
    "flag": "#e377c2",
    "healthy": "#2ca02c",
    "warning": "#ffbf00",
    "critical": "#d62728",
}


@dataclass
class Decision:
    at: datetime
    agent: str
    agent_type: str
    action: str
    fallback: str
    reasoning: str
    tokens: int
    cost: float


@dataclass
class RunData:
    """The series the report draws, each a list of (time, value) or of decisions."""

    published: dict[datetime, float] = field(default_factory=dict)
    consumed: dict[datetime, float] = field(default_factory=dict)
    depths: dict[str, list[tuple[datetime, float]]] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    start: datetime | None = None
    end: datetime | None = None

    def series(self) -> dict[str, int]:
        """How many values each drawn series holds (the test asserts none is empty)."""
        counts = {
            "published": len(self.published),
            "consumed": len(self.consumed),
            "decisions": len(self.decisions),
            "tokens": sum(1 for d in self.decisions if d.tokens),
        }
        counts["cost"] = counts["decisions"]  # $0 in replay is still a drawn series
        for queue, points in self.depths.items():
            counts[f"depth {queue}"] = len(points)
        return counts


def _bucket(at: datetime) -> datetime:
    seconds = at.timestamp()
    return datetime.fromtimestamp(seconds - seconds % BUCKET_S, tz=UTC)


def _number(value: object) -> float:
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, int | float) else 0.0


def load_run(path: Path, since: datetime | None = None) -> RunData:
    data = RunData()
    since_ns = int(since.timestamp() * 1e9) if since else None
    published_field = "messages_published"
    consumed_field = "messages_consumed"
    assert published_field in PUBLISH.fields and consumed_field in CONSUME.fields
    published: defaultdict[datetime, float] = defaultdict(float)
    consumed: defaultdict[datetime, float] = defaultdict(float)
    for point in iter_file(path):
        if since_ns is not None and point.time_ns < since_ns:
            continue
        at = datetime.fromtimestamp(point.time_ns / 1e9, tz=UTC)
        data.start = at if data.start is None or at < data.start else data.start
        data.end = at if data.end is None or at > data.end else data.end
        if point.measurement == PUBLISH.name:
            published[_bucket(at)] += _number(point.fields.get(published_field, 0))
        elif point.measurement == CONSUME.name:
            consumed[_bucket(at)] += _number(point.fields.get(consumed_field, 0))
        elif point.measurement == QUEUE_DEPTH.name and "queue_depth" in point.fields:
            queue = point.tags.get("queue", "?")
            data.depths.setdefault(queue, []).append((at, _number(point.fields["queue_depth"])))
        elif point.measurement == AI_DECISION.name:
            data.decisions.append(_decision(point, at))
    data.published = dict(sorted(published.items()))
    data.consumed = dict(sorted(consumed.items()))
    return data


def _decision(point: ParsedPoint, at: datetime) -> Decision:
    return Decision(
        at=at,
        agent=point.tags.get("agent_id", "?"),
        agent_type=point.tags.get("agent_type", "?"),
        action=point.tags.get("action", "?"),
        fallback=point.tags.get("fallback", ""),
        reasoning=str(point.fields.get("ai_reasoning_text", "")),
        tokens=int(_number(point.fields.get("tokens_used", 0))),
        cost=_number(point.fields.get("cost_usd", 0.0)),
    )


def log_events(path: Path, since: datetime | None) -> list[dict[str, Any]]:
    """The run's notable log lines (scenario, anomalies, dead-letters, alerts) for the page."""
    wanted = {
        Event.SCENARIO,
        Event.SCENARIO_INJECTED,
        Event.ANOMALY_FLAGGED,
        Event.DEAD_LETTERED,
        Event.HEALTH_CRITICAL,
        Event.AGENT_EXITED,
    }
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or record.get("message") not in wanted:
            continue
        if since is not None:
            try:
                stamp = datetime.fromisoformat(str(record["timestamp"]).replace("Z", "+00:00"))
            except (KeyError, ValueError):
                continue
            if stamp < since:
                continue
        events.append(record)
    return events


def draw(data: RunData, png: Path, caps: tuple[float, float], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(12, 14), sharex=True)
    fig.suptitle(title)
    ax = axes[0]
    ax.step(list(data.published), list(data.published.values()), where="post", label="published")
    ax.step(list(data.consumed), list(data.consumed.values()), where="post", label="consumed")
    ax.set_ylabel(f"messages / {BUCKET_S:g} s")
    ax.set_title(
        "Messages published by the publishers (confirmed) and consumed"
        " (scenario traffic is not metered)"
    )
    ax.legend(loc="upper right")

    ax = axes[1]
    for queue, points in sorted(data.depths.items()):
        ax.plot([t for t, _ in points], [v for _, v in points], label=queue)
    ax.set_ylabel("messages ready")
    ax.set_title("Queue depths (sampled by the monitor)")
    ax.legend(loc="upper right")

    ax = axes[2]
    agents = sorted({d.agent for d in data.decisions})
    rows = {agent: i for i, agent in enumerate(agents)}
    seen: set[str] = set()
    for decision in data.decisions:
        fallback = bool(decision.fallback)
        label = f"{decision.action} (fallback)" if fallback else decision.action
        colour = ACTION_COLOURS.get(decision.action, "#7f7f7f")
        ax.scatter(
            decision.at,
            rows[decision.agent],
            s=18 if fallback else 60,
            c="none" if fallback else colour,
            edgecolors=colour,
            marker="o",
            label=None if label in seen else label,
            zorder=2 if fallback else 3,
        )
        seen.add(label)
    ax.set_yticks(range(len(agents)), agents)
    ax.set_ylim(-0.5, max(len(agents) - 0.5, 0.5))
    ax.set_title("AI decisions by agent and action (hollow: fallback, e.g. rate limited)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")

    ax = axes[3]
    ordered = sorted(data.decisions, key=lambda d: d.at)
    times = [d.at for d in ordered]
    tokens, cost, running_tokens, running_cost = [], [], 0, 0.0
    for decision in ordered:
        running_tokens += decision.tokens
        running_cost += decision.cost
        tokens.append(running_tokens)
        cost.append(running_cost)
    ax.plot(times, tokens, color="#1f77b4", label="tokens (cumulative)")
    ax.set_ylabel("tokens")
    twin = ax.twinx()
    twin.plot(times, cost, color="#d62728", label="cost USD (cumulative)")
    cap_10min, cap_hour = caps
    twin.axhline(
        cap_10min, color="#d62728", linestyle="--", label=f"fleet cap ${cap_10min:.2f}/10 min"
    )
    twin.set_ylabel("USD")
    twin.set_ylim(0, max(cap_10min * 1.2, running_cost * 1.2, 0.01))
    ax.set_title(
        f"Tokens and cost (fleet caps ${cap_10min:.2f} per 10 min, ${cap_hour:.2f} per hour; "
        "replay and dry-run cost $0)"
    )
    handles = ax.get_legend_handles_labels()
    twin_handles = twin.get_legend_handles_labels()
    ax.legend(handles[0] + twin_handles[0], handles[1] + twin_handles[1], loc="upper left")
    axes[-1].xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))  # type: ignore[no-untyped-call]
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)


def page(data: RunData, png: Path, events: list[dict[str, Any]], title: str) -> str:
    image = base64.b64encode(png.read_bytes()).decode()
    counts = Counter((d.agent_type, d.action, bool(d.fallback)) for d in data.decisions)
    rows = "".join(
        f"<tr><td>{html.escape(t)}</td><td>{html.escape(a)}</td>"
        f"<td>{'fallback' if f else 'AI'}</td><td>{n}</td></tr>"
        for (t, a, f), n in sorted(counts.items())
    )
    decided = [d for d in data.decisions if not d.fallback]
    decision_rows = "".join(
        f"<tr><td>{d.at:%H:%M:%S}</td><td>{html.escape(d.agent)}</td>"
        f"<td>{html.escape(d.action)}</td><td>{html.escape(d.reasoning)}</td></tr>"
        for d in decided[-200:]
    )
    event_rows = "".join(
        f"<tr><td>{html.escape(str(e.get('timestamp', ''))[11:19])}</td>"
        f"<td>{html.escape(str(e.get('agent_id')))}</td>"
        f"<td>{html.escape(str(e.get('message')))}</td>"
        f"<td><code>{html.escape(json.dumps(e.get('context'))[:300])}</code></td></tr>"
        for e in events[-300:]
    )
    events_html = (
        f"<h2>Events from the log</h2><table><tr><th>time</th><th>agent</th><th>event</th>"
        f"<th>context</th></tr>{event_rows}</table>"
        if events
        else "<p>(pass <code>--log-file</code> to list anomalies, dead-letters and alerts)</p>"
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto}}
table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px}}</style>
</head><body><h1>{html.escape(title)}</h1>
<img src="data:image/png;base64,{image}" alt="the run" style="max-width:100%">
<h2>AI decisions by agent type and action</h2>
<table><tr><th>agent type</th><th>action</th><th>source</th><th>count</th></tr>{rows}</table>
{events_html}
<h2>The AI's reasoning (last 200 decisions)</h2>
<table><tr><th>time</th><th>agent</th><th>action</th><th>reasoning</th></tr>{decision_rows}</table>
</body></html>
"""


def render(
    metrics_file: Path,
    out: Path,
    caps: tuple[float, float],
    since: datetime | None = None,
    log_file: Path | None = None,
) -> tuple[Path, Path, RunData]:
    data = load_run(metrics_file, since)
    if data.start is None:
        raise ValueError(f"{metrics_file} has no points" + (f" since {since}" if since else ""))
    title = f"books-agents run {data.start:%Y-%m-%d %H:%M:%S} to {data.end:%H:%M:%S} UTC"
    png = out.with_suffix(".png")
    draw(data, png, caps, title)
    events = log_events(log_file, since) if log_file else []
    page_path = out.with_suffix(".html")
    page_path.write_text(page(data, png, events, title), encoding="utf-8")
    return png, page_path, data


def main(settings: CommonSettings, args: argparse.Namespace) -> int:
    metrics_file = Path(args.metrics_file) if args.metrics_file else settings.metrics_file
    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since.replace("Z", "+00:00"))
        except ValueError:
            print(f"agents report: --since {args.since!r} is not an ISO 8601 time")
            return 2
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
    if not metrics_file.is_file():
        print(f"agents report: no metrics file at {metrics_file}; run `agents run` first")
        return 1
    # The caps the shared spend ledger enforces for every agent together.
    caps = (settings.fleet_max_cost_per_10min_usd, settings.fleet_max_cost_per_hour_usd)
    log_file = Path(args.log_file) if args.log_file else None
    try:
        png, page_path, data = render(metrics_file, Path(args.out), caps, since, log_file)
    except ValueError as exc:
        print(f"agents report: {exc}")
        return 1
    counts = data.series()
    print(f"agents report: {len(data.decisions)} AI decisions, {counts['published']} buckets")
    print(f"agents report: wrote {png} and {page_path}")
    return 0
