"""Test helpers (like `structlog.testing`): an engine on a fake clock, capturing its log lines and
metric points, and hand-built Messages API responses for the SDK's MockTransport."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx2

from agents.core.ai.engine import DecisionEngine, build_engine
from agents.core.ai.sdk import AnthropicClient, live_sdk
from agents.core.clock import FakeClock
from agents.core.logs import JsonLogger
from agents.core.metrics import MemorySink, Metrics
from agents.core.settings import CommonSettings
from agents.ports import DecisionClient, Ledger, MetricPoint


@dataclass
class Rig:
    engine: DecisionEngine
    clock: FakeClock
    stream: io.StringIO
    sink: MemorySink

    def lines(self, level: str | None = None) -> list[dict[str, Any]]:
        records = [json.loads(line) for line in self.stream.getvalue().splitlines()]
        return [r for r in records if level is None or r["level"] == level]

    def points(self) -> list[MetricPoint]:
        return self.sink.where("ai_decision")


def make_rig(
    settings: CommonSettings,
    client: DecisionClient | None = None,
    cwd: Path | None = None,
    clock: FakeClock | None = None,
    ledger: Ledger | None = None,
) -> Rig:
    clock = clock or FakeClock()
    stream = io.StringIO()
    logger = JsonLogger(
        settings.agent_id,
        settings.agent_type,
        stream=stream,
        clock=clock,
        min_level="DEBUG",
    )
    sink = MemorySink()
    metrics = Metrics(sink, settings.agent_id, settings.agent_type)
    engine = build_engine(settings, logger, metrics, clock, client=client, cwd=cwd, ledger=ledger)
    return Rig(engine, clock, stream, sink)


def message_json(text: str, input_tokens: int = 120, output_tokens: int = 30) -> dict[str, Any]:
    """A Messages API response body, as the API sends it."""
    return {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-5-5",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


def mock_client(
    handler: Callable[[httpx2.Request], httpx2.Response],
    clock: FakeClock,
    *,
    retries: int = 0,
    timeout_s: float = 5.0,
    model: str = "claude-haiku-5-5",
) -> AnthropicClient:
    """The real SDK, its HTTP answered by `handler` (no network)."""
    transport = httpx2.MockTransport(handler)
    sdk = live_sdk(
        "sk-ant-test-not-a-real-key",
        "https://api.anthropic.com",
        timeout_s,
        http_client=anthropic.DefaultHttpxClient(transport=transport),
    )
    return AnthropicClient(sdk, model, "live", clock, retries=retries)
