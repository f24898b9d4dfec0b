"""Publishing and consuming on the real broker, beyond the broker contract (tests/contract, run
against this broker too: routing, unroutable keys, prefetch, requeue, depths): the AMQP
properties, the log lines, native dead-lettering. Messages are inspected with plain pika,
independently of the code under test."""

from __future__ import annotations

import time
from typing import Any

import pika
import pytest

from agents.core.broker import DepthReader, RabbitBroker, connection_parameters
from agents.core.settings import BrokerSettings
from agents.ports import Delivery
from agents.testing import LogCapture
from agents.testing.waiting import pump_until, wait_until
from agents.vocab import (
    DEAD_LETTER_QUEUE,
    FICTIONAL,
    NON_FICTIONAL,
    ORIGINAL_QUEUE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    REJECT_REASON_HEADER,
)
from tests.support.rabbit import drain_queue

pytestmark = pytest.mark.rabbitmq

Raw = tuple[Any, pika.BasicProperties, bytes]


def drain(settings: BrokerSettings, queue: str) -> list[Raw]:
    return drain_queue(settings, queue)


def test_messages_are_routed_by_key_as_persistent_json(
    broker: RabbitBroker, settings: BrokerSettings
) -> None:
    before = int(time.time())
    ms = broker.publish(FICTIONAL, b'{"n": 1}', message_id="f-1", headers={"genre": "fantasy"})
    broker.publish(NON_FICTIONAL, b'{"n": 2}', message_id="n-1")

    assert isinstance(ms, float)
    assert ms > 0
    fictional = drain(settings, FICTIONAL)
    nonfictional = drain(settings, NON_FICTIONAL)
    assert [(m.routing_key, p.message_id, b) for m, p, b in fictional] == [
        (FICTIONAL, "f-1", b'{"n": 1}')
    ]
    assert [p.message_id for _, p, _ in nonfictional] == ["n-1"]
    _, props, _ = fictional[0]
    assert props.delivery_mode == 2
    assert props.content_type == "application/json"
    assert before - 1 <= props.timestamp <= time.time() + 1
    # Quorum queues add their own delivery counter; everything else is what was published.
    assert {k: v for k, v in props.headers.items() if k != "x-delivery-count"} == {
        "genre": "fantasy"
    }
    assert props.app_id == "setup"
    assert drain(settings, DEAD_LETTER_QUEUE) == []


def test_a_rejected_message_reaches_the_dead_letter_queue_with_its_reason(
    broker: RabbitBroker, settings: BrokerSettings, logs: LogCapture
) -> None:
    broker.publish(FICTIONAL, b'{"title": 42}', message_id="bad-1", headers={"genre": "x"})
    seen: list[Delivery] = []

    def on_message(delivery: Delivery) -> None:
        seen.append(delivery)
        delivery.reject("validation: title must be a string")

    broker.consume([FICTIONAL], on_message, prefetch=10)
    pump_until(broker, lambda: bool(seen))
    broker.close()  # anything still unacked would now go back to `fictional`

    dead = drain(settings, DEAD_LETTER_QUEUE)
    assert len(dead) == 1
    _, props, body = dead[0]
    assert body == b'{"title": 42}'
    assert props.message_id == "bad-1"
    assert props.delivery_mode == 2
    assert props.headers[REJECT_REASON_HEADER] == "validation: title must be a string"
    assert props.headers[ORIGINAL_QUEUE_HEADER] == FICTIONAL
    assert props.headers[ORIGINAL_ROUTING_KEY_HEADER] == FICTIONAL
    assert props.headers["genre"] == "x"
    assert drain(settings, FICTIONAL) == []  # rejected means gone, not requeued
    [warning] = logs.where(level="WARNING")
    assert warning["context"]["reason"] == "validation: title must be a string"
    assert warning["context"]["message_id"] == "bad-1"


def test_main_queues_dead_letter_natively_too(
    broker: RabbitBroker, settings: BrokerSettings
) -> None:
    # The fallback path (and any other client) relies on the queue's x-dead-letter-exchange.
    broker.publish(NON_FICTIONAL, b"{}", message_id="native-1")
    connection = pika.BlockingConnection(connection_parameters(settings))
    channel = connection.channel()
    method, _, _ = channel.basic_get(NON_FICTIONAL, auto_ack=False)
    channel.basic_reject(method.delivery_tag, requeue=False)
    connection.close()

    # Quorum queues dead-letter at-least-once through an internal process: it lands shortly after.
    dead = wait_until(lambda: drain(settings, DEAD_LETTER_QUEUE), 10, "the native dead letter")
    [(_, props, _)] = dead
    assert props.message_id == "native-1"
    assert props.headers["x-death"][0]["queue"] == NON_FICTIONAL
    assert props.headers["x-death"][0]["reason"] == "rejected"


def test_a_failing_handler_is_retried_once_then_dead_lettered(
    broker: RabbitBroker, settings: BrokerSettings, logs: LogCapture
) -> None:
    broker.publish(FICTIONAL, b"{}", message_id="poison-1")
    calls: list[Delivery] = []

    def on_message(delivery: Delivery) -> None:
        calls.append(delivery)
        raise ValueError("boom")

    broker.consume([FICTIONAL], on_message, prefetch=1)
    pump_until(broker, lambda: len(calls) == 2 and calls[1].outcome == "reject")
    broker.process_events(0.2)  # no third delivery: no poison loop

    assert [(d.redelivered, d.outcome) for d in calls] == [(False, "requeue"), (True, "reject")]
    [(_, props, _)] = drain(settings, DEAD_LETTER_QUEUE)
    assert props.headers[REJECT_REASON_HEADER] == "handler error: ValueError: boom"
    errors = logs.where(level="ERROR")
    assert [e["message"] for e in errors] == ["message handler failed"] * 2
    assert errors[0]["context"]["error"] == {"type": "ValueError", "message": "boom"}


def test_the_depth_reader_counts_ready_messages_and_never_raises(
    broker: RabbitBroker, settings: BrokerSettings
) -> None:
    """The console and the fleet's drain read depths beside the agents, over AMQP only."""
    for i in range(2):
        broker.publish(FICTIONAL, b"{}", message_id=f"f-{i}")
    reader = DepthReader(settings)
    try:
        assert reader() == {FICTIONAL: 2, NON_FICTIONAL: 0}
        assert reader([DEAD_LETTER_QUEUE]) == {DEAD_LETTER_QUEUE: 0}
        assert reader(["no-such-queue"]) is None  # a 404 closes the channel, not the reader
        assert reader([FICTIONAL]) == {FICTIONAL: 2}
    finally:
        reader.close()
    gone = DepthReader(settings.model_copy(update={"rabbitmq_port": 9}))
    assert gone() is None
    gone.sleep(0.01)
    gone.close()
