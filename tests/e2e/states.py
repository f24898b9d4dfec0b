"""Whether the compose stack is ready, read from `docker compose ps --all --format json` rows.

Pure functions, unit-tested offline (tests/stack/test_e2e_helpers.py).
"""

from __future__ import annotations

from typing import Any

from tests.stack.stackfiles import REPLICAS, SETUP_JOBS


def by_service(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(str(row.get("Service")), []).append(row)
    return grouped


def setup_job_failure(rows: list[dict[str, Any]]) -> str | None:
    """A setup job that exited non-zero: nothing will start after it, so stop waiting."""
    for job in SETUP_JOBS:
        for state in by_service(rows).get(job, []):
            if state.get("State") == "exited" and int(state.get("ExitCode", 0)) != 0:
                return f"{job} exited {state.get('ExitCode')}: see `docker compose logs {job}`"
    return None


def ready_problem(rows: list[dict[str, Any]], replicas: dict[str, int] = REPLICAS) -> str | None:
    """None when both setup jobs exited 0 and every agent replica runs, else what is missing."""
    grouped = by_service(rows)
    failed = setup_job_failure(rows)
    if failed:
        return failed
    for job in SETUP_JOBS:
        states = [state.get("State") for state in grouped.get(job, [])] or ["not created"]
        if states != ["exited"]:
            return f"{job} is {', '.join(map(str, states))}"
    for name, count in replicas.items():
        running = [r for r in grouped.get(name, []) if r.get("State") == "running"]
        if len(running) != count:
            return f"{name}: {len(running)} of {count} replicas running"
    return None
