"""The broker from the outside: the management API (vhosts, users, connections) and a plain pika
connection to read queues, independently of the code under test."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pika
import pika.exceptions

from agents.core.broker import passive_consumers, passive_depth
from agents.core.management import ApiError, ApiStatusError, ManagementClient
from agents.testing.waiting import wait_until
from agents.vocab import EXCHANGE

HOST = os.environ.get("RABBITMQ_HOST", "127.0.0.1")
PORT = int(os.environ.get("RABBITMQ_PORT", "5672"))
MGMT_URL = os.environ.get("RABBITMQ_MANAGEMENT_URL", f"http://{HOST}:15672")
ADMIN = ("guest", "guest")
API = ManagementClient(MGMT_URL, *ADMIN)
AGENT_CONNECTION_PREFIX = "books-agents/"  # connection_parameters names each agent's connection


def management(
    method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> Any:
    """The management API's parsed answer (`ApiStatusError`, an OSError, unless 2xx)."""
    return API.call(method, path, body, headers=headers)


def vhost_connections(vhost: str) -> list[dict[str, Any]]:
    return API.connections(vhost)


INSPECTOR_NAME = "fault-inspector"


def _connection_name(connection: dict[str, Any]) -> str:
    return str((connection.get("client_properties") or {}).get("connection_name", ""))


def agent_connections(vhost: str) -> list[dict[str, Any]]:
    """Connections of `vhost` that belong to agents (not the inspector, not a load generator)."""
    return [
        c
        for c in vhost_connections(vhost)
        if _connection_name(c).startswith(AGENT_CONNECTION_PREFIX)
    ]


def _close(connection: dict[str, Any], reason: str) -> bool:
    with contextlib.suppress(ApiStatusError):  # gone between listing and closing
        return API.close_connection(connection["name"], reason)
    return False


def close_connections(vhost: str, reason: str = "fault injection") -> int:
    """Force-close every agent connection of `vhost` (never another test's). Returns how many."""
    return sum(_close(connection, reason) for connection in agent_connections(vhost))


@contextlib.contextmanager
def dedicated_user(vhost: str, password: str) -> Iterator[str]:
    """A throwaway RabbitMQ user with `password`, allowed only on `vhost`."""
    name = f"fault-{uuid.uuid4().hex[:8]}"
    API.put_user(name, password)
    API.set_permissions(vhost, name, configure=".*", write=".*", read=".*")
    try:
        yield name
    finally:
        with contextlib.suppress(ApiError):
            API.delete_user(name)


@dataclass
class Raw:
    """One message read back from a queue."""

    body: bytes
    message_id: str | None
    headers: dict[str, Any]
    content_type: str | None
    routing_key: str


@dataclass
class QueueInspector:
    """A plain pika connection (guest) to one vhost: publish raw bytes, read depths, drain."""

    vhost: str
    _connection: Any = field(default=None, init=False)
    _channel: Any = field(default=None, init=False)

    def channel(self) -> Any:
        if self._connection is None or not self._connection.is_open:
            params = pika.ConnectionParameters(
                host=HOST,
                port=PORT,
                virtual_host=self.vhost,
                credentials=pika.PlainCredentials(*ADMIN),
                client_properties={"connection_name": INSPECTOR_NAME},
            )
            self._connection = pika.BlockingConnection(params)
            self._channel = None
        if self._channel is None or not self._channel.is_open:
            self._channel = self._connection.channel()
            self._channel.confirm_delivery()
        return self._channel

    def depth(self, queue: str) -> int:
        """Ready messages (AMQP does not count unacked ones; see `unacked`)."""
        return passive_depth(self.channel(), queue)

    def consumers(self, queue: str) -> int:
        return passive_consumers(self.channel(), queue)

    def unacked(self, queue: str) -> int:
        return int(self.queue_info(queue).get("messages_unacknowledged", 0))

    def queue_info(self, queue: str) -> dict[str, Any]:
        """Management statistics of a queue (refreshed by the broker every few seconds)."""
        return API.queue(self.vhost, queue)

    def redelivered(self, queue: str) -> int:
        stats = self.queue_info(queue).get("message_stats") or {}
        return int(stats.get("redeliver", 0))

    def publish_raw(
        self,
        routing_key: str,
        body: bytes,
        *,
        content_type: str | None = "application/json",
        message_id: str | None = None,
        headers: dict[str, Any] | None = None,
        exchange: str = EXCHANGE,
    ) -> None:
        self.channel().basic_publish(
            exchange=exchange,
            routing_key=routing_key,
            body=body,
            properties=pika.BasicProperties(
                content_type=content_type,
                delivery_mode=2,
                message_id=message_id,
                headers=headers,
            ),
            mandatory=True,
        )

    def drain(self, queue: str) -> list[Raw]:
        found: list[Raw] = []
        channel = self.channel()
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return found
            found.append(
                Raw(
                    body=body,
                    message_id=properties.message_id,
                    headers=dict(properties.headers or {}),
                    content_type=properties.content_type,
                    routing_key=method.routing_key,
                )
            )

    def close(self) -> None:
        if self._connection is not None and self._connection.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                self._connection.close()
        self._connection = self._channel = None


def close_agent_connection(
    vhost: str, agent_id: str, timeout: float = 20.0, already: set[str] | None = None
) -> int:
    """Force-close the connections of one agent (`books-agents/<agent_id>`) in `vhost`.

    The management API lists a new connection a few seconds late, so this waits (bounded) until
    the agent's connection is listed, then closes it. Returns how many were closed. Names in
    `already` (connections closed before, possibly still listed) are skipped, and new ones added.
    """
    already = set() if already is None else already
    wanted = f"{AGENT_CONNECTION_PREFIX}{agent_id}"

    def listed() -> list[dict[str, Any]]:
        return [
            c
            for c in vhost_connections(vhost)
            if _connection_name(c) == wanted and c["name"] not in already
        ]

    mine = wait_until(listed, timeout, f"a connection of {agent_id} listed in vhost {vhost}", 0.2)
    closed = sum(_close(connection, "fault injection") for connection in mine)
    already.update(connection["name"] for connection in mine)
    return closed
