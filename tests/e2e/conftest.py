"""The compose stack end to end, brought up by pytest-docker (`nox -s e2e`).

pytest-docker never skips by itself when Docker is missing (its fixtures raise), so the engine
is probed here once and every test is skipped with one line saying why: an absent engine is
never reported as a pass.

The stack runs under its own project name, with host ports picked free at start (a laptop's own
RabbitMQ on 5672 does not clash), no API key whatever the shell exports (replayed Claude answers,
so the run costs nothing), and agent intervals shortened so decisions show up within minutes.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from tests.stack.stackfiles import COMPOSE_FILE, env_file, referenced_variables

# Shorter than the specification's 60/30/120 s so a run shows every kind of decision quickly;
# the cost caps stay the specification's.
FAST = {
    "DECISION_INTERVAL_SECONDS": "5",
    "AI_CALL_INTERVAL_SECONDS": "2",
    "CHECK_INTERVAL_SECONDS": "15",
    "AI_DECISION_RATE": "0.5",
}
PORT_VARIABLES = {
    "RABBITMQ_AMQP_PORT": 5672,
    "RABBITMQ_MANAGEMENT_PORT": 15672,
    "INFLUXDB_PORT": 8086,
    "LOKI_PORT": 3100,
    "GRAFANA_PORT": 3000,
}


@cache
def engine_problem() -> str | None:
    """None when a Docker engine and the compose plugin answer, else one line saying why not."""
    for command in (
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        ["docker", "compose", "version"],
    ):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"`{' '.join(command[:2])}` could not run ({exc.__class__.__name__})"
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
            return f"`{' '.join(command[:2])}` failed: {lines[-1][:160]}"
    return None


HERE = Path(__file__).resolve().parent


@pytest.hookimpl(trylast=True)  # after `-m` deselection: probe only when e2e tests will run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    e2e = [item for item in items if HERE in Path(str(item.path)).resolve().parents]
    if not e2e:
        return
    problem = engine_problem()
    if problem is None:
        return
    # One line in the summary, never a pass: the first test carries the skip and the count,
    # the others are deselected.
    first, rest = e2e[0], e2e[1:]
    first.add_marker(
        pytest.mark.skip(
            reason=f"end-to-end suite not run ({len(e2e)} tests), no Docker engine: {problem}"
        )
    )
    if rest:
        config.hook.pytest_deselected(items=rest)
        items[:] = [item for item in items if item not in rest]


@pytest.fixture(scope="session")
def _docker_engine() -> None:
    problem = engine_problem()
    if problem:
        pytest.skip(f"no Docker engine: {problem}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class Stack:
    env: dict[str, str]
    compose_command: str

    def port(self, variable: str) -> int:
        return int(self.env[variable])

    def url(self, variable: str) -> str:
        return f"http://127.0.0.1:{self.port(variable)}"

    def compose(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        command = f"{self.compose_command} {' '.join(shlex.quote(a) for a in args)}"
        return subprocess.run(  # noqa: S602 - the same shell command pytest-docker runs
            command, shell=True, capture_output=True, text=True, timeout=timeout, check=False
        )


@pytest.fixture(scope="session")
def stack(_docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    env = {**env_file(), **FAST, "ANTHROPIC_API_KEY": "", "DRY_RUN": "false"}
    if os.environ.get("E2E_DRY_RUN") == "true":
        env["DRY_RUN"] = "true"
    env.update({name: str(_free_port()) for name in PORT_VARIABLES})
    path: Path = tmp_path_factory.mktemp("stack") / "e2e.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    # Variables exported in the shell win over --env-file in compose: unset them all, so an
    # ANTHROPIC_API_KEY in a developer's shell can never make this run spend money.
    unset = " ".join(f"-u {name}" for name in sorted(referenced_variables()))
    command = f"env {unset} docker compose --env-file {shlex.quote(str(path))}"
    return Stack(env=env, compose_command=command)


# --- pytest-docker's fixtures, pointed at the project's compose file ------------------------------


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(COMPOSE_FILE)


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    return f"books-agents-e2e-{os.getpid()}"


@pytest.fixture(scope="session")
def docker_compose_command(stack: Stack) -> str:
    return stack.compose_command


@pytest.fixture(scope="session")
def docker_setup() -> list[str]:
    # Not `up --wait`: the one-shot setup jobs exit, which --wait may report as a failure.
    # The tests wait on each condition themselves.
    return ["up --build --detach"]


@pytest.fixture(scope="session")
def docker_cleanup() -> list[str]:
    if os.environ.get("E2E_KEEP_STACK") == "true":
        return []
    return ["down --volumes --remove-orphans --timeout 20"]


@pytest.fixture(scope="session")
def running(stack: Stack, docker_services: object, docker_compose_project_name: str) -> Stack:
    """The stack, up; on failure the last log lines of every service are printed for diagnosis."""
    return Stack(
        stack.env,
        f"{stack.compose_command} -f {shlex.quote(str(COMPOSE_FILE))} "
        f"-p {shlex.quote(docker_compose_project_name)}",
    )


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    if (
        call.when != "call"
        or call.excinfo is None
        or call.excinfo.errisinstance(pytest.skip.Exception)
    ):
        return
    stack = item.funcargs.get("running") if hasattr(item, "funcargs") else None
    if isinstance(stack, Stack):
        logs = stack.compose("logs", "--no-color", "--tail", "30", timeout=60)
        item.add_report_section(
            "call", "docker compose logs (last 30 lines each)", logs.stdout[-20_000:]
        )
