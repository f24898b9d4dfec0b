"""No secret in any output: the whole fleet (`agents run`) runs with canary values for
ANTHROPIC_API_KEY, INFLUXDB_TOKEN and RABBITMQ_PASS (a dedicated RabbitMQ user on the test vhost),
against endpoints that fail and even echo the credentials back in their error bodies. Then every
output is scanned: the merged log, stderr (exceptions), the metrics the agents wrote, cassettes,
and `agents config` for each agent type. Each canary is also looked for base64- and URL-encoded.

The test first proves the canaries were really in use (the fake endpoints received them, the
broker shows the dedicated user connected), so it cannot pass by never exercising the secrets.
"""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest

from agents.testing.claude import FakeMessagesAPI
from agents.testing.influx import FakeInflux
from agents.testing.waiting import wait_until
from tests.faults.toolkit.procs import agent_env, read_lines
from tests.faults.toolkit.rabbit import agent_connections, dedicated_user

pytestmark = [pytest.mark.rabbitmq, pytest.mark.faults]

REPO = Path(__file__).resolve().parents[2]


def canary(name: str) -> str:
    return f"canary-{name}-{uuid.uuid4().hex}"


def encodings(secret: str) -> list[str]:
    raw = secret.encode()
    return [
        secret,
        base64.b64encode(raw).decode(),
        base64.b64encode(b"user:" + raw).decode()[8:],  # inside a Basic auth value
        urllib.parse.quote(secret, safe=""),
        secret[8:40],  # a long fragment: a truncated echo still leaks
    ]


def scan(texts: dict[str, str], secrets: dict[str, str]) -> list[str]:
    found = []
    for where, text in texts.items():
        for name, secret in secrets.items():
            for form in encodings(secret):
                if form in text:
                    found.append(f"{name} in {where}")
    return found


def test_no_secret_in_any_output(vhost: str, tmp_path: Path) -> None:
    secrets = {
        "ANTHROPIC_API_KEY": "sk-ant-" + canary("anthropic"),
        "INFLUXDB_TOKEN": canary("influx"),
        "RABBITMQ_PASS": canary("rabbit"),
    }
    log_file = tmp_path / "fleet.log"
    err_file = tmp_path / "fleet.err"
    with (
        dedicated_user(vhost, secrets["RABBITMQ_PASS"]) as user,
        FakeMessagesAPI(["echo_key_401", "ok", "500", "non_json", "ok"]) as claude,
        FakeInflux() as influx,
    ):
        env = agent_env(
            vhost,
            tmp_path,
            DRY_RUN="false",
            RABBITMQ_USER=user,
            RABBITMQ_PASS=secrets["RABBITMQ_PASS"],
            ANTHROPIC_API_KEY=secrets["ANTHROPIC_API_KEY"],
            ANTHROPIC_BASE_URL=claude.url,
            INFLUXDB_URL=influx.url,
            INFLUXDB_TOKEN=secrets["INFLUXDB_TOKEN"],
            DECISION_INTERVAL_SECONDS="1",
            FICTIONAL_INTERVAL_SECONDS="0.2",
            NONFICTIONAL_INTERVAL_SECONDS="0.2",
            AI_DECISION_RATE="1",
            AI_CALL_INTERVAL_SECONDS="1",
            CHECK_INTERVAL_SECONDS="1",
            QUEUE_SAMPLE_INTERVAL_SECONDS="1",
            AI_MAX_RETRIES="0",
            LOG_LEVEL="DEBUG",
        )
        with err_file.open("wb") as err:
            fleet = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "agents",
                    "run",
                    "--duration",
                    "120",
                    "--log-file",
                    str(log_file),
                ],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
            try:
                wait_until(lambda: len(agent_connections(vhost)) >= 5, 90, "the fleet connected")
                users = {c.get("user") for c in agent_connections(vhost)}
                wait_until(lambda: len(claude.requests) >= 6, 30, "AI calls with the canary key")
                influx.set_mode("echo_auth")  # error bodies now carry the token back
                time.sleep(3)  # let every agent's failing batches come back (rate-limited logs)
                influx.set_mode("error")
                time.sleep(2)
                influx.set_mode("up")
                fleet.send_signal(signal.SIGTERM)  # the fleet's own orderly stop
                assert fleet.wait(60) in (0, 1)
            finally:
                if fleet.poll() is None:
                    fleet.kill()
        sent_keys = {
            r.headers.get("authorization", "") + r.headers.get("x-api-key", "")
            for r in claude.requests
        }
        influx_auth = set(influx.auth_headers)
        metric_bodies = "\n".join(influx.bodies)

    # The canaries were really used.
    assert users == {user}, users
    assert any(secrets["ANTHROPIC_API_KEY"] in k for k in sent_keys), (
        "the key never reached the API"
    )
    assert any(secrets["INFLUXDB_TOKEN"] in a for a in influx_auth), (
        "the token never reached InfluxDB"
    )
    assert claude.counts.get("echo_key_401", 0) >= 1

    outputs: dict[str, str] = {
        "fleet log": log_file.read_text(errors="replace"),
        "stderr": err_file.read_text(errors="replace"),
        "metrics sent to InfluxDB": metric_bodies,
    }
    lines, bad = read_lines(log_file)
    assert len(lines) > 50 and not bad, bad[:3]
    assert any(line["level"] == "AI_DECISION" for line in lines)
    for path in [*tmp_path.rglob("*")]:
        if path.is_file() and path not in (log_file, err_file):
            outputs[str(path.relative_to(tmp_path))] = path.read_text(errors="replace")
    for cassette in (REPO / "cassettes").rglob("*"):
        if cassette.is_file():
            outputs[f"cassettes/{cassette.name}"] = cassette.read_text(errors="replace")
    for agent_type in ("publisher", "consumer", "monitor"):
        result = subprocess.run(
            [sys.executable, "-m", "agents", "config", agent_type],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        outputs[f"agents config {agent_type}"] = result.stdout + result.stderr
        assert "**********" in result.stdout

    leaks = scan(outputs, secrets)
    assert not leaks, leaks


def test_influxdb_client_logging_does_not_echo_the_token(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from agents.core.logs import JsonLogger, Redactor
    from agents.core.metrics import InfluxSink, Metrics

    token = canary("influx-direct")
    with FakeInflux() as influx:
        influx.set_mode("echo_auth")
        logger = JsonLogger("publisher-1", "publisher", redactor=Redactor([token]))
        sink = InfluxSink(influx.url, token, "org", "bucket", logger)
        metrics = Metrics(sink, "publisher-1", "publisher")
        for _ in range(5):
            metrics.error("probe")
        wait_until(lambda: sink.errors.failed_points >= 5, 30, "the failed batch reported")
        sink.close()
    captured = capfd.readouterr()
    # In a real process these records reach stderr through logging's last-resort handler.
    outputs = {"stdout": captured.out, "stderr": captured.err, "python logging": caplog.text}
    assert not scan(outputs, {"INFLUXDB_TOKEN": token})


def test_auth_failure_paths_do_not_echo_the_password(vhost: str, tmp_path: Path) -> None:
    """A wrong password and a forbidden vhost: the retry loop's ERROR lines name the broker, the
    user and the vhost, never the password."""
    secret = canary("wrong-rabbit")
    for case, overrides in {
        "wrong-password": {"RABBITMQ_PASS": secret},
        "forbidden-vhost": {
            "RABBITMQ_PASS": "guest",
            "RABBITMQ_VHOST": f"missing-{uuid.uuid4().hex[:6]}",
        },
    }.items():
        env = agent_env(vhost, tmp_path, **overrides)
        out = tmp_path / f"{case}.log"

        def two_failed_attempts(log: Path = out) -> bool:
            lines = read_lines(log)[0]
            failed: int = sum(
                line.get("message") == "RabbitMQ connection attempt failed" for line in lines
            )
            return failed >= 2

        with out.open("wb") as stdout:
            process = subprocess.Popen(
                [sys.executable, "-m", "agents", "consumer"],
                env=env,
                cwd=tmp_path,
                stdout=stdout,
                stderr=subprocess.STDOUT,
            )
            try:
                wait_until(two_failed_attempts, 30, f"{case}: failed attempts logged")
            finally:
                process.terminate()
                process.wait(20)
        text = out.read_text(errors="replace")
        assert not scan({case: text}, {"RABBITMQ_PASS": secret}), case
        failures = [
            line
            for line in read_lines(out)[0]
            if line.get("message") == "RabbitMQ connection attempt failed"
        ]
        assert all(line["level"] == "ERROR" for line in failures)
