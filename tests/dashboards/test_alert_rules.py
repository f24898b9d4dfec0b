"""The provisioned alert rule (infra/grafana/provisioning/alerting/budget.yaml), checked statically
like the dashboards: its query is what the dashboard code builds from the metrics schema, it
names the provisioned datasource, fires at 80 % of a fleet cap, parses with InfluxData's parser,
and the series it reads occurs in the recorded metrics fixture."""

from __future__ import annotations

from typing import Any

import yaml

from agents.core.metrics.schema import BUDGET
from agents.dashboards import cost
from agents.dashboards.flux import query
from tests.dashboards.dashboard_queries import (
    DATASOURCES_DIR,
    FIXTURE,
    ROOT,
    flux_refs,
    read_line_protocol,
)
from tests.dashboards.test_query_syntax import check, node  # noqa: F401 (the fixture, shared)

RULES = ROOT / "infra" / "grafana" / "provisioning" / "alerting" / "budget.yaml"


def load() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return document


def the_rule() -> dict[str, Any]:
    (group,) = load()["groups"]
    (rule,) = group["rules"]
    return dict(rule)


def flux_of(rule: dict[str, Any]) -> str:
    (target,) = [d for d in rule["data"] if d["datasourceUid"] != "__expr__"]
    return str(target["model"]["query"])


def test_the_file_is_grafana_alert_provisioning() -> None:
    document = load()
    assert document["apiVersion"] == 1
    (group,) = document["groups"]
    assert group["orgId"] == 1 and group["folder"] and group["interval"] == "1m"
    rule = the_rule()
    assert rule["uid"] == "books-fleet-budget-80" and rule["title"]
    refs = [d["refId"] for d in rule["data"]]
    assert refs == ["A", "B", "C"] and rule["condition"] == "C"
    assert rule["noDataState"] in {"OK", "NoData", "Alerting"}
    assert rule["execErrState"] in {"Error", "Alerting", "OK"}
    assert {"summary", "description"} <= set(rule["annotations"])


def test_the_query_is_the_one_the_dashboard_code_builds() -> None:
    expected = query(
        BUDGET,
        "used_ratio",
        where={"scope": "fleet"},
        group_by=["window"],
        steps=["max()"],
        agent_filter=False,  # an alert has no dashboard variables
    )
    assert flux_of(the_rule()) == expected


def test_the_query_reads_the_provisioned_influxdb_datasource() -> None:
    (target,) = [d for d in the_rule()["data"] if d["datasourceUid"] != "__expr__"]
    provisioned = yaml.safe_load((DATASOURCES_DIR / "datasources.yaml").read_text())
    influx = [d for d in provisioned["datasources"] if d["type"] == "influxdb"]
    assert target["datasourceUid"] == influx[0]["uid"]
    assert target["relativeTimeRange"]["from"] >= 300


def test_it_fires_at_eighty_percent_of_a_fleet_cap() -> None:
    rule = the_rule()
    by_ref = {d["refId"]: d["model"] for d in rule["data"]}
    assert by_ref["B"]["type"] == "reduce" and by_ref["B"]["expression"] == "A"
    assert by_ref["C"]["type"] == "threshold" and by_ref["C"]["expression"] == "B"
    (condition,) = by_ref["C"]["conditions"]
    assert condition["evaluator"]["type"] in {"gt", "gte"}
    assert condition["evaluator"]["params"] == [cost.ALERT_RATIO] == [0.8]


def test_the_series_it_reads_is_written_by_the_agents() -> None:
    refs = flux_refs(flux_of(the_rule()))
    assert refs.measurements == {BUDGET.name} and refs.fields <= set(BUDGET.fields)
    assert set(refs.filter_equals) | refs.group_columns <= BUDGET.tags
    points = [
        p
        for p in read_line_protocol(FIXTURE)
        if p.measurement == BUDGET.name and p.tags.get("scope") == "fleet"
    ]
    assert {p.tags["window"] for p in points} == {"10min", "hour"}, FIXTURE.name
    assert all("used_ratio" in p.fields for p in points)


def test_the_query_parses(node: str) -> None:  # noqa: F811
    flux = flux_of(the_rule())
    result = check(node, {"alert": flux, "broken": flux + "\n  |> max("}, {})
    assert result["flux"]["alert"] == []
    assert result["flux"]["broken"]
