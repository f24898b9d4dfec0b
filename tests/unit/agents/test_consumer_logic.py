"""The consumer's per-message path with the real engine around a scripted model, an in-memory
broker and a FakeClock: actions, batching by size and time, flags, dead-lettering, sampling."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from agents.consumer import Consumer
from agents.core.settings import ConsumerSettings
from agents.messages import Catalogue, Genre
from agents.testing import consumer_reply
from agents.vocab import ANOMALY_QUEUE
from tests.support.rig import Rig

CATALOGUE = Catalogue.load()
RNG = random.Random(5)


def body(genre: Genre = "fictional") -> bytes:
    return CATALOGUE.make(genre, "publisher-1", RNG, datetime.now(UTC)).to_json()


def consumer_for(make_rig: Callable[..., Rig], **overrides: object) -> tuple[Rig, Consumer]:
    # One message per commit unless a test is about group commit: each delivery settles at once.
    settings = {
        "ai_call_interval_seconds": 1,
        "ai_decision_rate": 0.0,
        "commit_every_messages": 1,
        **overrides,
    }
    rig = make_rig(ConsumerSettings, **settings)
    consumer = Consumer(rig.wiring)
    consumer.start()
    return rig, consumer


def test_a_valid_message_is_processed_acked_and_logged_in_the_spec_shape(
    make_rig: Callable[..., Rig],
) -> None:
    rig, consumer = consumer_for(make_rig)
    assert rig.broker.consuming == ("fictional", "non-fictional")
    delivery = rig.broker.deliver(body("non-fictional"), queue="non-fictional")
    assert delivery.outcome == "ack"
    (line,) = rig.lines("Message consumed")
    assert line["level"] == "INFO"
    assert line["agent_id"] == "consumer-1"
    assert set(line["context"]) == {
        "message_id",
        "queue",
        "ai_decision_used",
        "action",
        "processing_ms",
    }
    assert line["context"]["queue"] == "non-fictional"
    assert line["context"]["ai_decision_used"] is False
    assert line["context"]["action"] == "process"
    rig.metrics.flush()  # consume counts are aggregated per interval
    (point,) = rig.sink.where("consume", queue="non-fictional", action="process")
    assert point.fields["messages_consumed"] == 1
    assert consumer.stats.consumed == 1


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b"not json at all", "application/json"),
        (b'{"genre": "fictional"}', "application/json"),
        (b"\xff" * 100, "application/json"),
        (b"{}" * 3000, "application/json"),
        (b'{"ok": 1}', "text/plain"),
    ],
)
def test_an_invalid_message_is_dead_lettered_with_a_reason(
    make_rig: Callable[..., Rig], raw: bytes, content_type: str
) -> None:
    rig, consumer = consumer_for(make_rig, ai_decision_rate=1.0)
    delivery = rig.broker.deliver(raw, content_type=content_type)
    assert delivery.outcome == "reject"
    ((_outcome, reason, _),) = rig.broker.settled
    assert reason
    (line,) = rig.lines("Invalid message dead-lettered", level="ERROR")
    assert line["context"]["reason"] == reason
    assert rig.sink.where("errors", kind="invalid_message")
    assert not rig.lines("Message consumed")
    assert not rig.client.requests, "an invalid message must never reach a prompt"
    assert consumer.stats.rejected == 1


def test_batch_is_held_unacked_and_flushed_when_full(make_rig: Callable[..., Rig]) -> None:
    rig, consumer = consumer_for(
        make_rig, ai_decision_rate=1.0, batch_size=3, batch_max_wait_seconds=60
    )
    rig.client.script("consumer", *[consumer_reply("batch")] * 3)
    held = []
    for _ in range(2):
        rig.clock.advance(1.01)  # past the engine's one-call-per-second guard
        held.append(rig.broker.deliver(body()))
    assert [d.outcome for d in held] == [None, None]
    assert len(consumer.batch) == 2
    rig.clock.advance(1.01)
    held.append(rig.broker.deliver(body()))
    assert [d.outcome for d in held] == ["ack"] * 3
    assert consumer.batch == []
    lines = rig.lines("Message consumed")
    assert [line["context"]["action"] for line in lines] == ["batch"] * 3
    assert all(line["context"]["ai_decision_used"] for line in lines)
    assert rig.lines("Flushing batch")[0]["context"]["trigger"] == "size"


def test_batch_is_flushed_when_the_oldest_has_waited_long_enough(
    make_rig: Callable[..., Rig],
) -> None:
    rig, consumer = consumer_for(
        make_rig, ai_decision_rate=1.0, batch_size=10, batch_max_wait_seconds=5
    )
    rig.client.script("consumer", consumer_reply("batch"), consumer_reply("batch"))
    rig.clock.advance(1.01)
    first = rig.broker.deliver(body())
    rig.clock.advance(1.01)
    second = rig.broker.deliver(body())
    rig.clock.advance(3.9)  # 4.91 s since the first was held
    consumer.step()
    assert (first.outcome, second.outcome) == (None, None)
    assert consumer.batch_due_in() == pytest.approx(0.09)
    rig.clock.advance(0.1)
    consumer.step()
    assert (first.outcome, second.outcome) == ("ack", "ack")
    assert rig.lines("Flushing batch")[0]["context"]["trigger"] == "time"
    assert consumer.batch_due_in() is None


def test_flag_copies_to_the_anomaly_queue_warns_counts_and_acks(
    make_rig: Callable[..., Rig],
) -> None:
    rig, _consumer = consumer_for(make_rig, ai_decision_rate=1.0)
    rig.client.script("consumer", consumer_reply("flag"))
    raw = body("non-fictional")
    delivery = rig.broker.deliver(raw, queue="non-fictional")
    assert delivery.outcome == "ack"
    (copy,) = rig.broker.published
    assert (copy.routing_key, copy.body) == (ANOMALY_QUEUE, raw)
    assert copy.headers is not None
    assert copy.headers["x-original-queue"] == "non-fictional"
    (warning,) = rig.lines("Anomaly flagged", level="WARNING")
    assert warning["context"]["reasoning"] == "scripted flag"
    assert rig.sink.where("anomaly", queue="non-fictional")
    assert rig.lines("Message consumed")[0]["context"]["action"] == "flag"


def test_a_flag_whose_copy_fails_is_requeued_not_acked(make_rig: Callable[..., Rig]) -> None:
    rig, _consumer = consumer_for(make_rig, ai_decision_rate=1.0)
    rig.client.script("consumer", consumer_reply("flag"))
    rig.broker.fail_publish = True
    delivery = rig.broker.deliver(body())
    assert delivery.outcome == "requeue"
    assert not rig.lines("Message consumed")
    assert rig.sink.where("errors", kind="anomaly_copy_failed")
    # The redelivery is handled again, not dropped as a duplicate.
    rig.broker.fail_publish = False
    again = rig.broker.deliver(delivery.body, redelivered=True)
    assert again.outcome == "ack"


def test_a_redelivered_message_is_not_processed_twice(make_rig: Callable[..., Rig]) -> None:
    rig, consumer = consumer_for(make_rig)
    raw = body()
    rig.broker.deliver(raw)
    duplicate = rig.broker.deliver(raw, redelivered=True)
    assert duplicate.outcome == "ack"
    assert consumer.stats.consumed == 1
    assert consumer.stats.duplicates == 1
    assert len(rig.lines("Message consumed")) == 1


def test_the_recent_ids_memory_is_bounded() -> None:
    from agents.consumer import RecentIds

    recent = RecentIds(capacity=3)
    for n in range(5):
        recent.add(str(n))
    assert len(recent) == 3
    assert "0" not in recent
    assert "4" in recent


def test_shutdown_processes_the_held_batch(make_rig: Callable[..., Rig]) -> None:
    rig, consumer = consumer_for(
        make_rig, ai_decision_rate=1.0, batch_size=10, batch_max_wait_seconds=60
    )
    rig.client.script("consumer", consumer_reply("batch"))
    rig.clock.advance(1.01)
    held = rig.broker.deliver(body())
    assert held.outcome is None
    consumer.shutdown()
    assert held.outcome == "ack"
    assert rig.lines("Flushing batch")[0]["context"]["trigger"] == "shutdown"


def test_a_failure_inside_handling_dead_letters_the_message(
    make_rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    rig, consumer = consumer_for(make_rig)

    def broken() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(consumer, "_work", broken)
    delivery = rig.broker.deliver(body())
    assert delivery.outcome == "reject"
    assert rig.lines("Message handling failed", level="ERROR")


def test_the_engine_sees_the_queue_depth_sampled_from_the_broker(
    make_rig: Callable[..., Rig],
) -> None:
    rig, consumer = consumer_for(make_rig, ai_decision_rate=1.0)
    rig.broker.depths = {"fictional": 42, "non-fictional": 7}
    consumer.step()
    rig.broker.deliver(body())
    (request,) = rig.client.requests
    assert "queue_depth=42" in request.prompt
    assert "genre=fictional" in request.prompt


def test_a_backlog_read_between_deliveries_reaches_the_engine_without_a_step(
    make_rig: Callable[..., Rig],
) -> None:
    """Under a backlog pika dispatches delivery after delivery inside one process_events call,
    so step() does not run: the depth the AI sees must still be refreshed (it was stuck at the
    value from before the backlog, so a deep queue never got "batch")."""
    rig, consumer = consumer_for(make_rig, ai_decision_rate=1.0)
    consumer.step()
    rig.broker.deliver(body())
    rig.broker.depths = {"fictional": 800, "non-fictional": 7}
    rig.clock.advance(6)
    rig.broker.deliver(body())
    assert [r.prompt.split("queue_depth=")[1].split(".")[0] for r in rig.client.requests] == [
        "0",
        "800",
    ]


@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_sampling_rate_is_respected_with_a_seeded_rng(
    make_rig: Callable[..., Rig], rate: float
) -> None:
    n = 3000
    rig, consumer = consumer_for(make_rig, ai_decision_rate=rate, ai_sampling_seed=1234)
    for _ in range(n):
        rig.broker.deliver(body())
    asked = consumer.stats.ai_asked
    sigma = math.sqrt(n * rate * (1 - rate))
    assert abs(asked - n * rate) < 4 * sigma
    # Every sampled message went to the engine (one AI_DECISION point each); the guard let
    # only the first through in this frozen second and the rest fell back to "process".
    assert len(rig.sink.where("ai_decision")) == asked
    assert len(rig.client.requests) == 1
    assert consumer.stats.consumed == n

    # The same seed samples exactly the same messages.
    rig2, again = consumer_for(make_rig, ai_decision_rate=rate, ai_sampling_seed=1234)
    for _ in range(n):
        rig2.broker.deliver(body())
    assert again.stats.ai_asked == asked


def test_rate_zero_never_asks_and_rate_one_always_asks(make_rig: Callable[..., Rig]) -> None:
    rig, none = consumer_for(make_rig, ai_decision_rate=0.0)
    for _ in range(200):
        rig.broker.deliver(body())
    assert none.stats.ai_asked == 0
    rig, every = consumer_for(make_rig, ai_decision_rate=1.0)
    for _ in range(200):
        rig.broker.deliver(body())
    assert every.stats.ai_asked == 200


def test_message_ids_in_logs_are_the_body_ids(make_rig: Callable[..., Rig]) -> None:
    rig, _ = consumer_for(make_rig)
    raw = body()
    rig.broker.deliver(raw, message_id="something-else")
    logged = rig.lines("Message consumed")[0]["context"]["message_id"]
    assert uuid.UUID(logged).bytes
    assert logged.encode() in raw


# --- settling when the channel is gone (issue 11) ---------------------------------------------


def held_consumer(make_rig: Callable[..., Rig], n: int) -> tuple[Rig, Consumer, list[Any]]:
    rig, consumer = consumer_for(
        make_rig, ai_decision_rate=1.0, batch_size=50, batch_max_wait_seconds=60
    )
    rig.client.script("consumer", *[consumer_reply("batch")] * n)
    held = []
    for _ in range(n):
        rig.clock.advance(1.01)
        held.append(rig.broker.deliver(body()))
    assert len(consumer.batch) == n
    return rig, consumer, held


def test_a_redelivery_of_a_held_message_after_its_channel_died_is_held_not_acked(
    make_rig: Callable[..., Rig],
) -> None:
    """The batch-loss defect: holding is not handling, so a redelivery is never a duplicate."""
    rig, consumer, held = held_consumer(make_rig, 3)
    rig.broker.lose_channel()  # the broker takes the three back and redelivers them
    rig.client.script("consumer", *[consumer_reply("batch")] * 3)
    again = []
    for original in held:
        rig.clock.advance(1.01)
        again.append(rig.broker.deliver(original.body, redelivered=True))
    assert not rig.lines("Duplicate delivery acknowledged")
    assert [d.outcome for d in again] == [None] * 3
    assert [h.delivery for h in consumer.batch] == again  # the dead entries were dropped
    (dropped,) = rig.lines("Held messages returned to the broker: their channel closed")
    assert dropped["context"]["dropped"] == 3
    consumer.flush_batch("size")
    assert [d.outcome for d in again] == ["ack"] * 3
    assert len(rig.lines("Message consumed")) == 3
    assert [o for o, _ in rig.broker.failed_settles] == []


def test_a_batch_requeued_after_its_channel_died_claims_no_requeue(
    make_rig: Callable[..., Rig],
) -> None:
    rig, consumer, held = held_consumer(make_rig, 4)
    rig.broker.lose_channel()
    consumer.requeue_batch()
    assert [d.outcome for d in held] == [None] * 4  # nothing was sent: the tags are dead
    assert not rig.lines("Held batch requeued")
    assert consumer.stats.requeued == 0
    assert consumer.stats.dropped_held == 4


def test_a_delivery_whose_channel_already_died_is_not_worked_on(
    make_rig: Callable[..., Rig],
) -> None:
    """pika still dispatches what it had buffered when the channel died: skip it."""
    rig, consumer = consumer_for(make_rig)
    delivery = rig.broker.delivery(body())
    rig.broker.lose_channel()
    consumer.handle(delivery)
    assert delivery.outcome is None
    assert not rig.lines("Message consumed")
    assert consumer.stats.dropped_held == 1


def test_an_ack_that_cannot_reach_the_broker_is_not_logged_as_done(
    make_rig: Callable[..., Rig],
) -> None:
    rig, consumer = consumer_for(make_rig)
    raw = body()
    delivery = rig.broker.delivery(raw)
    # The channel dies while the message is being handled: open at the start, gone at the ack.
    delivery.settler = lambda d, outcome, reason: False
    consumer.handle(delivery)
    assert delivery.settled is False
    assert len(rig.lines("Message consumed")) == 1  # handled: the line comes before the ack
    (warning,) = rig.lines("Acks not delivered: channel closed, the broker redelivers the messages")
    assert warning["context"]["count"] == 1
    # The broker's redelivery is acknowledged as a duplicate, not handled again.
    redelivered = rig.broker.deliver(raw, redelivered=True)
    assert redelivered.outcome == "ack" and redelivered.settled
    assert len(rig.lines("Duplicate delivery acknowledged")) == 1
    assert len(rig.lines("Message consumed")) == 1


def test_an_invalid_message_whose_reject_fails_is_not_logged_dead_lettered(
    make_rig: Callable[..., Rig],
) -> None:
    rig, consumer = consumer_for(make_rig)
    delivery = rig.broker.delivery(b"not json")
    delivery.settler = lambda d, outcome, reason: False
    consumer.handle(delivery)
    assert delivery.outcome == "reject" and not delivery.settled
    assert not rig.lines("Invalid message dead-lettered")
    assert consumer.stats.rejected == 0


# --- group commit (issue 13) --------------------------------------------------------------------


def test_lines_are_written_in_one_write_before_one_cumulative_ack(
    make_rig: Callable[..., Rig],
) -> None:
    rig, consumer = consumer_for(make_rig, commit_every_messages=5)
    deliveries = [rig.broker.deliver(body()) for _ in range(4)]
    assert [d.outcome for d in deliveries] == [None] * 4  # handled, not yet committed
    assert not rig.lines("Message consumed")  # nor written
    deliveries.append(rig.broker.deliver(body()))  # the 5th: commit point
    assert [d.outcome for d in deliveries] == ["ack"] * 5
    assert len(rig.lines("Message consumed")) == 5
    assert rig.broker.settle_frames == 1  # one ack frame, multiple=True up to tag 5
    assert consumer.stats.commits == 1


def test_a_commit_never_acks_a_held_tag_by_accident(make_rig: Callable[..., Rig]) -> None:
    """Tags 1 process, 2 held for a batch, 3 invalid (dead-lettered alone), 4-5 process: the
    cumulative ack stops at 1; 4 and 5 are acked one by one; 2 stays unacked until flushed."""
    rig, consumer = consumer_for(
        make_rig,
        commit_every_messages=100,
        ai_decision_rate=1.0,
        batch_size=10,
        batch_max_wait_seconds=60,
    )
    rig.client.script("consumer", consumer_reply("process"), consumer_reply("batch"))
    rig.clock.advance(1.01)
    first = rig.broker.deliver(body())
    rig.clock.advance(1.01)
    held = rig.broker.deliver(body())
    invalid = rig.broker.deliver(b"{not json")
    rig.clock.advance(1.01)
    rig.client.script("consumer", consumer_reply("process"), consumer_reply("process"))
    rest = [rig.broker.deliver(body()) for _ in range(2)]
    for _ in rest:
        rig.clock.advance(1.01)
    assert invalid.outcome == "reject"
    consumer.commit()
    assert first.outcome == "ack" and [d.outcome for d in rest] == ["ack", "ack"]
    assert held.outcome is None, "the held message was acked by a cumulative ack"
    acked_tags = [d.delivery_tag for outcome, _, d in rig.broker.settled if outcome == "ack"]
    assert held.delivery_tag not in acked_tags
    consumer.flush_batch("time")
    consumer.commit()
    assert held.outcome == "ack"


def test_a_commit_is_due_after_the_interval(make_rig: Callable[..., Rig]) -> None:
    rig, consumer = consumer_for(make_rig, commit_every_messages=100, commit_interval_ms=20)
    delivery = rig.broker.deliver(body())
    assert not consumer.commit_due()
    rig.clock.advance(0.021)
    assert consumer.commit_due()
    consumer.step()
    assert delivery.outcome == "ack"


def test_a_duplicate_of_an_uncommitted_message_is_acked_only_after_its_line(
    make_rig: Callable[..., Rig],
) -> None:
    rig, consumer = consumer_for(make_rig, commit_every_messages=100)
    raw = body()
    first = rig.broker.deliver(raw)
    again = rig.broker.deliver(raw)  # published twice: same id, line not written yet
    assert (first.outcome, again.outcome) == (None, None)
    consumer.commit()
    assert (first.outcome, again.outcome) == ("ack", "ack")
    assert len(rig.lines("Message consumed")) == 1
    assert len(rig.lines("Duplicate delivery acknowledged")) == 1


def test_an_unwritable_log_means_no_ack(make_rig: Callable[..., Rig]) -> None:
    rig, consumer = consumer_for(make_rig, commit_every_messages=100)
    delivery = rig.broker.deliver(body())
    rig.out.close()  # stdout gone
    consumer.commit()
    assert delivery.outcome is None  # left with the broker: no ack without its line
