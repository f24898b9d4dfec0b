"""What `MemoryBroker` offers beyond the broker contract (tests/contract): `join`, the test
hooks, and the recordings unit tests assert on."""

from __future__ import annotations

import threading

import pytest

from agents.ports import Delivery
from agents.testing import MemoryBroker
from agents.vocab import DEAD_LETTER_QUEUE, FICTIONAL, NON_FICTIONAL, QUEUES


def ack(delivery: Delivery) -> None:
    delivery.ack()


def fill(broker: MemoryBroker, count: int, queue: str = FICTIONAL) -> None:
    for i in range(count):
        broker.publish(queue, b"{}", message_id=f"{queue}-{i}")


def holding(count: int, prefetch: int) -> tuple[MemoryBroker, list[Delivery]]:
    """A broker with `count` fictional messages, consumed by a handler that leaves each delivery
    unsettled in the returned list (the test settles them)."""
    broker = MemoryBroker()
    fill(broker, count)
    held: list[Delivery] = []
    broker.consume([FICTIONAL], held.append, prefetch=prefetch)
    return broker, held


def test_join_delivers_until_the_consumed_queues_are_drained() -> None:
    broker = MemoryBroker()
    fill(broker, 5)
    fill(broker, 3, NON_FICTIONAL)
    seen: list[Delivery] = []

    def on_message(delivery: Delivery) -> None:
        seen.append(delivery)
        delivery.ack()

    broker.consume(QUEUES, on_message, prefetch=2)

    broker.join()
    assert len(seen) == 8
    assert broker.queue_depths() == {FICTIONAL: 0, NON_FICTIONAL: 0}


def test_join_re_raises_a_handler_exception_at_once() -> None:
    broker = MemoryBroker()
    fill(broker, 3)
    calls: list[Delivery] = []

    def on_message(delivery: Delivery) -> None:
        calls.append(delivery)
        raise KeyError("missing field")

    broker.consume([FICTIONAL], on_message, prefetch=1)
    with pytest.raises(KeyError, match="missing field"):
        broker.join()
    assert len(calls) == 1  # fail fast: it stopped at the first failure
    assert calls[0].outcome == "requeue"  # after the broker's own handling


def test_join_without_fail_fast_lets_the_broker_dead_letter_the_poison() -> None:
    broker = MemoryBroker()
    fill(broker, 2)

    def on_message(delivery: Delivery) -> None:
        raise ValueError("boom")

    broker.consume([FICTIONAL], on_message, prefetch=1)
    broker.join(fail_fast=False)
    assert [type(e) for e in broker.errors] == [ValueError] * 4  # each tried twice
    assert [m.message_id for m in broker.messages(DEAD_LETTER_QUEUE)] == [
        "fictional-0",
        "fictional-1",
    ]


def test_join_times_out_naming_what_is_held() -> None:
    broker, _ = holding(3, prefetch=2)
    with pytest.raises(TimeoutError, match=r"'fictional': \{'ready': 1, 'unsettled': 2\}"):
        broker.join(timeout=0.05)


def test_join_returns_once_another_thread_has_settled_everything() -> None:
    broker, held = holding(2, prefetch=1)
    broker.process_events(0)
    done = threading.Event()

    def settle_as_they_come() -> None:  # the second arrives only after the first is acked
        acked = 0
        while acked < 2 and not done.is_set():
            if len(held) > acked:
                held[acked].ack()
                acked += 1
            else:
                done.wait(0.005)

    worker = threading.Thread(target=settle_as_they_come)
    worker.start()
    try:
        broker.join(timeout=10)  # raises TimeoutError if the other thread's acks never count
    finally:
        done.set()
        worker.join()
    assert [d.outcome for d in held] == ["ack", "ack"]


def test_join_on_one_queue_ignores_the_others() -> None:
    broker = MemoryBroker()
    fill(broker, 2, NON_FICTIONAL)
    broker.consume([FICTIONAL], ack, prefetch=1)
    broker.consume([NON_FICTIONAL], lambda d: None, prefetch=1)
    fill(broker, 2)
    broker.join(FICTIONAL)
    assert broker.queue_depths() == {FICTIONAL: 0, NON_FICTIONAL: 1}


def test_deliver_re_raises_after_the_broker_handled_the_failure() -> None:
    broker = MemoryBroker()

    def on_message(delivery: Delivery) -> None:
        raise RuntimeError("bug")

    broker.consume([FICTIONAL], on_message, prefetch=1)
    with pytest.raises(RuntimeError, match="bug"):
        broker.deliver(b"{}")
    assert broker.outcomes() == ["requeue"]
    assert broker.queue_depths() == {FICTIONAL: 1, NON_FICTIONAL: 0}


def test_pinned_depths_win_over_the_queues() -> None:
    broker = MemoryBroker(depths={FICTIONAL: 40})
    fill(broker, 2, NON_FICTIONAL)
    assert broker.queue_depths() == {FICTIONAL: 40, NON_FICTIONAL: 2}
    assert broker.depth_calls == 1


def test_settling_a_tag_twice_loses_the_channel_like_the_server() -> None:
    broker, held = holding(3, prefetch=5)
    broker.process_events(0)
    held[2].ack(multiple=True)  # settles tags 1-3 on the server ...
    held[0].ack()  # ... so this is tag 1 acked twice: 406, the channel closes
    assert broker.generation == 1
    broker.process_events(0)
    assert len(held) == 3  # nothing was unsettled: nothing comes back


def test_publishes_are_recorded_and_can_be_made_to_fail() -> None:
    broker = MemoryBroker()
    broker.publish(FICTIONAL, b"1", message_id="a", headers={"k": "v"})
    broker.fail_publish = True
    with pytest.raises(Exception, match="told to fail"):
        broker.publish(FICTIONAL, b"2", message_id="b")
    assert [(p.message_id, p.headers) for p in broker.published] == [("a", {"k": "v"})]
