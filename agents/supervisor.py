"""The fleet's restart policy: a child that dies while the fleet runs is started again after a
capped exponential backoff; one that keeps dying stops the fleet instead of flapping forever.

Pure bookkeeping on a monotonic clock, so the policy is unit-tested with plain numbers; the fleet
owns the processes and asks `Supervisor.check` what to do on every poll.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from agents.core.logs import JsonLogger
from agents.vocab import Event

if TYPE_CHECKING:
    from agents.core.settings import FleetSettings

# Exit code 2 is a refused setting (see agents.cli): a restart would be refused the same way.
EXIT_CONFIG = 2


@dataclass(frozen=True)
class RestartPolicy:
    max_restarts: int = 5
    window_seconds: float = 300.0
    backoff_seconds: float = 1.0
    backoff_max_seconds: float = 30.0

    @classmethod
    def from_settings(cls, settings: FleetSettings) -> RestartPolicy:
        return cls(
            settings.fleet_max_restarts,
            settings.fleet_restart_window_seconds,
            settings.fleet_restart_backoff_seconds,
            settings.fleet_restart_backoff_max_seconds,
        )

    def delay(self, restart: int) -> float:
        """Seconds to wait before restart number `restart` (1-based) within the window."""
        return float(min(self.backoff_max_seconds, self.backoff_seconds * 2 ** (restart - 1)))


@dataclass
class RestartHistory:
    """One agent's restarts inside the sliding window."""

    policy: RestartPolicy
    times: list[float] = field(default_factory=list)
    total: int = 0

    def next_delay(self, now: float) -> float | None:
        """Record an exit at `now`: the backoff before restarting, or None when the agent was
        already restarted `max_restarts` times within the window (give up)."""
        self.times = [t for t in self.times if now - t < self.policy.window_seconds]
        if len(self.times) >= self.policy.max_restarts:
            return None
        self.times.append(now)
        self.total += 1
        return self.policy.delay(len(self.times))


class Supervised(Protocol):
    """What the supervisor needs of a child: its name and kind, and whether it still runs."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    def poll(self) -> int | None: ...


@dataclass
class _Pending:
    due: float
    exit_code: int
    restart: int


@dataclass
class Supervisor:
    """Decides, on every poll, which dead children to restart and when to give up."""

    policy: RestartPolicy
    logger: JsonLogger
    on_restart: Callable[[Supervised], int]
    record_metric: Callable[[Supervised], None] | None = None
    clock: Callable[[], float] = time.monotonic
    history: dict[str, RestartHistory] = field(default_factory=dict, init=False)
    _pending: dict[str, _Pending] = field(default_factory=dict, init=False)
    failure: str | None = field(default=None, init=False)

    def restarts(self) -> dict[str, int]:
        return {name: h.total for name, h in self.history.items() if h.total}

    def waiting(self) -> list[str]:
        """Agents that died and are waiting out their backoff."""
        return sorted(self._pending)

    def check(self, children: Sequence[Supervised]) -> str | None:
        """Restart what is due; return why the fleet must stop, or None while it can go on."""
        now = self.clock()
        for child in children:
            pending = self._pending.get(child.name)
            if pending is not None:
                if now >= pending.due:
                    del self._pending[child.name]
                    pid = self.on_restart(child)
                    self.logger.warning(
                        Event.AGENT_RESTARTED,
                        agent=child.name,
                        exit_code=pending.exit_code,
                        restart_count=pending.restart,
                        pid=pid,
                    )
                    if self.record_metric is not None:
                        self.record_metric(child)
                continue
            code = child.poll()
            if code is None:
                continue
            history = self.history.setdefault(child.name, RestartHistory(self.policy))
            if code == EXIT_CONFIG:
                self.failure = (
                    f"{child.name} exited with code 2 (a setting was refused); a restart "
                    "would be refused the same way"
                )
            else:
                delay = history.next_delay(now)
                if delay is None:
                    self.failure = (
                        f"{child.name} exited with code {code} after {len(history.times)} "
                        f"restarts within {self.policy.window_seconds:g} s "
                        f"(FLEET_MAX_RESTARTS={self.policy.max_restarts}); not restarting it"
                    )
                else:
                    self._pending[child.name] = _Pending(now + delay, code, history.total)
                    self.logger.error(
                        Event.AGENT_EXITED,
                        agent=child.name,
                        exit_code=code,
                        restart_in_seconds=delay,
                    )
                    continue
            self.logger.error(Event.AGENT_KEEPS_FAILING, agent=child.name, reason=self.failure)
            return self.failure
        return None
