"""One agent's collaborators, built for driving it in-process: the real DecisionEngine around a
scripted model, an in-memory broker, a FakeClock, metrics in memory and log lines captured as
event dicts. The `make_rig` fixture (tests/unit/agents/conftest.py) hands out `build_rig`."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agents.core.ai import DecisionEngine
from agents.core.logs import JsonLogger
from agents.core.metrics import MemorySink, Metrics
from agents.core.settings import CommonSettings, load_settings
from agents.runtime import Wiring, wire
from agents.testing import LogCapture, MemoryBroker, ScriptedClient
from agents.testing.clock import FakeClock


@dataclass
class Rig:
    settings: Any
    clock: FakeClock
    out: LogCapture
    logger: JsonLogger
    sink: MemorySink
    metrics: Metrics
    client: ScriptedClient
    engine: DecisionEngine
    broker: MemoryBroker
    wiring: Wiring[Any]  # what the agent is built from: Publisher(rig.wiring), ...

    def lines(self, message: str | None = None, level: str | None = None) -> list[dict[str, Any]]:
        return self.out.where(message, level)

    def drive(self, step: Callable[[], float], seconds: float) -> None:
        """Run an agent's `step` for `seconds` of the FakeClock, waiting as long as each step
        asks (what runtime.serve does on a real clock)."""
        end = self.clock.monotonic() + seconds
        while self.clock.monotonic() < end:
            self.clock.advance(step())

    def slow(self, method: str, seed: int) -> None:
        """Each call of the broker's `method` first takes 1-50 ms of the FakeClock, as a real
        broker's round trip takes real time (seeded, so a run is reproducible)."""
        real = getattr(self.broker, method)
        latencies = random.Random(seed)

        def slowed(*args: Any, **kwargs: Any) -> Any:
            self.clock.advance(latencies.uniform(0.001, 0.05))
            return real(*args, **kwargs)

        setattr(self.broker, method, slowed)


def build_rig(settings_cls: type[CommonSettings], **overrides: Any) -> Rig:
    settings = load_settings(settings_cls, **overrides)
    clock, out, sink, client, broker = (
        FakeClock(),
        LogCapture(),
        MemorySink(),
        ScriptedClient(),
        MemoryBroker(),
    )
    w = wire(settings, clock=clock, stream=out, sink=sink, broker=broker, client=client)
    return Rig(settings, clock, out, w.logger, sink, w.metrics, client, w.engine, broker, w)
