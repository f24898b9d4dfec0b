"""Agents driven in-process: the real DecisionEngine around a scripted model, an in-memory
broker, a FakeClock, metrics in memory and log lines captured as dicts."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from agents.core.ai import DecisionEngine, build_engine
from agents.core.clock import FakeClock
from agents.core.logs import JsonLogger
from agents.core.metrics import MemorySink, Metrics
from agents.core.settings import CommonSettings, load_settings
from agents.testing import MemoryBroker, ScriptedClient


@dataclass
class Rig:
    settings: Any
    clock: FakeClock
    out: io.StringIO
    logger: JsonLogger
    sink: MemorySink
    metrics: Metrics
    client: ScriptedClient
    engine: DecisionEngine
    broker: MemoryBroker

    def lines(self, message: str | None = None, level: str | None = None) -> list[dict[str, Any]]:
        found = [json.loads(line) for line in self.out.getvalue().splitlines()]
        return [
            line
            for line in found
            if (message is None or line["message"] == message)
            and (level is None or line["level"] == level)
        ]


@pytest.fixture
def make_rig(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Rig]:
    for name in ("DRY_RUN", "ANTHROPIC_API_KEY", "INFLUXDB_URL", "AI_SAMPLING_SEED"):
        monkeypatch.delenv(name, raising=False)

    def make(settings_cls: type[CommonSettings], **overrides: Any) -> Rig:
        settings = load_settings(settings_cls, **overrides)
        clock = FakeClock()
        out = io.StringIO()
        logger = JsonLogger(settings.agent_id, settings.agent_type, stream=out, clock=clock)
        sink = MemorySink()
        metrics = Metrics(sink, settings.agent_id, settings.agent_type, clock=clock)
        client = ScriptedClient()
        engine = build_engine(settings, logger, metrics, clock, client=client)
        return Rig(settings, clock, out, logger, sink, metrics, client, engine, MemoryBroker())

    return make
