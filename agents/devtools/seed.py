"""`python -m agents.devtools.seed`: write synthetic cassettes until someone records real ones.

The answers are built from the SDK's own response types (`anthropic.types.Message`), served to
the real SDK through an in-memory transport, and recorded by the same vcrpy pipeline as
`nox -s record`, so the cassettes hold exactly the requests the SDK sends and parse exactly as
real responses do. Each cassette says `synthetic: true` in its metadata; `nox -s record`
replaces them with real recordings.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import anthropic
import httpx2
from anthropic.types import Message, TextBlock, Usage

from agents.core.ai import cassettes as cs
from agents.core.ai.prompts import numbers_of
from agents.core.ai.sdk import AnthropicClient, live_sdk
from agents.core.settings import CommonSettings, load_settings
from agents.devtools.record import SETTINGS, cassette_header, drive, recording
from agents.ports import DecisionClient
from agents.testing.clock import FakeClock
from agents.vocab import AGENT_TYPES

# The rules behind the synthetic answers, chosen to be what a sensible operator would do, and so
# that the scenarios' states (agents/scenarios.py) get every action:
BACKLOG_SLOW_DOWN = 150  # publisher: a backlog this deep means publish slower...
SLOWED_INTERVAL = 20.0  # ...unless already at or past this interval (then wait for the drain)
DRAINED = 20  # publisher: below this, a slowed publisher returns to the normal rate
NORMAL_INTERVALS = (5.0, 10.0)
BATCH_DEPTH = 100  # consumer: routine (priority <= 2) messages behind this many are batched
FLAG_DEPTH = 1000  # consumer: an urgent (priority 5) message behind this many is flagged
WARNING_BACKLOG = 100  # monitor
CRITICAL_BACKLOG = 5000
CRITICAL_ERRORS = 10


def synthetic_answer(prompt: str) -> dict[str, object]:
    """A plausible answer for a prompt, so replayed fleets behave sensibly."""
    numbers = numbers_of(prompt)
    if prompt.startswith("You are a publisher agent"):
        fictional, nonfictional, f_interval, n_interval = numbers[:4]
        backlog = int(fictional + nonfictional)
        if backlog >= BACKLOG_SLOW_DOWN and f_interval < SLOWED_INTERVAL:
            return {
                "action": "slow_down",
                "fictional_interval": round(f_interval * 4, 1),
                "nonfictional_interval": round(n_interval * 4, 1),
                "reasoning": f"Backlog of {backlog} messages: publishing 4x slower "
                "until the consumers catch up.",
            }
        if backlog >= BACKLOG_SLOW_DOWN:
            return {
                "action": "continue",
                "fictional_interval": f_interval,
                "nonfictional_interval": n_interval,
                "reasoning": f"Backlog of {backlog}, already publishing slowly: "
                "let the consumers drain it.",
            }
        if backlog < DRAINED and f_interval > NORMAL_INTERVALS[0]:
            return {
                "action": "speed_up",
                "fictional_interval": NORMAL_INTERVALS[0],
                "nonfictional_interval": NORMAL_INTERVALS[1],
                "reasoning": f"Queues drained ({backlog} left): back to the normal rate.",
            }
        return {
            "action": "continue",
            "fictional_interval": f_interval,
            "nonfictional_interval": n_interval,
            "reasoning": f"Queue depths are low ({backlog}) and stable.",
        }
    if prompt.startswith("Message received"):
        priority, depth = int(numbers[0]), int(numbers[1])
        if priority > 5 or (priority == 5 and depth >= FLAG_DEPTH):
            return {
                "action": "flag",
                "reasoning": f"Urgent message stuck behind {depth} queued: "
                "unusual, flag it for a human.",
            }
        if depth >= BATCH_DEPTH and priority <= 2:
            return {
                "action": "batch",
                "reasoning": f"{depth} queued and priority {priority}: batch it.",
            }
        return {"action": "process", "reasoning": "Normal message: process immediately."}
    published, *depths, errors = numbers
    backlog = int(sum(depths))
    issues, suggestions = [], []
    if errors:
        issues.append(f"{int(errors)} errors in the summary window")
        suggestions.append("Inspect the dead-letter queue")
    if backlog >= WARNING_BACKLOG:
        issues.append(f"Queue backlog of {backlog} messages")
        suggestions.append("Consider scaling consumers")
    if published == 0:
        issues.append("No messages published")
        suggestions.append("Check that the publishers are running")
    status = "healthy"
    if issues:
        critical = errors >= CRITICAL_ERRORS or backlog >= CRITICAL_BACKLOG
        status = "critical" if critical else "warning"
    return {"status": status, "issues": issues, "suggestions": suggestions}


def synthetic_response(request: httpx2.Request) -> httpx2.Response:
    body = json.loads(request.content)
    prompt = cs.prompt_of(body)
    text = json.dumps(synthetic_answer(prompt))
    message = Message(
        id="msg_synthetic_" + hashlib.sha256(prompt.encode()).hexdigest()[:20],
        type="message",
        role="assistant",
        model=body["model"],
        content=[TextBlock(type="text", text=text)],
        stop_reason="end_turn",
        usage=Usage(
            # Roughly four bytes per token, plus the structured-output framing.
            input_tokens=len(request.content) // 4 + 40,
            output_tokens=len(text) // 4 + 2,
        ),
    )
    return httpx2.Response(
        200,
        headers={"content-type": "application/json"},
        content=message.model_dump_json(exclude_none=True).encode(),
    )


def main(argv: list[str] | None = None) -> int:
    directory = Path(argv[0]) if argv else cs.resolve_cassettes_dir(Path("cassettes"))

    def offline(settings: CommonSettings, clock: FakeClock) -> DecisionClient:
        transport = httpx2.MockTransport(synthetic_response)
        sdk = live_sdk(
            "seed-no-key",
            "https://api.anthropic.com",
            settings.ai_timeout_seconds,
            http_client=anthropic.DefaultHttpxClient(transport=transport),
        )
        return AnthropicClient(sdk, settings.claude_model, "live", clock)

    for agent_type in AGENT_TYPES:
        path = cs.cassette_path(directory, agent_type)
        metadata = cassette_header(
            synthetic=True,
            model=load_settings(SETTINGS[agent_type]).claude_model,
            generator="python -m agents.devtools.seed",
            note="synthetic answers built from anthropic.types.Message by the rules in "
            "agents/devtools/seed.py; `nox -s record` replaces this file with real recordings",
        )
        with recording(path, metadata):
            fallbacks = drive(agent_type, offline, {"anthropic_api_key": None})
        if fallbacks:
            print(f"seed: {agent_type}: unexpected fallbacks {fallbacks}", file=sys.stderr)
            return 1
        print(f"seed: wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
