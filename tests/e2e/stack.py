"""The compose project a test run brings up: its env file, project name and free host ports, and
`docker compose` run against it with a clean environment."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.testing import clean_env
from tests.stack.stackfiles import (
    AGENTS,
    COMPOSE_FILE,
    INFRA_PORTS,
    SETUP_JOBS,
    referenced_variables,
)


@dataclass(frozen=True)
class Stack:
    env: dict[str, str]
    env_path: Path
    project: str
    logs_dir: Path
    started_at: float = field(default_factory=time.time)

    def port(self, variable: str) -> int:
        return int(self.env[variable])

    def url(self, variable: str) -> str:
        return f"http://127.0.0.1:{self.port(variable)}"

    def command(self, *args: str) -> list[str]:
        return [
            "docker",
            "compose",
            "--env-file",
            str(self.env_path),
            "-f",
            str(COMPOSE_FILE),
            "-p",
            self.project,
            *args,
        ]

    def compose(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        # Variables exported in the shell win over --env-file in Compose: drop them all, so an
        # ANTHROPIC_API_KEY in a developer's shell can never make this run spend money.
        clean = clean_env(drop=referenced_variables())
        return subprocess.run(
            self.command(*args),
            env=clean,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def states(self) -> list[dict[str, Any]]:
        """`ps --all` as one dict per container (Service, State, ExitCode, Name, ...)."""
        done = self.compose("ps", "--all", "--format", "json")
        text = done.stdout.strip()
        if text.startswith("["):  # older v2 releases print one JSON array
            rows: list[dict[str, Any]] = json.loads(text)
            return rows
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def services(self) -> list[str]:
        done = self.compose("config", "--services")
        return [line for line in done.stdout.splitlines() if line.strip()]

    def dump_logs(self, why: str) -> Path:
        """Every service's full logs and `ps --all` into one file; returns its path."""
        path = self.logs_dir / f"compose-logs-{time.time_ns()}.txt"
        parts = [f"# {why}\n", "## docker compose ps --all\n"]
        parts.append(self.compose("ps", "--all").stdout)
        for service in self.services() or [*INFRA_PORTS, *SETUP_JOBS, *AGENTS]:
            done = self.compose("logs", "--no-color", "--timestamps", service, timeout=120)
            parts.append(f"\n## docker compose logs {service}\n{done.stdout}{done.stderr}")
        path.write_text("".join(parts))
        return path
