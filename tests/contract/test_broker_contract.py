"""One contract, two brokers: every test here runs against `MemoryBroker` (the unit tests' fake)
and against `RabbitBroker` on the real RabbitMQ in a fresh vhost (FastStream's `with_real`).

Each test states what is observable from outside the broker: what a consumer receives, how
settling changes the queues, what the dead-letter queue holds and with which headers, which
publishes fail. Queues are read back by the backend's own inspector (plain pika for RabbitMQ),
never by the broker under test. When the two disagree, a test here fails for one of them: the
fake is what gets fixed, unless the real broker is plainly wrong.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from agents.core.broker import RabbitBroker
from agents.core.logs import JsonLogger
from agents.core.settings import BrokerSettings, load_settings
from agents.ports import Broker, BrokerError, Delivery, PublishError
from agents.testing import MemoryBroker
from agents.testing.waiting import pump_until, wait_until
from agents.vocab import (
    ALL_QUEUES,
    ANOMALY_QUEUE,
    DEAD_LETTER_QUEUE,
    DLX,
    EXCHANGE,
    FICTIONAL,
    NON_FICTIONAL,
    ORIGINAL_QUEUE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    QUEUES,
    REJECT_REASON_HEADER,
)
from tests.support.rabbit import drain_queue

# Quorum queues count deliveries in a header of their own; it is not part of the message.
BROKER_HEADERS = {"x-delivery-count"}


@dataclass(frozen=True)
class Stored:
    """A message as it sits in a queue, read from outside the broker under test."""

    body: bytes
    message_id: str | None
    routing_key: str
    headers: dict[str, Any]
    content_type: str | None
    redelivered: bool


@dataclass
class Backend:
    name: str
    broker: Broker
    drain: Callable[[str], list[Stored]]  # take every ready message of a queue, in order

    def pump(self, done: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
        pump_until(self.broker, done, timeout, what)

    def quiet(self) -> None:
        """Give the broker the chance to do what it should not (send past the prefetch,
        redeliver a settled message): a real broker needs a moment, the fake none."""
        self.broker.process_events(0.3)


def _memory() -> Iterator[Backend]:
    broker = MemoryBroker()

    def drain(queue: str) -> list[Stored]:
        return [
            Stored(
                m.body, m.message_id, m.routing_key, dict(m.headers), m.content_type, m.redelivered
            )
            for m in broker.drain(queue)
        ]

    yield Backend("memory", broker, drain)
    broker.close()


def _rabbit(request: pytest.FixtureRequest) -> Iterator[Backend]:
    request.getfixturevalue("rabbit_env")
    settings = load_settings(BrokerSettings)
    broker = RabbitBroker(settings, JsonLogger("consumer-9", "consumer", stream=io.StringIO()))
    broker.connect()

    def drain(queue: str) -> list[Stored]:
        return [
            Stored(
                body,
                props.message_id,
                method.routing_key,
                dict(props.headers or {}),
                props.content_type,
                bool(method.redelivered),
            )
            for method, props, body in drain_queue(settings, queue)
        ]

    yield Backend("rabbit", broker, drain)
    broker.close()


@pytest.fixture(params=["memory", pytest.param("rabbit", marks=pytest.mark.rabbitmq)])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    yield from (_memory() if request.param == "memory" else _rabbit(request))


def own_headers(headers: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in headers.items() if k not in BROKER_HEADERS}


def publish(broker: Broker, routing_key: str, message_id: str, **kwargs: Any) -> None:
    broker.publish(
        routing_key, b'{"id": "%s"}' % message_id.encode(), message_id=message_id, **kwargs
    )


def holder(into: list[Delivery]) -> Callable[[Delivery], None]:
    """A handler that keeps every delivery unsettled (the test settles them)."""
    return into.append


# --- publishing and routing -------------------------------------------------------------------


def test_a_consumer_receives_the_message_as_published(backend: Backend) -> None:
    broker = backend.broker
    before = int(time.time())
    publish(broker, FICTIONAL, "f-1", headers={"genre": "fantasy"})
    seen: list[Delivery] = []
    broker.consume(QUEUES, holder(seen), prefetch=5)
    backend.pump(lambda: len(seen) == 1, "the delivery")

    (delivery,) = seen
    assert delivery.body == b'{"id": "f-1"}'
    assert (delivery.queue, delivery.routing_key) == (FICTIONAL, FICTIONAL)
    assert delivery.message_id == "f-1"
    assert delivery.content_type == "application/json"
    assert own_headers(delivery.headers) == {"genre": "fantasy"}
    assert delivery.redelivered is False
    assert delivery.timestamp is not None and before - 1 <= delivery.timestamp <= time.time() + 1
    assert delivery.live
    assert delivery.ack() is True and delivery.settled
    backend.quiet()
    assert broker.queue_depths(ALL_QUEUES) == dict.fromkeys(ALL_QUEUES, 0)


def test_each_routing_key_reaches_its_own_queue_only(backend: Backend) -> None:
    publish(backend.broker, FICTIONAL, "f")
    publish(backend.broker, NON_FICTIONAL, "n")
    publish(backend.broker, ANOMALY_QUEUE, "a")  # flagged copies route by the queue's name

    assert backend.broker.queue_depths(ALL_QUEUES) == {
        FICTIONAL: 1,
        NON_FICTIONAL: 1,
        DEAD_LETTER_QUEUE: 0,
        ANOMALY_QUEUE: 1,
    }
    assert [m.message_id for m in backend.drain(ANOMALY_QUEUE)] == ["a"]
    assert [(m.message_id, m.routing_key) for m in backend.drain(NON_FICTIONAL)] == [
        ("n", NON_FICTIONAL)
    ]


def test_the_dead_letter_exchange_fans_out_whatever_the_routing_key(backend: Backend) -> None:
    publish(backend.broker, "any-key-at-all", "d-1", exchange=DLX)
    [dead] = backend.drain(DEAD_LETTER_QUEUE)
    assert (dead.message_id, dead.routing_key) == ("d-1", "any-key-at-all")


def test_an_unroutable_publish_is_an_error_and_the_broker_stays_usable(backend: Backend) -> None:
    broker = backend.broker
    with pytest.raises(PublishError, match="unroutable"):
        publish(broker, "no-such-genre", "lost-1")
    with pytest.raises(PublishError, match="404"):
        publish(broker, FICTIONAL, "lost-2", exchange="no-such-exchange")

    publish(broker, FICTIONAL, "after")
    assert broker.queue_depths(ALL_QUEUES) == {**dict.fromkeys(ALL_QUEUES, 0), FICTIONAL: 1}
    assert [m.message_id for m in backend.drain(FICTIONAL)] == ["after"]


def test_queue_depths_count_ready_messages_not_unacked_ones(backend: Backend) -> None:
    broker = backend.broker
    for i in range(3):
        publish(broker, FICTIONAL, f"f-{i}")
    publish(broker, NON_FICTIONAL, "n-0")
    assert broker.queue_depths() == {FICTIONAL: 3, NON_FICTIONAL: 1}

    held: list[Delivery] = []
    broker.consume([FICTIONAL], holder(held), prefetch=1)
    backend.pump(lambda: len(held) == 1, "one delivery")
    assert broker.queue_depths() == {FICTIONAL: 2, NON_FICTIONAL: 1}

    with pytest.raises(BrokerError, match="no-such-queue"):
        broker.queue_depths(["no-such-queue"])
    assert broker.queue_depths([FICTIONAL]) == {FICTIONAL: 2}  # still usable after the error


# --- consuming and settling -------------------------------------------------------------------


def test_prefetch_bounds_unacked_deliveries(backend: Backend) -> None:
    broker = backend.broker
    for i in range(5):
        publish(broker, FICTIONAL, f"f-{i}")
    held: list[Delivery] = []
    broker.consume([FICTIONAL], holder(held), prefetch=2)

    backend.pump(lambda: len(held) == 2, "two deliveries")
    backend.quiet()  # a broker ignoring the prefetch would have sent the rest by now
    assert len(held) == 2
    held[0].ack()
    backend.pump(lambda: len(held) == 3, "a third delivery after one ack")
    backend.quiet()
    assert [d.message_id for d in held] == ["f-0", "f-1", "f-2"]
    assert all(d.content_type == "application/json" and not d.redelivered for d in held)


def test_prefetch_is_per_consumer(backend: Backend) -> None:
    broker = backend.broker
    for i in range(3):
        publish(broker, FICTIONAL, f"f-{i}")
        publish(broker, NON_FICTIONAL, f"n-{i}")
    held: list[Delivery] = []
    broker.consume(QUEUES, holder(held), prefetch=1)

    backend.pump(lambda: len(held) == 2, "one delivery per queue")
    backend.quiet()
    assert sorted((d.queue, d.message_id) for d in held) == [
        (FICTIONAL, "f-0"),
        (NON_FICTIONAL, "n-0"),
    ]


def test_requeue_redelivers_with_the_redelivered_flag(backend: Backend) -> None:
    broker = backend.broker
    publish(broker, FICTIONAL, "again-1")
    seen: list[Delivery] = []

    def on_message(delivery: Delivery) -> None:
        seen.append(delivery)
        if delivery.redelivered:
            delivery.ack()
        else:
            delivery.requeue()

    broker.consume([FICTIONAL], on_message, prefetch=1)
    backend.pump(lambda: len(seen) == 2, "the redelivery")
    assert [(d.message_id, d.redelivered, d.outcome, d.settled) for d in seen] == [
        ("again-1", False, "requeue", True),
        ("again-1", True, "ack", True),
    ]
    backend.quiet()
    assert broker.queue_depths([FICTIONAL]) == {FICTIONAL: 0}
    assert len(seen) == 2


def test_a_quorum_queue_counts_redeliveries_in_a_header(backend: Backend) -> None:
    publish(backend.broker, FICTIONAL, "count-1", headers={"genre": "x"})
    seen: list[Delivery] = []

    def on_message(delivery: Delivery) -> None:
        seen.append(delivery)
        if len(seen) < 3:
            delivery.requeue()
        else:
            delivery.ack()

    backend.broker.consume([FICTIONAL], on_message, prefetch=1)
    backend.pump(lambda: len(seen) == 3, "two redeliveries")
    assert [d.headers for d in seen] == [
        {"genre": "x"},
        {"genre": "x", "x-delivery-count": 1},
        {"genre": "x", "x-delivery-count": 2},
    ]


def test_a_rejected_message_is_dead_lettered_with_its_reason_and_origin(backend: Backend) -> None:
    broker = backend.broker
    publish(broker, FICTIONAL, "bad-1", headers={"genre": "x"})
    seen: list[Delivery] = []

    def on_message(delivery: Delivery) -> None:
        seen.append(delivery)
        delivery.reject("validation:\n  title must   be a string")

    broker.consume([FICTIONAL], on_message, prefetch=10)
    backend.pump(lambda: bool(seen), "the delivery")
    backend.quiet()
    assert (seen[0].outcome, seen[0].settled) == ("reject", True)

    [dead] = backend.drain(DEAD_LETTER_QUEUE)
    assert (dead.body, dead.message_id) == (b'{"id": "bad-1"}', "bad-1")
    assert dead.content_type == "application/json"
    assert dead.routing_key == FICTIONAL
    assert own_headers(dead.headers) == {
        "genre": "x",
        REJECT_REASON_HEADER: "validation: title must be a string",  # on one line
        ORIGINAL_QUEUE_HEADER: FICTIONAL,
        ORIGINAL_ROUTING_KEY_HEADER: FICTIONAL,
    }
    assert broker.queue_depths([FICTIONAL]) == {FICTIONAL: 0}  # rejected means gone
    assert len(seen) == 1


def test_a_long_reject_reason_is_cut_to_500_characters(backend: Backend) -> None:
    publish(backend.broker, FICTIONAL, "long-1")

    def on_message(delivery: Delivery) -> None:
        delivery.reject("x" * 2000)

    backend.broker.consume([FICTIONAL], on_message, prefetch=1)
    backend.pump(
        lambda: backend.broker.queue_depths([DEAD_LETTER_QUEUE])[DEAD_LETTER_QUEUE] == 1,
        "the dead letter",
    )
    [dead] = backend.drain(DEAD_LETTER_QUEUE)
    assert dead.headers[REJECT_REASON_HEADER] == "x" * 500


def test_a_handler_that_raises_is_retried_once_then_dead_lettered(backend: Backend) -> None:
    broker = backend.broker
    publish(broker, FICTIONAL, "poison-1")
    calls: list[Delivery] = []

    def on_message(delivery: Delivery) -> None:
        calls.append(delivery)
        raise ValueError("boom")

    broker.consume([FICTIONAL], on_message, prefetch=1)
    backend.pump(lambda: len(calls) == 2 and calls[1].outcome == "reject", "the second failure")
    backend.quiet()  # no third delivery: no poison loop

    assert [(d.redelivered, d.outcome) for d in calls] == [(False, "requeue"), (True, "reject")]
    [dead] = backend.drain(DEAD_LETTER_QUEUE)
    assert dead.message_id == "poison-1"
    assert dead.headers[REJECT_REASON_HEADER] == "handler error: ValueError: boom"
    assert broker.queue_depths([FICTIONAL]) == {FICTIONAL: 0}


def test_a_handler_that_raises_after_settling_changes_nothing(backend: Backend) -> None:
    broker = backend.broker
    publish(broker, FICTIONAL, "done-1")
    calls: list[Delivery] = []

    def on_message(delivery: Delivery) -> None:
        calls.append(delivery)
        delivery.ack()
        raise RuntimeError("after the ack")

    broker.consume([FICTIONAL], on_message, prefetch=1)
    backend.pump(lambda: len(calls) == 1, "the delivery")
    backend.quiet()
    assert [(d.outcome, d.settled) for d in calls] == [("ack", True)]
    assert broker.queue_depths([FICTIONAL, DEAD_LETTER_QUEUE]) == {
        FICTIONAL: 0,
        DEAD_LETTER_QUEUE: 0,
    }


def test_a_cumulative_ack_settles_every_earlier_delivery_of_the_channel(backend: Backend) -> None:
    broker = backend.broker
    for i in range(3):
        publish(broker, FICTIONAL, f"f-{i}")
    publish(broker, NON_FICTIONAL, "n-0")
    held: list[Delivery] = []
    broker.consume(QUEUES, holder(held), prefetch=10)
    backend.pump(lambda: len(held) == 4, "four deliveries")
    # One more, delivered after the acked tag: it stays unacked, so once it is back in its queue
    # the broker has returned everything the close returned (a real broker does so a moment
    # after the close, which a drain right away would not see).
    publish(broker, FICTIONAL, "f-late")
    backend.pump(lambda: len(held) == 5, "the fifth delivery")

    last = max(held[:4], key=lambda d: d.delivery_tag)
    assert last.ack(multiple=True) is True
    broker.close()  # anything still unacked now goes back to its queue
    returned: list[Stored] = []

    def late_one_back() -> bool:
        returned.extend(backend.drain(FICTIONAL))
        return any(m.message_id == "f-late" for m in returned)

    wait_until(late_one_back, 10, "the unacked delivery back in its queue")
    assert [m.message_id for m in returned] == ["f-late"]
    assert backend.drain(NON_FICTIONAL) == []


def test_closing_returns_unacked_messages_marked_redelivered(backend: Backend) -> None:
    broker = backend.broker
    publish(broker, FICTIONAL, "f-0")
    publish(broker, FICTIONAL, "f-1")
    held: list[Delivery] = []
    broker.consume([FICTIONAL], holder(held), prefetch=10)
    backend.pump(lambda: len(held) == 2, "two deliveries")
    held[0].ack()
    broker.close()

    assert held[1].live is False
    assert held[1].ack() is False, "a settle on a closed channel must say it was not sent"
    assert held[1].settled is False
    [back] = backend.drain(FICTIONAL)
    assert (back.message_id, back.redelivered) == ("f-1", True)


def test_connect_after_close_consumes_again_and_gets_the_unsettled_back(backend: Backend) -> None:
    """Registrations survive a reconnection; what the closed channel held comes back."""
    broker = backend.broker
    publish(broker, FICTIONAL, "f-0")
    held: list[Delivery] = []
    broker.consume([FICTIONAL], holder(held), prefetch=1)
    backend.pump(lambda: len(held) == 1, "the delivery")
    broker.close()

    broker.connect()
    backend.pump(lambda: len(held) == 2, "the redelivery")
    assert [(d.message_id, d.redelivered) for d in held] == [("f-0", False), ("f-0", True)]
    assert held[0].ack() is False
    assert held[1].ack() is True
    backend.quiet()
    assert broker.queue_depths([FICTIONAL]) == {FICTIONAL: 0}


def test_process_events_on_a_closed_broker_is_an_error(backend: Backend) -> None:
    backend.broker.close()
    with pytest.raises(BrokerError):
        backend.broker.process_events(0.0)


def test_prefetch_must_be_positive(backend: Backend) -> None:
    with pytest.raises(ValueError, match="prefetch"):
        backend.broker.consume([FICTIONAL], lambda d: None, prefetch=0)


def test_the_names_other_clients_see_are_pinned() -> None:
    """Operators, other consumers and the dashboards read these on the wire; tests elsewhere use
    the agents.vocab constants, so this is where a rename would have to be deliberate."""
    assert (EXCHANGE, DLX, QUEUES, DEAD_LETTER_QUEUE, ANOMALY_QUEUE) == (
        "books",
        "books.dlx",
        ("fictional", "non-fictional"),
        "books.dead-letter",
        "books.anomalies",
    )
    assert (REJECT_REASON_HEADER, ORIGINAL_QUEUE_HEADER, ORIGINAL_ROUTING_KEY_HEADER) == (
        "x-reject-reason",
        "x-original-queue",
        "x-original-routing-key",
    )
