"""Loki, Promtail and Grafana configs: the facts that decide whether they load on today's images
and whether the dashboards' queries find the labels and datasources they ask for."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents.core.logs import REQUIRED_KEYS, JsonLogger, Level
from agents.testing.clock import FakeClock
from tests.stack.stackfiles import (
    DASHBOARDS_DIR,
    GRAFANA_PROVISIONING,
    LOKI_CONFIG,
    PROMTAIL_CONFIG,
    dashboards,
    load_yaml,
    services,
    stream_selector_labels,
    walk,
)

# Keys Loki 3.0 removed (a strict parse error at start-up) or that need boltdb/v11.
REMOVED_IN_LOKI_3 = {
    "limits_config.enforce_metric_name",
    "chunk_store_config.max_look_back_period",
    "table_manager",
    "storage_config.boltdb",
    "storage_config.boltdb_shipper.shared_store",
    "compactor.shared_store",
    "compactor.deletion_mode",
    "ingester.max_transfer_retries",
    "query_range.split_queries_by_interval",
    "frontend.default_validity",
    "querier.engine.timeout",
    "ruler.remote_write.client",
}

# The specification's LogQL examples and the labels the interfaces promise.
SPEC_QUERIES = (
    '{agent_id="publisher-1"}',
    '{level="AI_DECISION"}',
    '{level="ERROR"}',
    '{agent_type="publisher"} | json | line_format "{{.message}}: {{.context.reasoning}}"',
    '{level="AI_DECISION"} | json | context_ai_action="slow_down"',
)
PROMISED_LABELS = {"agent_id", "agent_type", "level", "container_name", "stream", "service"}

# Go's time.RFC3339Nano as time.Parse accepts it: the fraction is optional on input.
RFC3339_NANO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")


def key_paths(node: Any, prefix: str = "") -> set[str]:
    paths: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            paths.add(path)
            paths |= key_paths(value, path)
    return paths


# --- Loki ---------------------------------------------------------------------------------------


def test_loki_uses_tsdb_schema_v13_on_the_filesystem() -> None:
    config = load_yaml(LOKI_CONFIG)
    periods = config["schema_config"]["configs"]
    assert periods
    for period in periods:
        assert (period["store"], period["schema"], period["object_store"]) == (
            "tsdb",
            "v13",
            "filesystem",
        )
        assert period["index"]["period"] == "24h"
    assert config["auth_enabled"] is False
    assert config["server"]["http_listen_port"] == 3100
    assert config["common"]["replication_factor"] == 1
    assert config["common"]["ring"]["kvstore"]["store"] == "inmemory"


def test_loki_retention_is_wired_through_the_compactor() -> None:
    config = load_yaml(LOKI_CONFIG)
    assert config["compactor"]["retention_enabled"] is True
    assert config["compactor"]["delete_request_store"] == "filesystem"
    assert config["limits_config"]["retention_period"] == "168h"  # the specification's 7 days


def test_loki_config_has_none_of_the_keys_removed_in_3_0() -> None:
    present = key_paths(load_yaml(LOKI_CONFIG))
    assert sorted(present & REMOVED_IN_LOKI_3) == []


def test_loki_data_lives_in_the_mounted_volume() -> None:
    config = load_yaml(LOKI_CONFIG)
    mounts = {v.split(":")[1] for v in services()["loki"]["volumes"]}
    assert config["common"]["path_prefix"] in mounts
    config_file = _mounted_at("loki", "loki-config.yaml")
    assert f"-config.file={config_file}" in services()["loki"]["command"]


def _mounted_at(service: str, filename: str) -> str:
    volumes: list[str] = services()[service]["volumes"]
    for volume in volumes:
        source, target = volume.split(":")[:2]
        if source.endswith(filename):
            return target
    raise AssertionError(f"{filename} is not mounted into {service}")


# --- Promtail -----------------------------------------------------------------------------------


def promtail_job() -> dict[str, Any]:
    jobs = load_yaml(PROMTAIL_CONFIG)["scrape_configs"]
    assert len(jobs) == 1
    job: dict[str, Any] = jobs[0]
    return job


def stage(name: str) -> Any:
    (found,) = [s[name] for s in promtail_job()["pipeline_stages"] if name in s]
    return found


def produced_labels() -> set[str]:
    relabelled = {rule["target_label"] for rule in promtail_job()["relabel_configs"]}
    extracted = set(stage("json")["expressions"])
    promoted = set(stage("labels"))
    assert promoted <= extracted, "a labels stage key the json stage never extracts"
    return relabelled | promoted


def test_promtail_produces_the_labels_the_interfaces_promise() -> None:
    assert produced_labels() >= PROMISED_LABELS


@pytest.mark.parametrize("query", SPEC_QUERIES)
def test_the_specification_queries_select_produced_labels(query: str) -> None:
    used = stream_selector_labels(query)
    assert used
    assert used <= produced_labels()


def test_json_stage_reads_keys_of_the_log_contract() -> None:
    expressions = stage("json")["expressions"]
    for key, expression in expressions.items():
        source = expression or key
        assert source in REQUIRED_KEYS, f"{key}: {source} is not a key agents log"
    # Low cardinality: never a per-message value as a label.
    assert not set(stage("labels")) & {"message", "timestamp", "context", "message_id"}


def test_promtail_ships_to_the_compose_loki() -> None:
    config = load_yaml(PROMTAIL_CONFIG)
    assert [c["url"] for c in config["clients"]] == ["http://loki:3100/loki/api/v1/push"]
    assert promtail_job()["docker_sd_configs"][0]["host"] == "unix:///var/run/docker.sock"
    assert any(v.startswith("/var/run/docker.sock:") for v in services()["promtail"]["volumes"])
    positions = config["positions"]["filename"]
    targets = [v.split(":")[1] for v in services()["promtail"]["volumes"]]
    assert any(positions.startswith(target + "/") for target in targets)


def test_timestamp_stage_parses_what_the_agents_log() -> None:
    timestamp = stage("timestamp")
    assert timestamp["source"] in stage("json")["expressions"]
    assert timestamp["format"] == "RFC3339Nano"
    start = datetime(2026, 1, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    for offset in (timedelta(0), timedelta(microseconds=1), timedelta(seconds=0.5)):
        stream = io.StringIO()
        logger = JsonLogger("publisher-1", "publisher", stream=stream, clock=_At(start + offset))
        logger.log(Level.AI_DECISION, "decided", ai_action="slow_down")
        stamp = json.loads(stream.getvalue())[timestamp["source"]]
        assert RFC3339_NANO.match(stamp), stamp
        parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        assert abs(parsed - (start + offset)) < timedelta(milliseconds=1)


def test_rfc3339nano_pattern_accepts_the_specification_examples() -> None:
    assert RFC3339_NANO.match("2026-01-31T10:15:30Z")
    assert RFC3339_NANO.match("2026-01-31T10:15:30.123456789+01:00")
    assert not RFC3339_NANO.match("2026-01-31 10:15:30")


class _At(FakeClock):
    def __init__(self, moment: datetime) -> None:
        super().__init__(wall=moment)


# --- Grafana ------------------------------------------------------------------------------------


def datasources() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted((GRAFANA_PROVISIONING / "datasources").glob("*.y*ml")):
        for source in load_yaml(path)["datasources"]:
            found[source["uid"]] = source
    return found


def test_datasources_have_the_fixed_uids() -> None:
    sources = datasources()
    assert set(sources) == {"influxdb-agents", "loki-agents"}
    influx, loki = sources["influxdb-agents"], sources["loki-agents"]
    assert (influx["type"], influx["url"]) == ("influxdb", "http://influxdb:8086")
    assert influx["jsonData"]["version"] == "Flux"
    assert influx["secureJsonData"]["token"] == "${INFLUXDB_TOKEN}"
    assert (loki["type"], loki["url"]) == ("loki", "http://loki:3100")


def test_variables_in_provisioning_are_passed_to_grafana() -> None:
    text = "".join(p.read_text() for p in GRAFANA_PROVISIONING.rglob("*.y*ml"))
    used = set(re.findall(r"\$\{(\w+)\}", text))
    assert used
    assert used <= set(services()["grafana"]["environment"])


def test_dashboard_provider_reads_the_mounted_dashboards_folder() -> None:
    (path,) = (GRAFANA_PROVISIONING / "dashboards").glob("*.y*ml")
    (provider,) = load_yaml(path)["providers"]
    assert provider["type"] == "file"
    mounts = dict(v.split(":")[:2] for v in services()["grafana"]["volumes"])
    assert mounts["./infra/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./infra/grafana/provisioning"] == "/etc/grafana/provisioning"


DASHBOARD_FILES = sorted(p.name for p in DASHBOARDS_DIR.glob("*.json"))
_BUILTIN_UIDS = {"grafana", "-- Grafana --", "-- Dashboard --", "-- Mixed --"}


@pytest.mark.parametrize("filename", DASHBOARD_FILES)
def test_every_panel_datasource_is_provisioned(filename: str) -> None:
    sources = datasources()
    references = [
        node["datasource"] for node in walk(dashboards()[filename]) if "datasource" in node
    ]
    assert references
    for ref in references:
        assert isinstance(ref, dict), f"{filename}: datasource by name ({ref!r}), not by uid"
        if ref.get("uid") in _BUILTIN_UIDS:
            continue
        assert ref.get("uid") in sources, f"{filename}: unknown datasource uid {ref.get('uid')}"
        assert ref.get("type") == sources[ref["uid"]]["type"], filename


@pytest.mark.parametrize("filename", DASHBOARD_FILES)
def test_every_loki_query_selects_labels_promtail_produces(filename: str) -> None:
    targets = [
        node
        for node in walk(dashboards()[filename])
        if isinstance(node.get("datasource"), dict)
        and node["datasource"].get("uid") == "loki-agents"
        and "expr" in node
    ]
    produced = produced_labels()
    for target in targets:
        used = stream_selector_labels(target["expr"])
        assert used, f"{filename}: no stream selector in {target['expr']!r}"
        assert used <= produced, f"{filename}: {sorted(used - produced)} never reach Loki"


@pytest.mark.parametrize("filename", DASHBOARD_FILES)
def test_dashboards_have_fixed_uids(filename: str) -> None:
    assert re.fullmatch(r"[a-z0-9-]{1,40}", dashboards()[filename].get("uid", ""))
