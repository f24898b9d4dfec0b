"""Start-up time and memory of one agent process per type and AI mode.

Each agent runs as `python -m agents <type>` against a throwaway vhost, metrics to the embedded
file (INFLUXDB_URL unset, as `agents run` locally). Start-up is spawn to the "RabbitMQ
connected" log line (settings, imports, AI mode resolved, broker connected: ready to work); RSS
is read `settle` seconds later. Modes: dry-run (DRY_RUN=true), replay (the committed
cassettes, no key) and live (a key and ANTHROPIC_BASE_URL pointing at a scripted local Messages
API server, so the real SDK is loaded and used, at no cost).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from agents.testing import clean_env
from agents.vocab import AGENT_TYPES, Event
from benchmarks.load import REPO, agent_env, spawn_agent, stop_processes

TYPES = AGENT_TYPES
MODES = ("dry-run", "replay", "live")
ANSWERS: dict[str, dict[str, Any]] = {
    "publisher": {"action": "continue", "reasoning": "steady"},
    "consumer": {"action": "process", "reasoning": "normal"},
    "monitor": {"status": "healthy", "issues": [], "suggestions": []},
}


# (agent type, prompt) -> (the JSON the model answers, the usage it reports)
Answer = Callable[[str, str], tuple[dict[str, Any], dict[str, int]]]


def _prompt_kind(prompt: str) -> str:
    """Which agent type wrote the prompt."""
    if "publisher agent" in prompt:
        return "publisher"
    return "consumer" if "Message received" in prompt else "monitor"


def _handler(answer: Answer) -> type[BaseHTTPRequestHandler]:
    class ScriptedClaude(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
            prompt = json.dumps(body.get("messages", []))
            content, usage = answer(_prompt_kind(prompt), prompt)
            reply = {
                "id": f"msg_{uuid.uuid4().hex[:24]}",
                "type": "message",
                "role": "assistant",
                "model": body.get("model", "claude-haiku-5-5"),
                "content": [{"type": "text", "text": json.dumps(content)}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": usage,
            }
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return ScriptedClaude


@contextmanager
def scripted_claude(answer: Answer) -> Iterator[str]:
    """A Messages API on 127.0.0.1 answering every prompt with `answer`: the agents run in live
    mode through the real SDK, guard and parser, with no key and at no cost. Yields its URL
    (ANTHROPIC_BASE_URL)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(answer))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def fake_claude() -> AbstractContextManager[str]:
    return scripted_claude(
        lambda kind, prompt: (ANSWERS[kind], {"input_tokens": 120, "output_tokens": 30})
    )


def mode_env(mode: str, claude_url: str) -> dict[str, str]:
    if mode == "dry-run":
        return {"DRY_RUN": "true"}
    if mode == "replay":
        return {"DRY_RUN": "false", "CASSETTES_DIR": str(REPO / "cassettes")}
    return {
        "DRY_RUN": "false",
        "ANTHROPIC_API_KEY": "sk-ant-bench-not-a-real-key",
        "ANTHROPIC_BASE_URL": claude_url,
    }


def measure(
    vhost: str, workdir: Path, kind: str, mode: str, claude_url: str, settle: float
) -> dict[str, Any]:
    """One agent: seconds to "RabbitMQ connected", RSS after `settle` more seconds, its mode."""
    import psutil

    agent_id = f"{kind}-1" if kind != "monitor" else "monitor-1"
    log_path = workdir / f"footprint-{kind}-{mode}-{uuid.uuid4().hex[:6]}.log"
    env = clean_env(
        agent_env(vhost, workdir, agent_id), drop=("ANTHROPIC_BASE_URL", "CASSETTES_DIR")
    )
    env.update(mode_env(mode, claude_url))
    env.update({"PROCESSING_TIME_MS": "0", "PYTHONDONTWRITEBYTECODE": "1"})
    with log_path.open("wb") as log:
        started = time.perf_counter()
        proc = spawn_agent(kind, env, log)
        try:
            ready = None
            deadline = started + 120.0
            while ready is None and time.perf_counter() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"{kind} ({mode}) exited {proc.returncode} at start-up")
                if b'"RabbitMQ connected"' in log_path.read_bytes():
                    ready = time.perf_counter() - started
                    break
                time.sleep(0.01)
            if ready is None:
                raise TimeoutError(f"{kind} ({mode}) not connected within 120 s")
            time.sleep(settle)
            rss = psutil.Process(proc.pid).memory_info().rss / 2**20
        finally:
            stop_processes([proc], timeout=20)
    started_line: dict[str, Any] = next(
        (
            json.loads(line)
            for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines()
            if f'"{Event.AGENT_STARTING}' in line
        ),
        {},
    )
    actual_mode = started_line.get("context", {}).get("mode")
    return {
        "type": kind,
        "mode": mode,
        "actual_mode": actual_mode,
        "startup_s": round(ready, 3),
        "rss_mb": round(rss, 1),
    }


def rounds(vhost: str, workdir: Path, count: int, settle: float, log: Any) -> list[dict[str, Any]]:
    """`count` rounds over every (type, mode), in rotating order so none is always first."""
    combos = [(k, m) for m in MODES for k in TYPES]
    out: list[dict[str, Any]] = []
    with fake_claude() as url:
        for round_no in range(count):
            shift = (round_no * 4) % len(combos)
            for kind, mode in combos[shift:] + combos[:shift]:
                result = measure(vhost, workdir, kind, mode, url, settle)
                result["round"] = round_no + 1
                out.append(result)
            log(
                f"footprint: round {round_no + 1}/{count}: "
                + ", ".join(
                    f"{r['type']}/{r['mode']}={r['rss_mb']:.0f}MB,{r['startup_s']:.2f}s"
                    for r in out
                    if r["round"] == round_no + 1
                )
            )
    return out
