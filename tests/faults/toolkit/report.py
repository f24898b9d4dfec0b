"""One summary per fault scenario: printed as one line, and kept (in the pytest config's stash)
for the run's benchmarks/results/faults.json, which the suite's conftest writes at the end."""

from __future__ import annotations

import time
from typing import Any

import pytest

from .ledger import summary_line

SUMMARIES = pytest.StashKey[list[dict[str, Any]]]()


class FaultReport:
    """Collects one summary per scenario; printed as one line and kept for faults.json."""

    def __init__(self, config: pytest.Config, test_name: str) -> None:
        self._summaries = config.stash[SUMMARIES]
        self._test = test_name
        self._started = time.monotonic()

    def add(self, summary: dict[str, Any]) -> None:
        summary = {
            **summary,
            "test": self._test,
            "duration_s": round(time.monotonic() - self._started, 1),
        }
        self._summaries.append(summary)
        print(summary_line(summary))
