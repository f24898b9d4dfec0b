"""Scenario 7: a bad value in any variable stops every command with exit code 2 and one line on
stderr naming the variable, before anything connects anywhere.

The bad values are derived from each field's own type and constraints, and a guard test fails
when a settings field is neither covered here nor listed as accepting any text, so a variable
added later cannot escape the scenario.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
import typing
import uuid
from pathlib import Path
from typing import Any, Literal

import pytest
from annotated_types import Ge, Gt, Le, Lt
from pydantic.fields import FieldInfo

from agents.cli import main
from agents.core.settings import SETTINGS_BY_TYPE, FleetSettings
from tests.support.env import scrub_env
from tests.support.rabbit import management

pytestmark = pytest.mark.faults

# Variables whose every value is acceptable text, and why that is right.
ANY_TEXT = {
    "ANTHROPIC_API_KEY": "a secret: any string can be a key; the API judges it",
    "RABBITMQ_PASS": "a secret: any string can be a password",
    "INFLUXDB_TOKEN": "a secret: any string can be a token",
    "CASSETTES_DIR": "a path",
    "METRICS_FILE": "a path",
    "RABBITMQ_VHOST": "any vhost name (the broker refuses unknown ones, logged per attempt)",
    "RABBITMQ_USER": "a user name",
    "INFLUXDB_ORG": "any org name",
    "INFLUXDB_BUCKET": "any bucket name",
    "BUDGET_LEDGER": "a path (an unusable file refuses every live call: the ledger fails closed)",
    "BUDGET_REDIS_PREFIX": "any key prefix (length checked)",
}


def variable(name: str, field: FieldInfo) -> str:
    return (field.alias or name).upper()


def _base_type(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return args[0] if len(args) == 1 else annotation
    return annotation


def _number(bound: object) -> float:
    # annotated_types types a bound as merely comparable; every settings bound is a number.
    assert isinstance(bound, int | float), bound
    return float(bound)


def bad_values(name: str, field: FieldInfo) -> list[str]:
    """Values that must be refused, derived from the field's type and constraints."""
    kind = _base_type(field.annotation)
    low = high = None
    for item in field.metadata:
        if isinstance(item, Ge | Gt):
            low = _number(item.ge if isinstance(item, Ge) else item.gt)
        if isinstance(item, Le | Lt):
            high = _number(item.le if isinstance(item, Le) else item.lt)
    values: list[str] = []
    if kind is bool:
        return ["maybe", "2"]
    if kind in (int, float):
        values = ["abc", "12abc"]
        if kind is int:
            values.append("1.5")
        else:
            values += ["nan", "inf"]
        if low is not None:
            below = low - 1 if kind is int else (low - 0.5 if low > 0 else -0.001)
            values.append(str(int(below)) if kind is int else repr(below))
        if high is not None:
            values.append(str(int(high) + 1) if kind is int else repr(high * 2 + 1))
        return values
    if typing.get_origin(kind) is Literal:
        return ["LOUD", "info "]
    patterns = [getattr(m, "pattern", None) for m in field.metadata]
    if any(patterns):
        return ["Bad_ID", "1starts-with-digit", "a" * 70]
    if name == "influxdb_url":
        return ["ftp://influxdb:8086", "influxdb:8086", "http://", "http://influx db:8086"]
    if name == "consumer_queues":
        return ["books", "fictional,poetry", ","]
    if name == "anthropic_base_url":
        return ["not a url", "localhost:8080", "http://proxy host:8080"]
    if name == "budget_redis_url":
        return ["redis:6379", "http://redis:6379"]
    if name == "claude_model":  # any id may be valid one day; a blank one never is
        return ["   ", "claude haiku"]
    if name == "rabbitmq_host":
        return ["   ", "rabbit host"]
    return values


CASES: list[tuple[str, str, str]] = []
for agent_type, cls in SETTINGS_BY_TYPE.items():
    for field_name, info in cls.model_fields.items():
        for bad in bad_values(field_name, info):
            CASES.append((agent_type, variable(field_name, info), bad))


def _params() -> list[Any]:
    params = []
    for agent_type, var, bad in CASES:
        params.append(pytest.param(agent_type, var, bad, id=f"{agent_type}-{var}={bad[:20]}"))
    return params


def test_every_variable_is_covered() -> None:
    uncovered = sorted(
        {
            variable(name, info)
            for cls in SETTINGS_BY_TYPE.values()
            for name, info in cls.model_fields.items()
            if not bad_values(name, info) and variable(name, info) not in ANY_TEXT
        }
    )
    assert not uncovered, f"no bad value derived for {uncovered}: add one or justify in ANY_TEXT"
    assert len(CASES) > 100


def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    scrub_env(
        monkeypatch,
        {
            variable(name, info)
            for cls in SETTINGS_BY_TYPE.values()
            for name, info in cls.model_fields.items()
        },
    )


@pytest.mark.parametrize(("agent_type", "var", "bad"), _params())
def test_bad_value_exits_2_with_one_line_naming_it(
    agent_type: str,
    var: str,
    bad: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _clean_env(monkeypatch)
    # Unreachable broker: if a bad value were accepted, the agent commands must not get anywhere.
    if var != "RABBITMQ_PORT":
        monkeypatch.setenv("RABBITMQ_PORT", "1")
    monkeypatch.setenv(var, bad)
    for argv in (["config", agent_type], [agent_type]):
        code = main(argv)
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert code == 2, f"{argv} with {var}={bad!r} exited {code}"
        assert len(lines) == 1, f"expected one line, got {lines}"
        assert var in lines[0], lines[0]
        assert captured.out == ""


def test_publisher_interval_bounds_are_checked_together(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _clean_env(monkeypatch)
    monkeypatch.setenv("MIN_PUBLISH_INTERVAL_SECONDS", "50")
    monkeypatch.setenv("MAX_PUBLISH_INTERVAL_SECONDS", "10")
    assert main(["publisher"]) == 2
    line = capsys.readouterr().err.strip()
    assert "MIN_PUBLISH_INTERVAL_SECONDS" in line and "\n" not in line


@pytest.mark.parametrize(
    ("command", "var", "bad"),
    [
        (["config", "monitor"], "CHECK_INTERVAL_SECONDS", "0"),
        (["publisher"], "FICTIONAL_INTERVAL_SECONDS", "-1"),
        (["consumer"], "AI_DECISION_RATE", "1.5"),
        (["monitor"], "AGENT_ID", "Monitor One"),
        (["run", "--duration", "1"], "RABBITMQ_PORT", "70000"),
        (["setup", "rabbitmq"], "RABBITMQ_PORT", "0"),
        (["cost", "plan"], "MAX_TOKENS_PER_HOUR", "-5"),
    ],
)
def test_real_process_exit_code(command: list[str], var: str, bad: str) -> None:
    """The console entry point as a process: the exit code the container runtime sees."""
    env = {"PATH": "/usr/bin:/bin", var: bad, "RABBITMQ_HOST": "127.0.0.1"}
    result = subprocess.run(
        [sys.executable, "-m", "agents", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr[-500:])
    assert len(lines) == 1 and var in lines[0], lines


def one_line_failure(
    command: list[str], env: dict[str, str], cwd: Path, timeout: float = 120
) -> tuple[int, str]:
    """Run `agents <command>` as a process: (exit code, its one stderr line). Asserts one line,
    no traceback and nothing on stdout (no child started, nothing logged)."""
    result = subprocess.run(
        [sys.executable, "-m", "agents", *command],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert result.stdout == ""
    return result.returncode, lines[0]


@pytest.mark.parametrize("command", [["run", "--duration", "5"], ["consumer"]])
@pytest.mark.parametrize("where", ["a-directory", "under-dev-null"])
def test_an_unusable_metrics_file_is_exit_2_naming_it(
    tmp_path: Path, command: list[str], where: str
) -> None:
    path = str(tmp_path) if where == "a-directory" else "/dev/null/metrics.lp"
    env = {"METRICS_FILE": path, "DRY_RUN": "true", "RABBITMQ_HOST": "127.0.0.1"}
    code, line = one_line_failure(command, env, tmp_path)
    assert code == 2
    assert "METRICS_FILE" in line and path in line
    assert "Is a directory" in line if where == "a-directory" else "not a directory" in line


@pytest.mark.parametrize("command", [["run", "--duration", "5"], ["consumer"]])
@pytest.mark.parametrize(
    "content",
    ["interactions: [\n  - {{{ not yaml", "just a string\n", "interactions: 7\n"],
    ids=["not-yaml", "not-a-mapping", "wrong-shape"],
)
def test_a_malformed_cassette_is_exit_2_naming_the_file(
    tmp_path: Path, command: list[str], content: str
) -> None:
    cassettes = tmp_path / "cassettes"
    cassettes.mkdir()
    for kind in ("publisher", "consumer", "monitor"):
        (cassettes / f"{kind}.yaml").write_text(content)
    env = {
        "CASSETTES_DIR": str(cassettes),
        "METRICS_FILE": str(tmp_path / "m.lp"),
        "RABBITMQ_HOST": "127.0.0.1",
    }
    code, line = one_line_failure(command, env, tmp_path)
    assert code == 2
    assert "CASSETTES_DIR" in line and "consumer.yaml" in line and "DRY_RUN=true" in line


def rabbit_env(**extra: str) -> dict[str, str]:
    return {
        "RABBITMQ_HOST": os.environ.get("RABBITMQ_HOST", "127.0.0.1"),
        "DRY_RUN": "true",
        **extra,
    }


@pytest.mark.rabbitmq
def test_agents_run_tells_a_wrong_password_from_a_missing_vhost_from_no_broker(
    tmp_path: Path,
) -> None:
    password = "not-the-password-4711"
    metrics = str(tmp_path / "m.lp")
    code, auth = one_line_failure(
        ["run", "--duration", "5"],
        rabbit_env(RABBITMQ_PASS=password, METRICS_FILE=metrics),
        tmp_path,
    )
    assert code == 1
    assert "refused authentication for user 'guest'" in auth
    assert "check RABBITMQ_USER and RABBITMQ_PASS" in auth
    assert "For details see the broker logfile." in auth, "the detail is never cut mid-word"
    assert password not in auth

    vhost = f"missing-{uuid.uuid4().hex[:8]}"
    code, missing = one_line_failure(
        ["run", "--duration", "5"], rabbit_env(RABBITMQ_VHOST=vhost, METRICS_FILE=metrics), tmp_path
    )
    assert code == 1
    assert f"has no vhost '{vhost}'" in missing
    assert f"vhost {vhost} not found" in missing
    assert f"rabbitmqctl add_vhost {vhost}" in missing

    code, unreachable = one_line_failure(
        ["run", "--duration", "5"],
        rabbit_env(RABBITMQ_PORT="1", METRICS_FILE=metrics),
        tmp_path,
    )
    assert code == 1
    assert "is not reachable" in unreachable and "rabbitmq-server -detached" in unreachable
    fixes = {"RABBITMQ_PASS": auth, "add_vhost": missing, "rabbitmq-server": unreachable}
    for fix, line in fixes.items():  # each line carries its own fix and only its own
        others = [other for other in fixes.values() if other is not line]
        assert all(fix not in other for other in others), fix


@pytest.mark.rabbitmq
def test_a_user_without_access_to_the_vhost_is_told_how_to_grant_it(tmp_path: Path) -> None:
    user = f"noaccess-{uuid.uuid4().hex[:8]}"
    management("PUT", f"/api/users/{user}", {"password": "noaccess-pass", "tags": ""})
    try:
        code, line = one_line_failure(
            ["run", "--duration", "5"],
            rabbit_env(
                RABBITMQ_USER=user,
                RABBITMQ_PASS="noaccess-pass",
                METRICS_FILE=str(tmp_path / "m.lp"),
            ),
            tmp_path,
        )
    finally:
        management("DELETE", f"/api/users/{user}")
    assert code == 1
    assert f"denied user '{user}' access to vhost '/'" in line
    assert "rabbitmqctl set_permissions" in line
    assert "noaccess-pass" not in line


FLEET_CASES = [
    pytest.param(variable(name, info), bad, id=f"run-{variable(name, info)}={bad[:20]}")
    for name, info in FleetSettings.model_fields.items()
    if name.startswith("fleet_")
    for bad in bad_values(name, info)
]


@pytest.mark.parametrize(("var", "bad"), FLEET_CASES)
def test_a_bad_fleet_setting_exits_2_before_anything_starts(
    var: str, bad: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _clean_env(monkeypatch)
    monkeypatch.setenv("RABBITMQ_PORT", "1")
    monkeypatch.setenv(var, bad)
    assert main(["run", "--duration", "1"]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert var in line
    assert captured.out == ""


def test_every_fleet_variable_is_covered() -> None:
    fleet_fields = [name for name in FleetSettings.model_fields if name.startswith("fleet_")]
    assert len(fleet_fields) == 6  # the restart policy and the fleet spend caps
    assert {case.values[0] for case in FLEET_CASES} == {name.upper() for name in fleet_fields}
