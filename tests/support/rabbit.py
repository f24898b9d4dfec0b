"""RabbitMQ from the outside: the management HTTP API, a throwaway vhost per test, and a plain
pika connection that reads queues, so the code under test is never what checks itself."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Sequence
from typing import Any, NoReturn

import pika
import pytest

from agents.core.broker import connection_parameters
from agents.core.management import ManagementClient
from agents.core.settings import CommonSettings
from agents.vocab import QUEUES

RABBIT_HOST = os.environ.get("RABBITMQ_HOST", "127.0.0.1")
RABBIT_PORT = int(os.environ.get("RABBITMQ_PORT", "5672"))
MGMT_URL = os.environ.get("RABBITMQ_MANAGEMENT_URL", f"http://{RABBIT_HOST}:15672")

_rabbit_ok: bool | None = None
_management_ok: bool | None = None


GUEST = ManagementClient(MGMT_URL, "guest", "guest")


def management(method: str, path: str, body: Any = None) -> Any:
    """Call the RabbitMQ management HTTP API as guest; returns parsed JSON (or None). A refused
    call raises `ApiStatusError`, an unreachable API `Unreachable` (both `ApiError`s)."""
    return GUEST.call(method, path, body)


def rabbit_reachable() -> bool:
    """Whether the AMQP port answers (asked once per session)."""
    global _rabbit_ok
    if _rabbit_ok is None:
        try:
            with socket.create_connection((RABBIT_HOST, RABBIT_PORT), timeout=2):
                _rabbit_ok = True
        except OSError:
            _rabbit_ok = False
    return _rabbit_ok


def management_reachable() -> bool:
    """The tests make a vhost per test through the management plugin's HTTP API."""
    global _management_ok
    if _management_ok is None:
        _management_ok = GUEST.reachable()
    return _management_ok


def skip_or_fail(reason: str) -> NoReturn:
    """One line, no traceback: a skip on a laptop, a failure under CI (where it must be there)."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def require_rabbitmq() -> None:
    if not rabbit_reachable():
        skip_or_fail(
            f"RabbitMQ not reachable at {RABBIT_HOST}:{RABBIT_PORT} "
            "(start it: rabbitmq-server -detached)"
        )
    if not management_reachable():
        skip_or_fail(
            f"RabbitMQ management API not reachable at {MGMT_URL} "
            "(enable it: rabbitmq-plugins enable rabbitmq_management)"
        )


def fresh_vhost() -> contextlib.AbstractContextManager[str]:
    """A brand-new vhost with guest permissions, deleted afterwards."""
    return GUEST.temporary_vhost("test")


def vhost_env(vhost: str) -> dict[str, str]:
    """Environment pointing agents at `vhost` as guest, with AI in dry-run."""
    return {
        "RABBITMQ_HOST": RABBIT_HOST,
        "RABBITMQ_PORT": str(RABBIT_PORT),
        "RABBITMQ_USER": "guest",
        "RABBITMQ_PASS": "guest",
        "RABBITMQ_VHOST": vhost,
        "DRY_RUN": "true",
    }


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


def queue_depths(settings: CommonSettings, queues: Sequence[str] = QUEUES) -> dict[str, int]:
    """Ready messages in each of `queues` (passive declares), read over a plain pika connection
    of its own, from outside whatever is under test."""
    # A plain passive declare, not the broker module's reader: the check must not be the code it
    # checks (RabbitBroker.queue_depths reads depths the same way).
    connection = pika.BlockingConnection(connection_parameters(settings))
    try:
        channel = connection.channel()
        return {
            queue: int(channel.queue_declare(queue=queue, passive=True).method.message_count)
            for queue in queues
        }
    finally:
        connection.close()
