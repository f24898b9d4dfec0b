"""`python -m agents.devtools.record` (run by `nox -s record`): re-record the cassettes live.

Drives each agent's prompts through a grid of situations (empty queues to a flood, both
publishing rates, every priority, no errors to many: the states the scenarios reach) against the
real API and writes `cassettes/<agent_type>.yaml`, replacing the synthetic seeds, each with a
metadata header (when, model, SDK, API version, endpoint, synthetic or real). Credential headers
are filtered out and volatile headers stripped before anything reaches disk. Needs
ANTHROPIC_API_KEY; 161 calls of a few hundred tokens, an estimated cent at most with the default
model (never measured: no recording has been made yet). With ANTHROPIC_BASE_URL set to
another endpoint the result is labelled synthetic (tests record through a local fake this way).
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.core.ai import cassettes as cs
from agents.core.ai.engine import DecisionEngine
from agents.core.ai.sdk import AnthropicClient, live_sdk
from agents.core.logs import JsonLogger
from agents.core.metrics import MemorySink, Metrics
from agents.core.settings import (
    CommonSettings,
    ConsumerSettings,
    MonitorSettings,
    PublisherSettings,
    load_settings,
)
from agents.ports import DecisionClient
from agents.testing.clock import FakeClock
from agents.vocab import AGENT_TYPES

KEPT_REQUEST_HEADERS = ("content-type", "anthropic-version")

# The situations a recording covers, per agent type: a grid over the numbers in each prompt, so
# that nearest-match replay (cassettes.nearest) answers every state the scenarios reach
# (agents/scenarios.py) with the recording made nearest to it. The grid's values are the
# scenarios' own: publishers at the normal 5 s / 10 s and slowed 20 s / 40 s; queues empty,
# a few, a surge of hundreds, an incident flood of thousands; errors none, a few, many.
# Nearest-match compares each number on its own (cassettes.distance), so the grid is a product
# over each queue's depth: a backlog in one queue and none in the other is its own situation.
PUBLISHER_INTERVALS = ((5.0, 10.0), (20.0, 40.0))
PUBLISHER_FICTIONAL = (0, 3, 15, 60, 200, 600, 2500, 5000)
PUBLISHER_NONFICTIONAL = (0, 5, 30, 200, 2500)
CONSUMER_PRIORITIES = (1, 2, 3, 4, 5)
CONSUMER_DEPTHS = (0, 30, 300, 3000)
MONITOR_FICTIONAL = (0, 15, 250, 2500, 6000)
MONITOR_NONFICTIONAL = (0, 15, 250, 2500)
MONITOR_ERRORS = (0, 3, 30)


def _situations() -> dict[str, list[tuple[str, dict[str, Any]]]]:
    publisher = [
        (
            f"depths {f}/{n} at {fi:g}s/{ni:g}s",
            {"depths": (f, n), "intervals": (fi, ni)},
        )
        for fi, ni in PUBLISHER_INTERVALS
        for f in PUBLISHER_FICTIONAL
        for n in PUBLISHER_NONFICTIONAL
    ]
    consumer = [
        (
            f"priority {priority}, depth {depth}",
            {"genre": "fictional", "priority": priority, "depth": depth},
        )
        for depth in CONSUMER_DEPTHS
        for priority in CONSUMER_PRIORITIES
    ]

    def monitor_args(published: int, f: int, n: int, errors: int) -> dict[str, Any]:
        depths = {"fictional": f, "non-fictional": n}
        return {"published": published, "depths": depths, "errors": errors}

    monitor = [("stalled: nothing published", monitor_args(0, 0, 0, 0))] + [
        (f"depths {f}/{n}, errors {errors}", monitor_args(40, f, n, errors))
        for f in MONITOR_FICTIONAL
        for n in MONITOR_NONFICTIONAL
        for errors in MONITOR_ERRORS
    ]
    return {"publisher": publisher, "consumer": consumer, "monitor": monitor}


SCENARIOS: dict[str, list[tuple[str, dict[str, Any]]]] = _situations()

SETTINGS: dict[str, type[CommonSettings]] = {
    "publisher": PublisherSettings,
    "consumer": ConsumerSettings,
    "monitor": MonitorSettings,
}


OFFICIAL_API = "https://api.anthropic.com"


def cassette_header(
    *, synthetic: bool, model: str, generator: str, note: str, endpoint: str = OFFICIAL_API
) -> dict[str, Any]:
    """The metadata every cassette carries: when, with what, and whether the answers are real.
    `synthetic` is what the start-up line and the README label go by."""
    import anthropic
    from anthropic._constants import ANTHROPIC_API_VERSION

    return {
        "synthetic": synthetic,
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": model,
        "sdk": f"anthropic-python {anthropic.__version__}",
        "api_version": ANTHROPIC_API_VERSION,
        "endpoint": endpoint,
        "generator": generator,
        "note": note,
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

    endpoint = (base.anthropic_base_url or OFFICIAL_API).rstrip("/")
    official = endpoint == OFFICIAL_API
    failed = False
    for agent_type in AGENT_TYPES:
        path = cs.cassette_path(directory, agent_type)
        header = cassette_header(
            synthetic=not official,
            model=base.claude_model,
            generator="nox -s record (python -m agents.devtools.record)",
            note="real answers from the Anthropic API"
            if official
            else f"answers from {endpoint} (ANTHROPIC_BASE_URL), not the Anthropic API",
            endpoint=endpoint,
        )
        with recording(path, header):
            fallbacks = drive(agent_type, live)
        print(f"record: {path}: {len(SCENARIOS[agent_type])} situations, fallbacks: {fallbacks}")
        failed = failed or bool(fallbacks)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
