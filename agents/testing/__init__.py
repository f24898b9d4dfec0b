"""Test doubles for driving agents in-process: a scripted model client and an in-memory broker.

The scripted client stands in for the model where a test needs a *specific* answer (batch,
flag, a new interval, critical) that dry-run mode never gives; it plugs into the real
DecisionEngine through `build_engine(..., client=...)`, so guard, parsing and clamping are the
real ones. Integration tests use the real broker: `MemoryBroker` is for unit tests and
in-process measurements of the handling paths.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from agents.ports import Delivery, PublishError
from agents.vocab import QUEUES


@dataclass
class Published:
    routing_key: str
    body: bytes
    message_id: str
    exchange: str
    headers: dict[str, object] | None


class MemoryBroker:
    """Records publishes and settlements; `deliver` hands a body to the registered consumer.

    Settling follows the real broker's contract: a delivery belongs to the channel generation
    it arrived on; after `lose_channel()` its settle calls return False and record nothing (the
    broker has taken it back), exactly as `RabbitBroker` does for a dead channel.
    """

    def __init__(self, depths: dict[str, int] | None = None) -> None:
        self.depths = dict(depths or dict.fromkeys(QUEUES, 0))
        self.published: list[Published] = []
        self.settled: list[tuple[str, str | None, Delivery]] = []
        self.on_message: Callable[[Delivery], None] | None = None
        self.consuming: Sequence[str] = ()
        self.prefetch = 0
        self.fail_publish = False
        self.depth_calls = 0
        self.closed = False
        self.generation = 0  # bumped by lose_channel(): older deliveries cannot be settled
        self.failed_settles: list[tuple[str, Delivery]] = []
        self.settle_frames = 0  # ack/nack/reject frames sent (a cumulative ack is one)
        self._unsettled: dict[int, Delivery] = {}  # this channel's deliveries by tag
        self._tag = 0

    def lose_channel(self) -> None:
        """The consume channel dies: every unsettled delivery is back with the broker."""
        self.generation += 1
        self._unsettled.clear()
        self._tag = 0  # a new channel numbers its deliveries from 1 again

    def connect(self) -> None:
        return None

    def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        exchange: str = "books",
        headers: dict[str, object] | None = None,
    ) -> float:
        if self.fail_publish:
            raise PublishError("memory broker told to fail")
        self.published.append(Published(routing_key, body, message_id, exchange, headers))
        return 0.1

    def queue_depths(self, queues: Sequence[str] = QUEUES) -> dict[str, int]:
        self.depth_calls += 1
        return {q: self.depths.get(q, 0) for q in queues}

    def consume(
        self, queues: Sequence[str], on_message: Callable[[Delivery], None], prefetch: int
    ) -> None:
        self.consuming, self.on_message, self.prefetch = queues, on_message, prefetch

    def process_events(self, time_limit: float, until: Callable[[], bool] | None = None) -> None:
        return None

    def close(self) -> None:
        self.closed = True

    def delivery(
        self,
        body: bytes,
        queue: str = "fictional",
        content_type: str | None = "application/json",
        message_id: str | None = None,
        redelivered: bool = False,
    ) -> Delivery:
        self._tag += 1
        generation = self.generation

        def channel_open() -> bool:
            return generation == self.generation and not self.closed

        def settle(delivery: Delivery, outcome: str, reason: str | None) -> bool:
            if not channel_open():
                self.failed_settles.append((outcome, delivery))
                return False
            self.settle_frames += 1
            if outcome == "ack_multiple":
                # Like the broker: every unsettled delivery of this channel up to this tag.
                covered = [t for t in self._unsettled if t <= delivery.delivery_tag]
                for tag in sorted(covered):
                    self.settled.append(("ack", None, self._unsettled.pop(tag)))
                return True
            self._unsettled.pop(delivery.delivery_tag, None)
            self.settled.append((outcome, reason, delivery))
            return True

        delivery = Delivery(
            body=body,
            queue=queue,
            routing_key=queue,
            message_id=message_id,
            headers={},
            content_type=content_type,
            redelivered=redelivered,
            delivery_tag=self._tag,
            settler=settle,
            channel_open=channel_open,
            channel_id=generation,
        )
        self._unsettled[delivery.delivery_tag] = delivery
        return delivery

    def deliver(self, body: bytes, **kwargs: Any) -> Delivery:
        assert self.on_message is not None, "consume() was not called"
        delivery = self.delivery(body, **kwargs)
        self.on_message(delivery)
        return delivery

    def outcomes(self) -> list[str]:
        return [outcome for outcome, _, _ in self.settled]


def bodies(items: Iterable[Published]) -> list[bytes]:
    return [item.body for item in items]


# The Claude stand-ins, log capture and the environment cleaner have their own modules;
# re-exported so tests, benchmarks and tools import every test helper from one place.
from agents.testing.claude import FakeMessagesAPI as FakeMessagesAPI  # noqa: E402
from agents.testing.claude import Rig as Rig  # noqa: E402
from agents.testing.claude import ScriptedClient as ScriptedClient  # noqa: E402
from agents.testing.claude import consumer_reply as consumer_reply  # noqa: E402
from agents.testing.claude import make_rig as make_rig  # noqa: E402
from agents.testing.claude import message_json as message_json  # noqa: E402
from agents.testing.claude import mock_client as mock_client  # noqa: E402
from agents.testing.claude import monitor_reply as monitor_reply  # noqa: E402
from agents.testing.claude import publisher_reply as publisher_reply  # noqa: E402
from agents.testing.env import AGENT_VARIABLES as AGENT_VARIABLES  # noqa: E402
from agents.testing.env import AI_VARIABLES as AI_VARIABLES  # noqa: E402
from agents.testing.env import clean_env as clean_env  # noqa: E402
from agents.testing.logs import Event as Event  # noqa: E402
from agents.testing.logs import LogCapture as LogCapture  # noqa: E402
from agents.testing.logs import capture_logs as capture_logs  # noqa: E402
from agents.testing.logs import parse_line as parse_line  # noqa: E402
from agents.testing.logs import parse_lines as parse_lines  # noqa: E402
from agents.testing.logs import select as select  # noqa: E402
