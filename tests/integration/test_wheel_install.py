"""A wheel that works anywhere: the project built as a wheel and installed (not editable) into a
fresh virtualenv outside the repository, then `agents run` from an empty directory against the
real broker. Everything the agents read at run time (the sample books, the replay cassettes)
must come with the package; the checkout is nowhere on the path.

The install is `uv sync --no-editable` against uv.lock: hatchling builds the wheel exactly as for
`pip install .`, and the locked dependencies come from uv's cache (offline first; a cold cache
falls back to the index, which CI can reach), so it takes about a second, not minutes."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from agents.core.settings import BrokerSettings, load_settings
from agents.testing import clean_env, parse_lines
from agents.vocab import ANOMALY_QUEUE, DEAD_LETTER_QUEUE, QUEUES
from tests.support.rabbit import drain_queue, management, queue_depths

ROOT = Path(__file__).resolve().parents[2]
DURATION_S = 20
AGENTS = ["consumer-1", "consumer-2", "monitor-1", "publisher-1", "publisher-2"]

# Enough traffic and AI calls in 20 s to show both the books and the cassettes are read.
FAST = {
    "FICTIONAL_INTERVAL_SECONDS": "0.3",
    "NONFICTIONAL_INTERVAL_SECONDS": "0.6",
    "MIN_PUBLISH_INTERVAL_SECONDS": "0.1",
    "DECISION_INTERVAL_SECONDS": "5",
    "AI_DECISION_RATE": "0.3",
    "AI_CALL_INTERVAL_SECONDS": "1",
}

# Anything that could point the installed package back at the checkout, or away from replay.
NOT_INHERITED = (
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "UV_PROJECT_ENVIRONMENT",
    "DRY_RUN",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "CASSETTES_DIR",
    "METRICS_FILE",
    "INFLUXDB_URL",
    "BUDGET_REDIS_URL",
)


def uv() -> list[str]:
    # `uv run` and `uvx nox` name their own binary in UV; else PATH, else the uv package.
    found = os.environ.get("UV") or shutil.which("uv")
    if found:
        return [found]
    if importlib.util.find_spec("uv") is not None:
        return [sys.executable, "-m", "uv"]
    reason = "uv is not installed (python3 -m pip install uv); it builds and installs the wheel"
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def install(venv: Path) -> float:
    """Build the wheel and install it, with the locked dependencies, into a new venv; seconds."""
    env = clean_env(drop=NOT_INHERITED)
    env["UV_PROJECT_ENVIRONMENT"] = str(venv)
    command = [
        *uv(),
        "sync",
        "--project",
        str(ROOT),
        "--python",
        sys.executable,
        "--locked",
        "--no-default-groups",
        "--no-editable",
        # uv caches a local project's wheel by pyproject.toml: rebuild, or the code is stale.
        "--reinstall-package",
        "books-agents",
        "--quiet",
    ]
    started = time.monotonic()
    done = subprocess.run(
        [*command, "--offline"], env=env, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:  # a cold cache: fetch what is missing
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return time.monotonic() - started


def broker_published(vhost: str, at_least: int, timeout_s: float = 15.0) -> int:
    """The vhost's publish count as the broker reports it (its statistics lag a few seconds)."""
    deadline = time.monotonic() + timeout_s
    while True:
        stats = (management("GET", f"/api/vhosts/{vhost}") or {}).get("message_stats", {})
        count = int(stats.get("publish", 0))
        if count >= at_least or time.monotonic() > deadline:
            return count
        time.sleep(0.5)


@pytest.mark.rabbitmq
@pytest.mark.slow
def test_the_installed_wheel_runs_the_fleet_from_an_empty_directory(
    rabbit_env: dict[str, str], tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    took_install = install(venv)
    python = venv / "bin" / "python"
    located = subprocess.run(
        [str(python), "-c", "import agents; print(agents.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The wheel's copy, not a link back into the checkout.
    assert Path(located).is_relative_to(venv), located
    site = Path(located).parent

    empty = tmp_path / "empty"
    empty.mkdir()
    env = clean_env(drop=NOT_INHERITED)
    env.update({k: v for k, v in rabbit_env.items() if k != "DRY_RUN"})
    env.update(FAST)
    started = time.monotonic()
    result = subprocess.run(
        [str(venv / "bin" / "agents"), "run", "--duration", str(DURATION_S)],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        timeout=DURATION_S + 60,
    )
    took_run = time.monotonic() - started
    crashes = [line for line in result.stdout.splitlines() if '"Agent crashed"' in line]
    assert result.returncode == 0, (crashes[:2], result.stderr[-2000:])
    # Piped: stdout is JSON lines only.
    lines: list[dict[str, Any]] = parse_lines(result.stdout)

    def having(prefix: str) -> list[dict[str, Any]]:
        return [line for line in lines if line["message"].startswith(prefix)]

    starts = having("Agent starting")
    assert sorted(line["agent_id"] for line in starts) == AGENTS
    # No key, no DRY_RUN, no CASSETTES_DIR: replay from the cassettes inside the wheel.
    assert {line["context"]["mode"] for line in starts} == {"replay"}
    modes = having("AI mode")
    assert sorted(line["agent_id"] for line in modes) == AGENTS
    for line in modes:
        assert str(site / "data" / "cassettes") in line["context"]["why"], line
    replayed = [
        line
        for line in having("AI decision")
        if line["context"]["tokens_used"] > 0 and line["context"]["reasoning"] != "DRY RUN MODE"
    ]
    assert replayed, "no decision came from a cassette"

    # The books come from the wheel too: messages flowed end to end.
    published = Counter(line["context"]["message_id"] for line in having("Message published"))
    consumed = Counter(line["context"]["message_id"] for line in having("Message consumed"))
    assert len(published) >= 10, f"only {len(published)} messages published"
    assert len(consumed) >= 10 and set(consumed) <= set(published)
    stopped = having("Agent stopped")
    assert sorted(line["agent_id"] for line in stopped) == AGENTS
    assert {line["context"]["exit_code"] for line in stopped} == {0}

    # And from outside the fleet: the broker saw the publishes, and nothing is left queued.
    settings = load_settings(BrokerSettings)
    assert queue_depths(settings) == {q: 0 for q in QUEUES}
    set_aside = {
        json.loads(body)["message_id"]
        for queue in (ANOMALY_QUEUE, DEAD_LETTER_QUEUE)
        for _, _, body in drain_queue(settings, queue)
    }
    assert set(published) - set(consumed) - set_aside == set(), "a message was lost"
    assert broker_published(settings.rabbitmq_vhost, len(published)) >= len(published)
    print(
        f"wheel: install={took_install:.1f}s run={took_run:.1f}s "
        f"published={len(published)} consumed={len(consumed)} replayed={len(replayed)}"
    )
