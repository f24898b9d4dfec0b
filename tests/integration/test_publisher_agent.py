"""The publisher agent on the real broker: confirmed, valid messages in the right queues, and a
decision fed by the broker's real queue depths whose intervals are clamped and applied."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from agents.core.metrics import MemorySink
from agents.core.settings import PublisherSettings, load_settings
from agents.messages import parse_book
from agents.publisher import Publisher
from agents.runtime import wire
from agents.testing import LogCapture, ScriptedClient, publisher_reply
from agents.testing.clock import FakeClock
from tests.support.rabbit import drain_queue

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def rig(rabbit_env: dict[str, str]) -> Iterator[dict[str, Any]]:
    settings = load_settings(
        PublisherSettings,
        publisher_id="publisher-2",
        min_publish_interval_seconds=0.5,
        max_publish_interval_seconds=120,
    )
    clock, out, sink, client = FakeClock(), LogCapture(), MemorySink(), ScriptedClient()
    wiring = wire(settings, clock=clock, stream=out, sink=sink, client=client)
    broker, metrics = wiring.broker, wiring.metrics
    broker.connect()
    publisher = Publisher(wiring)
    yield {
        "settings": settings,
        "clock": clock,
        "out": out,
        "sink": sink,
        "metrics": metrics,
        "client": client,
        "broker": broker,
        "publisher": publisher,
    }
    broker.close()


def published(rig: dict[str, Any], queue: str) -> int:
    """Confirmed publishes the metrics have counted so far (flushing the open interval)."""
    rig["metrics"].flush()
    points = rig["sink"].where("publish", queue=queue)
    return sum(int(p.fields["messages_published"]) for p in points)


def queued(settings: PublisherSettings, queue: str) -> list[bytes]:
    return [body for _, _, body in drain_queue(settings, queue)]


def test_confirmed_messages_land_valid_in_their_queues(rig: dict[str, Any]) -> None:
    publisher: Publisher = rig["publisher"]
    clock: FakeClock = rig["clock"]
    for _ in range(10):  # 10 simulated seconds: fictional at 0,5 and non-fictional at 0
        publisher.step()
        clock.advance(1.0)
    lines = rig["out"].events
    confirmed = {
        line["context"]["message_id"]: line["context"]["queue"]
        for line in lines
        if line["message"] == "Message published"
    }
    assert sorted(confirmed.values()) == ["fictional", "fictional", "non-fictional"]
    for queue in ("fictional", "non-fictional"):
        for body in queued(rig["settings"], queue):
            book = parse_book(body)
            assert book.genre == queue
            assert book.publisher_id == "publisher-2"
            assert confirmed.pop(str(book.message_id)) == queue
    assert confirmed == {}
    assert published(rig, "fictional") == 2 and published(rig, "non-fictional") == 1
    counted = [p.fields["publish_duration_ms_count"] for p in rig["sink"].where("publish")]
    assert sum(int(c) for c in counted) == 3


def test_decision_reads_real_depths_and_clamps_the_new_intervals(rig: dict[str, Any]) -> None:
    publisher: Publisher = rig["publisher"]
    client: ScriptedClient = rig["client"]
    for _ in range(3):
        publisher.publish_one("fictional")
    publisher.publish_one("non-fictional")
    client.script("publisher", publisher_reply("speed_up", 0.01, 5000))
    publisher.decide()
    (request,) = client.requests
    assert "fictional=3, non-fictional=1" in request.prompt
    assert publisher.intervals == {"fictional": 0.5, "non-fictional": 120.0}
    depth_points = rig["sink"].where("queue_depth", queue="fictional")
    assert [p.fields["queue_depth_at_decision"] for p in depth_points] == [3]
    (decision,) = rig["sink"].where("ai_decision")
    assert decision.fields["fictional_interval_s"] == 0.5
    # The new interval is in force: 0.5 s apart from here on.
    rig["broker"].process_events(0)
    before = published(rig, "fictional")
    clock: FakeClock = rig["clock"]
    for _ in range(4):
        clock.advance(0.5)
        publisher.step()
    assert published(rig, "fictional") - before == 4
