"""RabbitMQ through pika: the topology, confirmed publishing, acked consuming, and reconnection.

One `RabbitBroker` owns one `BlockingConnection` (pika's blocking adapter is not thread-safe, so
one broker per thread) with two channels: a *control* channel in confirm mode for declaring,
publishing and reading queue depths, and a *consume* channel carrying every consumer. Keeping
consumers off the confirm channel means a 404 on a bad publish never takes the consumers down.

No-loss recipe: durable exchange and queues, persistent messages, publisher confirms with
`mandatory=True` (an unroutable message is an error the caller sees), manual acks with a bounded
prefetch, and a dead-letter exchange for rejected messages. Queues are quorum queues by default
(`QUEUE_TYPE`; RabbitMQ 4's choice where data safety matters) with a delivery limit and
at-least-once dead-lettering, so a message that keeps failing ends in `books.dead-letter`
rather than looping or vanishing. When the connection drops, the broker
requeues whatever was unacked, and `process_events` reconnects with capped exponential backoff,
logging one ERROR line per failed attempt, redeclaring the topology and re-registering consumers.
It never raises for a lost connection, so an agent keeps running (no crash loop) and recovers on
its own when RabbitMQ comes back.

Rejecting with a reason: `basic_reject` cannot add headers, so `Delivery.reject(reason)` publishes
a copy of the message to the dead-letter exchange with `x-reject-reason` (plus the original queue
and routing key) under confirms, then acks the original. If that copy cannot be confirmed it falls
back to `basic_reject(requeue=False)`, so the broker dead-letters the message natively (with its
`x-death` header) and the reason is only in the WARNING log line. Either way the message reaches
`books.dead-letter`. A connection lost between the copy and the ack means the original is
redelivered and may be dead-lettered twice: at-least-once, never lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from agents.core.clock import SystemClock
from agents.core.logs import JsonLogger, Logger, Redactor, describe_error
from agents.core.settings import CommonSettings, QueueType
from agents.ports import BrokerError, Clock, Delivery, Outcome, PublishError, TopologyError
from agents.vocab import (
    ANOMALY_QUEUE,
    DEAD_LETTER_QUEUE,
    DLX,
    EXCHANGE,
    ORIGINAL_QUEUE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    QUEUES,
    REJECT_REASON_HEADER,
    Event,
)

# pika's default heartbeat; an agent must call `process_events` at least this often (instead of
# sleeping) or the broker drops the connection after two missed beats.
HEARTBEAT_SECONDS = 60
BASE_BACKOFF_SECONDS = 0.5

_ACCESS_REFUSED = 403
_NOT_FOUND = 404
_PRECONDITION_FAILED = 406

# Anything pika or the socket layer can throw while talking to the broker.
_TRANSIENT: tuple[type[BaseException], ...] = (pika.exceptions.AMQPError, OSError)

AUTH_ERRORS = (pika.exceptions.ProbableAuthenticationError, pika.exceptions.AuthenticationError)

# --------------------------------------------------------------------------------------------
# Topology


def connection_parameters(settings: CommonSettings) -> pika.ConnectionParameters:
    """Parameters for one attempt: our own loop does the retrying, so it can log each failure."""
    return pika.ConnectionParameters(
        host=settings.rabbitmq_host,
        port=settings.rabbitmq_port,
        virtual_host=settings.rabbitmq_vhost,
        credentials=pika.PlainCredentials(
            settings.rabbitmq_user, settings.rabbitmq_pass.get_secret_value()
        ),
        heartbeat=HEARTBEAT_SECONDS,
        connection_attempts=1,
        socket_timeout=5.0,
        stack_timeout=10.0,
        # A publisher blocked by a broker resource alarm fails visibly instead of hanging forever.
        blocked_connection_timeout=60.0,
        # Shown in the management UI, so an operator can tell which agent holds which connection.
        client_properties={"connection_name": f"books-agents/{settings.agent_id}"},
    )


# Quorum queues dead-letter a message after this many deliveries (RabbitMQ 4's default, made
# explicit so a 3.x broker behaves the same). A poison message cannot loop forever.
DELIVERY_LIMIT = 20

QUEUE_TYPES: tuple[QueueType, ...] = ("quorum", "classic")


def queue_arguments(name: str, queue_type: QueueType) -> dict[str, Any]:
    """The `x-` arguments each queue of the topology is declared with, per queue type.

    Classic keeps exactly the arguments of earlier releases, so a classic broker set up by them
    still matches. Quorum adds the type, a delivery limit and at-least-once dead-letter
    delivery (which RabbitMQ only honours with `x-overflow: reject-publish`) on every queue that
    dead-letters: the genre queues and `books.anomalies`. The dead-letter queue itself has
    nowhere to dead-letter to, so it takes no limit (a limit without a target drops messages).
    """
    if queue_type not in QUEUE_TYPES:
        raise ValueError(f"queue type must be one of {QUEUE_TYPES}, not {queue_type!r}")
    if queue_type == "classic":
        return {"x-dead-letter-exchange": DLX} if name in QUEUES else {}
    args: dict[str, Any] = {"x-queue-type": "quorum"}
    if name != DEAD_LETTER_QUEUE:
        args |= {
            "x-dead-letter-exchange": DLX,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
            "x-delivery-limit": DELIVERY_LIMIT,
        }
    return args


def declare_topology(channel: Any, queue_type: QueueType = "quorum") -> dict[str, object]:
    """Declare the exchanges, queues and bindings; idempotent. Returns what it declared.

    Raises `TopologyError` when something already exists with other arguments (RabbitMQ closes
    the channel with 406 PRECONDITION_FAILED; redeclaring cannot fix that, an operator must).
    When the queue exists with the other queue type, the error says so and how to migrate.
    """
    queues: dict[str, int] = {}
    bindings: list[dict[str, str]] = []
    current = ""
    try:
        channel.exchange_declare(exchange=EXCHANGE, exchange_type="direct", durable=True)
        # Fanout: every dead-lettered message lands in one queue, whatever its routing key.
        channel.exchange_declare(exchange=DLX, exchange_type="fanout", durable=True)
        for name in QUEUES:
            current = name
            queues[name] = _declare_queue(channel, name, queue_arguments(name, queue_type))
            channel.queue_bind(queue=name, exchange=EXCHANGE, routing_key=name)
            bindings.append({"exchange": EXCHANGE, "queue": name, "routing_key": name})
        current = DEAD_LETTER_QUEUE
        queues[DEAD_LETTER_QUEUE] = _declare_queue(
            channel, DEAD_LETTER_QUEUE, queue_arguments(DEAD_LETTER_QUEUE, queue_type)
        )
        channel.queue_bind(queue=DEAD_LETTER_QUEUE, exchange=DLX, routing_key="")
        bindings.append({"exchange": DLX, "queue": DEAD_LETTER_QUEUE, "routing_key": ""})
        # Consumers copy flagged messages here; bound by its own name so the default
        # `publish(ANOMALY_QUEUE, ...)` routes through the `books` exchange like everything else.
        current = ANOMALY_QUEUE
        queues[ANOMALY_QUEUE] = _declare_queue(
            channel, ANOMALY_QUEUE, queue_arguments(ANOMALY_QUEUE, queue_type)
        )
        channel.queue_bind(queue=ANOMALY_QUEUE, exchange=EXCHANGE, routing_key=ANOMALY_QUEUE)
        bindings.append(
            {"exchange": EXCHANGE, "queue": ANOMALY_QUEUE, "routing_key": ANOMALY_QUEUE}
        )
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == _PRECONDITION_FAILED:
            other = _other_type_holding(channel, current, queue_type)
            if other is not None:
                raise TopologyError(_type_change_advice(current, queue_type, other)) from exc
            raise TopologyError(
                f"RabbitMQ topology conflict: {exc.reply_text} (an exchange or queue exists with "
                "other arguments; delete it, then run `agents setup rabbitmq`)"
            ) from exc
        raise
    return {
        "exchanges": {EXCHANGE: "direct", DLX: "fanout"},
        "queues": queues,
        "queue_type": queue_type,
        "bindings": bindings,
        "dead_letter_exchange": DLX,
    }


def _declare_queue(channel: Any, name: str, arguments: dict[str, Any]) -> int:
    result = channel.queue_declare(queue=name, durable=True, arguments=arguments or None)
    return int(result.method.message_count)


def _other_type_holding(channel: Any, name: str, wanted: QueueType) -> tuple[QueueType, int] | None:
    """(type, ready messages) when `name` exists as the other queue type, else None.

    The 406 text does not reliably name the type (3.x may report another argument first), so
    ask the broker directly: redeclaring with the other type's exact arguments succeeds only
    when that is what the queue is, and then changes nothing.
    """
    if not name:
        return None
    other: QueueType = "classic" if wanted == "quorum" else "quorum"
    connection = getattr(channel, "connection", None)
    if connection is None:
        return None
    try:
        probe = connection.channel()
    except _TRANSIENT:
        return None
    try:
        result = probe.queue_declare(
            queue=name, durable=True, arguments=queue_arguments(name, other) or None
        )
        return other, int(result.method.message_count)
    except pika.exceptions.ChannelClosedByBroker:
        return None  # not the other type either: some other argument differs
    except _TRANSIENT:
        return None
    finally:
        if probe.is_open:
            probe.close()


def _type_change_advice(name: str, wanted: QueueType, found: tuple[QueueType, int]) -> str:
    other, messages = found
    return (
        f"queue {name!r} exists as a {other} queue ({messages} ready messages) but "
        f"QUEUE_TYPE={wanted}: RabbitMQ cannot change a queue's type in place. Either keep it: "
        f"set QUEUE_TYPE={other} and run `agents setup rabbitmq` again; or migrate: stop the "
        f"agents, drain or move its messages (e.g. a shovel to a temporary queue), delete it "
        f"(`rabbitmqctl delete_queue {name}`, with `-p <vhost>` outside the default vhost), then "
        f"run `agents setup rabbitmq` again to declare it as {wanted}"
    )


def setup_topology(
    settings: CommonSettings,
    attempts: int = 30,
    *,
    logger: Logger | None = None,
    clock: Clock | None = None,
    max_backoff: float = 5.0,
) -> dict[str, object]:
    """Connect (up to `attempts` times, backing off), declare the topology, disconnect.

    Used by `agents setup rabbitmq`, e.g. as a one-shot compose service that waits for RabbitMQ.
    """
    if attempts < 1:
        raise BrokerError("attempts must be at least 1")
    log = logger or JsonLogger(settings.agent_id, "setup", redactor=Redactor(settings.secrets()))
    broker = RabbitBroker(
        settings, log, clock or SystemClock(), max_backoff=max_backoff, connect_attempts=attempts
    )
    broker.connect()
    try:
        return {"broker": broker.where, **broker.declared}
    finally:
        broker.close()


def backoff_delay(failures: int, max_backoff: float) -> float:
    """Seconds to wait after `failures` consecutive failed attempts: 0.5, 1, 2, 4, ... capped."""
    exponent = min(max(failures, 1) - 1, 32)  # bounded so the float never overflows
    return min(max_backoff, BASE_BACKOFF_SECONDS * 2.0**exponent)


# --------------------------------------------------------------------------------------------
# Queue depths


def passive_depth(channel: Any, queue: str) -> int:
    """Ready messages in `queue` (unacked ones are not counted) by a passive declare: plain
    AMQP, so it works where the management plugin is off. A missing queue closes the channel
    with 404."""
    return int(channel.queue_declare(queue=queue, passive=True).method.message_count)


def read_depths(parameters: pika.ConnectionParameters, queues: Sequence[str]) -> dict[str, int]:
    """Ready messages in each of `queues`, over a short-lived connection of its own: for a
    reader outside the code under test (benchmarks, tests) that must not share its connection."""
    connection = pika.BlockingConnection(parameters)
    try:
        channel = connection.channel()
        return {queue: passive_depth(channel, queue) for queue in queues}
    finally:
        connection.close()


def passive_consumers(channel: Any, queue: str) -> int:
    """Consumers registered on `queue`, by the same passive declare as `passive_depth`."""
    return int(channel.queue_declare(queue=queue, passive=True).method.consumer_count)


class DepthReader:
    """Queue depths on a connection of its own, for code beside the agents (the console's
    status line, the fleet's drain at shutdown) that must not share an agent's connection and
    must keep going when RabbitMQ does not: a call returns None instead of raising, and the
    next call connects again."""

    def __init__(self, settings: CommonSettings) -> None:
        self.settings = settings
        self._connection: BlockingConnection | None = None

    def __call__(self, queues: Sequence[str] = QUEUES) -> dict[str, int] | None:
        try:
            if self._connection is None or not self._connection.is_open:
                self._connection = BlockingConnection(connection_parameters(self.settings))
            channel = self._connection.channel()
            try:
                return {name: passive_depth(channel, name) for name in queues}
            finally:
                if channel.is_open:
                    channel.close()
        except _TRANSIENT:
            self.close()  # e.g. a 404 took the channel: start afresh next time
            return None

    def sleep(self, seconds: float) -> None:
        """Wait on the connection (heartbeats keep flowing), or plainly when there is none."""
        if self._connection is not None and self._connection.is_open:
            try:
                self._connection.sleep(seconds)
                return
            except _TRANSIENT:
                self.close()
        time.sleep(seconds)

    def close(self) -> None:
        _close_quietly(self._connection)
        self._connection = None


# --------------------------------------------------------------------------------------------
# The broker


@dataclass(frozen=True)
class _Consumer:
    queue: str
    on_message: Callable[[Delivery], None]
    prefetch: int


class _Deadline:
    """A deadline on the injected clock and on real time; whichever passes first ends the wait.

    pika blocks in real seconds, backoff sleeps on the injected clock: with a fake clock in a test,
    the real bound keeps the I/O pump finite and the fake one keeps backoff instant.
    """

    def __init__(self, clock: Clock, seconds: float) -> None:
        self._clock = clock
        self._fake_end = clock.monotonic() + seconds
        self._real_end = time.monotonic() + seconds

    def remaining(self) -> float:
        fake = self._fake_end - self._clock.monotonic()
        real = self._real_end - time.monotonic()
        return max(0.0, min(fake, real))


class RabbitBroker:
    """The real broker on pika's BlockingConnection. See the module docstring for the design."""

    def __init__(
        self,
        settings: CommonSettings,
        logger: Logger,
        clock: Clock | None = None,
        max_backoff: float = 30.0,
        *,
        connect_attempts: int | None = None,
    ) -> None:
        """`connect_attempts=None` retries forever (an agent waiting for RabbitMQ to start)."""
        if max_backoff <= 0:
            raise ValueError("max_backoff must be positive")
        self._settings = settings
        self._log = logger
        self._clock = clock or SystemClock()
        self._max_backoff = max_backoff
        self._connect_attempts = connect_attempts
        self._params = connection_parameters(settings)
        self._secret = settings.rabbitmq_pass.get_secret_value()
        self.where = f"{settings.rabbitmq_host}:{settings.rabbitmq_port}/{settings.rabbitmq_vhost}"

        self._connection: BlockingConnection | None = None
        self._control: BlockingChannel | None = None
        self._consume_channel: BlockingChannel | None = None
        self._consumers: list[_Consumer] = []
        self._failures = 0  # consecutive failed attempts since the last success
        self._next_attempt_at = 0.0  # injected-clock time before which no attempt is made
        self._ever_connected = False
        self._last_error = ""
        self._closed = False
        self.declared: dict[str, object] = {}
        self.reconnects = 0  # successful reconnections after a loss (for tests and health)
        self._consume_serial = 0  # which consume channel a delivery came on (Delivery.channel_id)

    # --- connection ---------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connection is not None and self._connection.is_open

    def connect(self) -> None:
        """Connect, declare the topology and start registered consumers; retry with backoff.

        Raises BrokerError after `connect_attempts` failures (never, when that is None), and
        TopologyError at once when the broker holds a conflicting topology.
        """
        self._closed = False
        if not self.connected:
            self._failures = 0  # each call gets its own `connect_attempts`
        while not self.connected:
            wait = self._next_attempt_at - self._clock.monotonic()
            if wait > 0:
                self._clock.sleep(wait)
            if self._attempt():
                return
            if self._connect_attempts is not None and self._failures >= self._connect_attempts:
                raise BrokerError(
                    f"could not connect to RabbitMQ at {self.where} after {self._failures} "
                    f"attempt(s): {self._last_error}"
                )

    def _attempt(self) -> bool:
        """One connection attempt. True on success; on failure log ERROR and schedule the next."""
        connection: BlockingConnection | None = None
        try:
            connection = BlockingConnection(self._params)
            control = connection.channel()
            declared = declare_topology(control, self._settings.queue_type)
            control.confirm_delivery()
            consume_channel = connection.channel()
            self._consume_serial += 1  # a new channel: its delivery tags start again at 1
            self._start_consumers(consume_channel, self._consumers)
        except TopologyError:
            _close_quietly(connection)
            raise
        except _TRANSIENT as exc:
            _close_quietly(connection)
            self._failures += 1
            self._last_error = self._explain(exc)
            delay = backoff_delay(self._failures, self._max_backoff)
            self._next_attempt_at = self._clock.monotonic() + delay
            final = self._connect_attempts is not None and self._failures >= self._connect_attempts
            self._log.error(
                Event.CONNECT_FAILED,
                broker=self.where,
                attempt=self._failures,
                max_attempts=self._connect_attempts,
                retry_in_seconds=None if final else round(delay, 3),
                error={"type": type(exc).__name__, "message": self._last_error},
            )
            return False
        self._connection, self._control, self._consume_channel = (
            connection,
            control,
            consume_channel,
        )
        self.declared = declared
        reconnect = self._ever_connected
        self._ever_connected = True
        failures, self._failures = self._failures, 0
        if reconnect:
            self.reconnects += 1
        self._log.info(
            "RabbitMQ reconnected" if reconnect else "RabbitMQ connected",
            broker=self.where,
            failed_attempts=failures,
            consumers=[c.queue for c in self._consumers],
        )
        return True

    def _explain(self, exc: BaseException) -> str:
        """A one-line reason for a failure, with the password scrubbed should pika ever echo it."""
        if isinstance(exc, AUTH_ERRORS):
            text = "authentication refused (check RABBITMQ_USER and RABBITMQ_PASS)"
        elif isinstance(exc, pika.exceptions.ProbableAccessDeniedError):
            detail = f": {exc.args[0]}" if exc.args else ""
            text = f"access to vhost {self._settings.rabbitmq_vhost!r} refused{detail}"
        elif isinstance(exc, pika.exceptions.ConnectionClosedByBroker):
            text = f"closed by broker: {exc.reply_code} {exc.reply_text}"
        elif isinstance(exc, pika.exceptions.ChannelClosedByBroker):
            text = f"channel closed by broker: {exc.reply_code} {exc.reply_text}"
        elif not str(exc).strip():
            # pika's AMQPConnectionError has an empty str(); the socket error is in its args.
            inner = exc.args[0] if exc.args else None
            text = repr(inner) if isinstance(inner, BaseException) else repr(exc)
        else:
            text = describe_error(exc)["message"]
        if self._secret and len(self._secret) >= 3:
            text = text.replace(self._secret, "***")
        return " ".join(text.split())[:500]

    def _lost(
        self,
        exc: BaseException,
        during: str,
        message: str = "RabbitMQ connection lost; reconnecting "
        "(unacked messages will be redelivered)",
    ) -> None:
        """Forget a dead connection; the broker requeues its unacked messages."""
        _close_quietly(self._connection)
        self._connection = self._control = self._consume_channel = None
        self._failures = 0
        self._next_attempt_at = self._clock.monotonic()  # the first retry is immediate
        self._log.error(
            message,
            broker=self.where,
            during=during,
            error={"type": type(exc).__name__, "message": self._explain(exc)},
        )

    def _consumers_alive(self) -> bool:
        """False when the broker closed the consume channel (e.g. a 406 on a bad ack) or
        cancelled a consumer (its queue was deleted). pika reports neither as an exception, so
        without this check an agent would sit connected and idle forever."""
        if not self._consumers:
            return True
        channel = self._consume_channel
        return (
            channel is not None
            and channel.is_open
            and len(channel.consumer_tags) >= len(self._consumers)
        )

    def _reconnect_within(self, deadline: _Deadline) -> bool:
        """Attempt reconnection until connected or the deadline passes (sleeping the backoff)."""
        while not self.connected:
            wait = self._next_attempt_at - self._clock.monotonic()
            if wait > deadline.remaining():
                self._clock.sleep(deadline.remaining())
                return False
            if wait > 0:
                self._clock.sleep(wait)
            if self._attempt():
                return True
            if deadline.remaining() <= 0:
                return False
        return True

    def close(self) -> None:
        self._closed = True
        _close_quietly(self._connection)
        self._connection = self._control = self._consume_channel = None

    def __enter__(self) -> RabbitBroker:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- publishing ---------------------------------------------------------------------

    def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        exchange: str = EXCHANGE,
        headers: dict[str, object] | None = None,
    ) -> float:
        """Publish one persistent JSON message and wait for its confirm; returns the round trip ms.

        Raises PublishError when the message is unroutable, nacked, or the connection is down
        (one reconnection attempt is made when the backoff allows; the rest is process_events').
        """
        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=message_id,
            timestamp=int(self._clock.now().timestamp()),
            app_id=self._settings.agent_id,
            headers=dict(headers) if headers else None,
        )
        return self._publish(exchange, routing_key, body, properties)

    def _publish(
        self, exchange: str, routing_key: str, body: bytes, properties: pika.BasicProperties
    ) -> float:
        target = f"exchange {exchange!r} routing key {routing_key!r}"
        channel = self._control_channel()
        started = self._clock.monotonic()
        try:
            channel.basic_publish(
                exchange=exchange,
                routing_key=routing_key,
                body=body,
                properties=properties,
                mandatory=True,
            )
        except pika.exceptions.UnroutableError as exc:
            raise PublishError(f"unroutable: no queue bound to {target} on {self.where}") from exc
        except pika.exceptions.NackError as exc:
            raise PublishError(f"nacked by the broker: {target} on {self.where}") from exc
        except pika.exceptions.ChannelClosedByBroker as exc:
            # e.g. 404 for a missing exchange: the channel is gone, the connection is not.
            self._control = None
            raise PublishError(f"{self._explain(exc)} ({target} on {self.where})") from exc
        except _TRANSIENT as exc:
            self._lost(exc, "publish")
            raise PublishError(f"connection lost while publishing to {target}") from exc
        return (self._clock.monotonic() - started) * 1000.0

    def _control_channel(self) -> BlockingChannel:
        if not self.connected:
            self._reconnect_within(_Deadline(self._clock, 0.0))
        if self._connection is None or not self.connected:
            wait = max(0.0, self._next_attempt_at - self._clock.monotonic())
            raise PublishError(
                f"not connected to RabbitMQ at {self.where} (next attempt in {wait:.1f}s)"
            )
        if self._control is None or not self._control.is_open:
            try:
                control = self._connection.channel()
                control.confirm_delivery()
            except _TRANSIENT as exc:
                self._lost(exc, "opening a channel")
                raise PublishError(f"connection lost opening a channel on {self.where}") from exc
            self._control = control
        return self._control

    def queue_depths(self, queues: Sequence[str] = QUEUES) -> dict[str, int]:
        """Ready (not unacked) message count per queue, via passive declares (no management API)."""
        try:
            channel = self._control_channel()
        except PublishError as exc:
            raise BrokerError(str(exc)) from exc
        depths: dict[str, int] = {}
        for name in queues:
            try:
                depths[name] = passive_depth(channel, name)
            except pika.exceptions.ChannelClosedByBroker as exc:
                self._control = None
                raise BrokerError(
                    f"cannot read depth of queue {name!r}: {self._explain(exc)}"
                ) from exc
            except _TRANSIENT as exc:
                self._lost(exc, "queue_depths")
                raise BrokerError(f"connection lost reading queue depths on {self.where}") from exc
        return depths

    # --- consuming ----------------------------------------------------------------------

    def consume(
        self, queues: Sequence[str], on_message: Callable[[Delivery], None], prefetch: int
    ) -> None:
        """Register `on_message` on each queue; deliveries arrive inside `process_events`.

        Registrations survive reconnection: they are replayed on every new connection.
        """
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1 (0 would mean unbounded)")
        added = [_Consumer(queue, on_message, prefetch) for queue in queues]
        self._consumers.extend(added)
        if self.connected and self._consume_channel is not None:
            try:
                self._start_consumers(self._consume_channel, added)
            except pika.exceptions.ChannelClosedByBroker as exc:
                raise BrokerError(
                    f"cannot consume from {list(queues)}: {self._explain(exc)}"
                ) from exc
            except _TRANSIENT as exc:
                self._lost(exc, "consume")

    def _start_consumers(self, channel: BlockingChannel, consumers: Sequence[_Consumer]) -> None:
        for consumer in consumers:
            # Per-consumer (not global) prefetch, set before the consumer it applies to.
            channel.basic_qos(prefetch_count=consumer.prefetch)
            channel.basic_consume(
                queue=consumer.queue,
                on_message_callback=self._dispatcher(consumer, self._consume_serial),
                auto_ack=False,
            )

    def _dispatcher(self, consumer: _Consumer, serial: int) -> Callable[..., None]:
        def on_message(
            channel: BlockingChannel,
            method: Any,
            properties: pika.BasicProperties,
            body: bytes,
        ) -> None:
            delivery = Delivery(
                body=body,
                queue=consumer.queue,
                routing_key=method.routing_key,
                message_id=properties.message_id,
                headers=dict(properties.headers or {}),
                content_type=properties.content_type,
                redelivered=bool(method.redelivered),
                delivery_tag=method.delivery_tag,
                timestamp=properties.timestamp,
                settler=self._settler(channel, properties),
                channel_open=lambda: channel.is_open,
                channel_id=serial,
            )
            try:
                consumer.on_message(delivery)
            except Exception as exc:
                self._handler_failed(delivery, exc)

        return on_message

    def _handler_failed(self, delivery: Delivery, exc: Exception) -> None:
        """A handler bug must not kill the agent: retry once, then dead-letter (no poison loop)."""
        self._log.error(
            "message handler failed",
            queue=delivery.queue,
            message_id=delivery.message_id,
            redelivered=delivery.redelivered,
            error=describe_error(exc),
        )
        if delivery.outcome is not None:
            return
        if delivery.redelivered:
            delivery.reject(f"handler error: {type(exc).__name__}: {exc}"[:500])
        else:
            delivery.requeue()

    def _settler(
        self, channel: BlockingChannel, properties: pika.BasicProperties
    ) -> Callable[[Delivery, Outcome, str | None], bool]:
        def settle(delivery: Delivery, outcome: Outcome, reason: str | None) -> bool:
            if not channel.is_open:
                # Its connection or channel died: the broker has taken the message back.
                self._log.debug(
                    "settle not sent: channel closed, broker redelivers",
                    outcome=outcome,
                    message_id=delivery.message_id,
                )
                return False
            try:
                if outcome == "ack":
                    channel.basic_ack(delivery_tag=delivery.delivery_tag)
                elif outcome == "ack_multiple":
                    channel.basic_ack(delivery_tag=delivery.delivery_tag, multiple=True)
                elif outcome == "requeue":
                    channel.basic_nack(delivery_tag=delivery.delivery_tag, requeue=True)
                else:
                    self._reject(channel, delivery, properties, reason or "rejected")
            except _TRANSIENT as exc:
                self._log.debug(
                    "settle failed: broker redelivers",
                    outcome=outcome,
                    message_id=delivery.message_id,
                    error=describe_error(exc),
                )
                return False
            return True

        return settle

    def _reject(
        self,
        channel: BlockingChannel,
        delivery: Delivery,
        properties: pika.BasicProperties,
        reason: str,
    ) -> None:
        reason = " ".join(reason.split())[:500]
        headers = dict(properties.headers or {})
        headers[REJECT_REASON_HEADER] = reason
        headers[ORIGINAL_QUEUE_HEADER] = delivery.queue
        headers[ORIGINAL_ROUTING_KEY_HEADER] = delivery.routing_key
        copy = pika.BasicProperties(
            content_type=properties.content_type,
            content_encoding=properties.content_encoding,
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=properties.message_id,
            timestamp=properties.timestamp,
            app_id=properties.app_id,
            headers=headers,
        )
        how = "copied with reason"
        try:
            self._publish(DLX, delivery.routing_key, delivery.body, copy)
        except PublishError as exc:
            how = "native reject, reason only in this log"
            self._log.warning(
                "could not copy rejected message to the dead-letter exchange",
                message_id=delivery.message_id,
                error=describe_error(exc),
            )
            # Raises when the channel is gone too: then nothing was dead-lettered, the broker
            # redelivers, and the caller is told so.
            channel.basic_reject(delivery_tag=delivery.delivery_tag, requeue=False)
        else:
            # The copy is confirmed, so the message is dead-lettered whatever happens next; if
            # this ack is lost the original comes back and is dead-lettered again (a duplicate).
            try:
                channel.basic_ack(delivery_tag=delivery.delivery_tag)
            except _TRANSIENT as exc:
                how = "copied with reason; original not acked, the broker redelivers it"
                self._log.debug("ack after dead-letter copy failed", error=describe_error(exc))
        self._log.warning(
            Event.REJECTED_TO_DEAD_LETTER,
            queue=delivery.queue,
            message_id=delivery.message_id,
            reason=reason,
            dead_letter_queue=DEAD_LETTER_QUEUE,
            how=how,
        )

    def process_events(self, time_limit: float, until: Callable[[], bool] | None = None) -> None:
        """Pump I/O (deliveries, heartbeats) for `time_limit` seconds, or until `until()` is
        true after some deliveries were dispatched; never raises for a lost connection: it
        reconnects with backoff inside the same time budget instead."""
        if self._closed:
            raise BrokerError("process_events on a closed broker")
        deadline = _Deadline(self._clock, max(0.0, time_limit))
        while True:
            if not self.connected and not self._reconnect_within(deadline):
                return
            connection = self._connection
            assert connection is not None
            try:
                connection.process_data_events(time_limit=deadline.remaining())
            except TopologyError:
                raise
            except _TRANSIENT as exc:
                # A handler's publish may already have noticed the loss (and even reconnected).
                if self._connection is connection:
                    self._lost(exc, "process_events")
                continue
            if not self._consumers_alive():
                # Starting over redeclares the topology (a deleted queue comes back) and
                # re-registers every consumer; unacked messages are redelivered meanwhile.
                self._lost(
                    BrokerError("consume channel closed or consumer cancelled by the broker"),
                    "process_events",
                    "RabbitMQ consumers lost; reconnecting to re-register them",
                )
                continue
            if deadline.remaining() <= 0 or (until is not None and until()):
                return


def _close_quietly(connection: BlockingConnection | None) -> None:
    if connection is None:
        return
    try:
        if connection.is_open:
            connection.close()
    except _TRANSIENT:
        pass  # already dead: nothing left to close


__all__ = [
    "AUTH_ERRORS",
    "DELIVERY_LIMIT",
    "QUEUE_TYPES",
    "DepthReader",
    "RabbitBroker",
    "backoff_delay",
    "connection_parameters",
    "declare_topology",
    "passive_consumers",
    "passive_depth",
    "queue_arguments",
    "read_depths",
    "setup_topology",
]
