"""Runtime Claude decisions that cannot run up a bill: live, replay and dry-run modes behind
one cost guard, with untrusted replies validated and clamped.

The exports load on first use: importing the cost guard or the ledger alone (a budget report, a
ledger worker) must not pay for the Anthropic SDK's import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agents.core.ai.engine import DecisionEngine, ModeChoice, build_engine, resolve_mode
    from agents.core.ai.schemas import ConsumerDecision, MonitorAnalysis, PublisherDecision

_EXPORTS = {
    "DecisionEngine": "agents.core.ai.engine",
    "ModeChoice": "agents.core.ai.engine",
    "build_engine": "agents.core.ai.engine",
    "resolve_mode": "agents.core.ai.engine",
    "ConsumerDecision": "agents.core.ai.schemas",
    "MonitorAnalysis": "agents.core.ai.schemas",
    "PublisherDecision": "agents.core.ai.schemas",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "ConsumerDecision",
    "DecisionEngine",
    "ModeChoice",
    "MonitorAnalysis",
    "PublisherDecision",
    "build_engine",
    "resolve_mode",
]
