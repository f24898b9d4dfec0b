"""`agents setup rabbitmq` as a real subprocess, as compose's one-shot setup service runs it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from agents.testing import parse_lines
from agents.vocab import ANOMALY_QUEUE, DEAD_LETTER_QUEUE, QUEUES
from tests.support.rabbit import RABBIT_HOST, management

SECRET = "Cli-Secret-Pa55-91c"
REPO = Path(__file__).resolve().parents[2]


def agents(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agents", *args],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.rabbitmq
def test_setup_rabbitmq_declares_the_topology_and_is_idempotent(
    rabbit_env: dict[str, str], vhost: str
) -> None:
    first = agents("setup", "rabbitmq", env=rabbit_env)
    second = agents("setup", "rabbitmq", env=rabbit_env)

    for run in (first, second):
        assert run.returncode == 0, run.stderr
        lines = parse_lines(run.stdout)  # all JSON, Loki-ready
        result = lines[-1]
        assert result["rabbitmq"] == "ready"
        assert result["broker"].endswith(f"/{vhost}")
        assert result["queues"] == dict.fromkeys([*QUEUES, DEAD_LETTER_QUEUE, ANOMALY_QUEUE], 0)
    queues = management("GET", f"/api/queues/{vhost}")
    assert sorted(q["name"] for q in queues) == sorted([*QUEUES, DEAD_LETTER_QUEUE, ANOMALY_QUEUE])
    assert all(q["durable"] for q in queues)


def test_setup_rabbitmq_fails_in_one_line_without_the_password() -> None:
    with socket.socket() as sock:
        sock.bind((RABBIT_HOST, 0))
        port = sock.getsockname()[1]
    env = {
        "RABBITMQ_HOST": RABBIT_HOST,
        "RABBITMQ_PORT": str(port),
        "RABBITMQ_PASS": SECRET,
    }

    run = agents("setup", "rabbitmq", "--attempts", "1", env=env)

    assert run.returncode == 1
    [line] = run.stderr.strip().splitlines()
    assert f"{RABBIT_HOST}:{port}/" in line
    assert "after 1 attempt(s)" in line
    [error] = parse_lines(run.stdout)
    assert error["level"] == "ERROR"
    assert error["context"]["attempt"] == 1
    assert SECRET not in run.stdout + run.stderr


def test_setup_rabbitmq_rejects_a_bad_port_setting() -> None:
    run = agents("setup", "rabbitmq", env={"RABBITMQ_PORT": "99999"})
    assert run.returncode == 2
    [line] = run.stderr.strip().splitlines()
    assert "RABBITMQ_PORT" in line
