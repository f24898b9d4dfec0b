"""What the compose stack needs from the Docker host, checked before anything starts.

`healthcheck.start_interval` needs Docker Engine >= 25 (older engines reject the file);
`deploy.replicas`, `--scale`, `service_completed_successfully` and `ps --format json` need
Compose v2. Pure parsing here (unit-tested offline in tests/stack/test_e2e_helpers.py); the probe
runs the two client commands.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Sequence

MIN_ENGINE = (25, 0)
MIN_COMPOSE = (2, 20)

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def parse_version(text: str) -> tuple[int, int] | None:
    """(major, minor) from `25.0.3`, `v2.29.1`, `28.2.2+ds1` ...; None when there is none."""
    match = re.search(r"(\d+)\.(\d+)", text.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def version_problem(engine: str, compose: str) -> str | None:
    """None when both versions are enough, else one line naming what is missing."""
    found_engine, found_compose = parse_version(engine), parse_version(compose)
    problems = []
    if found_engine is None or found_engine < MIN_ENGINE:
        problems.append(
            f"Docker Engine {engine.strip() or '?'} is older than "
            f"{MIN_ENGINE[0]}.{MIN_ENGINE[1]} (healthcheck.start_interval)"
        )
    if found_compose is None or found_compose < MIN_COMPOSE:
        problems.append(
            f"Compose {compose.strip() or '?'} is older than v{MIN_COMPOSE[0]}.{MIN_COMPOSE[1]}"
        )
    return "; ".join(problems) or None


def _run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=30, check=False)


def engine_problem(run: Runner = _run) -> str | None:
    """None when an engine and Compose v2 answer in the versions the stack needs, else why not."""
    answers = []
    for command in (
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        ["docker", "compose", "version", "--short"],
    ):
        try:
            done = run(command)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"`{' '.join(command[:2])}` could not run ({exc.__class__.__name__})"
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
            return f"`{' '.join(command[:3])}` failed: {lines[-1][:160]}"
        answers.append(done.stdout.strip())
    return version_problem(*answers)
