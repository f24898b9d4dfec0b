"""The e2e suite's own logic, proven without Docker: the version check it runs first, the stack
lifecycle (always `down -v`, logs on failure), readiness from `ps` rows, and the
`/api/ds/query` payloads it builds from the committed dashboards."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.engine import MIN_ENGINE, engine_problem, parse_version, version_problem
from tests.e2e.lifecycle import DOWN, StackError, brought_up, prepare_images
from tests.e2e.panel_queries import (
    GRAFANA_DEFAULT_ALL,
    Answer,
    all_values,
    ds_query_payload,
    interpolate,
    interval_ms,
    missing_data,
    panel_queries,
    read_answer,
    unresolved_variables,
)
from tests.e2e.states import ready_problem, setup_job_failure
from tests.stack.stackfiles import REPLICAS, SETUP_JOBS, dashboards

# --- Docker versions, checked first ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("25.0.3", (25, 0)), ("v2.29.1", (2, 29)), ("28.2.2+ds1", (28, 2)), ("", None)],
)
def test_parse_version(text: str, expected: tuple[int, int] | None) -> None:
    assert parse_version(text) == expected


def test_version_problem_names_what_is_missing() -> None:
    assert version_problem("28.2.2", "2.39.1") is None
    old_engine = version_problem("24.0.7", "2.39.1")
    assert old_engine and "Docker Engine 24.0.7" in old_engine and "start_interval" in old_engine
    old_compose = version_problem("28.2.2", "1.29.2")
    assert old_compose and "Compose 1.29.2" in old_compose and "Engine" not in old_compose
    both = version_problem("20.10.0", "2.3.0")
    assert both and "Engine" in both and "Compose" in both
    assert MIN_ENGINE == (25, 0)


def _runner(answers: dict[str, tuple[int, str, str]]) -> Any:
    def run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
        code, out, err = answers[command[1]]
        return subprocess.CompletedProcess(list(command), code, out, err)

    return run


def test_engine_problem_probes_engine_then_compose() -> None:
    ok = {"info": (0, "28.2.2\n", ""), "compose": (0, "2.39.1\n", "")}
    assert engine_problem(_runner(ok)) is None
    no_daemon = {**ok, "info": (1, "", "Cannot connect to the Docker daemon at unix:///x")}
    assert "Cannot connect to the Docker daemon" in str(engine_problem(_runner(no_daemon)))
    no_plugin = {**ok, "compose": (125, "", "docker: unknown command: docker compose")}
    assert "unknown command" in str(engine_problem(_runner(no_plugin)))
    old = {**ok, "info": (0, "24.0.7\n", "")}
    assert "older than 25.0" in str(engine_problem(_runner(old)))


# --- readiness from `docker compose ps --all --format json` ---------------------------------------


def _rows(**overrides: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"Service": job, "State": "exited", "ExitCode": 0} for job in SETUP_JOBS
    ]
    for name, count in REPLICAS.items():
        rows += [{"Service": name, "State": "running", "ExitCode": 0}] * count
    for service, state in overrides.items():
        service = service.replace("_", "-")
        rows = [r for r in rows if r["Service"] != service] + list(state)
    return rows


def test_ready_when_jobs_exited_0_and_every_replica_runs() -> None:
    assert ready_problem(_rows()) is None
    one_consumer = _rows(consumer=[{"Service": "consumer", "State": "running"}])
    assert ready_problem(one_consumer) == "consumer: 1 of 2 replicas running"
    assert (
        ready_problem(_rows(), {**REPLICAS, "consumer": 3}) == "consumer: 2 of 3 replicas running"
    )
    running_job = _rows(rabbitmq_setup=[{"Service": "rabbitmq-setup", "State": "running"}])
    assert ready_problem(running_job) == "rabbitmq-setup is running"


def test_a_failed_setup_job_is_reported_with_where_to_look() -> None:
    failed = _rows(influxdb_setup=[{"Service": "influxdb-setup", "State": "exited", "ExitCode": 1}])
    expected = "influxdb-setup exited 1: see `docker compose logs influxdb-setup`"
    assert setup_job_failure(failed) == expected
    assert ready_problem(failed) == expected


# --- the stack lifecycle ------------------------------------------------------------------------


class FakeStack:
    """Answers compose commands from a script; records every call."""

    def __init__(self, tmp: Path, *, fail: str = "", states: list[list[dict[str, Any]]]) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.fail = fail
        self._states = states
        self.dumped: list[str] = []
        self.tmp = tmp

    def compose(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        code = 1 if args[0] == self.fail else 0
        return subprocess.CompletedProcess(list(args), code, "", f"{args[0]} broke" if code else "")

    def states(self) -> list[dict[str, Any]]:
        return self._states[0] if len(self._states) == 1 else self._states.pop(0)

    def dump_logs(self, why: str) -> Path:
        self.dumped.append(why)
        path = self.tmp / "logs.txt"
        path.write_text(why)
        return path


def test_a_failed_up_still_dumps_logs_and_takes_everything_down(tmp_path: Path) -> None:
    fake = FakeStack(tmp_path, fail="up", states=[_rows()])
    with pytest.raises(StackError) as caught, brought_up(fake, up_timeout=1, ready_timeout=1):
        pytest.fail("must not be reached")
    assert "up broke" in str(caught.value) and str(tmp_path / "logs.txt") in str(caught.value)
    assert fake.dumped and fake.calls[-1] == DOWN


def test_a_setup_job_failure_stops_the_wait_at_once(tmp_path: Path) -> None:
    failed = _rows(rabbitmq_setup=[{"Service": "rabbitmq-setup", "State": "exited", "ExitCode": 1}])
    fake = FakeStack(tmp_path, states=[failed])
    slept: list[float] = []
    with (
        pytest.raises(StackError, match="rabbitmq-setup exited 1"),
        brought_up(fake, up_timeout=1, ready_timeout=600, sleep=slept.append),
    ):
        pass
    assert slept == [] and fake.calls[-1] == DOWN


def test_not_ready_in_time_is_a_failure_with_the_last_problem(tmp_path: Path) -> None:
    starting = _rows(monitor=[])
    fake = FakeStack(tmp_path, states=[starting])
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with (
        pytest.raises(StackError, match=r"not ready within 30 s: monitor: 0 of 1 replicas"),
        brought_up(fake, up_timeout=1, ready_timeout=30, clock=lambda: now[0], sleep=sleep),
    ):
        pass
    assert fake.calls[-1] == DOWN


def test_down_runs_after_the_tests_and_after_ctrl_c(tmp_path: Path) -> None:
    fake = FakeStack(tmp_path, states=[_rows(monitor=[]), _rows()])
    with brought_up(fake, up_timeout=1, ready_timeout=60, sleep=lambda s: None):
        assert fake.calls == [("up", "--detach", "--no-build")]
    assert fake.calls[-1] == DOWN and fake.dumped == []

    fake = FakeStack(tmp_path, states=[_rows()])
    with (
        pytest.raises(KeyboardInterrupt),
        brought_up(fake, up_timeout=1, ready_timeout=60),
    ):
        raise KeyboardInterrupt
    assert fake.calls[-1] == DOWN


def test_images_are_prepared_before_and_apart_from_up(tmp_path: Path) -> None:
    fake = FakeStack(tmp_path, states=[_rows()])
    prepare_images(fake, ["rabbitmq", "grafana"], timeout=1800)
    assert fake.calls == [("pull", "--quiet", "rabbitmq", "grafana"), ("build", "--quiet")]
    broken = FakeStack(tmp_path, fail="build", states=[_rows()])
    with pytest.raises(StackError, match="build broke"):
        prepare_images(broken, ["rabbitmq"], timeout=1800)


# --- /api/ds/query payloads from the committed dashboards ---------------------------------------

BOARDS = dashboards()


def test_every_target_of_every_panel_becomes_one_query() -> None:
    for board in BOARDS.values():
        targets = sum(len(p.get("targets", [])) for p in board["panels"])
        assert len(panel_queries(board)) == targets > 0


def test_interpolation_uses_all_values_verbatim_and_leaves_grafana_macros() -> None:
    values = {"agent_id": ".+", "agent_type": ".+"}
    text = "r.agent_id =~ /^${agent_id:regex}$/ $agent_type [[agent_id]] $__interval v.windowPeriod"
    assert interpolate(text, values) == "r.agent_id =~ /^.+$/ .+ .+ $__interval v.windowPeriod"
    assert unresolved_variables(interpolate(text, values)) == set()
    assert unresolved_variables("${other} $__range") == {"other"}


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_query_is_complete_at_all(name: str) -> None:
    board = BOARDS[name]
    values = all_values(board)
    assert set(values) == {"agent_id", "agent_type"}
    for query in panel_queries(board):
        payload = ds_query_payload(query, values)
        (target,) = payload["queries"]
        text = target.get("query") or target["expr"]
        assert unresolved_variables(text) == set(), query.where
        assert target["datasource"] == query.datasource and target["refId"] == query.ref_id


def _loki_selector_matches_empty(expr: str) -> bool:
    """True when every matcher of the stream selector accepts the empty string (Loki: 400)."""
    selector = expr[expr.index("{") + 1 : expr.index("}")]
    matchers = re.findall(r'\w+\s*(=~|=|!=|!~)\s*("(?:[^"\\]|\\.)*"|`[^`]*`)', selector)
    assert matchers, expr
    positive = [
        (op, json.loads(raw) if raw.startswith('"') else raw[1:-1])
        for op, raw in matchers
        if op in ("=", "=~")
    ]
    return all(
        (value == "") if op == "=" else re.fullmatch(value, "") is not None
        for op, value in positive
    )


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_loki_queries_at_all_are_ones_loki_accepts(name: str) -> None:
    board = BOARDS[name]
    for query in panel_queries(board):
        if query.datasource["type"] == "loki":
            expr = ds_query_payload(query, all_values(board))["queries"][0]["expr"]
            assert not _loki_selector_matches_empty(expr), query.where


def test_the_loki_check_catches_grafanas_default_all() -> None:
    board = copy.deepcopy(BOARDS["system-overview.json"])
    for variable in board["templating"]["list"]:
        variable.pop("allValue", None)
    assert set(all_values(board).values()) == {GRAFANA_DEFAULT_ALL}
    loki = [q for q in panel_queries(board) if q.datasource["type"] == "loki"]
    assert loki
    expr = ds_query_payload(loki[0], all_values(board))["queries"][0]["expr"]
    assert _loki_selector_matches_empty(expr)


def test_payload_keeps_the_target_and_adds_range_and_interval() -> None:
    board = BOARDS["cost-tracking.json"]
    queries = panel_queries(board)
    day = next(q for q in queries if q.time_from == "now-24h")
    recent = next(q for q in queries if q.time_from == "now-30m")
    payload = ds_query_payload(day, all_values(board))
    assert (payload["from"], payload["to"]) == ("now-24h", "now")
    (target,) = payload["queries"]
    # Backend macros stay for Grafana to substitute: the bucket and the time range.
    assert "v.defaultBucket" in target["query"] and "v.timeRangeStart" in target["query"]
    assert target["intervalMs"] == interval_ms(day, 10_000) == 86_400_000 // 500
    assert interval_ms(recent, 10_000) == 10_000  # the datasource's minimum interval
    assert "${agent_id:regex}" in day.target["query"]  # the dashboard's target is not mutated


# --- reading answers ------------------------------------------------------------------------------


def _frame(*columns: tuple[str, list[Any]]) -> dict[str, Any]:
    return {
        "schema": {"fields": [{"name": f"f{i}", "type": t} for i, (t, _) in enumerate(columns)]},
        "data": {"values": [values for _, values in columns]},
    }


def test_read_answer_counts_rows_and_numbers() -> None:
    body = {
        "results": {
            "A": {
                "status": 200,
                "frames": [
                    _frame(("time", [1, 2, 3]), ("number", [0.5, None, 2])),
                    _frame(("time", [4]), ("string", ["x"])),
                ],
            }
        }
    }
    assert read_answer(body, "A") == Answer(200, None, 4, 2)
    failed = {"results": {"A": {"status": 400, "error": "parse error", "frames": []}}}
    assert read_answer(failed, "A") == Answer(400, "parse error", 0, 0)
    assert read_answer({"results": {}}, "B").error == "no result for refId B"


def test_missing_data_wants_numbers_on_graphs_and_rows_on_tables() -> None:
    board = BOARDS["system-overview.json"]
    queries = {q.panel_type: q for q in panel_queries(board)}
    graph, table = queries["timeseries"], queries["table"]
    assert missing_data(graph, Answer(200, None, 5, 5)) is None
    assert missing_data(graph, Answer(200, None, 5, 0)) == "rows but no numbers"
    assert missing_data(table, Answer(200, None, 5, 0)) is None
    assert missing_data(table, Answer(200, None, 0, 0)) == "no rows"
    assert missing_data(table, Answer(400, "bad", 0, 0)) == "error 400: bad"
