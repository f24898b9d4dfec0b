"""The compose stack end to end (`nox -s e2e`), brought up and torn down by this file.

The stack fixture is our own rather than pytest-docker's: pytest-docker runs `up` before its
try/finally, so a failed start left the stack, its ports and volumes running and printed no logs.
Here, in order:

1. the engine and Compose versions are checked first (Engine >= 25, Compose v2); where no engine
   runs, the whole suite is one skip line, never a pass;
2. images are pulled and the agent image is built under their own time limit (E2E_BUILD_TIMEOUT,
   default 30 min), outside every test's timeout (`func_only`): a slow network is not a failure
   of the stack;
3. `up` and the wait for the setup jobs and agents run inside a try: on any failure, every
   service's logs and `ps --all` are written to a file and shown, and `down -v` always runs
   (unless E2E_KEEP_STACK=true).

The stack runs under its own project name, with host ports picked free (a laptop's own RabbitMQ
on 5672 does not clash), no API key whatever the shell exports (replayed Claude answers, so the
run costs nothing), and agent intervals shortened so decisions show up within minutes.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from tests.e2e.engine import engine_problem as _probe
from tests.e2e.lifecycle import StackError, brought_up, prepare_images
from tests.e2e.stack import Stack
from tests.stack.stackfiles import INFRA_PORTS, env_file

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
BUILD_TIMEOUT = float(os.environ.get("E2E_BUILD_TIMEOUT", "1800"))
UP_TIMEOUT = 300.0  # `up -d` itself: creating networks, volumes and containers
READY_TIMEOUT = 300.0  # setup jobs exited and every agent replica running
HERE = Path(__file__).resolve().parent


@cache
def engine_problem() -> str | None:
    return _probe()


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
            reason=f"end-to-end suite not run ({len(e2e)} tests), no usable Docker: {problem}"
        )
    )
    if rest:
        config.hook.pytest_deselected(items=rest)
        items[:] = [item for item in items if item not in rest]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    problem = engine_problem()
    if problem:
        pytest.skip(f"no usable Docker: {problem}")
    env = {**env_file(), **FAST, "ANTHROPIC_API_KEY": "", "DRY_RUN": "false"}
    if os.environ.get("E2E_DRY_RUN") == "true":
        env["DRY_RUN"] = "true"
    env.update({name: str(_free_port()) for name in PORT_VARIABLES})
    base = tmp_path_factory.mktemp("stack")
    path = base / "e2e.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    logs_dir = Path(os.environ.get("E2E_LOGS_DIR", str(base)))
    logs_dir.mkdir(parents=True, exist_ok=True)
    return Stack(
        env=env, env_path=path, project=f"books-agents-e2e-{os.getpid()}", logs_dir=logs_dir
    )


@pytest.fixture(scope="session")
def running(stack: Stack) -> Iterator[Stack]:
    """The stack built, up and ready; always torn down with its volumes."""
    try:
        prepare_images(stack, list(INFRA_PORTS), BUILD_TIMEOUT)
    except StackError as exc:
        pytest.fail(f"could not prepare the images (not a stack failure): {exc}", pytrace=False)
    keep = os.environ.get("E2E_KEEP_STACK") == "true"
    try:
        with brought_up(stack, up_timeout=UP_TIMEOUT, ready_timeout=READY_TIMEOUT, keep=keep):
            yield stack
    except StackError as exc:
        pytest.fail(str(exc), pytrace=False)


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    """A failing test gets every service's logs attached (and written to a file)."""
    if call.excinfo is None or call.excinfo.errisinstance(pytest.skip.Exception):
        return
    stack = item.funcargs.get("running") if hasattr(item, "funcargs") else None
    if isinstance(stack, Stack):
        path = stack.dump_logs(f"{item.nodeid} failed in {call.when}")
        text = path.read_text()
        item.add_report_section(call.when, f"docker compose logs ({path})", text[-20_000:])
