"""The raw clients the agents are measured against: no validation, no logs, no metrics.

Each function does one timed run and returns messages per second. The settings that matter for
fairness are the agents' own: persistent messages, confirms with `mandatory=True` on publish,
manual acks with the same per-consumer prefetch on consume, both queues consumed at once.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import pika

from agents.messages import GENRES, Catalogue, Outgoing
from agents.vocab import QUEUES as QUEUES  # run.py takes it from here
from benchmarks import rabbit


def make_messages(count: int, seed: int, publisher_id: str = "publisher-1") -> list[Outgoing]:
    """`count` valid book messages, genres alternating, built by the publisher agent's own fast
    path (byte for byte what `Catalogue.make(...).to_json()` gives, at a fraction of the cost)."""
    catalogue = Catalogue.load()
    rng = random.Random(seed)
    now = datetime.now(UTC)
    return [catalogue.make_outgoing(GENRES[i % 2], publisher_id, rng, now) for i in range(count)]


def make_bodies(count: int, seed: int = 7) -> list[tuple[str, bytes, str]]:
    """`count` valid book messages as (routing key, body, message id), genres alternating."""
    return [(m.genre, m.body, m.message_id) for m in make_messages(count, seed)]


def pika_publish(vhost: str, bodies: Sequence[tuple[str, bytes, str]]) -> float:
    """Bare pika, one confirm round trip per message (the agent's strategy)."""
    connection = pika.BlockingConnection(rabbit.params(vhost))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        started = time.perf_counter()
        for routing_key, body, message_id in bodies:
            rabbit.publish_book(channel, routing_key, body, message_id)
        elapsed = time.perf_counter() - started
    finally:
        connection.close()
    return len(bodies) / elapsed


def pika_consume(vhost: str, expected: int, prefetch: int, timeout: float = 120.0) -> float:
    """Bare pika consumer on both queues that parses each body (`json.loads`, the least any
    consumer of these messages does) and acks it; the clock runs from registration to the last
    ack."""
    connection = pika.BlockingConnection(rabbit.params(vhost))
    count = 0
    try:
        channel = connection.channel()

        def on_message(ch: object, method: object, properties: object, body: bytes) -> None:
            nonlocal count
            json.loads(body)
            channel.basic_ack(delivery_tag=method.delivery_tag)  # type: ignore[attr-defined]
            count += 1

        started = time.perf_counter()
        for queue in QUEUES:
            channel.basic_qos(prefetch_count=prefetch)
            channel.basic_consume(queue, on_message, auto_ack=False)
        deadline = started + timeout
        while count < expected:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"pika consumer got {count}/{expected}")
            connection.process_data_events(time_limit=0.05)
        elapsed = time.perf_counter() - started
    finally:
        connection.close()
    return expected / elapsed


def aio_pika_consume(vhost: str, expected: int, prefetch: int, timeout: float = 120.0) -> float:
    """Bare aio-pika consumer with the same per-consumer prefetch, `json.loads` and ack."""
    return asyncio.run(_aio_consume(vhost, expected, prefetch, timeout))


async def _aio_consume(vhost: str, expected: int, prefetch: int, timeout: float) -> float:
    import aio_pika

    connection = await aio_pika.connect(rabbit.amqp_url(vhost))
    done = asyncio.Event()
    count = 0

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal count
        json.loads(message.body)
        await message.ack()
        count += 1
        if count >= expected:
            done.set()

    try:
        channel = await connection.channel()
        started = time.perf_counter()
        for name in QUEUES:
            await channel.set_qos(prefetch_count=prefetch)
            queue = await channel.get_queue(name, ensure=True)
            await queue.consume(on_message, no_ack=False)
        await asyncio.wait_for(done.wait(), timeout)
        elapsed = time.perf_counter() - started
    finally:
        await connection.close()
    return expected / elapsed
