"""`agents run --scenario steady|surge|incident`: situations that make the AI's choices visible.

A scenario changes nothing in the agents: it only sets existing settings (the same environment
variables compose uses) and injects traffic through the broker, from outside the agents, the way
a bulk import or a misbehaving producer would. To fit a demo into a few minutes it shortens the
decision intervals, and its header line says so.

- steady:   today's settings, nothing injected.
- surge:    consumers slowed (PROCESSING_TIME_MS, PREFETCH_COUNT) and a bulk import of books
            dropped on the queues every few minutes: the publishers slow down, the consumers
            batch, the monitor warns; once the queues drain the publishers speed up again.
- incident: malformed messages arrive, then a producer floods the fictional queue with messages
            all marked urgent, and consumer-2 stalls: the consumers dead-letter and flag, the
            monitor reports critical and prints its alert.

Explicit environment variables win over a scenario's settings (so tests and users can tune them);
the per-agent settings that make the scenario (consumer-2's stall) always apply.
"""

from __future__ import annotations

import contextlib
import random
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agents.vocab import EXCHANGE, FICTIONAL, NON_FICTIONAL, QUEUES, Event

if TYPE_CHECKING:
    from agents.core.logs import JsonLogger
    from agents.core.settings import CommonSettings
    from agents.runtime import StopFlag

NAMES = ("steady", "surge", "incident")

# The demo timing both non-steady scenarios use; production values in the comments.
DEMO_TIMING: dict[str, str] = {
    "DECISION_INTERVAL_SECONDS": "15",  # publishers decide every 60 s
    "AI_CALL_INTERVAL_SECONDS": "3",  # consumers ask at most every 30 s
    "AI_DECISION_RATE": "0.05",  # of the messages, 0.1
    "CHECK_INTERVAL_SECONDS": "15",  # the monitor analyses every 120 s
    "SUMMARY_WINDOW_SECONDS": "60",  # over the last 300 s
    "QUEUE_SAMPLE_INTERVAL_SECONDS": "3",  # and samples depths every 10 s
}
TIMING_NOTE = (
    "demo timing: publishers decide every {DECISION_INTERVAL_SECONDS} s (normally 60), consumers "
    "may ask every {AI_CALL_INTERVAL_SECONDS} s (30), the monitor checks every "
    "{CHECK_INTERVAL_SECONDS} s (120) over {SUMMARY_WINDOW_SECONDS} s (300)"
)

SURGE_IMPORT = {FICTIONAL: 400, NON_FICTIONAL: 200}
SURGE_EVERY_S = 120.0
FLOOD_SIZE = 2500
FLOOD_PRIORITY = 5
MALFORMED_COUNT = 20
MALFORMED_SPACING_S = 0.5
INCIDENT_EVERY_S = 150.0
CONSUMERS_READY_TIMEOUT_S = 300.0  # agents take a while to start on a busy machine


@dataclass(frozen=True)
class Injection:
    """One batch of traffic the scenario put on the broker (for the log and the summary)."""

    kind: str
    queue: str
    count: int
    valid: bool


class Injector:
    """Publishes a scenario's traffic through the broker on its own connection, with publisher
    confirms, as an outside producer would. Every message is counted once it is confirmed."""

    def __init__(self, settings: CommonSettings, logger: JsonLogger, scenario: str) -> None:
        self.settings = settings
        self.logger = logger
        self.scenario = scenario
        self.rng = random.Random()
        self.injected: dict[str, int] = {}
        self._connection: Any = None
        self._channel: Any = None

    def open(self) -> None:
        import pika

        from agents.core.broker import connection_parameters

        self._connection = pika.BlockingConnection(connection_parameters(self.settings))
        self._channel = self._connection.channel()
        self._channel.confirm_delivery()

    def close(self) -> None:
        if self._connection is not None and self._connection.is_open:
            self._connection.close()

    def consumers_ready(self, stop: StopFlag) -> bool:
        """Wait until every book queue has a consumer, so injected traffic meets running agents."""
        from agents.core.broker import passive_consumers

        waited = 0.0
        while not stop.is_set() and waited < CONSUMERS_READY_TIMEOUT_S:
            if min(passive_consumers(self._channel, q) for q in QUEUES) >= 1:
                return True
            self._connection.sleep(0.5)
            waited += 0.5
        return False

    def publish(self, queue: str, body: bytes, content_type: str = "application/json") -> None:
        import pika

        self._channel.basic_publish(
            EXCHANGE,
            queue,
            body,
            pika.BasicProperties(
                content_type=content_type,
                delivery_mode=pika.DeliveryMode.Persistent,
                message_id=str(uuid.uuid4()),
                app_id=f"scenario-{self.scenario}",
            ),
            mandatory=True,
        )

    def books(self, queue: str, count: int, priority: int | None, stop: StopFlag) -> int:
        from datetime import UTC, datetime

        from agents.messages import Catalogue

        catalogue = Catalogue.load()
        sent = 0
        for _ in range(count):
            if stop.is_set():
                break
            book = catalogue.make(queue, f"{self.scenario}-import", self.rng, datetime.now(UTC))  # type: ignore[arg-type]
            if priority is not None:
                book = book.model_copy(update={"priority": priority})
            self.publish(queue, book.to_json())
            sent += 1
        return sent

    def record(self, injection: Injection) -> None:
        key = "valid" if injection.valid else "malformed"
        self.injected[key] = self.injected.get(key, 0) + injection.count
        self.logger.info(
            Event.SCENARIO_INJECTED,
            scenario=self.scenario,
            kind=injection.kind,
            queue=injection.queue,
            count=injection.count,
            valid=injection.valid,
        )

    def idle(self, seconds: float, stop: StopFlag) -> None:
        """Wait, keeping the connection serviced, until `seconds` pass or a stop is requested."""
        left = seconds
        while left > 0 and not stop.is_set():
            step = min(0.5, left)
            self._connection.sleep(step)
            left -= step


def malformed_bodies() -> Iterator[tuple[str, bytes, str]]:
    """(what, body, content type): each is invalid for a different reason, cycling."""
    good = {
        "message_id": "",
        "genre": FICTIONAL,
        "title": "Dune",
        "author": "Frank Herbert",
        "priority": 3,
        "published_at": "2026-01-31T10:15:30.123Z",
        "publisher_id": "incident-producer",
    }
    import json

    variants: list[tuple[str, Callable[[], bytes], str]] = [
        ("not JSON", lambda: b"<html>502 Bad Gateway</html>", "application/json"),
        (
            "priority 9",
            lambda: json.dumps({**good, "priority": 9, "message_id": _id()}).encode(),
            "application/json",
        ),
        (
            "missing title",
            lambda: json.dumps(
                {k: v for k, v in {**good, "message_id": _id()}.items() if k != "title"}
            ).encode(),
            "application/json",
        ),
        (
            "wrong content type",
            lambda: json.dumps({**good, "message_id": _id()}).encode(),
            "text/plain",
        ),
        (
            "oversized",
            lambda: json.dumps({**good, "message_id": _id(), "title": "x" * 5000}).encode(),
            "application/json",
        ),
    ]
    while True:
        for what, body, content_type in variants:
            yield what, body(), content_type


def _id() -> str:
    return str(uuid.uuid4())


def surge(injector: Injector, stop: StopFlag) -> None:
    while not stop.is_set():
        for queue, count in SURGE_IMPORT.items():
            sent = injector.books(queue, count, None, stop)
            injector.record(Injection("bulk import", queue, sent, valid=True))
        injector.idle(SURGE_EVERY_S, stop)


def incident(injector: Injector, stop: StopFlag) -> None:
    while not stop.is_set():
        # Malformed first, on queues that are not yet backed up, so the errors show at once...
        bodies = malformed_bodies()
        for i in range(MALFORMED_COUNT):
            if stop.is_set():
                break
            what, body, content_type = next(bodies)
            queue = QUEUES[i % 2]
            injector.publish(queue, body, content_type)
            injector.record(Injection(f"malformed: {what}", queue, 1, valid=False))
            injector.idle(MALFORMED_SPACING_S, stop)
        # ...then the flood, which the stalled consumer cannot help with.
        sent = injector.books(FICTIONAL, FLOOD_SIZE, FLOOD_PRIORITY, stop)
        injector.record(
            Injection(f"flood, every message priority {FLOOD_PRIORITY}", FICTIONAL, sent, True)
        )
        injector.idle(INCIDENT_EVERY_S, stop)


@dataclass(frozen=True)
class Scenario:
    name: str
    story: str
    settings: Mapping[str, str] = field(default_factory=dict)
    per_agent: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    traffic: Callable[[Injector, StopFlag], None] | None = None

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        """The fleet's environment: the scenario's settings under the explicit ones."""
        return {**self.settings, **env}

    def agent_env(self, agent: str) -> dict[str, str]:
        return dict(self.per_agent.get(agent, {}))

    def header(self, env: Mapping[str, str]) -> str:
        """One line: what this scenario does and, when it shortens them, the intervals it uses."""
        line = f"scenario {self.name}: {self.story}"
        if any(key in self.settings for key in DEMO_TIMING):
            effective = {key: env.get(key, value) for key, value in DEMO_TIMING.items()}
            line += "; " + TIMING_NOTE.format(**effective)
        return line


SCENARIOS: dict[str, Scenario] = {
    "steady": Scenario("steady", "today's settings, no injected traffic"),
    "surge": Scenario(
        "surge",
        f"consumers slowed to PROCESSING_TIME_MS=150 (PREFETCH_COUNT=10) and a bulk import of "
        f"{sum(SURGE_IMPORT.values())} books every {SURGE_EVERY_S:g} s",
        # A small prefetch keeps the backlog in the queue, where depth readings see it.
        settings={**DEMO_TIMING, "PROCESSING_TIME_MS": "150", "PREFETCH_COUNT": "10"},
        traffic=surge,
    ),
    "incident": Scenario(
        "incident",
        f"{MALFORMED_COUNT} malformed messages, then a flood of {FLOOD_SIZE} all marked urgent, "
        f"every {INCIDENT_EVERY_S:g} s; consumer-2 stalled at PROCESSING_TIME_MS=1500",
        settings={**DEMO_TIMING, "PROCESSING_TIME_MS": "20", "PREFETCH_COUNT": "10"},
        per_agent={"consumer-2": {"PROCESSING_TIME_MS": "1500"}},
        traffic=incident,
    ),
}


def get(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; choose one of {', '.join(NAMES)}") from None


def run_traffic(
    scenario: Scenario, settings: CommonSettings, logger: JsonLogger, stop: StopFlag
) -> Injector | None:
    """Start the scenario's traffic on a daemon thread; None when it injects nothing."""
    import threading

    if scenario.traffic is None:
        return None
    injector = Injector(settings, logger, scenario.name)
    traffic = scenario.traffic

    def body() -> None:
        import pika.exceptions

        try:
            injector.open()
            if not injector.consumers_ready(stop):
                logger.warning(Event.SCENARIO_NOT_STARTED)
                return
            traffic(injector, stop)
        except (pika.exceptions.AMQPError, OSError) as exc:
            logger.error(Event.SCENARIO_BROKER_ERROR, error=str(exc)[:200])
        finally:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                injector.close()

    thread = threading.Thread(target=body, name=f"scenario-{scenario.name}", daemon=True)
    thread.start()
    return injector
