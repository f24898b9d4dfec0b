"""The committed dashboards are exactly what the code generates, and carry what issue 6 asks for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agents.dashboards import __main__ as cli
from agents.dashboards.build import DASHBOARDS, drift, render
from tests.dashboards.dashboard_queries import DASHBOARD_DIR, load_dashboards, panels

EXPECTED_UIDS = {
    "system-overview.json": "books-overview",
    "ai-decisions.json": "books-ai-decisions",
    "logs-metrics-correlation.json": "books-correlation",
    "cost-tracking.json": "books-cost",
}


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return load_dashboards()


def test_committed_json_equals_generated() -> None:
    assert drift() == [], "run `nox -s dashboards` and commit infra/grafana/dashboards"
    assert sorted(p.name for p in DASHBOARD_DIR.glob("*.json")) == sorted(DASHBOARDS)


def test_check_mode_fails_on_drift_and_passes_when_clean(tmp_path: Path) -> None:
    assert cli.main(["--check", "--out", str(tmp_path)]) == 1  # nothing written yet
    assert cli.main(["--out", str(tmp_path)]) == 0
    assert cli.main(["--check", "--out", str(tmp_path)]) == 0

    edited = tmp_path / "cost-tracking.json"
    edited.write_text(edited.read_text().replace("now-30m", "now-1h"))
    assert cli.main(["--check", "--out", str(tmp_path)]) == 1
    assert drift(tmp_path) == ["cost-tracking.json"]

    cli.main(["--out", str(tmp_path)])
    (tmp_path / "hand-made.json").write_text("{}")
    assert drift(tmp_path) == ["hand-made.json"]


def test_generation_is_deterministic() -> None:
    assert render() == render()


def test_fixed_uids_titles_range_and_refresh(dashboards: dict[str, dict[str, Any]]) -> None:
    assert {name: d["uid"] for name, d in dashboards.items()} == EXPECTED_UIDS
    for name, d in dashboards.items():
        assert d["time"] == {"from": "now-30m", "to": "now"}, name
        assert d["refresh"] == "10s", name
        assert d["description"], name
        assert [p["id"] for p in panels(d)] == list(range(1, len(list(panels(d))) + 1)), name


def test_agent_template_variables(dashboards: dict[str, dict[str, Any]]) -> None:
    for name, d in dashboards.items():
        variables = {v["name"]: v for v in d["templating"]["list"]}
        assert set(variables) == {"agent_id", "agent_type"}, name
        for v in variables.values():
            assert v["type"] == "query" and v["multi"] and v["includeAll"], (name, v["name"])
            # Loki rejects a selector whose matchers all accept "", which `.*` would.
            assert v["allValue"] == ".+", (name, v["name"])


def test_every_panel_is_described_and_has_a_unit(dashboards: dict[str, dict[str, Any]]) -> None:
    for name, d in dashboards.items():
        for panel in panels(d):
            where = f"{name} / {panel['title']}"
            assert len(panel.get("description", "")) > 30, where
            assert panel["fieldConfig"]["defaults"].get("unit"), where
            assert panel.get("targets"), where


def test_every_query_panel_follows_the_agent_filters(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    # Queues are shared by all agents, so only queue-depth panels may ignore the filters.
    for name, d in dashboards.items():
        for panel in panels(d):
            for target in panel["targets"]:
                text = target.get("query") or target.get("expr")
                follows = "${agent_id:regex}" in text and "${agent_type:regex}" in text
                assert follows or '"queue_depth"' in text, f"{name} / {panel['title']}"


def _by_title(d: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["title"]: p for p in panels(d)}


def _texts(panel: dict[str, Any]) -> str:
    return "\n".join(t.get("query") or t.get("expr") for t in panel["targets"])


def test_system_overview_panels(dashboards: dict[str, dict[str, Any]]) -> None:
    p = _by_title(dashboards["system-overview.json"])
    flow = p["Messages published and consumed"]
    assert flow["type"] == "timeseries"
    assert '"messages_published"' in _texts(flow) and '"messages_consumed"' in _texts(flow)
    assert p["Queue depths"]["type"] == "gauge"
    durations = p["Publish and processing duration (p50 / p99)"]
    assert durations["type"] == "timeseries"
    assert durations["fieldConfig"]["defaults"]["unit"] == "ms"
    for field in (
        "publish_duration_ms_p50",
        "publish_duration_ms_p99",
        "processing_duration_ms_p50",
        "processing_duration_ms_p99",
    ):
        assert f'"{field}"' in _texts(durations)
    # Counts are summed per window; percentiles cannot be, so they are maxed.
    assert "fn: sum" in _texts(flow) and "fn: max" in _texts(durations)
    logs = p["Agent logs (last 50 lines)"]
    assert logs["type"] == "table" and logs["targets"][0]["maxLines"] == 50


def test_ai_decision_panels(dashboards: dict[str, dict[str, Any]]) -> None:
    p = _by_title(dashboards["ai-decisions.json"])
    bars = p["AI decisions by agent and action"]
    assert bars["fieldConfig"]["defaults"]["custom"]["drawStyle"] == "bars"
    assert '"agent_id", "action"' in _texts(bars)
    assert p["AI reasoning"]["type"] == "table"
    assert 'level="AI_DECISION"' in _texts(p["AI reasoning"])
    area = p["Token usage per agent"]["fieldConfig"]["defaults"]
    assert area["custom"]["stacking"]["mode"] == "normal" and area["custom"]["fillOpacity"] > 0
    assert area["unit"] == "suffix: tokens"
    assert p["Decision latency"]["fieldConfig"]["defaults"]["unit"] == "ms"


def test_correlation_panels_share_a_crosshair(dashboards: dict[str, dict[str, Any]]) -> None:
    d = dashboards["logs-metrics-correlation.json"]
    assert d["graphTooltip"] in (1, 2)  # shared crosshair (2 adds a shared tooltip)
    p = _by_title(d)
    assert p["Queue depth"]["datasource"]["type"] == "influxdb"
    assert p["Logs in the same time range"]["datasource"]["type"] == "loki"
    assert '"error_count"' in _texts(p["Error rate"])
    assert 'level="ERROR"' in _texts(p["Error logs"])


def test_dashboards_are_valid_json_objects() -> None:
    for text in render().values():
        assert isinstance(json.loads(text), dict)
