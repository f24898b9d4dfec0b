"""Locust users that speak AMQP with pika: run only as a subprocess (Locust patches with gevent).

    locust -f benchmarks/locustfile.py --headless -u 4 -r 4 -t 20s \
        --host amqp://guest:guest@127.0.0.1:5672/<vhost> --csv out/prefix [PublisherUser ...]

`PublisherUser` publishes valid book messages to exchange `books` with publisher confirms and
`mandatory=True`; each publish is one Locust request whose response time is the confirm round
trip. `ConsumerUser` drains both queues with manual acks; each message is one request whose
response time is its end-to-end latency (published_at to ack). Environment knobs:
BENCH_RATE_PER_USER (msgs/s per publisher user, 0 = flat out), BENCH_PREFETCH (consumer prefetch),
BENCH_SENT_LOG (a file the publishers append `message_id published_at_epoch` to, for joining with
the consumer agents' log lines in the end-to-end run).
"""

from __future__ import annotations

import os
import random
import time
from datetime import UTC, datetime

import pika
from locust import User, constant, constant_throughput, task

from agents.messages import GENRES, Catalogue
from agents.vocab import EXCHANGE

RATE = float(os.environ.get("BENCH_RATE_PER_USER", "0"))
PREFETCH = int(os.environ.get("BENCH_PREFETCH", "50"))
SENT_LOG = os.environ.get("BENCH_SENT_LOG")
CATALOGUE = Catalogue.load()


class PublisherUser(User):
    wait_time = constant_throughput(RATE) if RATE > 0 else constant(0)

    def on_start(self) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(self.host))
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        self.rng = random.Random()
        self.sent = open(SENT_LOG, "a", buffering=1 << 16) if SENT_LOG else None  # noqa: SIM115

    def on_stop(self) -> None:
        if self.sent is not None:
            self.sent.close()
        if self.connection.is_open:
            self.connection.close()

    @task
    def publish(self) -> None:
        genre = self.rng.choice(GENRES)
        now = datetime.now(UTC)
        book = CATALOGUE.make(genre, "locust", self.rng, now)
        body = book.to_json()
        started = time.perf_counter()
        exception: Exception | None = None
        try:
            self.channel.basic_publish(
                EXCHANGE,
                genre,
                body,
                pika.BasicProperties(
                    content_type="application/json",
                    delivery_mode=2,
                    message_id=str(book.message_id),
                    timestamp=int(now.timestamp()),
                ),
                mandatory=True,
            )
        except Exception as exc:  # every failure is a Locust failure, never a dead user
            exception = exc
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        if exception is None and self.sent is not None:
            self.sent.write(f"{book.message_id} {now.timestamp():.6f}\n")
        self.environment.events.request.fire(
            request_type="amqp",
            name="publish",
            response_time=elapsed_ms,
            response_length=len(body),
            exception=exception,
            context={},
        )


class ConsumerUser(User):
    wait_time = constant(0)

    def on_start(self) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(self.host))
        self.channel = self.connection.channel()
        for queue in GENRES:
            self.channel.basic_qos(prefetch_count=PREFETCH)
            self.channel.basic_consume(queue, self._on_message, auto_ack=False)

    def on_stop(self) -> None:
        if self.connection.is_open:
            self.connection.close()

    def _on_message(self, channel: object, method: object, properties: object, body: bytes) -> None:
        import json

        exception: Exception | None = None
        latency_ms = 0.0
        try:
            published = datetime.fromisoformat(json.loads(body)["published_at"])
            latency_ms = (datetime.now(UTC) - published).total_seconds() * 1000.0
        except Exception as exc:
            exception = exc
        self.channel.basic_ack(delivery_tag=method.delivery_tag)  # type: ignore[attr-defined]
        self.environment.events.request.fire(
            request_type="amqp",
            name="consume e2e",
            response_time=max(0.0, latency_ms),
            response_length=len(body),
            exception=exception,
            context={},
        )

    @task
    def consume(self) -> None:
        self.connection.process_data_events(time_limit=0.5)
