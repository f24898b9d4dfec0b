"""`MemoryBroker`: the broker in memory, routing like RabbitMQ and settling like `RabbitBroker`.

It holds the agents' topology (the direct `books` exchange bound to the genre queues and the
anomaly queue by name, the fanout dead-letter exchange, RabbitMQ's default exchange) and answers
the `Broker` port the way `RabbitBroker` does on the real server; tests/contract holds the tests
both must pass. In short:

- `publish` is mandatory: an unknown exchange or a routing key no queue is bound to raises
  `PublishError`, like a confirmed publish with `mandatory=True`.
- `process_events` hands ready messages to the registered consumers, at most `prefetch` unsettled
  deliveries per consumer; delivery tags count per channel.
- `requeue` puts the message back at the head of its queue, marked redelivered; `reject(reason)`
  dead-letters a copy carrying `x-reject-reason` and the original queue and routing key (through
  the fanout DLX, routing key kept); `ack(multiple=True)` settles every earlier delivery of the
  channel.
- A handler that raises without settling gets the real broker's treatment: a first delivery is
  requeued, a redelivery dead-lettered (no poison loop). The exception is kept for `join`.
- Quorum queues (the default `queue_type`) number redeliveries in `x-delivery-count`.
- `queue_depths` counts ready messages, not unacked ones; an unknown queue is a `BrokerError`.
- `close` (and `lose_channel`) returns every unsettled delivery to its queue, redelivered; their
  settle calls then return False and record nothing.

For unit tests it also records: `published` (what the code under test published), `settled`
(every settlement), `depths` (set it to pin what `queue_depths` reports), `fail_publish`, and
`deliver`/`delivery` to hand a consumer one message directly. `join` waits until the consumed
queues are drained and every delivery settled, and re-raises a handler's exception (dramatiq's
`StubBroker.join`).

Like pika's connection, one thread drives it (`process_events`, `deliver`, `join`); settling from
another thread is safe and wakes a waiting `join`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from agents.core.clock import SystemClock
from agents.ports import BrokerError, Clock, Delivery, Outcome, PublishError
from agents.vocab import (
    ANOMALY_QUEUE,
    DEAD_LETTER_QUEUE,
    DLX,
    EXCHANGE,
    FICTIONAL,
    ORIGINAL_QUEUE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    QUEUES,
    REJECT_REASON_HEADER,
)

DELIVERY_COUNT_HEADER = "x-delivery-count"  # set by quorum queues on every redelivery
DEFAULT_EXCHANGE = ""  # RabbitMQ's nameless exchange: routes to the queue named by the key
_REASON_LIMIT = 500  # characters of a reject reason kept in its header (as RabbitBroker does)


@dataclass
class Published:
    """One `publish` call, as the code under test made it."""

    routing_key: str
    body: bytes
    message_id: str
    exchange: str
    headers: dict[str, object] | None


@dataclass
class Message:
    """A message as a queue holds it."""

    body: bytes
    routing_key: str
    message_id: str | None
    headers: dict[str, Any]
    content_type: str | None = "application/json"
    timestamp: int | None = None
    redelivered: bool = False
    deliveries: int = 0  # how often a consumer has been handed it


@dataclass(eq=False)
class _Consumer:
    queue: str
    on_message: Callable[[Delivery], None]
    prefetch: int
    unsettled: set[int] = field(default_factory=set)  # delivery tags on the current channel


@dataclass
class _InFlight:
    delivery: Delivery
    message: Message
    consumer: _Consumer | None


def bodies(items: Iterable[Published]) -> list[bytes]:
    return [item.body for item in items]


def _one_line(reason: str) -> str:
    return " ".join(reason.split())[:_REASON_LIMIT]


class MemoryBroker:
    """The `Broker` port in memory; see the module docstring for what it promises."""

    def __init__(
        self,
        depths: dict[str, int] | None = None,
        clock: Clock | None = None,
        queue_type: Literal["quorum", "classic"] = "quorum",
    ) -> None:
        self._clock = clock or SystemClock()
        self.queue_type = queue_type
        self.depths = dict(depths or {})  # pinned answers for queue_depths, by queue
        self.published: list[Published] = []
        self.settled: list[tuple[str, str | None, Delivery]] = []
        self.failed_settles: list[tuple[str, Delivery]] = []
        self.settle_frames = 0  # ack/nack/reject frames sent (a cumulative ack is one)
        self.errors: list[Exception] = []  # handler exceptions, oldest first
        self.fail_publish = False
        self.depth_calls = 0
        self.closed = False
        self.generation = 0  # the consume channel's number: bumped when it is lost
        self.consuming: tuple[str, ...] = ()
        self.prefetch = 0

        self._queues: dict[str, deque[Message]] = {
            name: deque() for name in (*QUEUES, DEAD_LETTER_QUEUE, ANOMALY_QUEUE)
        }
        self._bindings: dict[str, dict[str, list[str]]] = {
            EXCHANGE: {name: [name] for name in (*QUEUES, ANOMALY_QUEUE)},
        }
        self._fanout: dict[str, list[str]] = {DLX: [DEAD_LETTER_QUEUE]}
        self._consumers: list[_Consumer] = []
        self._in_flight: dict[int, _InFlight] = {}  # this channel's unsettled deliveries by tag
        self._tag = 0
        self._next_consumer = 0  # round robin across consumers, as the server interleaves queues
        self._raised = 0  # how many of `errors` join has already raised
        self._changed = threading.Condition(threading.RLock())

    # --- the Broker port ------------------------------------------------------------------

    def connect(self) -> None:
        with self._changed:
            self.closed = False

    def close(self) -> None:
        """The connection goes: the server takes back every unsettled delivery."""
        with self._changed:
            self.closed = True
            self._return_unsettled()

    def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        exchange: str = EXCHANGE,
        headers: dict[str, object] | None = None,
    ) -> float:
        if self.fail_publish:
            raise PublishError("memory broker told to fail")
        message = Message(
            body=body,
            routing_key=routing_key,
            message_id=message_id,
            headers=dict(headers or {}),
            timestamp=int(self._clock.now().timestamp()),
        )
        with self._changed:
            self._route(exchange, message)
            self.published.append(Published(routing_key, body, message_id, exchange, headers))
            self._changed.notify_all()
        return 0.1

    def queue_depths(self, queues: Sequence[str] = QUEUES) -> dict[str, int]:
        """Ready messages per queue (unacked ones are not counted); pinned `depths` win."""
        self.depth_calls += 1
        with self._changed:
            depths: dict[str, int] = {}
            for name in queues:
                if name in self.depths:
                    depths[name] = self.depths[name]
                elif name in self._queues:
                    depths[name] = len(self._queues[name])
                else:
                    raise BrokerError(
                        f"cannot read depth of queue {name!r}: 404 NOT_FOUND - no queue {name!r}"
                    )
            return depths

    def consume(
        self, queues: Sequence[str], on_message: Callable[[Delivery], None], prefetch: int
    ) -> None:
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1 (0 would mean unbounded)")
        with self._changed:
            for name in queues:
                if name not in self._queues:
                    raise BrokerError(f"cannot consume from {list(queues)}: no queue {name!r}")
            self._consumers.extend(_Consumer(name, on_message, prefetch) for name in queues)
            self.consuming = tuple(c.queue for c in self._consumers)
            self.prefetch = prefetch

    def process_events(self, time_limit: float, until: Callable[[], bool] | None = None) -> None:
        """Dispatch every delivery the prefetch allows, stopping early once `until()` is true.
        Returns when nothing more can be delivered: no time passes in memory."""
        if self.closed:
            raise BrokerError("process_events on a closed broker")
        while self._dispatch_one():
            if until is not None and until():
                return

    # --- test hooks -------------------------------------------------------------------------

    def delivery(
        self,
        body: bytes,
        queue: str = FICTIONAL,
        content_type: str | None = "application/json",
        message_id: str | None = None,
        redelivered: bool = False,
    ) -> Delivery:
        """A delivery of `body` from `queue`, unsettled on the current channel, not yet handed
        to any handler (the test calls the handler itself)."""
        message = Message(body, queue, message_id, {}, content_type, None, redelivered)
        with self._changed:
            return self._open_delivery(message, queue, self._consumer_of(queue))

    def deliver(self, body: bytes, **kwargs: Any) -> Delivery:
        """Hand one message straight to the consumer of its queue (whatever the prefetch), as
        the server would. A handler's exception is treated as `process_events` treats it, then
        re-raised here, since the test is the caller."""
        queue = kwargs.get("queue", FICTIONAL)
        consumer = self._consumer_of(queue)
        assert consumer is not None, f"consume() was not called for {queue!r}"
        delivery = self.delivery(body, **kwargs)
        error = self._run_handler(consumer, delivery)
        if error is not None:
            self._raised = len(self.errors)
            raise error
        return delivery

    def lose_channel(self) -> None:
        """The consume channel dies: every unsettled delivery is back with the broker."""
        with self._changed:
            self._return_unsettled()

    def messages(self, queue: str) -> list[Message]:
        """The ready messages of `queue`, in order, left where they are."""
        with self._changed:
            return list(self._queues[queue])

    def drain(self, queue: str) -> list[Message]:
        """Take every ready message out of `queue` (as `basic_get` with auto-ack would)."""
        with self._changed:
            taken = list(self._queues[queue])
            self._queues[queue].clear()
            self._changed.notify_all()
            return taken

    def outcomes(self) -> list[str]:
        return [outcome for outcome, _, _ in self.settled]

    def join(self, queue: str | None = None, timeout: float = 10.0, fail_fast: bool = True) -> None:
        """Deliver until `queue` (default: every consumed queue) has no ready message and no
        unsettled delivery. With `fail_fast`, a handler's exception is re-raised here as soon as
        it happens. Raises TimeoutError naming what is left when `timeout` seconds pass first
        (e.g. a handler holds deliveries that nothing settles)."""
        deadline = time.monotonic() + timeout
        while True:
            self._raise_failure(fail_fast)
            while self._dispatch_one():
                self._raise_failure(fail_fast)
            with self._changed:
                self._raise_failure(fail_fast)
                left = self._outstanding(queue)
                if not left:
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"queues not drained after {timeout}s: {left}")
                # Woken by a publish or a settle (from any thread), then delivers again.
                self._changed.wait(remaining)

    # --- inside -----------------------------------------------------------------------------

    def _route(self, exchange: str, message: Message) -> None:
        if exchange == DEFAULT_EXCHANGE:
            targets = [message.routing_key] if message.routing_key in self._queues else []
        elif exchange in self._fanout:
            targets = self._fanout[exchange]
        elif exchange in self._bindings:
            targets = self._bindings[exchange].get(message.routing_key, [])
        else:
            raise PublishError(
                f"channel closed by broker: 404 NOT_FOUND - no exchange {exchange!r} "
                f"(exchange {exchange!r} routing key {message.routing_key!r} in memory)"
            )
        if not targets:
            raise PublishError(
                f"unroutable: no queue bound to exchange {exchange!r} routing key "
                f"{message.routing_key!r} in memory"
            )
        for name in targets:
            self._queues[name].append(replace(message, headers=dict(message.headers)))

    def _consumer_of(self, queue: str) -> _Consumer | None:
        return next((c for c in self._consumers if c.queue == queue), None)

    def _dispatch_one(self) -> bool:
        """Hand the next ready message to a consumer with room under its prefetch."""
        with self._changed:
            if self.closed or not self._consumers:
                return False
            count = len(self._consumers)
            for step in range(count):
                consumer = self._consumers[(self._next_consumer + step) % count]
                ready = self._queues[consumer.queue]
                if ready and len(consumer.unsettled) < consumer.prefetch:
                    self._next_consumer = (self._next_consumer + step + 1) % count
                    delivery = self._open_delivery(ready.popleft(), consumer.queue, consumer)
                    break
            else:
                return False
        self._run_handler(consumer, delivery)
        return True

    def _run_handler(self, consumer: _Consumer, delivery: Delivery) -> Exception | None:
        try:
            consumer.on_message(delivery)
        except Exception as exc:  # a handler bug must not stop the broker (RabbitBroker's rule)
            with self._changed:
                self.errors.append(exc)
                self._changed.notify_all()
            if delivery.outcome is None:
                if delivery.redelivered:
                    delivery.reject(f"handler error: {type(exc).__name__}: {exc}"[:_REASON_LIMIT])
                else:
                    delivery.requeue()
            return exc
        return None

    def _open_delivery(self, message: Message, queue: str, consumer: _Consumer | None) -> Delivery:
        self._tag += 1
        generation = self.generation

        def channel_open() -> bool:
            return generation == self.generation and not self.closed

        headers = dict(message.headers)
        if self.queue_type == "quorum" and message.deliveries:
            headers[DELIVERY_COUNT_HEADER] = message.deliveries
        message.deliveries += 1
        delivery = Delivery(
            body=message.body,
            queue=queue,
            routing_key=message.routing_key,
            message_id=message.message_id,
            headers=headers,
            content_type=message.content_type,
            redelivered=message.redelivered,
            delivery_tag=self._tag,
            timestamp=message.timestamp,
            settler=self._settle,
            channel_open=channel_open,
            channel_id=generation,
        )
        self._in_flight[delivery.delivery_tag] = _InFlight(delivery, message, consumer)
        if consumer is not None:
            consumer.unsettled.add(delivery.delivery_tag)
        return delivery

    def _settle(self, delivery: Delivery, outcome: Outcome, reason: str | None) -> bool:
        with self._changed:
            if not delivery.channel_open():
                self.failed_settles.append((outcome, delivery))
                return False
            self.settle_frames += 1
            if delivery.delivery_tag not in self._in_flight:
                # Settling a tag twice: the server closes the channel (406 PRECONDITION_FAILED)
                # and takes back everything unsettled on it; the frame itself was sent.
                self._return_unsettled()
                return True
            if outcome == "ack_multiple":
                covered = sorted(t for t in self._in_flight if t <= delivery.delivery_tag)
                for tag in covered:
                    self.settled.append(("ack", None, self._take(tag).delivery))
            else:
                taken = self._take(delivery.delivery_tag)
                self.settled.append((outcome, reason, delivery))
                if outcome == "requeue":
                    taken.message.redelivered = True
                    self._queues[delivery.queue].appendleft(taken.message)
                elif outcome == "reject":
                    self._dead_letter(delivery, reason or "rejected")
            self._changed.notify_all()
            return True

    def _take(self, tag: int) -> _InFlight:
        taken = self._in_flight.pop(tag)
        if taken.consumer is not None:
            taken.consumer.unsettled.discard(tag)
        return taken

    def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        """A copy of the message as delivered (RabbitBroker copies the received properties)."""
        headers = {
            **delivery.headers,
            REJECT_REASON_HEADER: _one_line(reason),
            ORIGINAL_QUEUE_HEADER: delivery.queue,
            ORIGINAL_ROUTING_KEY_HEADER: delivery.routing_key,
        }
        dead = Message(
            delivery.body,
            delivery.routing_key,
            delivery.message_id,
            headers,
            delivery.content_type,
            delivery.timestamp,
        )
        self._route(DLX, dead)

    def _return_unsettled(self) -> None:
        """Back to the head of their queues in delivery order, marked redelivered; the tags
        die with the channel and a new channel numbers from 1."""
        for tag in sorted(self._in_flight, reverse=True):
            taken = self._take(tag)
            taken.message.redelivered = True
            self._queues[taken.delivery.queue].appendleft(taken.message)
        self.generation += 1
        self._tag = 0
        self._changed.notify_all()

    def _outstanding(self, queue: str | None) -> dict[str, dict[str, int]]:
        names = [queue] if queue is not None else list(dict.fromkeys(self.consuming))
        left: dict[str, dict[str, int]] = {}
        for name in names:
            ready = len(self._queues[name])
            unsettled = sum(1 for f in self._in_flight.values() if f.delivery.queue == name)
            if ready or unsettled:
                left[name] = {"ready": ready, "unsettled": unsettled}
        return left

    def _raise_failure(self, fail_fast: bool) -> None:
        with self._changed:
            if not fail_fast or self._raised >= len(self.errors):
                return
            error = self.errors[self._raised]
            self._raised = len(self.errors)
        raise error
