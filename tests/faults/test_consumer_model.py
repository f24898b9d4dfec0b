"""A stateful model of the consumer on the real broker: every AI action under every fault.

Hypothesis drives the real `Consumer` and `RabbitBroker` (in this process, one vhost per run)
through publishes (valid and invalid, with confirms), deliveries under a forced AI action
(process / batch / flag / the fallback), batch flushes by size and by time, a dropped connection,
a channel closed by the broker, a crash (no ack, no shutdown) and a replacement, a SIGTERM-style
shutdown mid-batch, and a second competing consumer. Killing real processes is the fault
scenarios' job (test_batch_faults.py); here the point is the interleavings.

What counts is seen from outside the consumer: publisher confirms, the pika frames that actually
left on an open channel (toolkit/wire.py), the log lines written, and the queues' contents.

Invariants, after every step and at teardown:
- an id is acked only after it was handled (its "Message consumed" line written) or a copy of it
  confirmed in `books.anomalies` / the dead-letter exchange; a native reject is a dead-letter;
- no log line claims a settle that did not reach the broker ("Duplicate delivery acknowledged",
  "Held batch requeued", "Anomaly flagged", "Invalid message dead-lettered");
- at teardown every confirmed id is handled, flagged, dead-lettered or still in its queue.
Duplicates (an id handled again after a redelivery) are allowed, and counted.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import urllib.error
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pika.exceptions
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from agents.consumer import Consumer
from agents.core.ai.schemas import ConsumerDecision, default_consumer
from agents.core.broker import RabbitBroker
from agents.core.clock import SystemClock
from agents.core.metrics import MemorySink, Metrics
from agents.core.settings import ConsumerSettings, load_settings
from agents.messages import Catalogue, Genre
from agents.runtime import Wiring
from agents.testing import LogCapture
from agents.testing.clock import FakeClock
from agents.testing.waiting import wait_until
from agents.vocab import ANOMALY_QUEUE, DEAD_LETTER_QUEUE, DLX

from .toolkit.ledger import MAIN_QUEUES
from .toolkit.rabbit import QueueInspector, management
from .toolkit.wire import WireSpy, spy_on_pika

pytestmark = [pytest.mark.faults, pytest.mark.rabbitmq]

CATALOGUE = Catalogue.load()
ACTIONS = ("process", "batch", "flag", "fallback")
BATCH_SIZE = 3
BATCH_WAIT_S = 5.0
# "strict": an ack must follow the handled evidence (line written, copy confirmed) at once;
# "step": by the end of the step (used to show the batch loss on code that logs after acking).
ACK_ORDER = os.environ.get("CONSUMER_MODEL_ACK_ORDER", "strict")
INVALID_BODIES = (b"not json at all", b'{"message_id": "x"}', b"[]", b'{"genre": 7}')


class ForcedEngine:
    """The engine double: answers the next forced action (then `default`), as the engine would
    after validating a model reply; "fallback" is the engine's default decision."""

    def __init__(self) -> None:
        self.actions: list[str] = []
        self.default = "process"
        self.asked = Counter[str]()

    def decide_consumer(self, genre: str, priority: int, queue_depth: int) -> ConsumerDecision:
        action = self.actions.pop(0) if self.actions else self.default
        self.asked[action] += 1
        if action == "fallback":
            return default_consumer("forced fallback")
        return ConsumerDecision(action=action, reasoning=f"forced {action}")


@dataclass
class Live:
    name: str
    consumer: Consumer
    broker: RabbitBroker
    engine: ForcedEngine
    clock: FakeClock
    out: LogCapture
    dead: bool = False


@dataclass
class Findings:
    """Everything the model learnt from outside, across all consumer lifetimes of one run."""

    confirmed: dict[str, str] = field(default_factory=dict)  # id -> "valid" | "invalid"
    consumed: Counter[str] = field(default_factory=Counter)
    flagged: Counter[str] = field(default_factory=Counter)
    dead_lettered: Counter[str] = field(default_factory=Counter)
    pending: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)


def _drop_socket(broker: RabbitBroker) -> None:
    """Cut the TCP connection under pika, as a network failure or a killed process would."""
    connection = broker._connection
    if connection is None:
        return
    sock = getattr(getattr(connection._impl, "_transport", None), "_sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class ConsumerModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.vhost = f"model-{uuid.uuid4().hex[:10]}"
        management("PUT", f"/api/vhosts/{self.vhost}")
        management(
            "PUT",
            f"/api/permissions/{self.vhost}/guest",
            {"configure": ".*", "write": ".*", "read": ".*"},
        )
        self.spy = WireSpy(before_ack=self._check_ack)
        self._patch = spy_on_pika(self.spy)
        self._patch.__enter__()
        self.inspector = QueueInspector(self.vhost)
        self.found = Findings()
        self.live: list[Live] = []
        self.gone: list[Live] = []  # crashed or stopped lifetimes: their lines still count
        self.serial = 0
        self.rng = random.Random(0)
        self._acked_this_step: list[str] = []

    # --- helpers -------------------------------------------------------------------------------

    def _start(self) -> Live:
        self.serial += 1
        name = f"consumer-{self.serial}"
        settings = load_settings(
            ConsumerSettings,
            consumer_id=name,
            rabbitmq_host="127.0.0.1",
            rabbitmq_user="guest",
            rabbitmq_pass="guest",
            rabbitmq_vhost=self.vhost,
            ai_decision_rate=1.0,
            batch_size=BATCH_SIZE,
            batch_max_wait_seconds=BATCH_WAIT_S,
            prefetch_count=8,
            # Group commit every 3 messages, or when nothing more arrives: both paths run.
            commit_every_messages=3,
            dry_run=True,
        )
        clock = FakeClock()
        out = LogCapture()
        logger = out.logger(name, "consumer", clock=clock)
        broker = RabbitBroker(settings, logger, SystemClock(), max_backoff=0.2)
        broker.connect()
        engine = ForcedEngine()
        sink = MemorySink()
        metrics = Metrics(sink, name, "consumer")
        wiring = Wiring(settings, logger, clock, sink, metrics, broker, engine)  # type: ignore[arg-type]
        consumer = Consumer(wiring)
        consumer.start()
        live = Live(name, consumer, broker, engine, clock, out)
        self.live.append(live)
        return live

    def _pump(self, live: Live, rounds: int = 4) -> None:
        # The consumer's own loop turn: take deliveries, group-commit before waiting again.
        for _ in range(rounds):
            live.consumer.pump(0.03)

    def _all_lines(self) -> list[tuple[str, dict[str, Any]]]:
        return [(c.name, line) for c in [*self.gone, *self.live] for line in c.out.events]

    def _handled_now(self) -> set[str]:
        handled = {
            str(line["context"].get("message_id"))
            for _, line in self._all_lines()
            if line["message"] == "Message consumed"
        }
        copies = {
            mid
            for exchange, key, mid in self.spy.published
            if exchange == DLX or key == ANOMALY_QUEUE
        }
        return handled | copies

    def _check_ack(self, ids: list[str]) -> None:
        if ACK_ORDER == "step":
            self._acked_this_step += ids
            return
        self._require_handled(ids, "before it was handled, flagged or dead-lettered")

    def _require_handled(self, ids: list[str], when: str) -> None:
        handled = self._handled_now()
        for mid in ids:
            if mid not in handled:
                self.found.violations.append(
                    f"acked {mid} ({self.found.confirmed.get(mid, '?')}) {when}"
                )

    def _collect_terminal(self) -> None:
        self.spy.bypass = True
        try:
            for raw in self.inspector.drain(ANOMALY_QUEUE):
                self.found.flagged[str(raw.message_id)] += 1
            for raw in self.inspector.drain(DEAD_LETTER_QUEUE):
                self.found.dead_lettered[str(raw.message_id)] += 1
        finally:
            self.spy.bypass = False

    # --- rules ---------------------------------------------------------------------------------

    @initialize()
    def first_consumer(self) -> None:
        self._start()

    @rule(
        valid=st.lists(st.booleans(), min_size=1, max_size=6),
        genre=st.sampled_from(MAIN_QUEUES),
    )
    def publish(self, valid: list[bool], genre: Genre) -> None:
        """Publish k messages with confirms (the inspector's channel is in confirm mode)."""
        self.spy.bypass = True
        try:
            for ok in valid:
                if ok:
                    book = CATALOGUE.make(genre, "publisher-1", self.rng, datetime.now(UTC))
                    mid, body = str(book.message_id), book.to_json()
                else:
                    mid, body = f"invalid-{uuid.uuid4().hex[:12]}", self.rng.choice(INVALID_BODIES)
                self.inspector.publish_raw(genre, body, message_id=mid)
                self.found.confirmed[mid] = "valid" if ok else "invalid"
        finally:
            self.spy.bypass = False

    @rule(
        data=st.data(),
        actions=st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=6),
        then=st.sampled_from(ACTIONS),
    )
    def deliver(self, data: st.DataObject, actions: list[str], then: str) -> None:
        """Pump one consumer with the AI forced to answer `actions`, then `then`."""
        live = data.draw(st.sampled_from(self.live))
        live.engine.actions = list(actions)
        live.engine.default = then
        self._pump(live)

    @rule(data=st.data())
    def flush_by_time(self, data: st.DataObject) -> None:
        live = data.draw(st.sampled_from(self.live))
        live.clock.advance(BATCH_WAIT_S + 0.1)
        live.consumer.step()

    @rule(data=st.data(), actions=st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=4))
    def crash_before_commit(self, data: st.DataObject, actions: list[str]) -> None:
        """SIGKILL between handling and the group commit: handled, lines only in memory, not
        acked. Those messages must come back; none may be acked without its line."""
        live = data.draw(st.sampled_from(self.live))
        live.engine.actions = list(actions)
        live.broker.process_events(0.05)  # deliveries handled, no commit before the kill
        self._crash(live)

    @rule(data=st.data())
    def drop_connection(self, data: st.DataObject) -> None:
        """The TCP connection dies; the consumer notices, reconnects, gets redeliveries."""
        live = data.draw(st.sampled_from(self.live))
        _drop_socket(live.broker)
        self._pump(live, rounds=6)

    @rule(data=st.data())
    def broker_closes_channel(self, data: st.DataObject) -> None:
        """The broker closes only the consume channel (406: an ack of an unknown tag)."""
        live = data.draw(st.sampled_from(self.live))
        channel = live.broker._consume_channel
        if channel is None or not channel.is_open:
            return
        self.spy.bypass = True
        try:
            with contextlib.suppress(pika.exceptions.AMQPError):
                channel.basic_ack(delivery_tag=10**9)  # unknown tag: PRECONDITION_FAILED
        finally:
            self.spy.bypass = False
        self._pump(live, rounds=6)

    @rule(data=st.data())
    def crash_and_replace(self, data: st.DataObject) -> None:
        """No ack, no shutdown: the process is gone; a new consumer takes its place."""
        self._crash(data.draw(st.sampled_from(self.live)))

    def _crash(self, live: Live) -> None:
        _drop_socket(live.broker)
        live.dead = True
        self.live.remove(live)
        self.gone.append(live)
        self._start()

    @rule(data=st.data())
    def sigterm_and_replace(self, data: st.DataObject) -> None:
        """The SIGTERM path: stop taking work, finish or give back the batch, close."""
        live = data.draw(st.sampled_from(self.live))
        live.consumer.shutdown()
        live.broker.close()
        live.dead = True
        self.live.remove(live)
        self.gone.append(live)
        self._start()

    @precondition(lambda self: len(self.live) < 2)
    @rule()
    def competing_consumer(self) -> None:
        self._start()

    # --- invariants ----------------------------------------------------------------------------

    @invariant()
    def acked_only_after_handled(self) -> None:
        acked, self._acked_this_step = self._acked_this_step, []
        self._require_handled(
            acked, "and it was neither handled, flagged nor dead-lettered by the end of the step"
        )
        assert not self.found.violations, self.found.violations[:5]

    @invariant()
    def no_settle_claimed_that_did_not_reach_the_broker(self) -> None:
        self._collect_terminal()
        acked = Counter(self.spy.ids("ack"))
        requeued_by: Counter[str] = Counter()
        claimed_requeues: Counter[str] = Counter()
        # Which lifetime sent which requeue: attribute by the lifetime's consume channels.
        for name, line in self._all_lines():
            context = line.get("context") or {}
            message = line["message"]
            mid = str(context.get("message_id"))
            if message == "Duplicate delivery acknowledged":
                assert acked[mid] >= 1, f"{name} logged an ack of duplicate {mid} never sent"
            elif message == "Anomaly flagged":
                # Claims the copy (confirmed before the line); the ack follows the line.
                assert self.found.flagged[mid] >= 1 or mid in {
                    m for _, k, m in self.spy.published if k == ANOMALY_QUEUE
                }, f"{name} logged {mid} flagged without a copy in books.anomalies"
            elif message == "Invalid message dead-lettered":
                assert self.found.dead_lettered[mid] >= 1 or mid in set(self.spy.ids("reject")) | {
                    m for e, _, m in self.spy.published if e == DLX
                }, f"{name} logged {mid} dead-lettered but the broker never got it"
            elif message == "Held batch requeued":
                claimed_requeues[name] += int(context.get("size", 0))
        requeued_by.update({"all": len(self.spy.ids("requeue"))})
        assert sum(claimed_requeues.values()) <= requeued_by["all"], (
            f"logs claim {sum(claimed_requeues.values())} requeues, {requeued_by['all']} were sent"
        )

    # --- teardown ------------------------------------------------------------------------------

    def teardown(self) -> None:
        try:
            self._final_accounting()
        finally:
            for live in [*self.live, *self.gone]:
                with contextlib.suppress(Exception):
                    live.broker.close()
            self.inspector.close()
            self._patch.__exit__(None, None, None)
            with contextlib.suppress(OSError):
                management("DELETE", f"/api/vhosts/{self.vhost}")

    def _final_accounting(self) -> None:
        # Every consumer goes away without acking anything more: what they held returns.
        for live in self.live:
            _drop_socket(live.broker)
        found = self.found
        handled = {
            str(line["context"].get("message_id"))
            for _, line in self._all_lines()
            if line["message"] == "Message consumed"
        }
        for _, line in self._all_lines():
            if line["message"] == "Message consumed":
                found.consumed[str(line["context"].get("message_id"))] += 1

        def accounted() -> set[str]:
            self._collect_terminal()
            self.spy.bypass = True
            try:
                for queue in MAIN_QUEUES:
                    for raw in self.inspector.drain(queue):
                        found.pending[str(raw.message_id)] += 1
            finally:
                self.spy.bypass = False
            known = handled | set(found.flagged) | set(found.dead_lettered) | set(found.pending)
            return set(found.confirmed) - known

        missing: set[str] = set()

        def all_accounted() -> bool:
            missing.clear()
            missing.update(accounted())
            return not missing

        with contextlib.suppress(AssertionError):
            # The broker requeues a dead connection's unacked messages asynchronously.
            wait_until(all_accounted, 5, "every confirmed id accounted for")
        duplicates = sum(n - 1 for n in found.consumed.values() if n > 1) + sum(
            1
            for _, line in self._all_lines()
            if line["message"] == "Duplicate delivery acknowledged"
        )
        print(
            "MODEL "
            + json.dumps(
                {
                    "published": len(found.confirmed),
                    "consumed": len(handled & set(found.confirmed)),
                    "flagged": len(set(found.flagged) & set(found.confirmed)),
                    "dead_lettered": len(set(found.dead_lettered) & set(found.confirmed)),
                    "pending": len(set(found.pending) & set(found.confirmed)),
                    "lost": len(missing),
                    "duplicates": duplicates,
                }
            )
        )
        assert not missing, (
            f"{len(missing)} confirmed messages lost: "
            f"{sorted((found.confirmed[m], m) for m in missing)[:8]}"
        )


def _run(max_examples: int, steps: int) -> None:
    run_state_machine_as_test(
        ConsumerModel,
        settings=settings(
            max_examples=max_examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            print_blob=True,
        ),
    )


@pytest.fixture
def rabbit() -> None:
    try:
        management("GET", "/api/overview")
    except (urllib.error.URLError, OSError):
        pytest.skip("RabbitMQ management API not reachable")
    return


def test_consumer_model_bounded(rabbit: None) -> None:
    """The default tier: a bounded run (about a minute on this machine)."""
    _run(max_examples=12, steps=25)


@pytest.mark.long_fault
def test_consumer_model_long(rabbit: None) -> None:
    _run(max_examples=40, steps=40)
