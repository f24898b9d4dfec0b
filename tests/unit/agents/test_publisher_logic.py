"""The publisher's timers and decisions with a FakeClock, the real engine around a scripted
model, and an in-memory broker."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from agents.core.settings import PublisherSettings
from agents.messages import parse_book
from agents.ports import MetricsReadError
from agents.publisher import Publisher
from agents.testing import publisher_reply
from tests.support.rig import Rig


class StubReader:
    def __init__(self, depths: dict[str, float] | None = None, fail: bool = False) -> None:
        self.depths = depths or {}
        self.fail = fail
        self.asked: list[tuple[str, str, datetime, str | None]] = []

    def last_field(
        self, measurement: str, field: str, since: datetime, group_by: str | None = None
    ) -> dict[str, float]:
        self.asked.append((measurement, field, since, group_by))
        if self.fail:
            raise MetricsReadError("InfluxDB query failed: connection refused")
        return dict(self.depths)

    def sum_field(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        raise NotImplementedError

    def count(self, *args: Any, **kwargs: Any) -> dict[str, int]:
        raise NotImplementedError


def publisher_for(
    make_rig: Callable[..., Rig], reader: StubReader | None = None, **overrides: object
) -> tuple[Rig, Publisher]:
    rig = make_rig(PublisherSettings, **overrides)
    publisher = Publisher(rig.wiring, reader=reader)
    return rig, publisher


def test_publishes_valid_books_on_both_timers(make_rig: Callable[..., Rig]) -> None:
    rig, publisher = publisher_for(make_rig, decision_interval_seconds=3600)
    for _ in range(30):  # 30 s of simulated time in 1 s steps
        publisher.step()
        rig.clock.advance(1.0)
    keys = [p.routing_key for p in rig.broker.published]
    # Due at 0, 5, ..., 25 and at 0, 10, 20: the default 5 s / 10 s intervals.
    assert keys.count("fictional") == 6
    assert keys.count("non-fictional") == 3
    for item in rig.broker.published:
        book = parse_book(item.body)
        assert book.genre == item.routing_key
        assert book.publisher_id == "publisher-1"
        assert str(book.message_id) == item.message_id
    rig.metrics.flush()
    for queue, expected in (("fictional", 6), ("non-fictional", 3)):
        points = rig.sink.where("publish", queue=queue)
        # One aggregate per 1 s interval that had a publish, counts adding up to the publishes.
        assert len(points) == expected
        assert sum(int(p.fields["messages_published"]) for p in points) == expected
        assert sum(int(p.fields["publish_duration_ms_count"]) for p in points) == expected
    (line, *_) = rig.lines("Message published")
    assert set(line["context"]) >= {"message_id", "queue", "duration_ms"}


def test_step_returns_the_wait_until_the_next_publish(make_rig: Callable[..., Rig]) -> None:
    rig, publisher = publisher_for(make_rig, decision_interval_seconds=3600)
    assert publisher.step() == pytest.approx(5.0)
    rig.clock.advance(2.0)
    assert publisher.step() == pytest.approx(3.0)


def test_a_failed_publish_is_counted_not_reported_as_published(
    make_rig: Callable[..., Rig],
) -> None:
    rig, publisher = publisher_for(make_rig)
    rig.broker.fail_publish = True
    assert publisher.publish_one("fictional") is None
    assert publisher.failed == 1
    assert not rig.sink.where("publish")
    assert rig.sink.where("errors", kind="publish_failed")
    assert rig.lines("Publish failed; message not confirmed", level="ERROR")


def test_a_decision_changes_the_intervals_and_they_are_applied(
    make_rig: Callable[..., Rig],
) -> None:
    rig, publisher = publisher_for(make_rig, decision_interval_seconds=60)
    rig.client.script("publisher", publisher_reply("speed_up", 2.0, 4.0))
    rig.broker.depths = {"fictional": 3, "non-fictional": 1}
    publisher.step()  # publishes both at t=0
    rig.clock.advance(60.0)
    rig.broker.published.clear()
    publisher.step()  # publishes, then decides
    assert publisher.intervals == {"fictional": 2.0, "non-fictional": 4.0}
    (request,) = rig.client.requests
    assert "fictional=3, non-fictional=1" in request.prompt
    assert "Current: fictional=5s, non-fictional=10s" in request.prompt
    for genre, depth in (("fictional", 3), ("non-fictional", 1)):
        (point,) = rig.sink.where("queue_depth", queue=genre)
        assert point.fields == {"queue_depth_at_decision": depth}
    assert rig.lines("AI decision", level="AI_DECISION")
    assert rig.lines("Publishing intervals changed")
    rig.broker.published.clear()
    for _ in range(8):
        rig.clock.advance(1.0)
        publisher.step()
    keys = [p.routing_key for p in rig.broker.published]
    assert keys.count("fictional") == 4
    assert keys.count("non-fictional") == 2


@pytest.mark.parametrize(
    ("fictional", "nonfictional", "expected"),
    [
        (0.001, 1e9, (1.0, 300.0)),
        (-5, 0, (1.0, 1.0)),
        ("NaN", 7.5, (5.0, 7.5)),
    ],
)
def test_intervals_from_the_model_are_clamped(
    make_rig: Callable[..., Rig],
    fictional: object,
    nonfictional: object,
    expected: tuple[float, float],
) -> None:
    rig, publisher = publisher_for(make_rig)
    rig.client.script("publisher", publisher_reply("slow_down", fictional, nonfictional))  # type: ignore[arg-type]
    publisher.decide()
    assert (publisher.intervals["fictional"], publisher.intervals["non-fictional"]) == expected


def test_depths_come_from_the_metrics_store_when_recent(make_rig: Callable[..., Rig]) -> None:
    reader = StubReader({"fictional": 12.0, "non-fictional": 30.0})
    rig, publisher = publisher_for(make_rig, reader=reader)
    rig.broker.depths = {"fictional": 999, "non-fictional": 999}
    assert publisher.queue_depths() == ({"fictional": 12, "non-fictional": 30}, "metrics")
    assert rig.broker.depth_calls == 0
    measurement, field, since, group = reader.asked[0]
    assert (measurement, field, group) == ("queue_depth", "queue_depth", "queue")
    assert (rig.clock.now() - since).total_seconds() == pytest.approx(60.0)


@pytest.mark.parametrize(
    "reader",
    [StubReader({}), StubReader({"fictional": 1.0}), StubReader(fail=True), None],
    ids=["no-points", "one-queue-only", "store-down", "no-reader"],
)
def test_depths_fall_back_to_the_broker(
    make_rig: Callable[..., Rig], reader: StubReader | None
) -> None:
    rig, publisher = publisher_for(make_rig, reader=reader)
    rig.broker.depths = {"fictional": 4, "non-fictional": 5}
    assert publisher.queue_depths() == ({"fictional": 4, "non-fictional": 5}, "broker")


def test_continue_keeps_the_intervals_whatever_numbers_come_with_it(
    make_rig: Callable[..., Rig],
) -> None:
    rig, publisher = publisher_for(make_rig)
    rig.client.script("publisher", publisher_reply("continue", 30.0, 60.0))
    publisher.decide()
    assert publisher.intervals == {"fictional": 5.0, "non-fictional": 10.0}
    assert not rig.lines("Publishing intervals changed")


def test_decisions_on_schedule_are_never_refused_by_the_rate_limiter(
    make_rig: Callable[..., Rig],
) -> None:
    # Publishing takes time (a confirm round trip) before the decision in the same step, so a
    # schedule counted from the step's start came back just before the guard's interval ended.
    rig, publisher = publisher_for(make_rig)
    rig.slow("publish", seed=7)
    rig.drive(publisher.step, 10 * 60 + 1)
    decisions = rig.sink.where("ai_decision")
    assert len(decisions) == 10
    assert [p.tags.get("fallback") for p in decisions] == [None] * 10
