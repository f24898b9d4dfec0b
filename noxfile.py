"""Developer and CI sessions. `nox` alone runs lint and tests; the rest are opt-in.

Each session installs the locked dependencies (uv.lock) into its own virtualenv, so CI and a
laptop test the same versions.
"""

from __future__ import annotations

import os

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"


def install(session: nox.Session, *groups: str) -> None:
    """Install the project and the given dependency groups exactly as locked in uv.lock."""
    args = ["uv", "sync", "--locked", "--no-default-groups", "--inexact"]
    for group in groups:
        args += ["--group", group]
    session.run_install(
        *args,
        env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location},
        external=True,
    )


def pytest(session: nox.Session, *args: str, groups: tuple[str, ...] = ("test",)) -> None:
    """Install `groups`, then pytest with `args` and whatever follows `--` on the nox line."""
    install(session, *groups)
    session.run("pytest", *args, *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check, mypy --strict."""
    # mypy checks benchmarks/ as well, which import locust and pyinstrument (the bench group).
    install(session, "lint", "test", "bench")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Everything that runs without Docker, the RabbitMQ integration tier included."""
    pytest(
        session,
        "-m",
        "not docker and not bench and not scenario",
        "--block-network",
        "--allowed-hosts=127.0.0.1,localhost,::1",
    )


@nox.session(python=PYTHON, default=False)
def e2e(session: nox.Session) -> None:
    """The compose stack end to end (needs a Docker engine; skips with a reason otherwise)."""
    pytest(session, "-m", "docker", "tests/e2e")


@nox.session(python=PYTHON, default=False)
def record(session: nox.Session) -> None:
    """Re-record the Claude cassettes against the real API (needs ANTHROPIC_API_KEY)."""
    if not os.environ.get("ANTHROPIC_API_KEY"):
        session.error("ANTHROPIC_API_KEY is not set: recording needs the real API")
    install(session, "test")
    session.run("python", "-m", "agents.devtools.record", *session.posargs)


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks against the local RabbitMQ: writes benchmarks/results/latest.json and a chart."""
    install(session, "test", "bench")
    session.run("python", "-m", "benchmarks.run", *session.posargs)


@nox.session(python=PYTHON, default=False)
def faults(session: nox.Session) -> None:
    """Long fault-injection scenarios; writes benchmarks/results/faults.json."""
    pytest(session, "-m", "faults", "tests/faults", "--run-long-faults", groups=("test", "bench"))


@nox.session(python=PYTHON, default=False)
def dashboards(session: nox.Session) -> None:
    """Regenerate infra/grafana/dashboards/*.json from the Python definitions (`-- --check`
    only reports drift, exiting 1)."""
    install(session, "dashboards")
    session.run("python", "-m", "agents.dashboards", *session.posargs)


@nox.session(python=PYTHON, default=False)
def scenarios(session: nox.Session) -> None:
    """The demo scenarios end to end (minutes each); writes benchmarks/results/scenarios.json."""
    pytest(session, "-m", "scenario", "tests/integration/test_scenarios_e2e.py", "-s")


@nox.session(python=PYTHON, default=False)
def demo(session: nox.Session) -> None:
    """The surge scenario on the local RabbitMQ, no Docker, AI in replay mode at $0
    (`nox -s demo -- --scenario incident` for the other one)."""
    install(session)
    args = list(session.posargs)
    if "--scenario" not in args:
        args = ["--scenario", "surge", *args]
    session.run("agents", "run", *args)
