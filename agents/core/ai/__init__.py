"""Runtime Claude decisions that cannot run up a bill: live, replay and dry-run modes behind
one cost guard, with untrusted replies validated and clamped."""

from agents.core.ai.engine import DecisionEngine, ModeChoice, build_engine, resolve_mode
from agents.core.ai.schemas import ConsumerDecision, MonitorAnalysis, PublisherDecision

__all__ = [
    "ConsumerDecision",
    "DecisionEngine",
    "ModeChoice",
    "MonitorAnalysis",
    "PublisherDecision",
    "build_engine",
    "resolve_mode",
]
