"""`agents cost plan` proves the fleet bound; `agents cost report` reads what was spent."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents import cost_cli
from agents.cli import main as cli
from agents.core.ai.guard import CostGuard, GuardLimits
from agents.core.ai.ledger import SqliteLedger
from agents.core.ai.prices import PRICES
from agents.core.clock import SystemClock
from agents.core.metrics import FileSink, Metrics
from agents.core.metrics.reader import FileMetricsReader
from agents.core.settings import ConsumerSettings, PublisherSettings, load_settings
from agents.testing.claude import engine_rig


@pytest.mark.parametrize(
    "model", ["claude-haiku-5-5", "claude-sonnet-4-5", "claude-opus-4-1", "some-future-model"]
)
def test_default_caps_bound_the_fleet_to_the_specification_budget(model: str) -> None:
    data = cost_cli.plan({"claude_model": model})
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
    data = cost_cli.plan()
    for agent in data["agents"].values():
        assert not agent["always_refused"]
        assert agent["typical_usd_per_hour"] < agent["max_cost_per_hour_usd"]


def test_the_specification_pricing_reaches_the_caps() -> None:
    data = cost_cli.plan({"claude_model": "claude-sonnet-4-5"})
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
        rig = engine_rig(settings)
        rig.engine.metrics = Metrics(sink, settings.agent_id, settings.agent_type)
        if isinstance(settings, PublisherSettings):
            rig.engine.decide_publisher(1, 2, 5.0, 10.0)
            rig.engine.decide_publisher(1, 2, 5.0, 10.0)  # rate limited
        else:
            rig.engine.decide_consumer("fictional", 1, 0)
    sink.close()
    data = cost_cli.report(FileMetricsReader(path), now=datetime.now(UTC))
    assert data["agents"]["publisher-1"]["ai_decision_count"] == 2
    assert data["agents"]["publisher-1"]["ai_call_count"] == 1
    assert data["agents"]["publisher-1"]["ai_fallback_count"] == 1
    assert data["total"]["ai_decision_count"] == 3
    assert data["total"]["cost_usd"] == 0.0
    assert "total" in cost_cli.render_report(data)


def test_report_command_reads_the_embedded_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "metrics.lp"
    monkeypatch.delenv("INFLUXDB_URL", raising=False)
    monkeypatch.setenv("METRICS_FILE", str(path))
    settings = load_settings(ConsumerSettings, dry_run=True)
    sink = FileSink(path)
    rig = engine_rig(settings)
    rig.engine.metrics = Metrics(sink, settings.agent_id, settings.agent_type)
    rig.engine.decide_consumer("non-fictional", 2, 3)
    sink.close()
    monkeypatch.setenv("BUDGET_LEDGER", str(tmp_path / "budget.sqlite"))
    assert cli(["cost", "report", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)["metrics"]
    assert data["agents"]["consumer-1"]["ai_decision_count"] == 1
    assert data["total"]["projected_usd_24h"] == 0.0
    assert not (tmp_path / "budget.sqlite").exists()  # a report does not create a ledger


def test_plan_shows_the_fleet_caps_whatever_the_number_of_agents(
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = cost_cli.plan(
        {
            "claude_model": "claude-sonnet-4-5",
            "fleet_max_cost_per_10min_usd": 0.03,
            "fleet_max_cost_per_hour_usd": 0.2,
        }
    )
    fleet = data["fleet"]
    assert (fleet["max_cost_per_10min_usd"], fleet["max_cost_per_hour_usd"]) == (0.03, 0.2)
    # Five agents could spend up to the sum of their bounds; the fleet cap is lower and wins.
    assert fleet["sum_of_agent_bounds_per_10min"] > 0.03
    assert fleet["usd_per_10min"] == 0.03
    table = cost_cli.render_plan(data)
    assert "any number of agents" in table and "$0.0300 in any 10 minutes" in table


def test_report_reads_spend_per_agent_and_fleet_from_the_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "budget.sqlite"
    monkeypatch.setenv("BUDGET_LEDGER", str(path))
    monkeypatch.setenv("METRICS_FILE", str(tmp_path / "metrics.lp"))
    monkeypatch.delenv("INFLUXDB_URL", raising=False)
    clock = SystemClock()
    price = PRICES["claude-sonnet-4-5"]
    limits = GuardLimits(0, 300, 10**6, 1.0, 1.0, 0.10, 0.45)
    one = CostGuard(limits, clock, SqliteLedger(path), "consumer-1")
    two = CostGuard(limits, clock, SqliteLedger(path), "monitor-1")
    first = one.reserve(1000, price)
    one.settle(first, 100, 20, price)  # $0.0006
    two.reserve(1000, price)  # in flight: $0.0075 at worst
    assert cli(["cost", "report", "--json"]) == 0
    ledger = json.loads(capsys.readouterr().out)["ledger"]
    assert ledger["agents"]["consumer-1"]["settled_usd_10min"] == pytest.approx(0.0006)
    assert ledger["agents"]["monitor-1"]["reserved_usd_10min"] == pytest.approx(0.0075)
    assert ledger["fleet"]["usd_hour"] == pytest.approx(0.0081)
    assert ledger["fleet"]["remaining_usd_10min"] == pytest.approx(0.10 - 0.0081)
    assert cli(["cost", "report"]) == 0
    table = capsys.readouterr().out
    assert "from the ledger" in table and "Fleet remaining: $0.0919 of $0.1000" in table
