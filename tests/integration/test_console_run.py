"""`agents run` at a terminal: under a pseudo-terminal (pexpect) a person gets the readable view
(header, event lines, status line, summary), never a raw JSON line, while --log-file keeps the
full JSON. The first line comes before any heavy import."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pexpect
import pytest

from agents.core.logs import REQUIRED_KEYS
from agents.testing import parse_lines
from tests.support.fleet import replay_env, unreachable_broker_env

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
HEAVY = ("pydantic", "pika", "anthropic", "influxdb_client", "rich", "httpx")


def test_the_first_line_comes_before_any_heavy_import(tmp_path: Path) -> None:
    started = time.monotonic()
    child = pexpect.spawn(
        sys.executable,
        ["-X", "importtime", "-m", "agents", "run", "--duration", "1"],
        env=unreachable_broker_env(),
        cwd=str(tmp_path),
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 200),
    )
    child.expect("starting 5 agents")
    first_line_s = time.monotonic() - started
    before = child.before
    child.expect(pexpect.EOF)
    child.close()
    imported = [line.split("|")[-1].strip() for line in before.splitlines() if "|" in line]
    heavy = [name for name in imported if name.split(".")[0] in HEAVY]
    assert heavy == [], heavy
    assert "not reachable" in child.before  # and then the run goes on as before
    print(f"first line after {first_line_s:.2f} s (under -X importtime, on this machine's load)")


@pytest.mark.rabbitmq
@pytest.mark.slow
def test_a_terminal_gets_the_readable_view_and_the_log_file_the_json(
    rabbit_env: dict[str, str], tmp_path: Path
) -> None:
    log_file = tmp_path / "fleet.jsonl"
    env = replay_env(tmp_path / "metrics.lp", TERM="xterm-256color")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "agents", "run", "--log-file", str(log_file)],
        env=env,
        cwd=str(tmp_path),
        encoding="utf-8",
        timeout=300,  # the agents' start-up is slow on a loaded 2-core machine
        dimensions=(50, 180),
    )
    child.expect("starting 5 agents")
    child.expect("scenario steady")
    child.expect("metrics -> ")
    child.expect("AI mode")
    child.expect("replay")
    child.expect("SYNTHETIC")
    child.expect(r"AI (continue|process)")
    child.expect(r"\| queues fictional=\d+")
    child.expect(r"AI (continue|process|healthy)")
    child.expect("5/5 agents up")  # a Ctrl-C during an agent's imports is a traceback
    # Ctrl-C at the terminal: SIGINT to the whole foreground process group, agents included.
    child.sendintr()
    child.expect("run summary")
    child.expect(r"fleet count: \d+ confirmed by the broker")
    child.expect("draw this run: uv run --extra report agents report --since")
    child.expect(pexpect.EOF)
    summary = ANSI.sub("", child.before or "")
    child.close()
    assert child.exitstatus == 0, summary
    # Nothing on the screen is a raw JSON log line...
    screen = ANSI.sub("", child.before or "")
    assert '{"timestamp"' not in screen
    # ...and the log file has every line in the contract's shape.
    lines = parse_lines(log_file.read_text())
    assert lines and all(tuple(line) == REQUIRED_KEYS for line in lines)
    messages = [line["message"] for line in lines]
    assert "Message published" in messages and "Message consumed" in messages
    assert sum(1 for line in lines if line["level"] == "AI_DECISION") >= 2
    # The embedded metrics file is said once, at INFO, not five WARNINGs.
    assert [line["level"] for line in lines if line["message"] == "Metrics destination"] == ["INFO"]
    assert not [line for line in lines if "INFLUXDB_URL is not set" in line["message"]]
