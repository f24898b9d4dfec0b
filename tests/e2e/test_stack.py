"""The specification's testing checklist and success criteria against the running compose stack,
then every provisioned panel's own query through Grafana, one marker message chased through logs
and metrics, and a scale-out.

Every check waits on its condition with a deadline (services start in their own time); none
sleeps a fixed time and hopes. Tests run in file order: the scale-out comes last.
"""

from __future__ import annotations

import functools
import json
import re
import time
import urllib.parse
import uuid
from base64 import b64encode
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from agents.core.management import ApiError, ManagementClient
from agents.provision import ProvisionError, UrllibHttp, agents_permission_pattern
from agents.testing import parse_lines
from agents.vocab import ANOMALY_QUEUE, DEAD_LETTER_QUEUE, EXCHANGE, QUEUES
from tests.e2e.panel_queries import (
    PanelQuery,
    all_values,
    ds_query_payload,
    missing_data,
    panel_queries,
    read_answer,
)
from tests.e2e.stack import Stack
from tests.e2e.states import by_service, ready_problem
from tests.stack.stackfiles import REPLICAS, SETUP_JOBS, dashboards

# func_only: building images and starting the stack (the session fixture) have their own limits.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(900, func_only=True)]

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
        # ApiError: a service still starting (Unreachable: connection refused) or the management
        # API's "not yet" (ApiStatusError: a 404 until a queue or user exists).
        except (ProvisionError, ApiError, KeyError, ValueError, TypeError) as exc:
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


def grafana_auth(stack: Stack) -> dict[str, str]:
    return basic(stack.env["GRAFANA_ADMIN_USER"], stack.env["GRAFANA_ADMIN_PASSWORD"])


def rabbit(stack: Stack, path: str) -> Any:
    env = stack.env
    api = ManagementClient(
        stack.url("RABBITMQ_MANAGEMENT_PORT"),
        env["RABBITMQ_ADMIN_USER"],
        env["RABBITMQ_ADMIN_PASS"],
        http=HTTP,
    )
    return api.get(path)


def consumers_at_least(stack: Stack, queue: str, count: int) -> bool | None:
    """True once `queue` has `count` consumers; None (not yet) for `wait_for` otherwise."""
    consumers: int = rabbit(stack, f"/api/queues/%2F/{queue}")["consumers"]
    return consumers >= count or None


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


def test_setup_jobs_exited_0_and_said_so_in_compose_logs(running: Stack) -> None:
    # They exit before Promtail's discovery (running containers only) sees them, so their
    # outcome is read where the README says: `docker compose ps --all` and `docker compose logs`.
    rows = running.states()
    assert ready_problem(rows) is None
    for job in SETUP_JOBS:
        (state,) = by_service(rows)[job]
        assert (state["State"], int(state["ExitCode"])) == ("exited", 0), job
    logs = {
        job: running.compose("logs", "--no-color", "--no-log-prefix", job).stdout
        for job in SETUP_JOBS
    }
    records = {job: parse_lines(text, only_json=True) for job, text in logs.items()}
    rabbit = records["rabbitmq-setup"]
    assert any(r.get("message") == "RabbitMQ agents account ready" for r in rabbit), logs
    (ready,) = [r for r in rabbit if r.get("rabbitmq") == "ready"]
    assert ready["queue_type"] == running.env["QUEUE_TYPE"] == "quorum"
    assert any(
        r.get("message") in ("InfluxDB ready", "InfluxDB provisioned")
        for r in records["influxdb-setup"]
    ), logs


def test_queues_are_quorum_with_dead_lettering(running: Stack) -> None:
    for name in (*QUEUES, ANOMALY_QUEUE, DEAD_LETTER_QUEUE):
        queue = rabbit(running, f"/api/queues/%2F/{urllib.parse.quote(name, safe='')}")
        assert queue["type"] == "quorum", name
        if name != DEAD_LETTER_QUEUE:
            assert queue["arguments"]["x-dead-letter-strategy"] == "at-least-once", name
            assert queue["arguments"]["x-overflow"] == "reject-publish", name


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
    assert len(connections) >= sum(REPLICAS.values())
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
            functools.partial(grafana, running, f"/api/datasources/uid/{uid}/health"),
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
    # Each replica names itself after its container hostname: publisher-<short container id>.
    assert all(re.fullmatch(r"publisher-[a-z0-9-]+", i) for i in ids), ids
    assert len(ids) == REPLICAS["publisher"], ids
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


# --- every panel's own query, as Grafana runs it ------------------------------------------------

# Panels a healthy few-minute replay run may leave empty; their queries must still succeed.
MAY_BE_EMPTY = {
    ("books-ai-decisions", "Fallbacks by reason"): "no fallback in a healthy replay run",
    ("books-correlation", "Error rate"): "no errors in a healthy run",
    ("books-correlation", "Error logs"): "no ERROR lines in a healthy run",
}


def ds_query(stack: Stack, query: PanelQuery, values: dict[str, str]) -> Any:
    payload = ds_query_payload(query, values)
    reply = HTTP.request(
        "POST", stack.url("GRAFANA_PORT") + "/api/ds/query", grafana_auth(stack), payload
    )
    # A query error comes back per refId (often with HTTP 400 or 500 overall): keep the body.
    return reply.body if isinstance(reply.body, dict) else {"results": {}}


def test_every_provisioned_panel_query_returns_data(running: Stack) -> None:
    provisioned = {d["uid"] for d in dashboards().values()}
    found = {d["uid"] for d in grafana(running, "/api/search?type=dash-db")}
    assert provisioned <= found
    # The dashboards as Grafana serves them (provisioned), not only as committed.
    boards = [grafana(running, f"/api/dashboards/uid/{uid}")["dashboard"] for uid in provisioned]
    queries = [(q, all_values(board)) for board in boards for q in panel_queries(board)]
    assert len(queries) >= 25

    def problems() -> dict[str, str] | None:
        bad = {}
        for query, values in queries:
            answer = read_answer(ds_query(running, query, values), query.ref_id)
            problem = missing_data(query, answer)
            if problem is None:
                continue
            if (query.dashboard, query.panel) in MAY_BE_EMPTY and not answer.error:
                continue
            bad[query.where] = problem
        return bad

    last: dict[str, str] = {}

    def all_have_data() -> bool:
        nonlocal last
        last = problems() or {}
        return not last

    deadline = time.monotonic() + ACTIVITY_SECONDS + 120
    while not all_have_data() and time.monotonic() < deadline:
        time.sleep(15)
    assert last == {}, "panels without data (variables at All):\n" + "\n".join(
        f"{k}: {v}" for k, v in sorted(last.items())
    )


# --- one marker through the whole pipeline ------------------------------------------------------


def publish_marker(stack: Stack, marker: uuid.UUID) -> None:
    """A valid book with a known id, published as a publisher would (confirmed, mandatory)."""
    import pika

    from agents.messages import BookMessage

    book = BookMessage(
        message_id=marker,
        genre="fictional",
        title="The e2e marker",
        author="books-agents e2e",
        priority=3,
        published_at=datetime.now(UTC),
        publisher_id="e2e-marker",
    )
    parameters = pika.ConnectionParameters(
        host="127.0.0.1",
        port=stack.port("RABBITMQ_AMQP_PORT"),
        credentials=pika.PlainCredentials(
            stack.env["RABBITMQ_AGENTS_USER"], stack.env["RABBITMQ_AGENTS_PASS"]
        ),
    )
    connection = pika.BlockingConnection(parameters)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(
            exchange=EXCHANGE,
            routing_key="fictional",
            body=book.to_json(),
            properties=pika.BasicProperties(
                content_type="application/json",
                delivery_mode=pika.DeliveryMode.Persistent,
                message_id=str(marker),
            ),
            mandatory=True,
        )
    finally:
        connection.close()


def test_a_marker_book_is_found_in_loki_and_influxdb(running: Stack) -> None:
    marker = uuid.uuid4()
    publish_marker(running, marker)

    def consumed() -> dict[str, Any] | None:
        query = f'{{agent_type="consumer"}} |= "{marker}"'
        for labels, line in loki_lines(running, query, minutes=10):
            record = json.loads(line)
            context = record.get("context", {})
            if record["message"] == "Message consumed" and context.get("message_id") == str(marker):
                return {"labels": labels, **record}
        return None

    record = wait_for(f"consumer line for marker {marker} in Loki", consumed, 180)
    context = record["context"]
    assert context["queue"] == "fictional"
    assert record["labels"]["agent_id"] == record["agent_id"]  # Promtail's label is the line's
    at = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
    start = (at - timedelta(seconds=30)).isoformat().replace("+00:00", "Z")
    stop = (at + timedelta(seconds=30)).isoformat().replace("+00:00", "Z")
    rows = wait_for(
        "its consume point in InfluxDB",
        lambda: flux(
            running,
            f'from(bucket: "{bucket(running)}") |> range(start: {start}, stop: {stop}) '
            '|> filter(fn: (r) => r._measurement == "consume" and r._field == "messages_consumed") '
            f'|> filter(fn: (r) => r.agent_id == "{record["agent_id"]}" and r.queue == "fictional" '
            f'and r.action == "{context["action"]}")',
        ),
        120,
    )
    assert all(int(row["_value"]) == 1 for row in rows)


# --- past one replica ---------------------------------------------------------------------------


def test_scaling_consumers_gives_each_replica_its_own_id(running: Stack) -> None:
    scaled = {**REPLICAS, "consumer": 3}
    done = running.compose(
        "up", "--detach", "--no-build", "--no-recreate", "--scale", "consumer=3", timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    wait_for(
        "three consumer replicas running",
        lambda: ready_problem(running.states(), scaled) is None,
        STARTUP_SECONDS,
    )
    names = {row["Name"] for row in by_service(running.states())["consumer"]}
    assert len(names) == 3

    def consumer_connections() -> set[str] | None:
        found = {
            c["client_properties"].get("connection_name", "")
            for c in rabbit(running, "/api/connections")
            if c.get("client_properties", {})
            .get("connection_name", "")
            .startswith("books-agents/consumer-")
        }
        return found if len(found) == 3 else None

    ids = wait_for("three distinct consumer ids on the broker", consumer_connections, 120)
    assert len(ids) == 3
    for queue in QUEUES:
        depth = wait_for(
            f"three consumers on {queue}",
            functools.partial(consumers_at_least, running, queue, 3),
            60,
        )
        assert depth
    labelled = wait_for(
        "three consumer agent_id labels in Loki",
        lambda: (
            ids_in_loki
            if len(
                ids_in_loki := {
                    labels["agent_id"]
                    for labels, _ in loki_lines(running, '{agent_type="consumer"}', minutes=5)
                }
            )
            >= 3
            else None
        ),
        ACTIVITY_SECONDS,
    )
    assert {f"books-agents/{i}" for i in labelled} >= ids
