"""`agents run` as a real process in its own session (process group), its merged JSON log lines
collected on a thread so a test can wait on them, and a guaranteed cleanup of the whole group;
the environments the fleet tests run it in."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from agents.testing import clean_env, parse_line

Line = dict[str, Any]

CASSETTES = Path(__file__).resolve().parents[2] / "cassettes"

FAST = {
    # Everything the spec does per minute, done every few seconds, so 40 s covers it all.
    "FICTIONAL_INTERVAL_SECONDS": "0.2",
    "NONFICTIONAL_INTERVAL_SECONDS": "0.4",
    "MIN_PUBLISH_INTERVAL_SECONDS": "0.1",
    "DECISION_INTERVAL_SECONDS": "5",
    "AI_DECISION_RATE": "0.3",
    "AI_CALL_INTERVAL_SECONDS": "1",
    "BATCH_MAX_WAIT_SECONDS": "1",
    "CHECK_INTERVAL_SECONDS": "10",
    "QUEUE_SAMPLE_INTERVAL_SECONDS": "1",
}


def replay_env(metrics_file: Path, **overrides: str) -> dict[str, str]:
    """A clean environment for a FAST run in replay (no API key, the repository's cassettes)
    with metrics to a file; the broker variables `rabbit_env` set are kept."""
    return clean_env(
        drop=("DRY_RUN",),
        **FAST,
        METRICS_FILE=str(metrics_file),
        CASSETTES_DIR=str(CASSETTES),
        **overrides,
    )


def free_port() -> int:
    """A local port nothing listens on once this returns."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unreachable_broker_env() -> dict[str, str]:
    """This process's environment with RabbitMQ pointed at a port nothing listens on."""
    return {**os.environ, "RABBITMQ_HOST": "127.0.0.1", "RABBITMQ_PORT": str(free_port())}


class RunningFleet:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[Line] = []
        self.raw: list[str] = []
        self.stderr = ""
        assert process.stdout is not None and process.stderr is not None
        self._out = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._err = threading.Thread(target=self._read_err, args=(process.stderr,), daemon=True)
        self._out.start()
        self._err.start()

    def _read(self, stream: Any) -> None:
        for raw in iter(stream.readline, ""):
            self.raw.append(raw)
            with contextlib.suppress(ValueError):
                self.lines.append(parse_line(raw))

    def _read_err(self, stream: Any) -> None:
        self.stderr = stream.read()

    def messages(self, message: str, agent: str | None = None) -> list[Line]:
        return [
            line
            for line in list(self.lines)
            if line.get("message") == message and (agent is None or line["agent_id"] == agent)
        ]

    def starting(self) -> list[Line]:
        return [
            line
            for line in list(self.lines)
            if str(line.get("message")).startswith("Agent starting")
        ]

    def wait_for(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if self.process.poll() is not None:
                self._out.join(timeout=5)
                value = condition()
                if value:
                    return value
                raise AssertionError(
                    f"fleet exited ({self.process.returncode}) before: {what}; "
                    f"stderr: {self.stderr[-1000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for: {what}")
            time.sleep(0.05)

    def pids(self) -> dict[str, int]:
        (started,) = self.messages("Fleet started")
        return dict(started["context"]["agents"])

    def wait_exit(self, timeout: float) -> int:
        code = self.process.wait(timeout=timeout)
        self._out.join(timeout=5)
        self._err.join(timeout=5)
        return code


@contextlib.contextmanager
def fleet_process(
    env: dict[str, str], cwd: Path, args: tuple[str, ...] = ()
) -> Iterator[RunningFleet]:
    """Start `agents run` (own session, so a signal can go to its whole group); on the way out
    SIGKILL whatever of the group is still alive."""
    process = subprocess.Popen(
        [sys.executable, "-m", "agents", "run", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        yield RunningFleet(process)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
