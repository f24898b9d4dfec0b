"""Options and fixtures of the fault suite.

Short scenarios run in the default `nox -s tests`; long ones (more than a couple of minutes, or
touching the whole broker) carry `@pytest.mark.long_fault` and run only with `--run-long-faults`
(`nox -s faults`), which also writes every scenario's summary to benchmarks/results/faults.json.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from .toolkit.rabbit import QueueInspector
from .toolkit.report import SUMMARIES, FaultReport

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "faults.json"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-long-faults",
        action="store_true",
        default=False,
        help="also run the long fault scenarios (broker restart, load plus faults) and write "
        "benchmarks/results/faults.json",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "long_fault: a fault scenario longer than a couple of minutes (nox -s faults)"
    )
    config.stash[SUMMARIES] = []


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("long_fault") and not item.config.getoption("--run-long-faults"):
        pytest.skip("long fault scenario: run with --run-long-faults (nox -s faults)")


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    summaries = config.stash.get(SUMMARIES, [])
    if not config.getoption("--run-long-faults", default=False) or not summaries:
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    fresh = {summary["scenario"] for summary in summaries}
    kept = [
        {**summary, "recorded_at": summary.get("recorded_at", previous_at)}
        for summary, previous_at in _previous_scenarios()
        if summary.get("scenario") not in fresh
    ]
    now = datetime.now(UTC).isoformat(timespec="seconds")
    document = {
        "generated_at": now,
        "host": platform.node(),
        "python": platform.python_version(),
        # A scenario not run this time (e.g. broker_restart, which stops the shared broker)
        # keeps its last result, with the time it was recorded.
        "scenarios": [*kept, *({**s, "recorded_at": now} for s in summaries)],
    }
    RESULTS.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def _previous_scenarios() -> list[tuple[dict[str, Any], str]]:
    try:
        document = json.loads(RESULTS.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    at = str(document.get("generated_at", ""))
    return [(s, at) for s in document.get("scenarios", []) if isinstance(s, dict)]


@pytest.fixture
def fault_report(request: pytest.FixtureRequest) -> FaultReport:
    return FaultReport(request.config, request.node.name)


@pytest.fixture
def inspector(vhost: str) -> Iterator[QueueInspector]:
    found = QueueInspector(vhost)
    yield found
    found.close()
