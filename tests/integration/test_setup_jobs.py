"""The compose setup jobs' exact commands and environment, run here against real servers: the
local RabbitMQ (in a fresh vhost) and a stateful fake of InfluxDB's HTTP API."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pika
import pytest
from pytest_httpserver import HTTPServer

from agents.testing import parse_lines
from agents.vocab import DEAD_LETTER_QUEUE, QUEUES
from tests.stack.stackfiles import service_env, services
from tests.support.rabbit import MGMT_URL, RABBIT_HOST, RABBIT_PORT, management
from tests.unit.test_provision_influxdb import InfluxSetupState

BIN = str(Path(sys.executable).parent)


def job_command(name: str) -> list[str]:
    command = list(services()[name]["command"])
    # `python` in the image is the venv's; here it is the interpreter running the tests.
    return [sys.executable if part == "python" else part for part in command]


def run_job(name: str, overrides: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {"PATH": BIN + os.pathsep + os.environ.get("PATH", ""), **service_env(name), **overrides}
    return subprocess.run(
        job_command(name), env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.rabbitmq
def test_rabbitmq_setup_job_creates_the_account_then_the_topology_as_that_account(
    vhost: str,
) -> None:
    user = f"agents-job-{vhost[-8:]}"
    env = service_env("rabbitmq-setup")
    local = {
        "RABBITMQ_MANAGEMENT_URL": MGMT_URL,
        "RABBITMQ_HOST": RABBIT_HOST,
        "RABBITMQ_PORT": str(RABBIT_PORT),
        "RABBITMQ_VHOST": vhost,
        "RABBITMQ_USER": user,
    }
    try:
        done = run_job("rabbitmq-setup", local)
        assert done.returncode == 0, done.stderr
        assert env["RABBITMQ_PASS"] not in done.stdout + done.stderr
        queues = {q["name"] for q in management("GET", f"/api/queues/{vhost}")}
        assert {*QUEUES, DEAD_LETTER_QUEUE} <= queues
        # The agents can log in with the password compose gives them.
        credentials = pika.PlainCredentials(user, env["RABBITMQ_PASS"])
        pika.BlockingConnection(
            pika.ConnectionParameters(RABBIT_HOST, RABBIT_PORT, vhost, credentials)
        ).close()
        # Idempotent: the next `docker compose up` runs it again.
        again = run_job("rabbitmq-setup", local)
        assert again.returncode == 0, again.stderr
        assert '"changed": []' in again.stdout
    finally:
        with contextlib.suppress(OSError):
            management("DELETE", f"/api/users/{user}")


def test_influxdb_setup_job_provisions_with_the_compose_environment(
    httpserver: HTTPServer,
) -> None:
    fake = InfluxSetupState(token=service_env("influxdb-setup")["INFLUXDB_TOKEN"])
    httpserver.expect_request(re.compile(".*")).respond_with_handler(fake.handle)

    done = run_job("influxdb-setup", {"INFLUXDB_URL": httpserver.url_for("/").rstrip("/")})

    assert done.returncode == 0, done.stderr
    assert fake.orgs.keys() == {"monitoring"}
    assert fake.retention_of("agent_metrics") == [{"type": "expire", "everySeconds": 604_800}]
    (line,) = parse_lines(done.stdout)
    assert line["agent_id"] == "influxdb-setup"
    assert fake.token not in done.stdout + done.stderr
