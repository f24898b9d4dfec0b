"""The consumer agent on the real broker (a fresh vhost per test): batches held unacked and
flushed by size and by time, flags copied to books.anomalies, malformed messages dead-lettered.

The model is scripted (dry-run only ever answers "process"); the engine around it is the real
one. The engine and the batch timer run on a FakeClock, pika on real time.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pika
import pytest

from agents.consumer import Consumer
from agents.core.broker import connection_parameters
from agents.core.metrics import MemorySink
from agents.core.settings import ConsumerSettings, load_settings
from agents.messages import Catalogue
from agents.ports import Broker, Delivery
from agents.runtime import wire
from agents.testing import LogCapture, ScriptedClient, consumer_reply
from agents.testing.clock import FakeClock
from agents.vocab import ANOMALY_QUEUE, DEAD_LETTER_QUEUE
from tests.support.rabbit import drain_queue

pytestmark = pytest.mark.rabbitmq

CATALOGUE = Catalogue.load()


@dataclass
class Agent:
    settings: ConsumerSettings
    consumer: Consumer
    broker: Broker
    client: ScriptedClient
    clock: FakeClock
    out: LogCapture
    sink: MemorySink
    handled: list[Delivery]

    def lines(self, message: str) -> list[dict[str, Any]]:
        return self.out.where(message)

    def pump_until(self, done: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, "condition not reached in time"
            self.broker.process_events(0.05)
            self.consumer.step()


@pytest.fixture
def make_agent(rabbit_env: dict[str, str]) -> Iterator[Callable[..., Agent]]:
    brokers: list[Broker] = []

    def make(**overrides: Any) -> Agent:
        options = {"ai_call_interval_seconds": 1, "ai_decision_rate": 1.0, **overrides}
        settings = load_settings(ConsumerSettings, **options)
        clock, out, sink, client = FakeClock(), LogCapture(), MemorySink(), ScriptedClient()
        wiring = wire(settings, clock=clock, stream=out, sink=sink, client=client)
        broker = wiring.broker
        broker.connect()
        brokers.append(broker)
        consumer = Consumer(wiring)
        handled: list[Delivery] = []

        def handle(delivery: Delivery) -> None:
            clock.advance(1.01)  # past the engine's one-call-per-second guard
            handled.append(delivery)
            consumer.handle(delivery)

        broker.consume(settings.queues, handle, settings.prefetch_count)
        return Agent(settings, consumer, broker, client, clock, out, sink, handled)

    yield make
    for broker in brokers:
        broker.close()


def publish_raw(
    settings: ConsumerSettings,
    bodies: list[bytes],
    queue: str = "fictional",
    content_type: str = "application/json",
) -> None:
    connection = pika.BlockingConnection(connection_parameters(settings))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for body in bodies:
            channel.basic_publish(
                "books",
                queue,
                body,
                pika.BasicProperties(content_type=content_type, delivery_mode=2),
                mandatory=True,
            )
    finally:
        connection.close()


def drain(settings: ConsumerSettings, queue: str) -> list[tuple[pika.BasicProperties, bytes]]:
    return [(properties, body) for _, properties, body in drain_queue(settings, queue)]


def books(n: int) -> list[bytes]:
    rng = random.Random(n)
    now = datetime.now(UTC)
    return [CATALOGUE.make("fictional", "publisher-1", rng, now).to_json() for _ in range(n)]


def test_batch_is_held_unacked_then_flushed_by_size_and_by_time(
    make_agent: Callable[..., Agent],
) -> None:
    agent = make_agent(batch_size=3, batch_max_wait_seconds=30)
    agent.client.script("consumer", *[consumer_reply("batch")] * 4)
    publish_raw(agent.settings, books(4))
    agent.pump_until(lambda: len(agent.handled) == 4)
    outcomes = [d.outcome for d in agent.handled]
    assert outcomes == ["ack", "ack", "ack", None]  # three flushed by size, one held
    assert len(agent.consumer.batch) == 1
    agent.clock.advance(30.0)
    agent.consumer.step()
    assert agent.handled[3].outcome == "ack"
    triggers = [line["context"]["trigger"] for line in agent.lines("Flushing batch")]
    assert triggers == ["size", "time"]
    consumed = agent.lines("Message consumed")
    assert [line["context"]["action"] for line in consumed] == ["batch"] * 4
    agent.broker.close()
    # Every ack reached the broker: nothing comes back once the consumer has gone.
    assert drain(agent.settings, "fictional") == []


def test_a_held_batch_goes_back_to_the_queue_if_the_consumer_dies(
    make_agent: Callable[..., Agent],
) -> None:
    agent = make_agent(batch_size=10, batch_max_wait_seconds=30)
    agent.client.script("consumer", *[consumer_reply("batch")] * 2)
    sent = books(2)
    publish_raw(agent.settings, sent)
    agent.pump_until(lambda: len(agent.handled) == 2)
    assert len(agent.consumer.batch) == 2
    agent.broker.close()  # as a crash would: never flushed, never acked
    assert sorted(body for _, body in drain(agent.settings, "fictional")) == sorted(sent)


def test_flag_copies_to_books_anomalies_and_acks(make_agent: Callable[..., Agent]) -> None:
    agent = make_agent()
    agent.client.script("consumer", consumer_reply("flag"))
    (sent,) = books(1)
    publish_raw(agent.settings, [sent])
    agent.pump_until(lambda: len(agent.handled) == 1)
    assert agent.handled[0].outcome == "ack"
    assert agent.lines("Anomaly flagged")[0]["level"] == "WARNING"
    assert agent.sink.where("anomaly", queue="fictional")
    agent.broker.close()
    ((properties, body),) = drain(agent.settings, ANOMALY_QUEUE)
    assert body == sent
    assert properties.headers["x-original-queue"] == "fictional"
    assert properties.headers["x-flag-reason"] == "scripted flag"
    assert properties.message_id == json.loads(sent)["message_id"]
    assert drain(agent.settings, "fictional") == []


def test_malformed_messages_are_dead_lettered_and_consuming_goes_on(
    make_agent: Callable[..., Agent],
) -> None:
    agent = make_agent()
    good = json.loads(books(1)[0])
    hostile = [
        b"{not json",
        json.dumps({**good, "priority": 9}).encode(),
        json.dumps({k: v for k, v in good.items() if k != "title"}).encode(),
        b"\xff\xfe\xfa" * 10,
        json.dumps({**good, "title": "x" * 2000}).encode(),
        b"{" + b" " * (1024 * 1024) + b"}",
    ]
    publish_raw(agent.settings, hostile)
    publish_raw(agent.settings, [json.dumps(good).encode()], content_type="text/plain")
    valid = books(1)
    publish_raw(agent.settings, valid)
    agent.pump_until(lambda: len(agent.handled) == 8)
    assert [d.outcome for d in agent.handled] == ["reject"] * 7 + ["ack"]
    assert len(agent.lines("Invalid message dead-lettered")) == 7
    assert len(agent.sink.where("errors", kind="invalid_message")) == 7
    assert len(agent.client.requests) == 1, "only the valid message may reach a prompt"
    agent.broker.close()
    dead = drain(agent.settings, DEAD_LETTER_QUEUE)
    assert len(dead) == 7
    reasons = [properties.headers["x-reject-reason"] for properties, _ in dead]
    assert all(reasons)
    assert any("JSON" in reason for reason in reasons)
    assert any("priority" in reason for reason in reasons)
    assert any("content type" in reason for reason in reasons)
    assert drain(agent.settings, "fictional") == []


def test_a_message_published_twice_is_handled_once(make_agent: Callable[..., Agent]) -> None:
    """A message published twice with the same id (a publisher retry) is handled once."""
    agent = make_agent(ai_decision_rate=0.0)
    (sent,) = books(1)
    publish_raw(agent.settings, [sent, sent])
    agent.pump_until(lambda: len(agent.handled) == 2)
    assert [d.outcome for d in agent.handled] == ["ack", "ack"]
    assert agent.consumer.stats.consumed == 1
    assert agent.consumer.stats.duplicates == 1
    assert uuid.UUID(agent.lines("Message consumed")[0]["context"]["message_id"])
