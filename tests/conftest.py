"""Shared fixtures. RabbitMQ tests get a fresh vhost each, so they never see each other's messages
while still using the specification's exchange and queue names."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import urllib.error
import urllib.request
import uuid
from base64 import b64encode
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pika
import pytest

from agents.core.broker import connection_parameters
from agents.core.settings import CommonSettings

RABBIT_HOST = os.environ.get("RABBITMQ_HOST", "127.0.0.1")
RABBIT_PORT = int(os.environ.get("RABBITMQ_PORT", "5672"))
MGMT_URL = os.environ.get("RABBITMQ_MANAGEMENT_URL", f"http://{RABBIT_HOST}:15672")
MGMT_AUTH = "Basic " + b64encode(b"guest:guest").decode()

_rabbit_ok: bool | None = None


def _rabbit_reachable() -> bool:
    global _rabbit_ok
    if _rabbit_ok is None:
        try:
            with socket.create_connection((RABBIT_HOST, RABBIT_PORT), timeout=2):
                _rabbit_ok = True
        except OSError:
            _rabbit_ok = False
    return _rabbit_ok


_management_ok: bool | None = None


def _management_reachable() -> bool:
    """The tests make a vhost per test through the management plugin's HTTP API."""
    global _management_ok
    if _management_ok is None:
        try:
            management("GET", "/api/overview")
            _management_ok = True
        except (OSError, ValueError):  # URLError, HTTPError and refused connections are OSErrors
            _management_ok = False
    return _management_ok


def _skip_or_fail(reason: str) -> None:
    """One line, no traceback: a skip on a laptop, a failure under CI (where it must be there)."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def _require_rabbitmq() -> None:
    if not _rabbit_reachable():
        _skip_or_fail(
            f"RabbitMQ not reachable at {RABBIT_HOST}:{RABBIT_PORT} "
            "(start it: rabbitmq-server -detached)"
        )
    if not _management_reachable():
        _skip_or_fail(
            f"RabbitMQ management API not reachable at {MGMT_URL} "
            "(enable it: rabbitmq-plugins enable rabbitmq_management)"
        )


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("rabbitmq"):
        _require_rabbitmq()


def management(method: str, path: str, body: Any = None) -> Any:
    """Call the RabbitMQ management HTTP API as guest; returns parsed JSON (or None)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        MGMT_URL + path,
        data=data,
        method=method,
        headers={"Authorization": MGMT_AUTH, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def drain_queue(settings: CommonSettings, queue: str) -> list[tuple[Any, Any, bytes]]:
    """Everything currently in `queue` as (method, properties, body), read and acked over a
    separate plain pika connection, so the code under test is not what checks itself."""
    connection = pika.BlockingConnection(connection_parameters(settings))
    try:
        channel = connection.channel()
        found: list[tuple[Any, Any, bytes]] = []
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return found
            found.append((method, properties, body))
    finally:
        connection.close()


@pytest.fixture
def vhost() -> Iterator[str]:
    """A brand-new vhost with guest permissions, deleted afterwards."""
    _require_rabbitmq()
    name = f"test-{uuid.uuid4().hex[:10]}"
    management("PUT", f"/api/vhosts/{name}")
    management(
        "PUT",
        f"/api/permissions/{name}/guest",
        {"configure": ".*", "write": ".*", "read": ".*"},
    )
    try:
        yield name
    finally:
        with contextlib.suppress(urllib.error.URLError):
            management("DELETE", f"/api/vhosts/{name}")


@pytest.fixture
def rabbit_env(vhost: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment pointing agents at the test vhost, with AI in dry-run and metrics in memory."""
    env = {
        "RABBITMQ_HOST": RABBIT_HOST,
        "RABBITMQ_PORT": str(RABBIT_PORT),
        "RABBITMQ_USER": "guest",
        "RABBITMQ_PASS": "guest",
        "RABBITMQ_VHOST": vhost,
        "DRY_RUN": "true",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("INFLUXDB_URL", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    return env


# --- Redis (the shared spend ledger across hosts) ---------------------------------------------

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass(frozen=True)
class RedisSpace:
    """A Redis connection and a key prefix no other test (or helper) uses."""

    client: Any
    prefix: str
    url: str


@pytest.fixture
def redis_space() -> Iterator[RedisSpace]:
    """Real Redis on this machine under a fresh key prefix, whose keys are deleted afterwards
    (never FLUSHALL: the server is shared). Fails under CI=true when Redis is down."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        reason = f"Redis not reachable at {REDIS_URL} ({exc}); .ci/run starts redis-server"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    prefix = f"test-ledger-{uuid.uuid4().hex[:12]}"
    try:
        yield RedisSpace(client, prefix, REDIS_URL)
    finally:
        for key in client.scan_iter(match=f"{{{prefix}}}*", count=1000):
            client.delete(key)
        client.close()
