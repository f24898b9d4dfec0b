"""Quorum and classic queues on the real broker: dead-lettering, the delivery limit, the
consumer's reject path, and what `agents setup rabbitmq` says when the type would change.

Messages are counted from outside the code under test: the management API and a plain pika
connection (`drain_queue`), never the agents' own counters.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pika
import pytest

from agents.core.broker import (
    DELIVERY_LIMIT,
    RabbitBroker,
    connection_parameters,
    queue_arguments,
    setup_topology,
)
from agents.core.logs import JsonLogger
from agents.core.settings import BrokerSettings, QueueType, load_settings
from agents.ports import Delivery, TopologyError
from agents.vocab import DEAD_LETTER_QUEUE, REJECT_REASON_HEADER
from tests.support.rabbit import drain_queue, management

pytestmark = pytest.mark.rabbitmq

REPO = Path(__file__).resolve().parents[2]
TYPES: tuple[QueueType, ...] = ("quorum", "classic")


def _settings(queue_type: QueueType) -> BrokerSettings:
    return load_settings(BrokerSettings, queue_type=queue_type)


def _logger() -> JsonLogger:
    return JsonLogger("setup", "setup", stream=io.StringIO())


def _wait_depth(vhost: str, queue: str, expected: int, timeout: float = 15.0) -> int:
    """Ready messages in `queue` per a passive declare, once it reaches `expected` (or timeout)."""
    settings = _settings("classic")  # passive declares do not care about the type
    deadline = time.monotonic() + timeout
    while True:
        connection = pika.BlockingConnection(connection_parameters(settings))
        try:
            declared = connection.channel().queue_declare(queue, passive=True)
            depth = int(declared.method.message_count)
        finally:
            connection.close()
        if depth == expected or time.monotonic() >= deadline:
            return depth
        time.sleep(0.1)


@pytest.mark.parametrize("queue_type", TYPES)
def test_a_native_reject_is_dead_lettered(
    rabbit_env: dict[str, str], vhost: str, queue_type: QueueType
) -> None:
    """The fallback path (and any other client) relies on the queue's own dead-lettering."""
    settings = _settings(queue_type)
    setup_topology(settings, attempts=1, logger=_logger())
    with RabbitBroker(settings, _logger()) as broker:
        broker.publish("fictional", b'{"title": "native"}', message_id="native-1")
    connection = pika.BlockingConnection(connection_parameters(settings))
    try:
        channel = connection.channel()
        method, _, _ = channel.basic_get("fictional", auto_ack=False)
        assert method is not None
        channel.basic_reject(method.delivery_tag, requeue=False)
    finally:
        connection.close()

    assert _wait_depth(vhost, DEAD_LETTER_QUEUE, 1) == 1
    ((_, properties, body),) = drain_queue(settings, DEAD_LETTER_QUEUE)
    assert body == b'{"title": "native"}'
    assert properties.headers["x-death"][0]["reason"] == "rejected"
    assert properties.headers["x-death"][0]["queue"] == "fictional"
    assert drain_queue(settings, "fictional") == []


def test_quorum_dead_letters_a_message_past_the_delivery_limit(
    rabbit_env: dict[str, str], vhost: str
) -> None:
    """A message that is returned over and over (a crash loop) ends in the dead-letter queue."""
    settings = _settings("quorum")
    setup_topology(settings, attempts=1, logger=_logger())
    with RabbitBroker(settings, _logger()) as broker:
        broker.publish("non-fictional", b'{"title": "poison"}', message_id="poison-1")

    connection = pika.BlockingConnection(connection_parameters(settings))
    returned = 0
    try:
        channel = connection.channel()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            method, _, _ = channel.basic_get("non-fictional", auto_ack=False)
            if method is None:
                if _wait_depth(vhost, DEAD_LETTER_QUEUE, 1, timeout=0.5) == 1:
                    break
                continue
            # basic.reject with requeue counts as a delivery attempt on every RabbitMQ version.
            channel.basic_reject(method.delivery_tag, requeue=True)
            returned += 1
    finally:
        connection.close()

    assert _wait_depth(vhost, DEAD_LETTER_QUEUE, 1) == 1
    assert returned == DELIVERY_LIMIT + 1  # the first delivery plus DELIVERY_LIMIT returns
    ((_, properties, _),) = drain_queue(settings, DEAD_LETTER_QUEUE)
    assert properties.headers["x-death"][0]["reason"] == "delivery_limit"
    assert drain_queue(settings, "non-fictional") == []


@pytest.mark.parametrize("queue_type", TYPES)
def test_the_consumer_reject_path_copies_with_the_reason_then_acks(
    rabbit_env: dict[str, str], vhost: str, queue_type: QueueType
) -> None:
    settings = _settings(queue_type)
    seen: list[Delivery] = []
    with RabbitBroker(settings, _logger()) as broker:
        broker.publish("fictional", b'{"title": "flagged"}', message_id="reject-1")

        def reject(delivery: Delivery) -> None:
            seen.append(delivery)
            delivery.reject("bad genre")

        broker.consume(["fictional"], reject, 10)
        deadline = time.monotonic() + 15
        while not seen and time.monotonic() < deadline:
            broker.process_events(0.2)
        broker.process_events(0.3)  # let the ack reach the broker

    assert [d.outcome for d in seen] == ["reject"]
    assert _wait_depth(vhost, DEAD_LETTER_QUEUE, 1) == 1
    ((_, properties, body),) = drain_queue(settings, DEAD_LETTER_QUEUE)
    assert body == b'{"title": "flagged"}'
    assert properties.headers[REJECT_REASON_HEADER] == "bad genre"
    assert "x-death" not in properties.headers  # the copy, not a native dead-letter
    queue = management("GET", f"/api/queues/{vhost}/fictional")
    assert queue["type"] == queue_type
    assert _wait_depth(vhost, "fictional", 0) == 0
    assert drain_queue(settings, "fictional") == []  # acked: nothing comes back


@pytest.mark.parametrize(("existing", "wanted"), [("classic", "quorum"), ("quorum", "classic")])
def test_a_queue_of_the_other_type_is_named_with_what_to_do(
    rabbit_env: dict[str, str], vhost: str, existing: QueueType, wanted: QueueType
) -> None:
    setup_topology(_settings(existing), attempts=1, logger=_logger())
    with RabbitBroker(_settings(existing), _logger()) as broker:
        broker.publish("fictional", b'{"title": "kept"}', message_id="kept-1")

    with pytest.raises(TopologyError) as caught:
        setup_topology(_settings(wanted), attempts=3, logger=_logger())

    text = str(caught.value)
    assert f"queue 'fictional' exists as a {existing} queue (1 ready messages)" in text
    assert f"QUEUE_TYPE={wanted}" in text and f"set QUEUE_TYPE={existing}" in text
    assert "rabbitmqctl delete_queue fictional" in text
    # Nothing was changed or lost on the way.
    queue = management("GET", f"/api/queues/{vhost}/fictional")
    assert queue["type"] == existing
    assert queue["arguments"] == queue_arguments("fictional", existing)
    assert _wait_depth(vhost, "fictional", 1) == 1


def test_setup_rabbitmq_cli_prints_the_type_advice_and_exits_1(
    rabbit_env: dict[str, str], vhost: str
) -> None:
    setup_topology(_settings("classic"), attempts=1, logger=_logger())
    done = subprocess.run(
        [sys.executable, "-m", "agents", "setup", "rabbitmq"],
        env={**os.environ, **rabbit_env, "QUEUE_TYPE": "quorum"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("agents setup rabbitmq: queue 'fictional' exists as a classic queue")
    assert "QUEUE_TYPE=classic" in line


@pytest.mark.parametrize("queue_type", TYPES)
def test_a_lost_connection_returns_every_unacked_message(
    rabbit_env: dict[str, str], vhost: str, queue_type: QueueType
) -> None:
    """The fault model on both types: messages held unacked by a consumer whose connection the
    broker closes are all redelivered (marked so), none lost; the agent's broker reconnects."""
    from tests.integration.test_broker_reconnect import close_vhost_connections

    settings = _settings(queue_type)
    held: list[Delivery] = []
    with RabbitBroker(settings, _logger(), max_backoff=0.2) as broker:
        for n in range(5):
            broker.publish("fictional", b"{}", message_id=f"held-{n}")
        broker.consume(["fictional"], held.append, 10)  # never settled: held unacked
        deadline = time.monotonic() + 15
        while len(held) < 5 and time.monotonic() < deadline:
            broker.process_events(0.1)
        assert len(held) == 5
        close_vhost_connections(vhost)
        deadline = time.monotonic() + 20
        while (broker.reconnects < 1 or len(held) < 10) and time.monotonic() < deadline:
            broker.process_events(0.1)
        redelivered = held[5:]
        assert broker.reconnects >= 1
        assert sorted(d.message_id or "" for d in redelivered) == [f"held-{n}" for n in range(5)]
        assert all(d.redelivered for d in redelivered)
        for delivery in redelivered:
            delivery.ack()
        broker.process_events(0.3)
    assert _wait_depth(vhost, "fictional", 0) == 0
    assert drain_queue(settings, DEAD_LETTER_QUEUE) == []
