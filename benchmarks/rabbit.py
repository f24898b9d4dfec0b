"""The local RabbitMQ as a benchmark fixture: throwaway vhosts (management API), prefilling,
draining checks. Every run uses its own vhost, so nothing here collides with the test suite."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import urllib.parse
from collections.abc import Sequence
from typing import Any

import pika

from agents.core.broker import read_depths
from agents.core.management import ManagementClient
from agents.testing.waiting import wait_until
from agents.vocab import EXCHANGE

HOST = os.environ.get("RABBITMQ_HOST", "127.0.0.1")
PORT = int(os.environ.get("RABBITMQ_PORT", "5672"))
USER = os.environ.get("RABBITMQ_USER", "guest")
PASSWORD = os.environ.get("RABBITMQ_PASS", "guest")
MGMT_URL = os.environ.get("RABBITMQ_MANAGEMENT_URL", f"http://{HOST}:15672")

API = ManagementClient(MGMT_URL, USER, PASSWORD)


def management(method: str, path: str, body: Any = None) -> Any:
    """The management API's parsed answer (`ApiStatusError` unless 2xx)."""
    return API.call(method, path, body)


def bench_vhost(prefix: str = "bench") -> contextlib.AbstractContextManager[str]:
    """A fresh vhost with full permissions for the user, deleted on exit (messages and all)."""
    return API.temporary_vhost(prefix)


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
    return read_depths(params(vhost), queues)


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
    """Poll until the ready messages across `queues` equal `total` (else a TimeoutError)."""

    def reached() -> dict[str, int] | None:
        seen = depths(vhost, queues)
        return seen if sum(seen.values()) == total else None

    return wait_until(reached, timeout, f"{total} ready messages in {list(queues)}", interval=0.05)


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
            publish_book(channel, routing_key, body, message_id, mandatory=False)
    finally:
        connection.close()


def publish_book(
    channel: Any, routing_key: str, body: bytes, message_id: str, *, mandatory: bool = True
) -> None:
    """One book message as the agents publish it, on a bare pika channel."""
    channel.basic_publish(
        EXCHANGE, routing_key, body, book_properties(message_id), mandatory=mandatory
    )


def raw_consumer_command(vhost: str, prefetch: int) -> list[str]:
    """`benchmarks.raw_consumer`: the bare-pika consumer process the agent is measured against."""
    return [
        sys.executable,
        "-m",
        "benchmarks.raw_consumer",
        "--vhost",
        vhost,
        "--prefetch",
        str(prefetch),
    ]
