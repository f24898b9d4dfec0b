"""Agent processes as the fleet runs them: `python -m agents <command>`, settings from the
environment, stdout (the JSON log lines) and stderr each captured in a file per process, so the
ledger can tell one process lifetime from another."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.testing import clean_env
from agents.testing.waiting import wait_until

from .rabbit import HOST, PORT

Line = dict[str, Any]


def agent_env(vhost: str, workdir: Path, **overrides: str) -> dict[str, str]:
    """A clean environment pointing an agent at `vhost`, AI in dry-run, metrics in `workdir`."""
    env = clean_env()  # nothing the agents read leaks in from the developer's shell
    env.update(
        {
            "RABBITMQ_HOST": HOST,
            "RABBITMQ_PORT": str(PORT),
            "RABBITMQ_USER": "guest",
            "RABBITMQ_PASS": "guest",
            "RABBITMQ_VHOST": vhost,
            "DRY_RUN": "true",
            "METRICS_FILE": str(workdir / "metrics.lp"),
            "CASSETTES_DIR": str(workdir / "cassettes"),
            "LOG_LEVEL": "INFO",
        }
    )
    env.update(overrides)
    return env


def read_lines(path: Path) -> tuple[list[Line], list[str]]:
    """JSON log lines of a file, and any line that is not one (every stdout line must be)."""
    good: list[Line] = []
    bad: list[str] = []
    if not path.exists():
        return good, bad
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except json.JSONDecodeError:
            bad.append(raw)
            continue
        (good if isinstance(line, dict) else bad).append(line)
    return good, bad


@dataclass
class AgentProcess:
    name: str
    args: tuple[str, ...]
    env: Mapping[str, str]
    workdir: Path
    proc: subprocess.Popen[bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / f"{self.name}.log"
        self.err_path = self.workdir / f"{self.name}.err"
        with self.log_path.open("ab") as out, self.err_path.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agents", *self.args],
                env=dict(self.env),
                cwd=self.workdir,
                stdout=out,
                stderr=err,
                start_new_session=True,  # a Ctrl-C on the test run does not hit the agents first
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def lines(self) -> list[Line]:
        return read_lines(self.log_path)[0]

    def messages(self, text: str) -> list[Line]:
        return [line for line in self.lines() if line.get("message", "").startswith(text)]

    def wait_for_line(
        self, match: Callable[[Line], bool], timeout: float = 30.0, what: str = "a log line"
    ) -> Line:
        def probe() -> Line | None:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.proc.returncode} while waiting for {what}; "
                    f"stderr: {self.err_path.read_text(errors='replace')[-2000:]}"
                )
            return next((line for line in self.lines() if match(line)), None)

        return wait_until(probe, timeout, f"{self.name}: {what}")

    def wait_connected(self, timeout: float = 60.0) -> None:
        self.wait_for_line(
            lambda line: line.get("message") in ("RabbitMQ connected", "RabbitMQ reconnected"),
            timeout,
            "RabbitMQ connected",
        )

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait (the agents promise to exit within 10 s); SIGKILL if they do not."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} ignored SIGTERM for {timeout}s") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stderr(self) -> str:
        return self.err_path.read_text(encoding="utf-8", errors="replace")


@dataclass
class Fleet:
    """Agent processes started one by one (so a test can kill exactly one of them)."""

    workdir: Path
    base_env: Mapping[str, str]
    procs: dict[str, AgentProcess] = field(default_factory=dict)

    def start(self, name: str, command: str, **env: str) -> AgentProcess:
        process = AgentProcess(name, (command,), {**self.base_env, **env}, self.workdir)
        self.procs[name] = process
        return process

    def publishers(self) -> list[AgentProcess]:
        return [p for p in self.procs.values() if p.args[0] == "publisher"]

    def consumers(self) -> list[AgentProcess]:
        return [p for p in self.procs.values() if p.args[0] == "consumer"]

    def monitors(self) -> list[AgentProcess]:
        return [p for p in self.procs.values() if p.args[0] == "monitor"]

    def stop_all(self) -> None:
        for process in self.procs.values():
            with contextlib.suppress(AssertionError):
                process.stop()

    def log_files(self) -> list[Path]:
        return [p.log_path for p in self.procs.values()]


@contextlib.contextmanager
def fleet(workdir: Path, base_env: Mapping[str, str]) -> Iterator[Fleet]:
    running = Fleet(workdir, base_env)
    try:
        yield running
    finally:
        for process in running.procs.values():
            process.kill()


def publisher_env(index: int, interval: float) -> dict[str, str]:
    """A fast publisher: both genres every `interval` s, no AI decision during a short run."""
    return {
        "PUBLISHER_ID": f"publisher-{index}",
        "FICTIONAL_INTERVAL_SECONDS": str(interval),
        "NONFICTIONAL_INTERVAL_SECONDS": str(interval),
        "MIN_PUBLISH_INTERVAL_SECONDS": str(min(interval, 0.01)),
        "DECISION_INTERVAL_SECONDS": "3600",
    }


def consumer_env(index: int, **extra: str) -> dict[str, str]:
    return {"CONSUMER_ID": f"consumer-{index}", "AI_DECISION_RATE": "0", **extra}


def now_wall() -> float:
    return time.time()
