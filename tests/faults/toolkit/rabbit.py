"""The broker from the outside: the management API (vhosts, users, connections) and a plain pika
connection to read queues, independently of the code under test."""

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
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pika
import pika.exceptions

HOST = os.environ.get("RABBITMQ_HOST", "127.0.0.1")
PORT = int(os.environ.get("RABBITMQ_PORT", "5672"))
MGMT_URL = os.environ.get("RABBITMQ_MANAGEMENT_URL", f"http://{HOST}:15672")
ADMIN = ("guest", "guest")


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def management(
    method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    auth = "Basic " + b64encode(f"{ADMIN[0]}:{ADMIN[1]}".encode()).decode()
    request = urllib.request.Request(
        MGMT_URL + path,
        data=data,
        method=method,
        headers={"Authorization": auth, "Content-Type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def vhost_connections(vhost: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = management("GET", f"/api/vhosts/{_q(vhost)}/connections")
    return result


INSPECTOR_NAME = "fault-inspector"


def agent_connections(vhost: str) -> list[dict[str, Any]]:
    """Connections of `vhost` that belong to agents (not the inspector, not a load generator)."""
    return [
        c
        for c in vhost_connections(vhost)
        if str((c.get("client_properties") or {}).get("connection_name", "")).startswith(
            "books-agents/"
        )
    ]


def close_connections(vhost: str, reason: str = "fault injection") -> int:
    """Force-close every agent connection of `vhost` (never another test's). Returns how many."""
    closed = 0
    for connection in agent_connections(vhost):
        with contextlib.suppress(urllib.error.HTTPError):  # already gone
            management(
                "DELETE", f"/api/connections/{_q(connection['name'])}", headers={"X-Reason": reason}
            )
            closed += 1
    return closed


@contextlib.contextmanager
def dedicated_user(vhost: str, password: str) -> Iterator[str]:
    """A throwaway RabbitMQ user with `password`, allowed only on `vhost`."""
    name = f"fault-{uuid.uuid4().hex[:8]}"
    management("PUT", f"/api/users/{_q(name)}", {"password": password, "tags": ""})
    management(
        "PUT",
        f"/api/permissions/{_q(vhost)}/{_q(name)}",
        {"configure": ".*", "write": ".*", "read": ".*"},
    )
    try:
        yield name
    finally:
        with contextlib.suppress(urllib.error.URLError):
            management("DELETE", f"/api/users/{_q(name)}")


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
        return int(self.channel().queue_declare(queue, passive=True).method.message_count)

    def consumers(self, queue: str) -> int:
        return int(self.channel().queue_declare(queue, passive=True).method.consumer_count)

    def unacked(self, queue: str) -> int:
        return int(self.queue_info(queue).get("messages_unacknowledged", 0))

    def queue_info(self, queue: str) -> dict[str, Any]:
        """Management statistics of a queue (refreshed by the broker every few seconds)."""
        info: dict[str, Any] = management("GET", f"/api/queues/{_q(self.vhost)}/{_q(queue)}")
        return info

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
        exchange: str = "books",
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
    deadline = time.monotonic() + timeout
    wanted = f"books-agents/{agent_id}"
    while True:
        mine = [
            c
            for c in vhost_connections(vhost)
            if (c.get("client_properties") or {}).get("connection_name") == wanted
            and c["name"] not in already
        ]
        if mine:
            closed = 0
            for connection in mine:
                with contextlib.suppress(urllib.error.HTTPError):
                    management(
                        "DELETE",
                        f"/api/connections/{_q(connection['name'])}",
                        headers={"X-Reason": "fault injection"},
                    )
                    closed += 1
                already.add(connection["name"])
            return closed
        if time.monotonic() >= deadline:
            raise AssertionError(f"no connection of {agent_id} listed in vhost {vhost}")
        time.sleep(0.2)
