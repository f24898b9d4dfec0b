"""Scenario 7: a bad value in any variable stops every command with exit code 2 and one line on
stderr naming the variable, before anything connects anywhere.

The bad values are derived from each field's own type and constraints, and a guard test fails
when a settings field is neither covered here nor listed as accepting any text, so a variable
added later cannot escape the scenario.
"""

from __future__ import annotations

import subprocess
import sys
import types
import typing
from typing import Any, Literal

import pytest
from annotated_types import Ge, Gt, Le, Lt
from pydantic.fields import FieldInfo

from agents.cli import main
from agents.core.settings import SETTINGS_BY_TYPE

pytestmark = pytest.mark.faults

# Variables whose every value is acceptable text, and why that is right.
ANY_TEXT = {
    "ANTHROPIC_API_KEY": "a secret: any string can be a key; the API judges it",
    "RABBITMQ_PASS": "a secret: any string can be a password",
    "INFLUXDB_TOKEN": "a secret: any string can be a token",
    "CLAUDE_MODEL": "model ids change; an unknown id is reported (price unknown) at start-up",
    "CASSETTES_DIR": "a path",
    "METRICS_FILE": "a path",
    "RABBITMQ_VHOST": "any vhost name (the broker refuses unknown ones, logged per attempt)",
    "RABBITMQ_HOST": "a host name; unreachable hosts are retried and logged",
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


def bad_values(name: str, field: FieldInfo) -> list[str]:
    """Values that must be refused, derived from the field's type and constraints."""
    kind = _base_type(field.annotation)
    low = high = None
    for item in field.metadata:
        if isinstance(item, Ge | Gt):
            low = float(item.ge if isinstance(item, Ge) else item.gt)
        if isinstance(item, Le | Lt):
            high = float(item.le if isinstance(item, Le) else item.lt)
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
        return ["ftp://influxdb:8086", "influxdb:8086", "http://"]
    if name == "consumer_queues":
        return ["books", "fictional,poetry", ","]
    if name == "anthropic_base_url":
        return ["not a url", "localhost:8080"]
    if name == "budget_redis_url":
        return ["redis:6379", "http://redis:6379"]
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
    for cls in SETTINGS_BY_TYPE.values():
        for name, info in cls.model_fields.items():
            monkeypatch.delenv(variable(name, info), raising=False)


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
