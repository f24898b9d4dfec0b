"""What reached the broker, seen at the pika boundary: every delivery a consume channel handed
over, and every ack / nack / reject that was actually sent on an open channel.

The model test installs this spy around pika's `BlockingChannel` (the library, not the code under
test), so the consumer cannot vouch for itself: an id counts as settled only when pika sent the
frame on a channel that was open, and a channel's unsettled deliveries return to the broker when
the channel dies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pika.adapters.blocking_connection import BlockingChannel


@dataclass
class Settle:
    outcome: str  # "ack" | "requeue" | "reject" | "nack"
    channel: int
    ids: list[str]


@dataclass
class ChannelBook:
    """Deliveries of one channel, by delivery tag, until settled."""

    outstanding: dict[int, str] = field(default_factory=dict)


@dataclass
class WireSpy:
    channels: dict[int, ChannelBook] = field(default_factory=dict)
    settles: list[Settle] = field(default_factory=list)
    delivered: list[tuple[int, int, str]] = field(default_factory=list)  # (channel, tag, id)
    # Confirmed publishes (a confirm-mode basic_publish that returned): (exchange, key, id).
    published: list[tuple[str, str, str]] = field(default_factory=list)
    # Called with the ids an ack covers, before the frame is sent (the model checks there that
    # each one was already handled: a line written, or a copy confirmed elsewhere).
    before_ack: Callable[[list[str]], None] | None = None
    bypass: bool = False

    def _book(self, channel: Any) -> ChannelBook:
        return self.channels.setdefault(id(channel), ChannelBook())

    def on_delivery(self, channel: Any, tag: int, message_id: str) -> None:
        self._book(channel).outstanding[tag] = message_id
        self.delivered.append((id(channel), tag, message_id))

    def covered(self, channel: Any, tag: int, multiple: bool) -> list[tuple[int, str]]:
        book = self._book(channel)
        if multiple:
            tags = sorted(t for t in book.outstanding if t <= tag or tag == 0)
        else:
            tags = [tag] if tag in book.outstanding else []
        return [(t, book.outstanding[t]) for t in tags]

    def sent(self, channel: Any, outcome: str, covered: list[tuple[int, str]]) -> None:
        book = self._book(channel)
        for tag, _ in covered:
            book.outstanding.pop(tag, None)
        self.settles.append(Settle(outcome, id(channel), [mid for _, mid in covered]))

    def ids(self, *outcomes: str) -> list[str]:
        return [mid for s in self.settles if s.outcome in outcomes for mid in s.ids]


def _message_id(properties: Any, body: bytes) -> str:
    return str(getattr(properties, "message_id", None) or f"<no id: {len(body)} bytes>")


@contextlib.contextmanager
def spy_on_pika(spy: WireSpy) -> Iterator[WireSpy]:
    """Patch BlockingChannel's consume and settle methods for the duration."""
    original = {
        name: getattr(BlockingChannel, name)
        for name in ("basic_consume", "basic_ack", "basic_nack", "basic_reject", "basic_publish")
    }

    def basic_publish(
        self: Any, exchange: str, routing_key: str, body: bytes, *a: Any, **kw: Any
    ) -> Any:
        result = original["basic_publish"](self, exchange, routing_key, body, *a, **kw)
        properties = kw.get("properties", a[0] if a else None)
        if self._delivery_confirmation:  # returned without raising: the broker confirmed it
            spy.published.append((exchange, routing_key, _message_id(properties, body)))
        return result

    def basic_consume(self: Any, queue: str, on_message_callback: Any, *a: Any, **kw: Any) -> Any:
        def wrapped(channel: Any, method: Any, properties: Any, body: bytes) -> None:
            spy.on_delivery(channel, method.delivery_tag, _message_id(properties, body))
            on_message_callback(channel, method, properties, body)

        return original["basic_consume"](self, queue, wrapped, *a, **kw)

    def settle(name: str, outcome_of: Callable[..., str]) -> Callable[..., Any]:
        def method(self: Any, delivery_tag: int = 0, *a: Any, **kw: Any) -> Any:
            if spy.bypass:
                return original[name](self, delivery_tag, *a, **kw)
            multiple = bool(kw.get("multiple", a[0] if a and name != "basic_reject" else False))
            outcome = outcome_of(*a, **kw)
            was_open = self.is_open
            covered = spy.covered(self, delivery_tag, multiple)
            if outcome == "ack" and was_open and spy.before_ack is not None:
                spy.before_ack([mid for _, mid in covered])
            result = original[name](self, delivery_tag, *a, **kw)  # raises when it cannot send
            if was_open:
                spy.sent(self, outcome, covered)
            return result

        return method

    def nack_outcome(*a: Any, **kw: Any) -> str:
        requeue = kw.get("requeue", a[1] if len(a) > 1 else True)
        return "requeue" if requeue else "reject"

    def reject_outcome(*a: Any, **kw: Any) -> str:
        requeue = kw.get("requeue", a[0] if a else True)
        return "requeue" if requeue else "reject"

    patched = {
        "basic_consume": basic_consume,
        "basic_publish": basic_publish,
        "basic_ack": settle("basic_ack", lambda *a, **kw: "ack"),
        "basic_nack": settle("basic_nack", nack_outcome),
        "basic_reject": settle("basic_reject", reject_outcome),
    }
    for name, function in patched.items():
        setattr(BlockingChannel, name, function)
    try:
        yield spy
    finally:
        for name, function in original.items():
            setattr(BlockingChannel, name, function)
