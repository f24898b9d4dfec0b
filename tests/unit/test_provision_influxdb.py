"""`python -m agents.provision influxdb` against a stateful fake of InfluxDB's HTTP API.

The fake implements the handful of /api/v2 endpoints the setup job uses, with InfluxDB's status
codes (404 for an unknown org name, 201 on create, 401 for a bad token), so the job is exercised
through real HTTP at the boundary.
"""

from __future__ import annotations

import io
import json
import re
import socket
from dataclasses import dataclass, field
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from agents.core.logs import JsonLogger
from agents.provision import (
    InfluxProvisionSettings,
    ProvisionError,
    Unreachable,
    UrllibHttp,
    ensure_influxdb,
    main,
    parse_duration,
)
from agents.testing.clock import FakeClock

TOKEN = "tok-" + "s3cr3t" * 6
SEVEN_DAYS = 7 * 86_400


@dataclass
class InfluxSetupState:
    token: str = TOKEN
    healthy_after: int = 0  # number of /health calls answered 503 first
    orgs: dict[str, str] = field(default_factory=dict)  # name -> id
    buckets: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> bucket
    writes: list[str] = field(default_factory=list)  # "METHOD /path" of every change
    health_calls: int = 0

    def handle(self, request: Request) -> Response:
        path, method = request.path, request.method
        if path == "/health":
            self.health_calls += 1
            if self.health_calls <= self.healthy_after:
                return _json({"status": "fail", "message": "starting"}, 503)
            return _json({"name": "influxdb", "status": "pass"})
        if request.headers.get("Authorization") != f"Token {self.token}":
            return _json({"code": "unauthorized", "message": "unauthorized access"}, 401)
        body = request.get_json(silent=True) or {}
        if method != "GET":
            self.writes.append(f"{method} {path}")
        if path == "/api/v2/orgs" and method == "GET":
            name = request.args["org"]
            if name not in self.orgs:
                return _json(
                    {"code": "not found", "message": f'organization "{name}" not found'}, 404
                )
            return _json({"orgs": [{"id": self.orgs[name], "name": name}]})
        if path == "/api/v2/orgs" and method == "POST":
            org_id = f"org{len(self.orgs) + 1:013d}"
            self.orgs[body["name"]] = org_id
            return _json({"id": org_id, "name": body["name"]}, 201)
        if path == "/api/v2/buckets" and method == "GET":
            found = [
                b
                for b in self.buckets.values()
                if b["orgID"] == request.args["orgID"] and b["name"] == request.args["name"]
            ]
            return _json({"buckets": found})
        if path == "/api/v2/buckets" and method == "POST":
            bucket_id = f"bkt{len(self.buckets) + 1:013d}"
            self.buckets[bucket_id] = {"id": bucket_id, **body}
            return _json(self.buckets[bucket_id], 201)
        match = re.fullmatch(r"/api/v2/buckets/(\w+)", path)
        if match and method == "PATCH":
            self.buckets[match.group(1)]["retentionRules"] = body["retentionRules"]
            return _json(self.buckets[match.group(1)])
        return _json({"message": f"no route {method} {path}"}, 404)

    def retention_of(self, name: str) -> list[dict[str, Any]]:
        return next(b["retentionRules"] for b in self.buckets.values() if b["name"] == name)


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


@pytest.fixture
def influx(httpserver: HTTPServer) -> InfluxSetupState:
    fake = InfluxSetupState()
    httpserver.expect_request(re.compile(".*")).respond_with_handler(fake.handle)
    return fake


def settings_for(httpserver: HTTPServer, **overrides: Any) -> InfluxProvisionSettings:
    values: dict[str, Any] = {
        "influxdb_url": httpserver.url_for("/").rstrip("/"),
        "influxdb_token": TOKEN,
        "wait_seconds": 30,
        **overrides,
    }
    return InfluxProvisionSettings(**values)


def run(httpserver: HTTPServer, clock: FakeClock | None = None, **overrides: Any) -> dict[str, Any]:
    logger = JsonLogger("influxdb-setup", "setup", stream=io.StringIO())
    return ensure_influxdb(settings_for(httpserver, **overrides), UrllibHttp(), logger, clock)


def test_creates_org_and_bucket_with_retention_on_an_empty_server(
    httpserver: HTTPServer, influx: InfluxSetupState
) -> None:
    result = run(httpserver)

    assert influx.orgs.keys() == {"monitoring"}
    assert influx.retention_of("agent_metrics") == [{"type": "expire", "everySeconds": SEVEN_DAYS}]
    assert result["changed"] == ["created org monitoring", "created bucket agent_metrics"]


def test_second_run_changes_nothing(httpserver: HTTPServer, influx: InfluxSetupState) -> None:
    run(httpserver)
    writes_after_first = list(influx.writes)

    result = run(httpserver)

    assert result["changed"] == []
    assert influx.writes == writes_after_first


def test_existing_bucket_with_other_retention_is_fixed(
    httpserver: HTTPServer, influx: InfluxSetupState
) -> None:
    influx.orgs["monitoring"] = "org0000000000042"
    influx.buckets["b1"] = {
        "id": "b1",
        "orgID": "org0000000000042",
        "name": "agent_metrics",
        "retentionRules": [{"type": "expire", "everySeconds": 30 * 86_400}],
    }

    result = run(httpserver)

    assert influx.writes == ["PATCH /api/v2/buckets/b1"]
    assert influx.retention_of("agent_metrics") == [{"type": "expire", "everySeconds": SEVEN_DAYS}]
    assert result["changed"] == [f"retention of agent_metrics: {30 * 86_400} s -> {SEVEN_DAYS} s"]


def test_bucket_of_the_same_name_in_another_org_does_not_count(
    httpserver: HTTPServer, influx: InfluxSetupState
) -> None:
    influx.orgs["other"] = "org0000000000007"
    influx.buckets["b1"] = {"id": "b1", "orgID": "org0000000000007", "name": "agent_metrics"}

    run(httpserver)

    assert [b["orgID"] for b in influx.buckets.values() if b["name"] == "agent_metrics"] == [
        "org0000000000007",
        influx.orgs["monitoring"],
    ]


def test_waits_for_health_then_proceeds(httpserver: HTTPServer, influx: InfluxSetupState) -> None:
    influx.healthy_after = 3
    clock = FakeClock()

    run(httpserver, clock=clock)

    assert influx.health_calls == 4
    assert clock.monotonic() == pytest.approx(1_003.0)
    assert "monitoring" in influx.orgs


def test_gives_up_when_never_healthy(httpserver: HTTPServer, influx: InfluxSetupState) -> None:
    influx.healthy_after = 10**6

    with pytest.raises(ProvisionError, match=r"not ready after 30 s \(not ready\)"):
        run(httpserver, clock=FakeClock())

    assert influx.writes == []


def test_wrong_token_fails_with_an_explanation_and_without_the_token(
    httpserver: HTTPServer,
    influx: InfluxSetupState,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    influx.token = "the-real-operator-token"
    monkeypatch.setenv("INFLUXDB_URL", httpserver.url_for("/").rstrip("/"))
    monkeypatch.setenv("INFLUXDB_TOKEN", TOKEN)

    assert main(["influxdb"]) == 1

    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "rejected INFLUXDB_TOKEN (401)" in err
    assert TOKEN not in err


def test_command_line_provisions_and_logs_one_json_line(
    httpserver: HTTPServer,
    influx: InfluxSetupState,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("INFLUXDB_URL", httpserver.url_for("/").rstrip("/"))
    monkeypatch.setenv("INFLUXDB_TOKEN", TOKEN)
    monkeypatch.setenv("INFLUXDB_RETENTION", "168h")

    assert main(["influxdb"]) == 0

    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    line = json.loads(out[0])
    assert (line["level"], line["agent_id"], line["message"]) == (
        "INFO",
        "influxdb-setup",
        "InfluxDB provisioned",
    )
    assert line["context"]["retention_seconds"] == SEVEN_DAYS
    assert TOKEN not in out[0]


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"INFLUXDB_RETENTION": "a week"}, "INFLUXDB_RETENTION"),
        ({"INFLUXDB_URL": "influxdb:8086"}, "INFLUXDB_URL"),
        ({"INFLUXDB_TOKEN": None}, "INFLUXDB_TOKEN"),
    ],
)
def test_bad_settings_exit_2_with_one_line(
    env: dict[str, str | None],
    variable: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("INFLUXDB_URL", "http://influxdb:8086")
    monkeypatch.setenv("INFLUXDB_TOKEN", TOKEN)
    for key, value in env.items():
        if value is None:
            monkeypatch.delenv(key)
        else:
            monkeypatch.setenv(key, value)

    assert main(["influxdb"]) == 2

    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"invalid setting {variable}:" in err


def test_unknown_target_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mongodb"]) == 2
    assert "usage:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("7d", SEVEN_DAYS), ("168h", SEVEN_DAYS), ("1w", SEVEN_DAYS), ("90m", 5400), ("0", 0)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "7 days", "-1d", "1y", "1.5h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_nothing_listening_is_unreachable_not_a_crash() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The socket is closed again: connecting is refused.
    with pytest.raises(Unreachable, match=rf"GET http://127.0.0.1:{port}/health"):
        UrllibHttp(timeout=2).request("GET", f"http://127.0.0.1:{port}/health", {})
