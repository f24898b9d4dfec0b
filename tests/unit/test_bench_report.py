"""The benchmark's result plumbing: Locust CSV parsing, the e2e latency join, profile areas and
the summary table. No broker, no timing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks import load, profiling, report
from benchmarks.stats import HEADLINE_KEYS, missing_keys

LOCUST_CSV = """Type,Name,Request Count,Failure Count,Median Response Time,Requests/s,50%,95%,99%
amqp,publish,1000,2,1,250.5,1,3,7
,Aggregated,1000,2,1,250.5,1,3,7
"""


def test_locust_stats_csv_to_figures() -> None:
    rows = load.parse_stats_csv(LOCUST_CSV)
    figures = load.locust_figures(rows["publish"])
    assert figures == {
        "msgs_per_s": 250.5,
        "p50_ms": 1.0,
        "p95_ms": 3.0,
        "p99_ms": 7.0,
        "requests": 1000.0,
        "failures": 2.0,
    }
    assert "Aggregated" in rows


def test_e2e_latency_joins_sent_ids_with_consumed_log_lines(tmp_path: Path) -> None:
    sent = tmp_path / "sent.txt"
    sent.write_text("id-1 1769854530.000000\nid-2 1769854530.500000\n", encoding="utf-8")
    agent_log = tmp_path / "consumer-1.log"

    def line(message: str, message_id: str, stamp: str) -> str:
        record = {
            "timestamp": stamp,
            "level": "INFO",
            "agent_id": "consumer-1",
            "agent_type": "consumer",
            "message": message,
            "context": {"message_id": message_id},
        }
        return json.dumps(record)

    agent_log.write_text(
        "\n".join(
            [
                line("Message consumed", "id-1", "2026-01-31T10:15:30.012Z"),
                line("Message consumed", "id-2", "2026-01-31T10:15:30.530Z"),
                line("Message consumed", "not-sent-by-locust", "2026-01-31T10:15:31.000Z"),
                line("Duplicate delivery acknowledged", "id-1", "2026-01-31T10:15:32.000Z"),
                "not json",
            ]
        ),
        encoding="utf-8",
    )
    latencies = load.e2e_latencies(sent, [agent_log, tmp_path / "missing.log"])
    assert [round(x) for x in sorted(latencies)] == [12, 30]


def test_profile_areas_by_file_path() -> None:
    assert profiling.area_of("/work/main/agents/core/logs.py").startswith("logs")
    assert profiling.area_of("/x/site-packages/influxdb_client/client/write/point.py").startswith(
        "metrics"
    )
    assert profiling.area_of("/x/site-packages/pika/channel.py").startswith("pika")
    assert profiling.area_of("/x/site-packages/pydantic/main.py").startswith("validation")
    assert profiling.area_of("/somewhere/else.py") == "other"
    assert profiling.shares({"a": 3.0, "b": 1.0}) == {"a": 75.0, "b": 25.0}
    assert profiling.shares({}) == {}


def _results() -> dict[str, Any]:
    results: dict[str, Any] = {"date": "2026-11-25T00:00:00+00:00", "notes": ["a note"]}
    for i, key in enumerate(HEADLINE_KEYS):
        results[key] = 0.5 + i
        results[f"{key}_spread"] = {"min": 0.4 + i, "max": 0.6 + i, "range_pct": 4.0, "n": 3}
    results["machine"] = {"cores": 2, "cpu_model": "AMD EPYC"}
    results["parameters"] = {"rounds": 5}
    results["raw"] = {"rates_msgs_per_s": {"pika_consumer": {"median": 9000.0}}}
    rss = {"median": 45.0, "min": 44.0, "max": 47.0, "range_pct": 6.7, "n": 3}
    results["agent_rss_mb"] = {"consumer": {"dry-run": rss, "live": {**rss, "median": 120.0}}}
    results["startup_s"] = {"consumer": {"dry-run": {"median": 0.9, "min": 0.8, "max": 1.1}}}
    return results


def test_summary_table_has_every_figure_and_target_status() -> None:
    results = _results()
    assert missing_keys(results) == []
    table = report.markdown(results)
    for label, _unit in report.LABELS.values():
        assert label in table
    assert "**missed**" in table  # consumer_ratio 0.5 < 1.0
    assert "AMD EPYC (2 cores)" in table
    assert "pika_consumer: 9000" in table
    assert "- a note" in table
    assert "| consumer | dry-run | 45 MB (44..47) | <= 60 MB met | 0.90 s" in table
    assert "| consumer | live | 120 MB (44..47) | <= 100 MB **missed**" in table


def test_csv_rows_one_per_headline_key() -> None:
    rows = report.csv_rows(_results())
    assert [r["key"] for r in rows] == list(HEADLINE_KEYS)
    assert rows[0]["target"] == ">= 1.0" and rows[0]["status"] == "missed"


def test_a_missing_figure_reads_n_a() -> None:
    results = _results()
    results["tests_wall_s"] = None
    results["tests_wall_s_spread"] = None
    assert "| Test suite wall time (unit + integration) | n/a | n/a |" in report.markdown(results)
