"""A clock that only moves when told to: rate limits, windows and intervals tested without
sleeping (the `Clock` port's fake; the real one is agents.core.clock.SystemClock)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class FakeClock:
    """A clock that only moves when told to; `sleep` advances it instantly."""

    def __init__(self, start: float = 1_000.0, wall: datetime | None = None) -> None:
        self._t = start
        self._wall0 = wall or datetime(2026, 1, 31, 10, 15, 30, tzinfo=UTC)
        self._start = start
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self._t

    def now(self) -> datetime:
        with self._lock:
            return self._wall0 + timedelta(seconds=self._t - self._start)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        with self._lock:
            self._t += seconds

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))
