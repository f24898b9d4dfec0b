"""Heavy clients are imported only by the modes that use them: the anthropic SDK (~80 MB, ~2 s)
only in live and replay, influxdb_client only when INFLUXDB_URL is set. Checked in a fresh
interpreter, which wires a real agent exactly as `main` does (minus the broker connection)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from agents.testing import clean_env

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("anthropic", "influxdb_client", "httpx2", "vcr")

PROBE = """
import json, sys
from agents.core.metrics.reader import reader_from_settings
from agents.core.settings import ConsumerSettings, MonitorSettings, PublisherSettings, load_settings
from agents.runtime import StopFlag, wire

modes = []
for kind in sys.argv[1:]:
    classes = {"publisher": PublisherSettings, "consumer": ConsumerSettings}
    settings = load_settings(classes.get(kind, MonitorSettings))
    wiring = wire(settings, StopFlag())
    # The agent module and class too, as `agents <kind>` imports and builds them.
    if kind == "publisher":
        from agents.publisher import Publisher
        Publisher(wiring, reader=reader_from_settings(settings))
    elif kind == "consumer":
        from agents.consumer import Consumer
        Consumer(wiring)
    else:
        import agents.monitor  # noqa: F401
    wiring.metrics.close()
    modes.append(wiring.engine.mode)
print(json.dumps({"modes": modes, "heavy": sorted(
    m for m in sys.modules if m.split(".")[0] in {HEAVY}
)}))
""".replace("{HEAVY}", repr(set(HEAVY)))


def probe(kinds: list[str], tmp_path: Path, **env: str) -> dict[str, Any]:
    clean = clean_env(
        drop=("ANTHROPIC_*", "INFLUXDB_*", "DRY_RUN*", "CASSETTES_DIR*"),
        **{
            "METRICS_FILE": str(tmp_path / "metrics.lp"),
            "CASSETTES_DIR": str(tmp_path / "no-cassettes"),
            **env,
        },
    )
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *kinds],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_dry_run_agents_import_no_heavy_client(tmp_path: Path) -> None:
    # One interpreter for all three: sys.modules only grows, so none of them may load one.
    found = probe(["publisher", "consumer", "monitor"], tmp_path, DRY_RUN="true")
    assert found == {"modes": ["dry-run"] * 3, "heavy": []}


def test_the_probe_sees_the_clients_the_modes_need(tmp_path: Path) -> None:
    # Without this the test above could pass on a probe that never looks.
    found = probe(
        ["publisher"],
        tmp_path,
        ANTHROPIC_API_KEY="sk-ant-test-not-a-real-key",
        INFLUXDB_URL="http://127.0.0.1:9",
    )
    assert found["modes"] == ["live"]
    heavy = {str(m).split(".")[0] for m in found["heavy"]}
    assert {"anthropic", "influxdb_client"} <= heavy


def third_party_after(statements: str) -> dict[str, list[str]]:
    """In a fresh interpreter, run each line of `statements` (imports) in turn; for each, the
    modules then loaded that are not the standard library's."""
    probe = (
        "import json, sys\n"
        "seen = {}\n"
        f"for line in {statements.splitlines()!r}:\n"
        "    exec(line)\n"
        "    seen[line] = sorted(m for m in sys.modules\n"
        "        if m != '__main__' and m.split('.')[0] not in sys.stdlib_module_names)\n"
        "print(json.dumps(seen))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    found: dict[str, list[str]] = json.loads(out.stdout)
    return found


def test_ports_and_vocabulary_need_only_the_standard_library() -> None:
    """`agents.ports` and `agents.vocab` are the contracts adapters, fakes and benchmarks share:
    importing them must not pull in pika, pydantic, an HTTP stack or any adapter of ours."""
    (loaded,) = third_party_after("import agents.ports, agents.vocab").values()
    assert set(loaded) <= {"agents", "agents.ports", "agents.vocab"}


def test_the_cost_guard_and_its_tables_need_only_the_standard_library() -> None:
    """A budget report or a ledger worker imports the price table, the guard, the ledger and the
    prompts without the SDK (the issue measured 4.4 s for the 54-line price table when
    `agents.core.ai` imported the engine eagerly). The reply schemas need pydantic, nothing more."""
    light = (
        "import agents.core.ai.prices, agents.core.ai.guard, agents.core.ai.ledger, "
        "agents.core.ai.budget, agents.core.ai.prompts, agents.core.ai.client"
    )
    found = third_party_after(f"{light}\nimport agents.core.ai.schemas")
    before, after = found.values()
    assert {m.split(".")[0] for m in before} == {"agents"}, before
    added = {m.split(".")[0] for m in after} - {m.split(".")[0] for m in before}
    assert not added & {*HEAVY, "pydantic_settings", "yaml"}, added
