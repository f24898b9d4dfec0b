"""Waiting on conditions, never on time: the one poll loop tests and benchmarks share."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from agents.ports import Broker

T = TypeVar("T")


class WaitTimeout(AssertionError, TimeoutError):
    """The condition never came: a failed assertion to pytest, a TimeoutError to code that
    waits (a benchmark step gives up on it and moves on)."""


def wait_until(
    probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1
) -> T:
    """Call `probe` until it returns something truthy and return that; raise `WaitTimeout`
    naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def pump_until(
    broker: Broker, done: Callable[[], bool], timeout: float = 10.0, what: str = "the condition"
) -> None:
    """Run `broker`'s event loop (deliveries, settles, reconnects) until `done()`; the real and
    the in-memory broker alike."""

    def pumped() -> bool:
        if done():
            return True
        broker.process_events(0.05, until=done)
        return done()

    wait_until(pumped, timeout, what, interval=0)
