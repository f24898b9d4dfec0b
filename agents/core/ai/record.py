"""`python -m agents.core.ai.record` (run by `nox -s record`): re-record the cassettes live.

Drives each agent's prompts through a scripted set of situations (empty queues, a growing
backlog, errors...) against the real API and writes `cassettes/<agent_type>.yaml`, replacing the
synthetic seeds. Credential headers are filtered out and volatile headers stripped before
anything reaches disk. Needs ANTHROPIC_API_KEY; costs well under a cent with the default model.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agents.core.ai import cassettes as cs
from agents.core.ai.client import DecisionClient
from agents.core.ai.engine import DecisionEngine
from agents.core.ai.sdk import AnthropicClient, live_sdk
from agents.core.clock import FakeClock
from agents.core.logs import JsonLogger
from agents.core.metrics import MemorySink, Metrics
from agents.core.settings import (
    CommonSettings,
    ConsumerSettings,
    MonitorSettings,
    PublisherSettings,
    load_settings,
)

KEPT_REQUEST_HEADERS = ("content-type", "anthropic-version")

# (label, arguments) per agent type: the situations a recording should cover.
SCENARIOS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "publisher": [
        ("empty queues", {"depths": (0, 0), "intervals": (5.0, 10.0)}),
        ("steady", {"depths": (12, 8), "intervals": (5.0, 10.0)}),
        ("growing backlog", {"depths": (450, 300), "intervals": (5.0, 10.0)}),
        ("large backlog", {"depths": (5000, 4200), "intervals": (8.0, 15.0)}),
        ("fictional only backlog", {"depths": (900, 3), "intervals": (5.0, 10.0)}),
        ("drained after slow-down", {"depths": (1, 0), "intervals": (30.0, 60.0)}),
    ],
    "consumer": [
        ("fictional, low priority, idle", {"genre": "fictional", "priority": 1, "depth": 0}),
        ("non-fictional, normal", {"genre": "non-fictional", "priority": 3, "depth": 15}),
        ("backlog", {"genre": "fictional", "priority": 2, "depth": 800}),
        ("urgent", {"genre": "non-fictional", "priority": 5, "depth": 40}),
        ("odd priority", {"genre": "fictional", "priority": 200, "depth": 5}),
    ],
    "monitor": [
        (
            "healthy",
            {"published": 120, "depths": {"fictional": 3, "non-fictional": 2}, "errors": 0},
        ),
        (
            "backlog",
            {"published": 150, "depths": {"fictional": 900, "non-fictional": 700}, "errors": 0},
        ),
        (
            "errors",
            {"published": 90, "depths": {"fictional": 10, "non-fictional": 4}, "errors": 12},
        ),
        ("stalled", {"published": 0, "depths": {"fictional": 0, "non-fictional": 0}, "errors": 0}),
        (
            "failing",
            {"published": 30, "depths": {"fictional": 4000, "non-fictional": 3500}, "errors": 80},
        ),
    ],
}

SETTINGS: dict[str, type[CommonSettings]] = {
    "publisher": PublisherSettings,
    "consumer": ConsumerSettings,
    "monitor": MonitorSettings,
}


def _before_record_request(request: Any) -> Any:
    request.headers = {
        name: value
        for name, value in request.headers.items()
        if name.lower() in KEPT_REQUEST_HEADERS
    }
    return request


def _before_record_response(response: dict[str, Any]) -> dict[str, Any]:
    response["headers"] = {
        name: value
        for name, value in response["headers"].items()
        if name.lower() in cs.KEPT_RESPONSE_HEADERS
    }
    return response


def recording_vcr() -> Any:
    import vcr

    recorder = vcr.VCR(
        record_mode="all",
        filter_headers=list(cs.SCRUBBED_REQUEST_HEADERS),
        before_record_request=_before_record_request,
        before_record_response=_before_record_response,
        decode_compressed_response=True,
    )
    recorder.register_matcher("body_template", cs.body_template)
    recorder.match_on = ("method", "path", "body_template")
    return recorder


@contextmanager
def recording(path: Path, metadata: dict[str, Any]) -> Iterator[Any]:
    """Record into a fresh cassette at `path` (the old one is replaced, metadata included)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    with recording_vcr().use_cassette(str(path)) as cassette:
        for key, value in metadata.items():
            cassette.get_metadata(key, value)
        yield cassette


def drive(
    agent_type: str,
    make_client: Callable[[CommonSettings, FakeClock], DecisionClient],
    overrides: dict[str, Any] | None = None,
) -> list[str]:
    """Run every scenario of `agent_type` through a real engine; returns the fallbacks seen."""
    settings = load_settings(SETTINGS[agent_type], dry_run=False, **(overrides or {}))
    clock = FakeClock()
    logger = JsonLogger(settings.agent_id, agent_type, stream=io.StringIO(), clock=clock)
    metrics = Metrics(MemorySink(), settings.agent_id, agent_type)
    engine = DecisionEngine(settings, logger, metrics, clock, make_client(settings, clock))
    fallbacks = []
    for _, args in SCENARIOS[agent_type]:
        clock.advance(engine.guard.limits.min_interval_s)
        fallback = _one(engine, agent_type, args)
        if fallback:
            fallbacks.append(fallback)
    return fallbacks


def _one(engine: DecisionEngine, agent_type: str, args: dict[str, Any]) -> str | None:
    if agent_type == "publisher":
        return engine.decide_publisher(*args["depths"], *args["intervals"]).fallback
    if agent_type == "consumer":
        return engine.decide_consumer(args["genre"], args["priority"], args["depth"]).fallback
    return engine.analyse(args["published"], args["depths"], args["errors"]).fallback


def main(argv: list[str] | None = None) -> int:
    base = load_settings(PublisherSettings)
    key = base.anthropic_api_key.get_secret_value() if base.anthropic_api_key else ""
    if not key:
        print("record: ANTHROPIC_API_KEY is not set; recording needs the real API", file=sys.stderr)
        return 2
    directory = cs.resolve_cassettes_dir(base.cassettes_dir)

    def live(settings: CommonSettings, clock: FakeClock) -> DecisionClient:
        sdk = live_sdk(key, settings.anthropic_base_url, settings.ai_timeout_seconds)
        return AnthropicClient(sdk, settings.claude_model, "live", clock)

    failed = False
    for agent_type in cs.AGENT_TYPES:
        path = cs.cassette_path(directory, agent_type)
        with recording(path, {"synthetic": False, "model": base.claude_model}):
            fallbacks = drive(agent_type, live)
        print(f"record: {path}: {len(SCENARIOS[agent_type])} situations, fallbacks: {fallbacks}")
        failed = failed or bool(fallbacks)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
