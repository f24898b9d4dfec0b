"""Publishing and consuming on the real broker: routing, confirms + mandatory, prefetch, acks,
dead-lettering. Messages are inspected with plain pika, independently of the code under test."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pytest

from agents.core.broker import RabbitBroker, connection_parameters
from agents.core.logs import JsonLogger
from agents.core.settings import BrokerSettings, load_settings
from agents.ports import BrokerError, Delivery, PublishError
from agents.testing import LogCapture
from agents.vocab import ANOMALY_QUEUE, DEAD_LETTER_QUEUE, QUEUES
from tests.support.rabbit import drain_queue

pytestmark = pytest.mark.rabbitmq

Raw = tuple[Any, pika.BasicProperties, bytes]


@pytest.fixture
def settings(rabbit_env: dict[str, str]) -> BrokerSettings:
    return load_settings(BrokerSettings)


@pytest.fixture
def logs() -> LogCapture:
    return LogCapture()


@pytest.fixture
def broker(settings: BrokerSettings, logs: LogCapture) -> Iterator[RabbitBroker]:
    broker = RabbitBroker(settings, JsonLogger("consumer-9", "consumer", stream=logs))
    broker.connect()
    yield broker
    broker.close()


def pump_until(broker: RabbitBroker, done: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "condition not reached in time"
        broker.process_events(0.05)


def drain(settings: BrokerSettings, queue: str) -> list[Raw]:
    return drain_queue(settings, queue)


def test_messages_are_routed_by_key_as_persistent_json(
    broker: RabbitBroker, settings: BrokerSettings
) -> None:
    before = int(time.time())
    ms = broker.publish("fictional", b'{"n": 1}', message_id="f-1", headers={"genre": "fantasy"})
    broker.publish("non-fictional", b'{"n": 2}', message_id="n-1")

    assert isinstance(ms, float)
    assert ms > 0
    fictional = drain(settings, "fictional")
    nonfictional = drain(settings, "non-fictional")
    assert [(m.routing_key, p.message_id, b) for m, p, b in fictional] == [
        ("fictional", "f-1", b'{"n": 1}')
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


def test_an_unroutable_message_is_an_error_and_the_broker_stays_usable(
    broker: RabbitBroker, settings: BrokerSettings
) -> None:
    with pytest.raises(PublishError, match="unroutable"):
        broker.publish("no-such-genre", b"{}", message_id="lost-1")
    with pytest.raises(PublishError, match="404"):
        broker.publish("fictional", b"{}", message_id="lost-2", exchange="no-such-exchange")

    broker.publish("fictional", b"{}", message_id="after")
    assert [p.message_id for _, p, _ in drain(settings, "fictional")] == ["after"]
    assert broker.queue_depths([*QUEUES, DEAD_LETTER_QUEUE, ANOMALY_QUEUE]) == {
        "fictional": 0,
        "non-fictional": 0,
        DEAD_LETTER_QUEUE: 0,
        ANOMALY_QUEUE: 0,
    }


def test_flagged_copies_route_to_the_anomaly_queue(
    broker: RabbitBroker, settings: BrokerSettings
) -> None:
    broker.publish(ANOMALY_QUEUE, b'{"flag": true}', message_id="a-1")
    assert [p.message_id for _, p, _ in drain(settings, ANOMALY_QUEUE)] == ["a-1"]


def test_queue_depths_count_ready_messages(broker: RabbitBroker) -> None:
    for i in range(3):
        broker.publish("fictional", b"{}", message_id=f"f-{i}")
    broker.publish("non-fictional", b"{}", message_id="n-0")

    assert broker.queue_depths() == {"fictional": 3, "non-fictional": 1}
    with pytest.raises(BrokerError, match="no-such-queue"):
        broker.queue_depths(["no-such-queue"])
    assert broker.queue_depths(["fictional"]) == {"fictional": 3}  # channel reopened


def test_prefetch_bounds_unacked_deliveries(broker: RabbitBroker) -> None:
    for i in range(5):
        broker.publish("fictional", b"{}", message_id=f"f-{i}")
    held: list[Delivery] = []
    broker.consume(["fictional"], held.append, prefetch=2)

    pump_until(broker, lambda: len(held) == 2)
    broker.process_events(0.3)  # a broker ignoring the prefetch would have sent the rest by now
    assert len(held) == 2
    held[0].ack()
    pump_until(broker, lambda: len(held) == 3)
    broker.process_events(0.3)
    assert [d.message_id for d in held] == ["f-0", "f-1", "f-2"]
    assert all(d.content_type == "application/json" and not d.redelivered for d in held)


def test_a_rejected_message_reaches_the_dead_letter_queue_with_its_reason(
    broker: RabbitBroker, settings: BrokerSettings, logs: LogCapture
) -> None:
    broker.publish("fictional", b'{"title": 42}', message_id="bad-1", headers={"genre": "x"})
    seen: list[Delivery] = []

    def on_message(delivery: Delivery) -> None:
        seen.append(delivery)
        delivery.reject("validation: title must be a string")

    broker.consume(["fictional"], on_message, prefetch=10)
    pump_until(broker, lambda: bool(seen))
    broker.close()  # anything still unacked would now go back to `fictional`

    dead = drain(settings, DEAD_LETTER_QUEUE)
    assert len(dead) == 1
    _, props, body = dead[0]
    assert body == b'{"title": 42}'
    assert props.message_id == "bad-1"
    assert props.delivery_mode == 2
    assert props.headers["x-reject-reason"] == "validation: title must be a string"
    assert props.headers["x-original-queue"] == "fictional"
    assert props.headers["x-original-routing-key"] == "fictional"
    assert props.headers["genre"] == "x"
    assert drain(settings, "fictional") == []  # rejected means gone, not requeued
    [warning] = logs.where(level="WARNING")
    assert warning["context"]["reason"] == "validation: title must be a string"
    assert warning["context"]["message_id"] == "bad-1"


def test_main_queues_dead_letter_natively_too(
    broker: RabbitBroker, settings: BrokerSettings
) -> None:
    # The fallback path (and any other client) relies on the queue's x-dead-letter-exchange.
    broker.publish("non-fictional", b"{}", message_id="native-1")
    connection = pika.BlockingConnection(connection_parameters(settings))
    channel = connection.channel()
    method, _, _ = channel.basic_get("non-fictional", auto_ack=False)
    channel.basic_reject(method.delivery_tag, requeue=False)
    connection.close()

    [(_, props, _)] = drain(settings, DEAD_LETTER_QUEUE)
    assert props.message_id == "native-1"
    assert props.headers["x-death"][0]["queue"] == "non-fictional"
    assert props.headers["x-death"][0]["reason"] == "rejected"


def test_requeue_redelivers(broker: RabbitBroker) -> None:
    broker.publish("fictional", b"{}", message_id="again-1")
    seen: list[Delivery] = []

    def on_message(delivery: Delivery) -> None:
        seen.append(delivery)
        if delivery.redelivered:
            delivery.ack()
        else:
            delivery.requeue()

    broker.consume(["fictional"], on_message, prefetch=1)
    pump_until(broker, lambda: len(seen) == 2)
    assert [(d.message_id, d.redelivered, d.outcome) for d in seen] == [
        ("again-1", False, "requeue"),
        ("again-1", True, "ack"),
    ]
    assert broker.queue_depths(["fictional"]) == {"fictional": 0}


def test_a_failing_handler_is_retried_once_then_dead_lettered(
    broker: RabbitBroker, settings: BrokerSettings, logs: LogCapture
) -> None:
    broker.publish("fictional", b"{}", message_id="poison-1")
    calls: list[Delivery] = []

    def on_message(delivery: Delivery) -> None:
        calls.append(delivery)
        raise ValueError("boom")

    broker.consume(["fictional"], on_message, prefetch=1)
    pump_until(broker, lambda: len(calls) == 2 and calls[1].outcome == "reject")
    broker.process_events(0.2)  # no third delivery: no poison loop

    assert [(d.redelivered, d.outcome) for d in calls] == [(False, "requeue"), (True, "reject")]
    [(_, props, _)] = drain(settings, DEAD_LETTER_QUEUE)
    assert props.headers["x-reject-reason"] == "handler error: ValueError: boom"
    errors = logs.where(level="ERROR")
    assert [e["message"] for e in errors] == ["message handler failed"] * 2
    assert errors[0]["context"]["error"] == {"type": "ValueError", "message": "boom"}


def test_consuming_two_queues_reports_which_queue(broker: RabbitBroker) -> None:
    broker.publish("fictional", b"{}", message_id="f")
    broker.publish("non-fictional", b"{}", message_id="n")
    seen: list[Delivery] = []

    def on_message(delivery: Delivery) -> None:
        seen.append(delivery)
        delivery.ack()

    broker.consume(["fictional", "non-fictional"], on_message, prefetch=5)
    pump_until(broker, lambda: len(seen) == 2)
    assert sorted((d.queue, d.message_id) for d in seen) == [
        ("fictional", "f"),
        ("non-fictional", "n"),
    ]
