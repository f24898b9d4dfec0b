"""Resource figures: each agent's RSS after a local run of the fleet, and the test-suite wall
time."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agents.testing import clean_env
from benchmarks import rabbit
from benchmarks.load import REPO, agent_env

ID_VARIABLES = ("PUBLISHER_ID", "CONSUMER_ID", "AGENT_ID")


def fleet_rss(vhost: str, seconds: float) -> dict[str, float]:
    """Run `agents run` (the local fleet: replayed AI when cassettes exist, metrics to a file)
    for `seconds`, then read every agent's RSS in MB."""
    import psutil

    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        workdir = Path(tmp)
        env = clean_env(agent_env(vhost, workdir, "fleet"), drop=("DRY_RUN",))
        log = workdir / "fleet.log"
        fleet = subprocess.Popen(
            [sys.executable, "-m", "agents", "run", "--log-file", str(log)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(seconds)  # the duration *is* the measurement: RSS after this long
            parent = psutil.Process(fleet.pid)
            rss: dict[str, float] = {}
            for child in parent.children(recursive=False):
                try:
                    environ = child.environ()
                    name = next((environ[v] for v in ID_VARIABLES if v in environ), str(child.pid))
                    rss[name] = round(child.memory_info().rss / 2**20, 1)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
        finally:
            fleet.terminate()
            try:
                fleet.wait(timeout=40)
            except subprocess.TimeoutExpired:
                fleet.kill()
        return rss


def tests_wall_seconds() -> dict[str, Any]:
    """The unit + integration suite exactly as `nox -s tests` selects it, timed end to end."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "not docker and not bench",
        "--block-network",
        "--allowed-hosts=127.0.0.1,localhost,::1",
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    started = time.perf_counter()
    result = subprocess.run(
        command,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    elapsed = time.perf_counter() - started
    last = (result.stdout.strip().splitlines() or [""])[-1]
    return {"seconds": round(elapsed, 1), "exit_code": result.returncode, "summary": last[:200]}


def with_vhost_fleet_rss(seconds: float) -> dict[str, float]:
    with rabbit.bench_vhost("bench-fleet") as vhost:
        rabbit.declare(vhost)
        return fleet_rss(vhost, seconds)
