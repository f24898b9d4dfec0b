"""Flux and LogQL in the dashboards parse with InfluxData's and Grafana's own parsers.

Flux cannot run here (no InfluxDB), and Python has no Flux or LogQL parser, so the check runs
tools/check_query_syntax.mjs under Node with the parsers pinned in tools/package-lock.json.
It installs them with `npm ci` when needed; without Node it skips (and fails under CI=true).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.dashboards.dashboard_queries import ROOT, flux_queries, load_dashboards, logql_queries

TOOLS = ROOT / "tools"
DASHBOARDS = load_dashboards()

# What Grafana substitutes before a query reaches the database: one value regex-escaped, several
# joined, or the variables' "All" value; and the datasource's default bucket.
_BUCKET = {"v.defaultBucket": '"agent_metrics"'}
SUBSTITUTIONS = {
    "one": {"${agent_id:regex}": "publisher\\-1", "${agent_type:regex}": "publisher", **_BUCKET},
    "several": {
        "${agent_id:regex}": "(consumer\\-1|publisher\\-2)",
        "${agent_type:regex}": "(consumer|publisher)",
        **_BUCKET,
    },
    "all": {"${agent_id:regex}": ".+", "${agent_type:regex}": ".+", **_BUCKET},
}


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def node() -> str:
    node = shutil.which("node")
    npm = shutil.which("npm")
    if not node or not npm:
        _unavailable("Node.js/npm not installed: the Flux/LogQL syntax check needs Node >= 20")
    assert node and npm
    if not (TOOLS / "node_modules" / "@influxdata" / "flux-lsp-browser").exists():
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--prefix", str(TOOLS)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            _unavailable(f"`npm ci --prefix tools` failed: {done.stderr.strip()[-300:]}")
    return node


def check(
    node: str, flux: dict[str, str], logql: dict[str, str]
) -> dict[str, dict[str, list[str]]]:
    done = subprocess.run(
        [node, "--experimental-wasm-modules", "--no-warnings", "check_query_syntax.mjs"],
        cwd=TOOLS,
        input=json.dumps({"flux": flux, "logql": logql}),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, dict[str, list[str]]] = json.loads(done.stdout)
    return result


def _substitute(text: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        text = text.replace(name, value)
    return text


@pytest.mark.parametrize("values", SUBSTITUTIONS.values(), ids=SUBSTITUTIONS.keys())
def test_every_query_parses(node: str, values: dict[str, str]) -> None:
    flux = {q.where: _substitute(q.text, values) for q in flux_queries(DASHBOARDS)}
    logql = {q.where: _substitute(q.text, values) for q in logql_queries(DASHBOARDS)}
    result = check(node, flux, logql)
    assert set(result["flux"]) == set(flux) and set(result["logql"]) == set(logql)
    errors = {k: v for kind in result.values() for k, v in kind.items() if v}
    assert errors == {}


def test_the_parsers_reject_broken_queries(node: str) -> None:
    flux = next(iter(flux_queries(DASHBOARDS))).text
    logql = _substitute(next(iter(logql_queries(DASHBOARDS))).text, SUBSTITUTIONS["one"])
    assert logql.endswith("} | json")
    result = check(
        node,
        {"unclosed": flux.rsplit(")", 1)[0], "bad map": flux + "\n  |> map(fn: (r) => ({r with}))"},
        {"unclosed": logql.replace("} | json", " | json"), "bad pipe": logql + " | json |"},
    )
    assert all(result["flux"].values()), result["flux"]
    assert all(result["logql"].values()), result["logql"]


def test_the_check_installs_from_the_committed_lockfile() -> None:
    lock = json.loads((TOOLS / "package-lock.json").read_text())
    pinned = {
        k.removeprefix("node_modules/"): v["version"] for k, v in lock["packages"].items() if k
    }
    assert pinned["@influxdata/flux-lsp-browser"] == "0.8.40"
    assert pinned["@grafana/lezer-logql"] == "0.4.2"
    assert Path(TOOLS / "check_query_syntax.mjs").exists()
