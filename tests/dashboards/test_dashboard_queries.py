"""Every query in the committed dashboards points at something real: schema measurements, fields
and tags in the settings bucket; labels Promtail attaches; provisioned datasources; and series
that the agents' metric writers actually produce (the fixture)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from agents.core.logs import Level
from agents.core.metrics.schema import COMMON_TAGS, SCHEMA
from agents.core.settings import CommonSettings
from tests.dashboards.dashboard_queries import (
    DATASOURCES_DIR,
    DEFAULT_BUCKET,
    FIXTURE,
    FLUX_COLUMNS,
    PROMTAIL_CONFIG,
    LinePoint,
    Query,
    as_grafana_sends,
    bucket_expressions,
    flux_queries,
    flux_refs,
    load_dashboards,
    logql_queries,
    logql_selector,
    panels,
    queries,
    read_line_protocol,
)

DASHBOARDS = load_dashboards()
FLUX = flux_queries(DASHBOARDS)
LOGQL = logql_queries(DASHBOARDS)
BUCKET = CommonSettings.model_fields["influxdb_bucket"].default


def test_the_dashboards_have_queries_to_check() -> None:
    assert len(DASHBOARDS) == 4
    assert len(FLUX) >= 20 and len(LOGQL) >= 5
    assert {q.datasource.get("type") for q in queries(DASHBOARDS)} == {"influxdb", "loki"}


def schema_violations(text: str) -> list[str]:
    """Names in a Flux query (as Grafana sends it) that the metrics schema or the settings
    bucket do not define."""
    refs = flux_refs(as_grafana_sends(text, BUCKET))
    problems = [f"bucket {b}" for b in sorted(refs.buckets ^ {BUCKET})]
    problems += [f"measurement {m}" for m in sorted(refs.measurements - set(SCHEMA))]
    known = refs.measurements & set(SCHEMA)
    if known:
        fields = set().union(*(SCHEMA[m].fields for m in known))
        tags = set().union(*(SCHEMA[m].tags for m in known))
        if not refs.fields:
            problems.append("no _field filter")
    elif refs.tag_values_of:  # a template-variable query: tags every measurement carries
        fields, tags = set(), set(COMMON_TAGS)
    else:
        return [*problems, "neither a measurement nor a tag-values query"]
    problems += [f"field {f}" for f in sorted(refs.fields - fields)]
    problems += [f"tag {t}" for t in sorted(refs.columns - FLUX_COLUMNS - tags)]
    return problems


@pytest.mark.parametrize("q", FLUX, ids=lambda q: q.where)
def test_flux_names_only_schema_measurements_fields_tags_and_the_bucket(q: Query) -> None:
    assert schema_violations(q.text) == []


def test_the_schema_check_notices_unknown_names() -> None:
    base = next(q.text for q in FLUX if '"publish"' in q.text)
    assert schema_violations(base) == []
    assert schema_violations(base.replace('"messages_published"', '"messages_sent"'))
    assert schema_violations(base.replace('"queue"]', '"genre"]'))
    assert schema_violations(base.replace('"publish"', '"publishes"'))
    assert schema_violations(base.replace(DEFAULT_BUCKET, '"metrics"'))


@pytest.mark.parametrize("q", FLUX, ids=lambda q: q.where)
def test_every_flux_query_reads_the_datasource_default_bucket(q: Query) -> None:
    # A hard-coded bucket shows nothing once INFLUXDB_BUCKET is changed; the datasource's
    # default bucket is provisioned from that same variable.
    found = bucket_expressions(q.text)
    assert found and set(found) == {DEFAULT_BUCKET}, found


def test_the_bucket_check_catches_a_hard_coded_bucket() -> None:
    base = FLUX[0].text
    assert set(bucket_expressions(base)) == {DEFAULT_BUCKET}
    assert set(bucket_expressions(base.replace(DEFAULT_BUCKET, f'"{BUCKET}"'))) != {DEFAULT_BUCKET}
    # What InfluxDB receives reads the settings bucket.
    assert flux_refs(as_grafana_sends(base, "renamed")).buckets == {"renamed"}


def test_the_datasource_default_bucket_is_the_bucket_the_agents_write() -> None:
    (influx,) = [
        ds
        for path in sorted(DATASOURCES_DIR.glob("*.y*ml"))
        for ds in yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"]
        if ds["type"] == "influxdb"
    ]
    assert influx["jsonData"]["defaultBucket"] == "${INFLUXDB_BUCKET}"


def promtail_labels() -> set[str]:
    """Labels the Promtail pipeline attaches: relabel targets and `labels` stage keys."""
    config = yaml.safe_load(PROMTAIL_CONFIG.read_text(encoding="utf-8"))
    labels: set[str] = set()
    for job in config["scrape_configs"]:
        for rule in job.get("relabel_configs", []):
            target = rule.get("target_label", "")
            if target and not target.startswith("__"):
                labels.add(target)
        for stage in job.get("pipeline_stages", []):
            labels |= set((stage.get("labels") or {}).keys())
    return labels


def test_promtail_produces_the_labels_the_dashboards_assume() -> None:
    from agents.dashboards.logql import PROMTAIL_LABELS

    assert promtail_labels() == set(PROMTAIL_LABELS)


@pytest.mark.parametrize("q", LOGQL, ids=lambda q: q.where)
def test_logql_selects_only_promtail_labels(q: Query) -> None:
    matchers = logql_selector(q.text)
    assert {m.label for m in matchers} <= promtail_labels()
    # Loki refuses a selector in which every matcher accepts the empty string.
    assert any(m.op in ("=", "=~") and m.value not in ("", ".*") for m in matchers)
    for m in matchers:
        if m.label == "level" and m.op == "=":
            assert m.value in {level.value for level in Level}, "agents never log that level"


def provisioned_datasources() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted(DATASOURCES_DIR.glob("*.y*ml")):
        for ds in yaml.safe_load(path.read_text(encoding="utf-8")).get("datasources", []):
            found[ds["uid"]] = ds["type"]
    return found


def _datasource_refs(dashboard: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    refs = []
    for panel in panels(dashboard):
        refs.append((panel["title"], panel["datasource"]))
        refs += [(f"{panel['title']} / {t['refId']}", t["datasource"]) for t in panel["targets"]]
    refs += [(f"${v['name']}", v["datasource"]) for v in dashboard["templating"]["list"]]
    return refs


def test_every_datasource_reference_is_provisioned() -> None:
    provisioned = provisioned_datasources()
    assert provisioned, f"no datasources in {DATASOURCES_DIR}"
    for name, dashboard in DASHBOARDS.items():
        for where, ref in _datasource_refs(dashboard):
            assert ref.get("uid") in provisioned, f"{name} / {where}: {ref}"
            assert provisioned[ref["uid"]] == ref.get("type"), f"{name} / {where}: {ref}"


# --- the data tie ---------------------------------------------------------------------------------

POINTS = read_line_protocol(FIXTURE)


def test_fixture_says_how_it_was_produced_and_fits_the_schema() -> None:
    header = [line for line in FIXTURE.read_text().splitlines() if line.startswith("#")]
    assert any("generated by" in line or "real local run" in line for line in header)
    assert len(POINTS) > 100
    for p in POINTS:
        m = SCHEMA[p.measurement]
        assert set(p.tags) <= m.tags and set(p.tags) >= COMMON_TAGS, p
        assert set(p.fields) <= set(m.fields), p


def missing_series(text: str, points: list[LinePoint]) -> list[str]:
    """What a Flux query filters or groups on that no point in `points` has."""
    refs = flux_refs(as_grafana_sends(text, BUCKET))
    if not refs.measurements:
        return [f"tag {t}" for t in refs.tag_values_of if not any(t in p.tags for p in points)]
    grouped = refs.group_columns - FLUX_COLUMNS
    missing = []
    for measurement in sorted(refs.measurements):
        for field in sorted(refs.fields & set(SCHEMA[measurement].fields)):
            if not any(
                p.measurement == measurement
                and field in p.fields
                and all(p.tags.get(k) == v for k, v in refs.filter_equals.items())
                and grouped <= set(p.tags)
                for p in points
            ):
                missing.append(f"{measurement}.{field} {refs.filter_equals} by {sorted(grouped)}")
    return missing


@pytest.mark.parametrize("q", FLUX, ids=lambda q: q.where)
def test_every_series_a_query_filters_on_occurs_in_the_fixture(q: Query) -> None:
    assert missing_series(q.text, POINTS) == [], f"{FIXTURE.name} has no such series: empty panel"


def test_the_data_tie_notices_series_nobody_writes() -> None:
    base = FLUX[0].text
    assert "ai_decision" in base and missing_series(base, POINTS) == []
    replay_only = base.replace(
        "|> group(", '|> filter(fn: (r) => r.mode == "replay")\n  |> group(', 1
    )
    assert missing_series(replay_only, POINTS)  # the recorded run was in live mode
    by_status = base.replace('"action"]', '"status"]')
    assert missing_series(by_status, POINTS)  # ai_decision points carry no status tag
    assert missing_series(base, [p for p in POINTS if p.measurement != "ai_decision"])
