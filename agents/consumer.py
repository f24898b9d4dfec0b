"""The consumer agent: competing consumer on the book queues, manual acks, AI on a sample.

One message's path, all in `handle` (the broker calls it from `process_events`):
validate -> drop if already processed -> maybe ask the AI (AI_DECISION_RATE of messages, the
engine's cost guard decides whether a call is actually made) -> apply the action:
- process: handle now, ack;
- batch:   hold unacked until BATCH_SIZE messages or BATCH_MAX_WAIT_SECONDS, then process all;
- flag:    WARNING, anomaly metric, copy to `books.anomalies`, ack;
- invalid: reject to the dead-letter queue with the reason, ERROR log, error metric.
A message is acked only after it has been handled (its "Message consumed" line written, or
its copy confirmed in `books.anomalies` / the dead-letter exchange), so a crash at any point
leaves it with the broker for redelivery: nothing is lost, at worst handled twice. Holding is
not handling: a held message is not remembered as handled, and when the channel it arrived on
dies it is dropped from the batch (the broker has it back and redelivers it). Every settle
reports whether it reached the broker; a log line never claims one that did not.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agents.core.logs import Level
from agents.core.metrics import ANOMALY, CONSUME
from agents.messages import BookMessage, InvalidMessage, parse_book
from agents.ports import BrokerError
from agents.runtime import (
    POLL_SECONDS,
    SHUTDOWN_BUDGET_SECONDS,
    Agent,
    Interrupted,
    StopFlag,
    Wiring,
    run_agent,
    serve,
)
from agents.vocab import ANOMALY_QUEUE, ORIGINAL_QUEUE_HEADER, Event

if TYPE_CHECKING:
    from agents.core.settings import ConsumerSettings
    from agents.ports import Delivery

DEPTH_MAX_AGE_SECONDS = 5.0
RECENT_IDS = 20_000


class RecentIds:
    """A bounded set of recently handled message ids (least recently seen evicted first)."""

    def __init__(self, capacity: int = RECENT_IDS) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, message_id: str) -> None:
        self._ids[message_id] = None
        self._ids.move_to_end(message_id)
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)


class AckWindow:
    """One consume channel's delivery tags, for cumulative acks that never over-reach.

    Tags of a channel are consecutive from 1. Every tag at or below `floor` is settled; above it,
    `settled` holds tags settled one by one (rejected, requeued, duplicates) and `ready` those
    handled whose line is written or about to be. A cumulative ack may cover a tag only if every
    tag from the floor up to it is ready or settled: a held (batched) or ignored tag is a gap.
    """

    __slots__ = ("channel_open", "floor", "ready", "settled")

    def __init__(self, channel_open: Callable[[], bool]) -> None:
        self.channel_open = channel_open
        self.floor = 0
        self.settled: set[int] = set()
        self.ready: dict[int, Delivery] = {}

    def contiguous_top(self) -> int:
        top = self.floor
        while (top + 1) in self.ready or (top + 1) in self.settled:
            top += 1
        return top

    def advance(self, top: int) -> None:
        self.floor = top
        self.settled = {tag for tag in self.settled if tag > top}


@dataclass
class Held:
    """A message accepted into the batch: still unacked, so the broker keeps it until flushed."""

    delivery: Delivery
    book: BookMessage
    message_id: str
    ai_used: bool
    received: float


@dataclass
class ConsumerStats:
    consumed: int = 0
    batched: int = 0
    flagged: int = 0
    rejected: int = 0
    duplicates: int = 0
    ai_asked: int = 0
    requeued: int = 0
    left_unacked: int = 0
    dropped_held: int = 0  # held or undispatched when their channel died: the broker has them
    settle_failed: int = 0  # ack/reject/requeue that could not reach the broker
    commits: int = 0
    ack_frames: int = 0  # ack frames sent for handled messages (one per commit when contiguous)
    by_action: dict[str, int] = field(default_factory=dict)


# Shown in the start-up line.
STARTUP_SETTINGS = ("queues", "ai_decision_rate", "batch_size", "batch_max_wait_seconds")


class Consumer(Agent["ConsumerSettings"]):
    def __init__(
        self, wiring: Wiring[ConsumerSettings], *, rng: random.Random | None = None
    ) -> None:
        """`rng` decides which messages are sampled for the AI (seeded by AI_SAMPLING_SEED)."""
        super().__init__(wiring)
        settings = self.settings
        self.rng = rng if rng is not None else random.Random(settings.ai_sampling_seed)
        self.queues: Sequence[str] = settings.queues
        self.batch: list[Held] = []
        self.batch_started: float | None = None
        self.recent = RecentIds()  # ids handled (line written): redeliveries are duplicates
        self._held_ids: dict[str, int] = {}  # id -> copies in the live batch
        # Group commit: lines of handled messages not yet written, their ids, and per channel
        # the tags to ack once the lines are written.
        self._lines: list[str] = []
        self._log_consumed = self.logger.enabled(Level.INFO)
        self._uncommitted = 0
        self._uncommitted_since = 0.0
        self._pending_ids: dict[str, None] = {}
        self._windows: dict[int, AckWindow] = {}
        self._deferred_duplicates: list[tuple[Delivery, str]] = []
        self._commit_every = settings.commit_every_messages
        self._commit_s = settings.commit_interval_ms / 1000.0
        self._arrivals = 0  # deliveries handed to `handle`, to see whether a pump brought any
        self.stats = ConsumerStats()
        self._depths: dict[str, int] = {}
        self._depths_at = -1e18
        self._rate = settings.ai_decision_rate
        self._work_s = settings.processing_time_ms / 1000.0
        self._stop: StopFlag | None = None

    # --- the per-message path --------------------------------------------------------------

    def handle(self, delivery: Delivery) -> None:
        """The broker's callback. Never raises: a failure here must not stop consumption."""
        started = time.perf_counter()
        self._arrivals += 1
        if self._stop is not None and self._stop.is_set():
            # Stopping: take no new work. Left unacked, the message returns to its queue when the
            # connection closes. (Requeueing it now could bounce it straight back to us, and
            # pika keeps dispatching within one process_events call for as long as messages come.)
            self.stats.left_unacked += 1
            return
        if not delivery.live:
            # pika still dispatches what it had buffered when the channel died: the broker has
            # those back already, so doing the work now would only delay the reconnect and
            # make a duplicate.
            self.stats.dropped_held += 1
            return
        try:
            self._handle(delivery, started)
        except Interrupted:
            raise
        except Exception as exc:
            # A bug or a dependency failing mid-message: the message goes to the dead-letter
            # queue with the reason rather than looping through redeliveries forever.
            self.logger.exception("Message handling failed", exc, queue=delivery.queue)
            self.metrics.error("handler_failed")
            if delivery.outcome is None and delivery.delivery_tag not in self._ready_tags(delivery):
                self._dead_letter(delivery, f"consumer error: {type(exc).__name__}")

    def _handle(self, delivery: Delivery, started: float) -> None:
        # A redelivery can only arrive after the channel of an earlier copy died: forget what
        # that channel held first, so the redelivery is held or processed like any message.
        self._drop_dead_held()
        try:
            book = parse_book(delivery.body, delivery.content_type)
        except InvalidMessage as exc:
            self._reject(delivery, exc.reason)
            return
        message_id = str(book.message_id)
        if message_id in self.recent or message_id in self._pending_ids:
            self._ack_duplicate(delivery, message_id)
            return
        if message_id in self._held_ids:
            # The same id twice in the live batch (published twice): hold this copy too; the
            # flush handles the first and acks the second as a duplicate.
            self._hold(Held(delivery, book, message_id, False, started))
            return

        ai_used = False
        action = "process"
        reasoning = ""
        if self._rate > 0 and self.rng.random() < self._rate:
            self.stats.ai_asked += 1
            # Here as well as in step(): under a backlog pika dispatches delivery after delivery
            # within one process_events call and step() does not run, exactly when depth matters.
            if self.clock.monotonic() - self._depths_at >= DEPTH_MAX_AGE_SECONDS:
                self._refresh_depths()
            decision = self.engine.decide_consumer(
                book.genre, book.priority, self._depths.get(delivery.queue, 0)
            )
            ai_used = decision.ai_used
            action = decision.action
            reasoning = decision.reasoning

        if action == "batch":
            self._hold(Held(delivery, book, message_id, ai_used, started))
        elif action == "flag":
            self._flag(delivery, book, message_id, ai_used, reasoning, started)
        else:
            self._work()
            self._done(delivery, message_id, "process", ai_used, started)

    def _work(self) -> None:
        """The book's actual handling; simulated (PROCESSING_TIME_MS) in this system."""
        if self._work_s:
            self.clock.sleep(self._work_s)

    def _ack_duplicate(self, delivery: Delivery, message_id: str) -> None:
        if message_id in self._pending_ids:
            # Its first copy's line is not written yet: ack this one at the commit, after it.
            self._ready(delivery)
            self._deferred_duplicates.append((delivery, message_id))
            return
        if delivery.ack():
            self._settled_alone(delivery)
            self._acked_duplicate(delivery, message_id)
        else:
            self._settle_lost(delivery, "ack", message_id)

    def _acked_duplicate(self, delivery: Delivery, message_id: str) -> None:
        self.stats.duplicates += 1
        self.logger.info(
            Event.DUPLICATE_ACKED,
            message_id=message_id,
            queue=delivery.queue,
            redelivered=delivery.redelivered,
        )

    def _done(
        self,
        delivery: Delivery,
        message_id: str,
        action: str,
        ai_used: bool,
        started: float,
        **extra: object,
    ) -> None:
        """The message is handled: buffer its line, fold its metric, ack it at the next commit.

        The commit writes the buffered lines first, so an acked message always has its line.
        The id is remembered (redeliveries of it are acked, not handled again) once its line
        is written, never while the message is merely held; if the ack then does not reach the
        broker, the broker redelivers the message and that copy is acked as a duplicate.
        """
        processing_ms = round((time.perf_counter() - started) * 1000.0, 3)
        self.stats.consumed += 1
        self.stats.by_action[action] = self.stats.by_action.get(action, 0) + 1
        queue = delivery.queue
        if self._log_consumed:
            self._lines.append(
                self.logger.render(
                    Level.INFO,
                    Event.MESSAGE_CONSUMED,
                    {
                        "message_id": message_id,
                        "queue": queue,
                        "ai_decision_used": ai_used,
                        "action": action,
                        "processing_ms": processing_ms,
                        **extra,
                    },
                )
            )
        self._pending_ids[message_id] = None
        self.metrics.count(CONSUME, "messages_consumed", 1, queue=queue, action=action)
        if ai_used:
            self.metrics.count(CONSUME, "ai_decisions_used", 1, queue=queue, action=action)
        self.metrics.observe(
            CONSUME, "processing_duration_ms", processing_ms, queue=queue, action=action
        )
        self._ready(delivery)

    # --- group commit -----------------------------------------------------------------------

    def _window(self, delivery: Delivery) -> AckWindow:
        window = self._windows.get(delivery.channel_id)
        if window is None:
            window = self._windows[delivery.channel_id] = AckWindow(delivery.channel_open)
        return window

    def _ready_tags(self, delivery: Delivery) -> dict[int, Delivery]:
        window = self._windows.get(delivery.channel_id)
        return window.ready if window is not None else {}

    def _ready(self, delivery: Delivery) -> None:
        """Ack `delivery` at the next commit (after the buffered lines are written)."""
        self._window(delivery).ready[delivery.delivery_tag] = delivery
        if not self._uncommitted:
            self._uncommitted_since = self.clock.monotonic()
        self._uncommitted += 1
        if self._uncommitted >= self._commit_every:
            self.commit()

    def _settled_alone(self, delivery: Delivery) -> None:
        """Settled by itself (reject, requeue, duplicate ack): cumulative acks may pass it."""
        if delivery.settled:
            self._window(delivery).settled.add(delivery.delivery_tag)

    def commit_due(self) -> bool:
        return bool(self._uncommitted) and (
            self.clock.monotonic() - self._uncommitted_since >= self._commit_s
        )

    def commit(self) -> None:
        """Write every buffered line in one write, then ack the messages they describe: one
        cumulative ack per channel up to the highest tag contiguous with what is settled
        (held, flagged-in-flight or dead-lettered tags are gaps it never covers), single acks
        for ready tags beyond a gap."""
        lines, self._lines = self._lines, []
        pending, self._pending_ids = self._pending_ids, {}
        self._uncommitted = 0
        if not self.logger.write_rendered(lines):
            # Nowhere to write (stdout closed): acking would leave messages without their line.
            # Left unacked, the broker redelivers them when the connection closes.
            for window in self._windows.values():
                window.ready.clear()
            self._deferred_duplicates.clear()
            return
        for message_id in pending:
            self.recent.add(message_id)
        self.stats.commits += 1
        lost = 0
        for key, window in list(self._windows.items()):
            if not window.channel_open():
                lost += len(window.ready)
                del self._windows[key]
                continue
            if not window.ready:
                continue
            top = window.contiguous_top()
            covered = sorted(tag for tag in window.ready if tag <= top)
            if covered:
                last = window.ready[covered[-1]]
                self.stats.ack_frames += 1
                if not last.ack(multiple=len(covered) > 1):
                    lost += len(window.ready)
                    del self._windows[key]
                    continue
                for tag in covered:
                    window.ready.pop(tag).covered_by_ack()
                window.advance(top)
            for tag in sorted(window.ready):
                self.stats.ack_frames += 1
                if window.ready.pop(tag).ack():
                    window.settled.add(tag)
                else:
                    lost += 1
        for delivery, message_id in self._deferred_duplicates:
            if delivery.settled:
                self._acked_duplicate(delivery, message_id)
        self._deferred_duplicates.clear()
        if lost:
            self.stats.settle_failed += lost
            self.logger.warning(
                Event.ACKS_NOT_DELIVERED,
                count=lost,
            )

    def _settle_lost(self, delivery: Delivery, outcome: str, message_id: str | None) -> None:
        """A settle that did not reach the broker: say so (never that it happened)."""
        self.stats.settle_failed += 1
        self.logger.warning(
            Event.SETTLE_NOT_DELIVERED,
            outcome=outcome,
            message_id=(message_id or "")[:64],
            queue=delivery.queue,
        )

    def _reject(self, delivery: Delivery, reason: str) -> None:
        self.metrics.error("invalid_message")
        if not delivery.reject(reason):
            self._settle_lost(delivery, "reject", delivery.message_id)
            return
        self._settled_alone(delivery)
        self.stats.rejected += 1
        self.logger.error(
            Event.DEAD_LETTERED,
            reason=reason,
            queue=delivery.queue,
            message_id=(delivery.message_id or "")[:64],
            body_bytes=len(delivery.body),
        )

    def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        if delivery.reject(reason):
            self._settled_alone(delivery)
            self.stats.rejected += 1
        else:
            self._settle_lost(delivery, "reject", delivery.message_id)

    def _flag(
        self,
        delivery: Delivery,
        book: BookMessage,
        message_id: str,
        ai_used: bool,
        reasoning: str,
        started: float,
    ) -> None:
        headers: dict[str, object] = {
            "x-flagged-by": self.settings.agent_id,
            "x-flag-reason": reasoning[:200],
            ORIGINAL_QUEUE_HEADER: delivery.queue,
        }
        try:
            self.broker.publish(
                ANOMALY_QUEUE, delivery.body, message_id=message_id, headers=headers
            )
        except BrokerError as exc:
            # Not copied, so not acked: the broker redelivers and the flag is tried again.
            self.metrics.error("anomaly_copy_failed")
            if delivery.requeue():
                self._settled_alone(delivery)
                self.stats.requeued += 1
                what = "requeued"
            else:
                self.stats.settle_failed += 1
                what = "left to the broker (channel closed), redelivered"
            self.logger.exception(
                f"Could not copy flagged message to {ANOMALY_QUEUE}; {what}",
                exc,
                message_id=message_id,
                queue=delivery.queue,
            )
            return
        # The copy is confirmed: the message is flagged, whatever happens to the ack below.
        self.stats.flagged += 1
        self.logger.warning(
            Event.ANOMALY_FLAGGED,
            message_id=message_id,
            queue=delivery.queue,
            genre=book.genre,
            priority=book.priority,
            reasoning=reasoning,
        )
        self.metrics.write(ANOMALY, {"anomaly_count": 1}, queue=delivery.queue)
        self._done(delivery, message_id, "flag", ai_used, started)

    # --- batching ---------------------------------------------------------------------------

    def _hold(self, held: Held) -> None:
        # Holding is not handling: the id is not remembered, the message stays unacked.
        if not self.batch:
            self.batch_started = self.clock.monotonic()
        self.batch.append(held)
        self._held_ids[held.message_id] = self._held_ids.get(held.message_id, 0) + 1
        if len(self.batch) >= self.settings.batch_size:
            self.flush_batch("size")

    def _release(self, held: Held) -> None:
        left = self._held_ids.get(held.message_id, 0) - 1
        if left > 0:
            self._held_ids[held.message_id] = left
        else:
            self._held_ids.pop(held.message_id, None)

    def _drop_dead_held(self) -> None:
        """Forget held messages whose channel died: the broker has them back and redelivers."""
        if not self.batch:
            return
        alive = [held for held in self.batch if held.delivery.live]
        dropped = len(self.batch) - len(alive)
        if not dropped:
            return
        for held in self.batch:
            if not held.delivery.live:
                self._release(held)
        self.batch = alive
        if not alive:
            self.batch_started = None
        self.stats.dropped_held += dropped
        self.logger.warning(
            Event.HELD_RETURNED,
            dropped=dropped,
            still_held=len(alive),
        )

    def batch_due_in(self) -> float | None:
        """Seconds until the held batch must be flushed by time (None: nothing held)."""
        if not self.batch or self.batch_started is None:
            return None
        elapsed = self.clock.monotonic() - self.batch_started
        return max(0.0, self.settings.batch_max_wait_seconds - elapsed)

    def flush_batch(self, why: str) -> None:
        self._drop_dead_held()
        batch, self.batch, self.batch_started = self.batch, [], None
        self._held_ids.clear()
        if not batch:
            return
        self.logger.info(Event.BATCH_FLUSHING, size=len(batch), trigger=why)
        for held in batch:
            if not held.delivery.live:
                # Its channel died during this flush: the broker redelivers it.
                self.stats.dropped_held += 1
                continue
            if held.message_id in self.recent or held.message_id in self._pending_ids:
                self._ack_duplicate(held.delivery, held.message_id)
                continue
            started = time.perf_counter()
            self._work()
            self.stats.batched += 1
            held_ms = round((started - held.received) * 1000.0, 3)
            self._done(
                held.delivery,
                held.message_id,
                "batch",
                held.ai_used,
                started,
                held_ms=held_ms,
            )

    def requeue_batch(self) -> None:
        self._drop_dead_held()
        batch, self.batch, self.batch_started = self.batch, [], None
        self._held_ids.clear()
        requeued = 0
        for held in batch:
            if held.delivery.requeue():
                self._settled_alone(held.delivery)
                requeued += 1
            else:
                self._settle_lost(held.delivery, "requeue", held.message_id)
        self.stats.requeued += requeued
        if batch:
            self.logger.warning(Event.BATCH_REQUEUED, size=requeued, held=len(batch))

    # --- the loop ------------------------------------------------------------------------------

    def step(self) -> None:
        """Housekeeping after a pump, before the next wait: drop held messages of dead channels,
        flush the batch by time, commit what is handled, refresh queue depths."""
        self._drop_dead_held()
        due = self.batch_due_in()
        if due is not None and due <= 0:
            self.flush_batch("time")
        if self._uncommitted or self._deferred_duplicates:
            self.commit()
        if self._rate > 0 and self.clock.monotonic() - self._depths_at >= DEPTH_MAX_AGE_SECONDS:
            self._refresh_depths()

    def pump(self, wait: float) -> None:
        """One turn of the loop. With handled messages not yet committed, take whatever else
        has already arrived without waiting, and commit once nothing more is there (or K
        messages / T ms say so) - always before blocking on the broker again."""
        if self._uncommitted:
            arrivals = self._arrivals
            self.broker.process_events(0.0)
            if self._arrivals != arrivals and not self.commit_due():
                return  # more came in: keep taking them, the commit follows
        else:
            due = self.batch_due_in()
            wait = wait if due is None else min(wait, max(due, 0.0))
            self.broker.process_events(wait, until=self._has_uncommitted)
            if self._uncommitted and not self.commit_due():
                return  # a delivery ended the wait: see whether more follow at once
        self.step()

    def _has_uncommitted(self) -> bool:
        return self._uncommitted > 0

    def _refresh_depths(self) -> None:
        self._depths_at = self.clock.monotonic()
        try:
            self._depths = self.broker.queue_depths(self.queues)
        except BrokerError as exc:
            self.logger.warning(Event.QUEUE_DEPTH_UNAVAILABLE, error=str(exc)[:200])

    def start(self) -> None:
        self.broker.consume(self.queues, self.handle, self.settings.prefetch_count)

    def run(self, stop: StopFlag) -> None:
        self._stop = stop
        self.start()
        try:
            serve(self._turn, self.broker, self.clock, stop)
        finally:
            self.shutdown()

    def _turn(self) -> float:
        # Deliveries, not timers, end a consumer's waits: `pump` waits inside the broker itself
        # and leaves serve() nothing further to wait for.
        self.pump(POLL_SECONDS)
        return 0.0

    def shutdown(self) -> None:
        """Commit what is handled, then finish what is held: process the batch if there is
        time, else give it back."""
        self.commit()
        if self.batch:
            estimated = len(self.batch) * self._work_s
            if estimated < SHUTDOWN_BUDGET_SECONDS / 2:
                self.flush_batch("shutdown")
            else:
                self.requeue_batch()
        self.commit()
        self.logger.info(
            Event.CONSUMER_STOPPING,
            consumed=self.stats.consumed,
            batched=self.stats.batched,
            flagged=self.stats.flagged,
            dead_lettered=self.stats.rejected,
            duplicates=self.stats.duplicates,
            ai_sampled=self.stats.ai_asked,
            returned_to_queue=self.stats.left_unacked + self.stats.requeued,
            returned_by_broker=self.stats.dropped_held,
            settles_not_delivered=self.stats.settle_failed,
        )


def main(settings: ConsumerSettings) -> int:
    return run_agent(settings, Consumer, STARTUP_SETTINGS)
