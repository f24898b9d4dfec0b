"""Cost per run: the whole fleet for a simulated 10 minutes on an injected clock, AI replayed
from the cassettes, metered by the agents' real engine, cost guard and price table.

The five agents are the real classes (`Publisher`, `Consumer`, `Monitor`) with the in-memory
broker from `agents.testing`; published messages are routed round-robin to the two consumers.
One seam: `DecisionEngine` prices replay at zero (replay costs nothing), so the simulation sets
the engine's public `price` to the live price from `agents.core.ai.prices.price_for`: the guard
then meters and caps every replayed call exactly as it would a live one.
"""

from __future__ import annotations

import io
import random
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from agents.core.ai.prices import price_for
from agents.core.metrics import FileSink, MemorySink
from agents.core.metrics.reader import reader_from_settings
from agents.core.settings import (
    CommonSettings,
    ConsumerSettings,
    MonitorSettings,
    PublisherSettings,
    load_settings,
)
from agents.ports import MetricPoint
from agents.runtime import Agent, Wiring, wire
from agents.testing import MemoryBroker
from agents.testing.clock import FakeClock
from agents.vocab import QUEUES

REPO = Path(__file__).resolve().parent.parent
S = TypeVar("S", bound=CommonSettings)
SPEC_BUDGET_10MIN_USD = 0.10


class TeeSink:
    """Every point to the shared line-protocol file (what the monitor and publishers read back)
    and to this agent's own memory list (what the report counts)."""

    def __init__(self, shared: FileSink) -> None:
        self.shared = shared
        self.memory = MemorySink()
        self.description = f"tee:{shared.description}"

    def write(self, point: MetricPoint) -> None:
        self.shared.write(point)
        self.memory.write(point)

    def close(self) -> None:
        return None


def simulate(seconds: float = 600.0, tick: float = 0.1, seed: int = 1) -> dict[str, Any]:
    from agents.consumer import Consumer
    from agents.monitor import Monitor
    from agents.publisher import Publisher

    with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp:
        workdir = Path(tmp)
        clock = FakeClock(wall=datetime.now(UTC))
        shared = FileSink(workdir / "metrics.lp")
        common: dict[str, Any] = {
            "dry_run": False,
            "anthropic_api_key": None,
            "influxdb_url": None,
            "cassettes_dir": REPO / "cassettes",
            "metrics_file": workdir / "metrics.lp",
        }
        logs = io.StringIO()
        sinks: dict[str, tuple[TeeSink, CommonSettings]] = {}

        def wired(settings: S) -> Wiring[S]:
            sink = TeeSink(shared)
            w = wire(settings, clock=clock, stream=logs, sink=sink, broker=MemoryBroker(), cwd=REPO)
            if w.engine.mode != "replay":
                raise RuntimeError(
                    f"{settings.agent_id}: AI mode {w.engine.mode}, not replay ({w.engine.why})"
                )
            w.engine.price = price_for(settings.claude_model)  # the seam: meter as live
            sinks[settings.agent_id] = (sink, settings)
            return w

        publishers: list[Publisher] = []
        for i in (1, 2):
            p = load_settings(PublisherSettings, publisher_id=f"publisher-{i}", **common)
            publishers.append(
                Publisher(
                    wired(p), reader=reader_from_settings(p), rng=random.Random(seed * 10 + i)
                )
            )
        consumers: list[Consumer] = []
        for i in (1, 2):
            c = load_settings(
                ConsumerSettings, consumer_id=f"consumer-{i}", ai_sampling_seed=seed * 10 + i,
                **common,
            )  # fmt: skip
            agent = Consumer(wired(c))
            agent.start()
            consumers.append(agent)
        m = load_settings(MonitorSettings, **common)
        monitor = Monitor(wired(m), reader_from_settings(m), console=io.StringIO())

        routed = [0, 0]
        turn = 0
        steps = round(seconds / tick)
        for _ in range(steps):
            for p_index, publisher in enumerate(publishers):
                publisher.step()
                sent = _memory(publisher).published
                for item in sent[routed[p_index] :]:
                    consumer = consumers[turn % len(consumers)]
                    turn += 1
                    _memory(consumer).deliver(
                        item.body, queue=item.routing_key, message_id=item.message_id
                    )
                routed[p_index] = len(sent)
                for queue in QUEUES:  # handed over above: nothing stays queued behind
                    _memory(publisher).drain(queue)
            for consumer in consumers:
                consumer.step()
            monitor.step()
            clock.advance(tick)
        for consumer in consumers:
            consumer.flush_batch("end of simulation")
        shared.close()
        return {name: _agent_usage(sink.memory, s) for name, (sink, s) in sinks.items()}


def _memory(agent: Agent[Any]) -> MemoryBroker:
    assert isinstance(agent.broker, MemoryBroker)
    return agent.broker


def _agent_usage(memory: MemorySink, settings: CommonSettings) -> dict[str, Any]:
    points = memory.where("ai_decision")
    fallbacks: dict[str, int] = {}
    total: dict[str, float] = {"calls": 0, "decisions": 0, "input": 0, "output": 0, "usd": 0.0}
    for point in points:
        fields: Mapping[str, Any] = point.fields
        total["decisions"] += 1
        total["calls"] += int(fields.get("ai_call_count", 0))
        total["input"] += int(fields.get("input_tokens", 0))
        total["output"] += int(fields.get("output_tokens", 0))
        total["usd"] += float(fields.get("cost_usd", 0.0))
        reason = point.tags.get("fallback", "")
        if reason:
            fallbacks[reason] = fallbacks.get(reason, 0) + 1
    price = price_for(settings.claude_model)
    return {
        "agent_type": settings.agent_type,
        "model": settings.claude_model,
        "api_calls": int(total["calls"]),
        "decisions": int(total["decisions"]),
        "fallbacks": fallbacks,
        "input_tokens": int(total["input"]),
        "output_tokens": int(total["output"]),
        "usd": round(total["usd"], 8),
        # The same tokens priced straight from the table: a check that the engine metered them.
        "usd_from_price_table": round(price.cost(int(total["input"]), int(total["output"])), 8),
    }


def totals(per_agent: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    keys = ("api_calls", "decisions", "input_tokens", "output_tokens", "usd")
    out: dict[str, Any] = {k: sum(a[k] for a in per_agent.values()) for k in keys}
    out["usd"] = round(out["usd"], 8)
    return out


def plan_bound() -> dict[str, float]:
    """What `agents cost plan` prints as the fleet's provable bound."""
    from agents.cost_cli import plan

    fleet = plan()["fleet"]
    return {
        "plan_usd_per_10min": float(fleet["usd_per_10min"]),
        "plan_typical_usd_per_10min": float(fleet["typical_usd_per_10min"]),
    }


def cassette_provenance() -> dict[str, Any]:
    """Whether the replayed answers were recorded live or seeded (ids say `msg_synthetic_`)."""
    out: dict[str, Any] = {}
    for path in sorted((REPO / "cassettes").glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        out[path.stem] = {
            "interactions": text.count("- request:"),
            "synthetic": text.count("msg_synthetic_"),
        }
    return out
