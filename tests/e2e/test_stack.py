"""The specification's testing checklist and success criteria against the running compose stack.

Every check waits on its condition with a deadline (services start in their own time); none
sleeps a fixed time and hopes.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from base64 import b64encode
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from agents.core.broker import QUEUES
from agents.provision import ProvisionError, UrllibHttp, agents_permission_pattern
from tests.e2e.conftest import Stack
from tests.stack.stackfiles import AGENTS, dashboards

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

T = TypeVar("T")
STARTUP_SECONDS = 300.0
ACTIVITY_SECONDS = 240.0
HTTP = UrllibHttp(timeout=10)
SPEC_COST_CAP_USD = 0.10  # "Cost < $0.10 for 10 minute run"


def wait_for(what: str, check: Callable[[], T | None], timeout: float, every: float = 2.0) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` and the last answer."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = check()
            if result:
                return result
            last = result
        except (ProvisionError, KeyError, ValueError, TypeError) as exc:
            last = exc
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s (last: {last!r})"[:500], pytrace=False)
        time.sleep(every)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + b64encode(f"{user}:{password}".encode()).decode()}


def get(url: str, headers: dict[str, str] | None = None) -> Any:
    reply = HTTP.request("GET", url, headers or {})
    if reply.status != 200:
        raise ValueError(f"GET {url.split('?')[0]}: {reply.status}")
    return reply.body


def rabbit(stack: Stack, path: str) -> Any:
    env = stack.env
    auth = basic(env["RABBITMQ_ADMIN_USER"], env["RABBITMQ_ADMIN_PASS"])
    return get(stack.url("RABBITMQ_MANAGEMENT_PORT") + path, auth)


def grafana(stack: Stack, path: str) -> Any:
    auth = basic(stack.env["GRAFANA_ADMIN_USER"], stack.env["GRAFANA_ADMIN_PASSWORD"])
    return get(stack.url("GRAFANA_PORT") + path, auth)


def loki_lines(stack: Stack, query: str, minutes: int = 30) -> list[tuple[dict[str, str], str]]:
    end = time.time_ns()
    params = urllib.parse.urlencode(
        {"query": query, "start": end - minutes * 60 * 10**9, "end": end, "limit": 200}
    )
    body = get(f"{stack.url('LOKI_PORT')}/loki/api/v1/query_range?{params}")
    return [
        (result["stream"], line)
        for result in body["data"]["result"]
        for _, line in result["values"]
    ]


def flux(stack: Stack, query: str) -> list[dict[str, Any]]:
    from influxdb_client import InfluxDBClient

    with InfluxDBClient(
        url=stack.url("INFLUXDB_PORT"),
        token=stack.env["INFLUXDB_TOKEN"],
        org=stack.env["INFLUXDB_ORG"],
    ) as client:
        tables = client.query_api().query(query)
    return [record.values for table in tables for record in table.records]


def bucket(stack: Stack) -> str:
    return stack.env["INFLUXDB_BUCKET"]


# --- the services answer -------------------------------------------------------------------------


def test_setup_jobs_completed_and_every_agent_runs(running: Stack) -> None:
    def states() -> dict[str, dict[str, Any]] | None:
        done = running.compose("ps", "--all", "--format", "json")
        rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        by_service = {row["Service"]: row for row in rows}
        jobs_done = all(
            by_service.get(job, {}).get("State") == "exited"
            for job in ("rabbitmq-setup", "influxdb-setup")
        )
        agents_up = all(by_service.get(name, {}).get("State") == "running" for name in AGENTS)
        return by_service if jobs_done and agents_up else None

    by_service = wait_for("setup jobs exited and five agents running", states, STARTUP_SECONDS)
    for job in ("rabbitmq-setup", "influxdb-setup"):
        assert by_service[job]["ExitCode"] == 0, job


def test_rabbitmq_management_answers_on_15672(running: Stack) -> None:
    overview = wait_for(
        "RabbitMQ management API", lambda: rabbit(running, "/api/overview"), STARTUP_SECONDS
    )
    assert overview["rabbitmq_version"].startswith("4.")


def test_agents_use_their_own_limited_rabbitmq_account(running: Stack) -> None:
    user = running.env["RABBITMQ_AGENTS_USER"]
    connections = wait_for(
        "agent connections",
        lambda: [c for c in rabbit(running, "/api/connections") if c.get("user") == user],
        STARTUP_SECONDS,
    )
    assert len(connections) >= len(AGENTS)
    assert not [c for c in rabbit(running, "/api/connections") if c.get("user") == "guest"]
    account = rabbit(running, f"/api/users/{user}")
    assert account["tags"] in ([], "")
    permissions = rabbit(running, f"/api/permissions/%2F/{user}")
    assert permissions["configure"] == agents_permission_pattern()


def test_influxdb_health_passes(running: Stack) -> None:
    health = wait_for(
        "InfluxDB /health", lambda: get(running.url("INFLUXDB_PORT") + "/health"), STARTUP_SECONDS
    )
    assert health["status"] == "pass"


def test_loki_ready_says_ready(running: Stack) -> None:
    body = wait_for(
        "Loki /ready", lambda: get(running.url("LOKI_PORT") + "/ready"), STARTUP_SECONDS
    )
    assert str(body).strip() == "ready"


def test_grafana_health_datasources_and_dashboards(running: Stack) -> None:
    health = wait_for(
        "Grafana /api/health", lambda: grafana(running, "/api/health"), STARTUP_SECONDS
    )
    assert health["database"] == "ok"
    for uid, kind in (("influxdb-agents", "influxdb"), ("loki-agents", "loki")):
        assert grafana(running, f"/api/datasources/uid/{uid}")["type"] == kind
        # Grafana itself reaches the datasource with the provisioned URL and token.
        checked = wait_for(
            f"datasource {uid} health",
            lambda u=uid: grafana(running, f"/api/datasources/uid/{u}/health"),
            120,
        )
        assert checked["status"] == "OK", checked
    expected = {d["uid"] for d in dashboards().values()}
    found = wait_for(
        "provisioned dashboards",
        lambda: (
            {d["uid"] for d in grafana(running, "/api/search?type=dash-db")} >= expected or None
        ),
        120,
    )
    assert found


# --- the agents work -----------------------------------------------------------------------------


def test_messages_are_routed_by_genre(running: Stack) -> None:
    def published() -> dict[str, int] | None:
        counts = {
            q: int(
                rabbit(running, f"/api/queues/%2F/{q}").get("message_stats", {}).get("publish", 0)
            )
            for q in QUEUES
        }
        return counts if all(counts.values()) else None

    wait_for("messages published to both genre queues", published, ACTIVITY_SECONDS)
    rows = wait_for(
        "publish points per queue in InfluxDB",
        lambda: flux(
            running,
            f'from(bucket: "{bucket(running)}") |> range(start: -1h) '
            '|> filter(fn: (r) => r._measurement == "publish") '
            '|> filter(fn: (r) => r._field == "messages_published") '
            '|> group(columns: ["queue"]) |> sum()',
        ),
        ACTIVITY_SECONDS,
    )
    assert {row["queue"] for row in rows} >= set(QUEUES)


def test_loki_has_labelled_publisher_lines(running: Stack) -> None:
    lines = wait_for(
        'Loki {agent_type="publisher"}',
        lambda: loki_lines(running, '{agent_type="publisher"}'),
        ACTIVITY_SECONDS,
    )
    ids = {labels["agent_id"] for labels, _ in lines}
    assert ids <= {"publisher-1", "publisher-2"} and ids
    for labels, line in lines:
        record = json.loads(line)
        assert (labels["agent_id"], labels["agent_type"], labels["level"]) == (
            record["agent_id"],
            record["agent_type"],
            record["level"],
        )
        assert {"container_name", "stream", "service"} <= set(labels)


def test_loki_filters_ai_decisions_by_action(running: Stack) -> None:
    decisions = wait_for(
        'Loki {level="AI_DECISION"}',
        lambda: loki_lines(running, '{level="AI_DECISION"}'),
        ACTIVITY_SECONDS,
    )
    records = [json.loads(line) for _, line in decisions]
    assert {r["level"] for r in records} == {"AI_DECISION"}
    action = records[0]["context"]["ai_action"]
    query = f'{{level="AI_DECISION"}} | json | context_ai_action="{action}"'
    matching = wait_for(query, lambda: loki_lines(running, query), 60)
    assert {json.loads(line)["context"]["ai_action"] for _, line in matching} == {action}


def test_influxdb_holds_ai_decisions_with_reasoning_and_tokens(running: Stack) -> None:
    rows = wait_for(
        "ai_decision points",
        lambda: flux(
            running,
            f'from(bucket: "{bucket(running)}") |> range(start: -1h) '
            '|> filter(fn: (r) => r._measurement == "ai_decision") '
            '|> filter(fn: (r) => r._field == "ai_reasoning_text" or r._field == "tokens_used") '
            '|> pivot(rowKey: ["_time", "agent_id"], columnKey: ["_field"], valueColumn: "_value")',
        ),
        ACTIVITY_SECONDS,
    )
    assert {row["agent_type"] for row in rows} >= {"publisher"}
    assert all(isinstance(row["ai_reasoning_text"], str) for row in rows)
    assert any(row["ai_reasoning_text"] for row in rows)
    assert all(int(row["tokens_used"]) >= 0 for row in rows)
    if running.env["DRY_RUN"] != "true":  # replayed answers carry their recorded usage
        assert any(int(row["tokens_used"]) > 0 for row in rows)


def test_recorded_cost_stays_under_the_cap(running: Stack) -> None:
    wait_for(
        "ai_decision points",
        lambda: flux(
            running,
            f'from(bucket: "{bucket(running)}") |> range(start: -1h) '
            '|> filter(fn: (r) => r._measurement == "ai_decision" and r._field == "cost_usd") '
            "|> count()",
        ),
        ACTIVITY_SECONDS,
    )
    per_agent = flux(
        running,
        f'from(bucket: "{bucket(running)}") |> range(start: -1h) '
        '|> filter(fn: (r) => r._measurement == "ai_decision" and r._field == "cost_usd") '
        '|> group(columns: ["agent_id"]) |> sum()',
    )
    total = sum(float(row["_value"]) for row in per_agent)
    assert total < SPEC_COST_CAP_USD
    cap = float(running.env["MAX_COST_PER_10MIN_USD"])
    for row in per_agent:
        assert float(row["_value"]) <= cap + 1e-9, row["agent_id"]
