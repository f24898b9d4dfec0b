"""Connection loss and unreachable brokers: reconnect, re-register, redeliver; fail boundedly,
log an ERROR line per attempt, never show the password.

Connections are closed only in the test's own vhost, since other tests share the broker.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable

import pytest

from agents.core.broker import RabbitBroker, queue_arguments, setup_topology
from agents.core.logs import JsonLogger
from agents.core.management import ManagementClient
from agents.core.settings import BrokerSettings, load_settings
from agents.ports import BrokerError, Delivery, PublishError
from agents.testing import LogCapture
from agents.testing.clock import FakeClock
from agents.testing.waiting import pump_until as pump
from agents.testing.waiting import wait_until
from agents.vocab import DLX, EXCHANGE, FICTIONAL, NON_FICTIONAL
from tests.support.rabbit import MGMT_URL, RABBIT_HOST, management, queue_depths

PASSWORD = "Never-Show-Me-7f3a"  # no redactor in these loggers: the broker itself must not leak it


@pytest.fixture
def broker_options() -> dict[str, float]:
    """The `broker` fixture's reconnection backs off at most 0.2 s, so an outage shows several
    attempts within a second."""
    return {"max_backoff": 0.2}


def pump_until(broker: RabbitBroker, done: Callable[[], bool]) -> None:
    pump(broker, done, timeout=15.0)  # a reconnection takes a few backoff rounds


def close_vhost_connections(vhost: str) -> None:
    """`rabbitmqctl close_all_connections`, restricted to one vhost (management API fallback)."""
    if shutil.which("rabbitmqctl"):
        done = subprocess.run(
            ["rabbitmqctl", "close_all_connections", "--vhost", vhost, "test"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode == 0 and "Closed 0 connections" not in done.stdout:
            return
    api = ManagementClient(MGMT_URL, "guest", "guest")
    # The management API lists a new connection with a small lag.
    listed = wait_until(lambda: api.connections(vhost), 15, f"a connection in vhost {vhost}")
    for connection in listed:
        api.close_connection(connection["name"], "test")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind((RABBIT_HOST, 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there once the socket is closed


@pytest.mark.rabbitmq
def test_lost_connection_reconnects_reregisters_and_unacked_are_redelivered(
    broker: RabbitBroker, settings: BrokerSettings, vhost: str, logs: LogCapture
) -> None:
    for i in range(3):
        broker.publish(FICTIONAL, b"{}", message_id=f"m-{i}")
    held: list[Delivery] = []
    broker.consume([FICTIONAL], held.append, prefetch=10)
    pump_until(broker, lambda: len(held) == 3)
    first = list(held)

    close_vhost_connections(vhost)
    pump_until(broker, lambda: len(held) == 6)  # process_events must reconnect by itself

    again = held[3:]
    assert sorted(d.message_id or "" for d in again) == ["m-0", "m-1", "m-2"]
    assert all(d.redelivered for d in again)
    for delivery in first:
        delivery.ack()  # their channel died: a silent no-op that must not break the new one
    for delivery in again:
        delivery.ack()
    broker.publish(FICTIONAL, b"{}", message_id="after")
    pump_until(broker, lambda: len(held) == 7)
    held[6].ack()
    broker.process_events(0.1)
    broker.close()
    # Every ack on the new channel counted.
    assert queue_depths(settings, [FICTIONAL]) == {FICTIONAL: 0}

    assert broker.reconnects == 1
    [lost] = logs.where(level="ERROR")
    assert lost["message"].startswith("RabbitMQ connection lost")
    assert lost["context"]["error"]["type"] == "ConnectionClosedByBroker"
    assert "CONNECTION_FORCED" in lost["context"]["error"]["message"]
    [reconnected] = logs.where("RabbitMQ reconnected")
    assert reconnected["context"]["consumers"] == [FICTIONAL]


@pytest.mark.rabbitmq
def test_publish_on_a_dropped_connection_raises_then_recovers(
    broker: RabbitBroker, settings: BrokerSettings, vhost: str
) -> None:
    close_vhost_connections(vhost)

    with pytest.raises(PublishError, match="connection lost"):
        broker.publish(FICTIONAL, b"{}", message_id="during")
    broker.publish(FICTIONAL, b"{}", message_id="after")  # reconnects on the way

    assert broker.reconnects == 1
    assert queue_depths(settings, [FICTIONAL]) == {FICTIONAL: 1}


@pytest.mark.rabbitmq
def test_an_outage_is_survived_without_crashing_and_the_topology_is_restored(
    broker: RabbitBroker, vhost: str, logs: LogCapture
) -> None:
    got: list[Delivery] = []
    broker.consume([NON_FICTIONAL], got.append, prefetch=5)
    management("DELETE", f"/api/vhosts/{vhost}")  # closes our connection; reconnects fail

    started = time.monotonic()
    broker.process_events(1.0)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 5.0  # it kept its time budget instead of raising or hanging
    with pytest.raises(PublishError, match="not connected"):
        broker.publish(NON_FICTIONAL, b"{}", message_id="while-down")
    failures = [e for e in logs.where(level="ERROR") if "attempt failed" in e["message"]]
    assert len(failures) >= 3  # one ERROR line per attempt, ~0.2 s apart (the cap)
    assert [f["context"]["attempt"] for f in failures] == list(range(1, len(failures) + 1))
    assert all(f["context"]["broker"].endswith(f"/{vhost}") for f in failures)

    management("PUT", f"/api/vhosts/{vhost}")
    management(
        "PUT", f"/api/permissions/{vhost}/guest", {"configure": ".*", "write": ".*", "read": ".*"}
    )
    pump_until(broker, lambda: broker.connected)

    assert management("GET", f"/api/exchanges/{vhost}/{EXCHANGE}")["durable"] is True
    broker.publish(NON_FICTIONAL, b"{}", message_id="back")
    pump_until(broker, lambda: len(got) == 1)
    assert got[0].message_id == "back"


def test_a_wrong_port_fails_after_bounded_attempts_with_an_error_line_each(
    logs: LogCapture,
) -> None:
    port = closed_port()
    settings = load_settings(
        BrokerSettings,
        rabbitmq_host=RABBIT_HOST,
        rabbitmq_port=port,
        rabbitmq_pass=PASSWORD,
        rabbitmq_vhost="books",
    )
    clock = FakeClock()
    broker = RabbitBroker(
        settings, JsonLogger("p-1", "publisher", stream=logs), clock, 1.5, connect_attempts=4
    )

    with pytest.raises(BrokerError) as caught:
        broker.connect()

    message = str(caught.value)
    assert f"{RABBIT_HOST}:{port}/books" in message
    assert "after 4 attempt(s)" in message
    assert "Connection refused" in message  # the cause, not just pika's empty error
    assert PASSWORD not in message
    assert PASSWORD not in logs.getvalue()
    errors = logs.where(level="ERROR")
    assert [e["context"]["attempt"] for e in errors] == [1, 2, 3, 4]
    assert [e["context"]["retry_in_seconds"] for e in errors] == [0.5, 1.0, 1.5, None]
    assert all(e["message"] == "RabbitMQ connection attempt failed" for e in errors)
    assert clock.monotonic() == 1_000.0 + 0.5 + 1.0 + 1.5  # backed off, on the injected clock


def test_setup_gives_up_after_its_attempts(logs: LogCapture) -> None:
    settings = load_settings(BrokerSettings, rabbitmq_host=RABBIT_HOST, rabbitmq_port=closed_port())
    with pytest.raises(BrokerError, match="after 2 attempt"):
        setup_topology(
            settings, attempts=2, logger=JsonLogger("s", "setup", stream=logs), clock=FakeClock()
        )
    assert len(logs.where(level="ERROR")) == 2


@pytest.mark.rabbitmq
def test_a_wrong_password_is_reported_without_the_password(vhost: str, logs: LogCapture) -> None:
    settings = load_settings(
        BrokerSettings, rabbitmq_host=RABBIT_HOST, rabbitmq_pass=PASSWORD, rabbitmq_vhost=vhost
    )
    broker = RabbitBroker(
        settings, JsonLogger("p-1", "publisher", stream=logs), FakeClock(), connect_attempts=2
    )

    with pytest.raises(BrokerError, match="authentication refused") as caught:
        broker.connect()

    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in repr(caught.value.__cause__)
    assert PASSWORD not in logs.getvalue()
    assert len(logs.where(level="ERROR")) == 2


@pytest.mark.rabbitmq
def test_a_consumer_cancelled_by_the_broker_is_re_registered(
    broker: RabbitBroker, vhost: str, logs: LogCapture
) -> None:
    # Deleting a consumed queue cancels its consumer; pika raises nothing, so without recovery
    # the agent would stay connected and idle forever.
    got: list[Delivery] = []
    broker.consume([FICTIONAL], got.append, prefetch=5)
    broker.process_events(0.05)
    management("DELETE", f"/api/queues/{vhost}/fictional")

    pump_until(broker, lambda: broker.reconnects == 1)
    broker.publish(FICTIONAL, b"{}", message_id="after-delete")  # the queue was redeclared
    pump_until(broker, lambda: len(got) == 1)

    assert got[0].message_id == "after-delete"
    queue = management("GET", f"/api/queues/{vhost}/fictional")
    # Redeclared exactly as setup declares it (the default queue type), dead-lettering included.
    assert queue["arguments"] == queue_arguments(FICTIONAL, "quorum")
    assert queue["arguments"]["x-dead-letter-exchange"] == DLX
    [error] = logs.where(level="ERROR")
    assert error["message"] == "RabbitMQ consumers lost; reconnecting to re-register them"


def test_each_connect_call_gets_its_own_attempts(logs: LogCapture) -> None:
    settings = load_settings(BrokerSettings, rabbitmq_host=RABBIT_HOST, rabbitmq_port=closed_port())
    broker = RabbitBroker(
        settings, JsonLogger("s", "setup", stream=logs), FakeClock(), connect_attempts=2
    )
    for _ in range(2):
        with pytest.raises(BrokerError, match="after 2 attempt"):
            broker.connect()
    assert [e["context"]["attempt"] for e in logs.where(level="ERROR")] == [1, 2, 1, 2]
