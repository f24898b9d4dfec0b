"""`agents cost plan` proves the fleet bound; `agents cost report` reads what was spent."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents.cli import main as cli
from agents.core.ai import costcli
from agents.core.ai.testing import make_rig
from agents.core.metrics import FileSink, Metrics
from agents.core.metrics_read import FileMetricsReader
from agents.core.settings import ConsumerSettings, PublisherSettings, load_settings


@pytest.mark.parametrize(
    "model", ["claude-haiku-5-5", "claude-sonnet-4-5", "claude-opus-4-1", "some-future-model"]
)
def test_default_caps_bound_the_fleet_to_the_specification_budget(model: str) -> None:
    data = costcli.plan({"claude_model": model})
    assert set(data["agents"]) == {
        "publisher-1",
        "publisher-2",
        "consumer-1",
        "consumer-2",
        "monitor-1",
    }
    assert data["fleet"]["usd_per_10min"] <= 0.10 + 1e-12
    assert data["fleet"]["usd_per_hour"] <= 0.45 + 1e-12
    assert data["fleet"]["typical_usd_per_hour"] <= data["fleet"]["usd_per_hour"]


def test_typical_use_stays_under_the_caps_with_the_default_model() -> None:
    data = costcli.plan()
    for agent in data["agents"].values():
        assert not agent["always_refused"]
        assert agent["typical_usd_per_hour"] < agent["max_cost_per_hour_usd"]


def test_the_specification_pricing_reaches_the_caps() -> None:
    data = costcli.plan({"claude_model": "claude-sonnet-4-5"})
    assert data["fleet"]["usd_per_10min"] == pytest.approx(0.10)
    assert data["fleet"]["usd_per_hour"] == pytest.approx(0.45)


def test_plan_json_and_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["cost", "plan", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["fleet"]) >= {"usd_per_hour", "usd_per_10min"}
    assert cli(["cost", "plan"]) == 0
    table = capsys.readouterr().out
    assert "fleet" in table and "Provable bound" in table


def test_report_sums_what_the_engine_wrote(tmp_path: Path) -> None:
    path = tmp_path / "metrics.lp"
    sink = FileSink(path)
    for settings in (
        load_settings(PublisherSettings, dry_run=True),
        load_settings(ConsumerSettings, dry_run=True),
    ):
        rig = make_rig(settings)
        rig.engine.metrics = Metrics(sink, settings.agent_id, settings.agent_type)
        if isinstance(settings, PublisherSettings):
            rig.engine.decide_publisher(1, 2, 5.0, 10.0)
            rig.engine.decide_publisher(1, 2, 5.0, 10.0)  # rate limited
        else:
            rig.engine.decide_consumer("fictional", 1, 0)
    sink.close()
    data = costcli.report(FileMetricsReader(path), now=datetime.now(UTC))
    assert data["agents"]["publisher-1"]["ai_decision_count"] == 2
    assert data["agents"]["publisher-1"]["ai_call_count"] == 1
    assert data["agents"]["publisher-1"]["ai_fallback_count"] == 1
    assert data["total"]["ai_decision_count"] == 3
    assert data["total"]["cost_usd"] == 0.0
    assert "total" in costcli.render_report(data)


def test_report_command_reads_the_embedded_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "metrics.lp"
    monkeypatch.delenv("INFLUXDB_URL", raising=False)
    monkeypatch.setenv("METRICS_FILE", str(path))
    settings = load_settings(ConsumerSettings, dry_run=True)
    sink = FileSink(path)
    rig = make_rig(settings)
    rig.engine.metrics = Metrics(sink, settings.agent_id, settings.agent_type)
    rig.engine.decide_consumer("non-fictional", 2, 3)
    sink.close()
    assert cli(["cost", "report", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["agents"]["consumer-1"]["ai_decision_count"] == 1
    assert data["total"]["projected_usd_24h"] == 0.0
