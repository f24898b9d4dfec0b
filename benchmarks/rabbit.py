"""The local RabbitMQ as a benchmark fixture: throwaway vhosts (management API), prefilling,
draining checks. Every run uses its own vhost, so nothing here collides with the test suite."""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from base64 import b64encode
from collections.abc import Iterator, Sequence
from typing import Any

import pika

HOST = os.environ.get("RABBITMQ_HOST", "127.0.0.1")
PORT = int(os.environ.get("RABBITMQ_PORT", "5672"))
USER = os.environ.get("RABBITMQ_USER", "guest")
PASSWORD = os.environ.get("RABBITMQ_PASS", "guest")
MGMT_URL = os.environ.get("RABBITMQ_MANAGEMENT_URL", f"http://{HOST}:15672")


def management(method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    auth = "Basic " + b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    request = urllib.request.Request(  # noqa: S310 (the local management API, http only)
        MGMT_URL + path,
        data=data,
        method=method,
        headers={"Authorization": auth, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (see above)
        raw = response.read()
    return json.loads(raw) if raw else None


@contextlib.contextmanager
def bench_vhost(prefix: str = "bench") -> Iterator[str]:
    """A fresh vhost with full permissions for the user, deleted on exit (messages and all)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    management("PUT", f"/api/vhosts/{urllib.parse.quote(name, safe='')}")
    management(
        "PUT",
        f"/api/permissions/{urllib.parse.quote(name, safe='')}/{USER}",
        {"configure": ".*", "write": ".*", "read": ".*"},
    )
    try:
        yield name
    finally:
        with contextlib.suppress(urllib.error.URLError, OSError):
            management("DELETE", f"/api/vhosts/{urllib.parse.quote(name, safe='')}")


def params(vhost: str) -> pika.ConnectionParameters:
    return pika.ConnectionParameters(
        host=HOST,
        port=PORT,
        virtual_host=vhost,
        credentials=pika.PlainCredentials(USER, PASSWORD),
        heartbeat=60,
    )


def amqp_url(vhost: str) -> str:
    return f"amqp://{USER}:{PASSWORD}@{HOST}:{PORT}/{urllib.parse.quote(vhost, safe='')}"


def declare(vhost: str) -> None:
    """The project's own topology (same queue type and arguments the agents declare: QUEUE_TYPE
    from the environment, as the agents' settings read it)."""
    from agents.core.broker import declare_topology
    from agents.core.settings import BrokerSettings, load_settings

    queue_type = load_settings(BrokerSettings).queue_type
    connection = pika.BlockingConnection(params(vhost))
    try:
        declare_topology(connection.channel(), queue_type)
    finally:
        connection.close()


def depths(vhost: str, queues: Sequence[str]) -> dict[str, int]:
    connection = pika.BlockingConnection(params(vhost))
    try:
        channel = connection.channel()
        return {q: int(channel.queue_declare(q, passive=True).method.message_count) for q in queues}
    finally:
        connection.close()


def purge(vhost: str, queues: Sequence[str]) -> None:
    connection = pika.BlockingConnection(params(vhost))
    try:
        channel = connection.channel()
        for queue in queues:
            channel.queue_purge(queue)
    finally:
        connection.close()


def wait_for_depth(
    vhost: str, queues: Sequence[str], total: int, timeout: float = 60.0
) -> dict[str, int]:
    """Poll until the ready messages across `queues` equal `total` (or raise TimeoutError)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = depths(vhost, queues)
        if sum(seen.values()) == total:
            return seen
        if time.monotonic() > deadline:
            raise TimeoutError(f"queues {seen} did not reach {total} messages in {timeout}s")
        time.sleep(0.05)


def book_properties(message_id: str) -> pika.BasicProperties:
    """The properties the agents publish with (persistent JSON), for the raw clients too."""
    return pika.BasicProperties(
        content_type="application/json",
        delivery_mode=2,
        message_id=message_id,
        timestamp=int(time.time()),
    )


def prefill(vhost: str, bodies: Sequence[tuple[str, bytes, str]]) -> None:
    """Publish (routing_key, body, message_id) without confirms (fast), then wait until all are
    enqueued: setup for the consumer rounds, never timed."""
    connection = pika.BlockingConnection(params(vhost))
    try:
        channel = connection.channel()
        for routing_key, body, message_id in bodies:
            channel.basic_publish(
                "books",
                routing_key,
                body,
                book_properties(message_id),
            )
    finally:
        connection.close()
