"""`agents report` draws a recorded fleet run (fixtures/metrics-sample.lp, written by a real run):
the PNG and the page are written and every series drawn holds data. Counts are summed, so
per-interval aggregates draw the same as a point per message."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from agents.core.metrics.line_protocol import line_protocol
from agents.core.metrics.schema import CONSUME, PUBLISH
from agents.ports import MetricPoint
from agents.report import load_run, render
from agents.vocab import Event

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "metrics-sample.lp"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_a_fixture_run_renders_with_every_series_non_empty(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    log.write_text(
        json.dumps(
            {
                "timestamp": "2026-11-25T19:26:10.000Z",
                "level": "WARNING",
                "agent_id": "consumer-1",
                "agent_type": "consumer",
                "message": Event.ANOMALY_FLAGGED,
                "context": {"queue": "fictional", "priority": 5},
            }
        )
        + "\n"
    )
    png, page, data = render(FIXTURE, tmp_path / "report", (0.10, 0.45), log_file=log)
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 20_000
    html = page.read_text()
    assert "data:image/png;base64," in html and Event.ANOMALY_FLAGGED in html
    series = data.series()
    assert set(series) >= {
        "published",
        "consumed",
        "decisions",
        "tokens",
        "cost",
        "depth fictional",
        "depth non-fictional",
    }
    empty = [name for name, count in series.items() if count == 0]
    assert empty == []
    actions = {d.action for d in data.decisions}
    assert {"slow_down", "speed_up", "batch", "flag", "warning", "critical"} <= actions


def test_counts_are_summed_so_aggregated_points_draw_the_same(tmp_path: Path) -> None:
    t0 = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1e9)
    tags = {"agent_id": "consumer-1", "agent_type": "consumer", "queue": "fictional"}
    per_message = [
        CONSUME.point({**tags, "action": "process"}, {"messages_consumed": 1}, t0 + i * 10**8)
        for i in range(37)
    ]
    aggregated = [CONSUME.point({**tags, "action": "process"}, {"messages_consumed": 37}, t0)]
    published = [
        PUBLISH.point(
            {**tags, "agent_id": "publisher-1", "agent_type": "publisher"},
            {"messages_published": 37},
            t0,
        )
    ]

    def write(points: list[MetricPoint], name: str) -> Path:
        path = tmp_path / name
        path.write_text("".join(line_protocol(p) + "\n" for p in points + published))
        return path

    one = load_run(write(per_message, "a.lp"))
    other = load_run(write(aggregated, "b.lp"))
    assert sum(one.consumed.values()) == sum(other.consumed.values()) == 37
    assert sum(one.published.values()) == 37


def test_since_keeps_only_this_run(tmp_path: Path) -> None:
    data = load_run(FIXTURE, since=datetime(2030, 1, 1, tzinfo=UTC))
    assert data.start is None and data.decisions == []
