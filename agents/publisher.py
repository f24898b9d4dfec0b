"""The publisher agent: publishes book messages on two timers and lets the AI tune the timers.

State is two intervals (fictional, non-fictional). Every DECISION_INTERVAL_SECONDS the agent
reads the queue depths (InfluxDB or the metrics file, falling back to the broker when those have
nothing recent), asks the engine, and applies the intervals it answers, clamped again here to
[MIN_PUBLISH_INTERVAL_SECONDS, MAX_PUBLISH_INTERVAL_SECONDS] because the model is not trusted.
An answer whose action is "continue" leaves the intervals as they are.
A message counts as published only once the broker has confirmed it.
"""

from __future__ import annotations

import random
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from agents.core.metrics import PUBLISH, QUEUE_DEPTH, Metrics
from agents.core.metrics_read import reader_from_settings
from agents.messages import GENRES, Catalogue, Genre
from agents.ports import BrokerError, MetricsReader, MetricsReadError
from agents.runtime import Interrupted, StopFlag, Wiring, run_agent

if TYPE_CHECKING:
    from agents.core.ai import DecisionEngine
    from agents.core.logs import JsonLogger
    from agents.core.settings import PublisherSettings
    from agents.ports import Broker, Clock

# The monitor samples every 10 s by default; older than this and the broker is asked instead.
DEPTH_MAX_AGE_SECONDS = 60.0


class Publisher:
    def __init__(
        self,
        settings: PublisherSettings,
        broker: Broker,
        engine: DecisionEngine,
        metrics: Metrics,
        logger: JsonLogger,
        clock: Clock,
        reader: MetricsReader | None = None,
        catalogue: Catalogue | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.engine = engine
        self.metrics = metrics
        self.logger = logger
        self.clock = clock
        self.reader = reader
        self.catalogue = catalogue or Catalogue.load()
        self.rng = rng or random.Random()
        self._agent_id = settings.agent_id
        self.intervals: dict[Genre, float] = {
            "fictional": self._clamp(settings.fictional_interval_seconds),
            "non-fictional": self._clamp(settings.nonfictional_interval_seconds),
        }
        now = clock.monotonic()
        self.next_publish: dict[Genre, float] = {genre: now for genre in GENRES}
        self.next_decision = now + settings.decision_interval_seconds
        self.published = 0
        self.failed = 0
        self.decisions = 0

    def _clamp(self, seconds: float) -> float:
        low = self.settings.min_publish_interval_seconds
        high = self.settings.max_publish_interval_seconds
        return min(max(float(seconds), low), high)

    # --- publishing ------------------------------------------------------------------------

    def publish_one(self, genre: Genre) -> str | None:
        """Build, publish and await the confirm for one message; its id, or None if it failed.

        The hot path of a loaded publisher, so it does only what each message needs: the body
        comes pre-validated from the catalogue (`make_outgoing`), and the metric is folded into
        the current interval's aggregate instead of becoming a point of its own.
        """
        out = self.catalogue.make_outgoing(genre, self._agent_id, self.rng, self.clock.now())
        try:
            confirm_ms = self.broker.publish(genre, out.body, message_id=out.message_id)
        except BrokerError as exc:
            self.failed += 1
            self.logger.exception(
                "Publish failed; message not confirmed", exc, queue=genre, message_id=out.message_id
            )
            self.metrics.error("publish_failed")
            return None
        self.published += 1
        confirm_ms = round(confirm_ms, 3)
        self.logger.info(
            "Message published",
            message_id=out.message_id,
            queue=genre,
            duration_ms=confirm_ms,
            priority=out.priority,
        )
        self.metrics.count(PUBLISH, "messages_published", 1, queue=genre)
        self.metrics.observe(PUBLISH, "publish_duration_ms", confirm_ms, queue=genre)
        return out.message_id

    # --- deciding ------------------------------------------------------------------------------

    def queue_depths(self) -> tuple[dict[str, int], str]:
        """Latest sampled depths from the metrics store, else straight from the broker."""
        if self.reader is not None:
            since = self.clock.now() - timedelta(seconds=DEPTH_MAX_AGE_SECONDS)
            try:
                found = self.reader.last_field("queue_depth", "queue_depth", since, "queue")
            except MetricsReadError as exc:
                self.logger.warning("Metrics store unavailable for queue depths", error=str(exc))
                found = {}
            if all(genre in found for genre in GENRES):
                return {genre: int(found[genre]) for genre in GENRES}, "metrics"
        return self.broker.queue_depths(GENRES), "broker"

    def decide(self) -> None:
        try:
            depths, source = self.queue_depths()
        except BrokerError as exc:
            self.logger.warning("Queue depths unavailable; decision skipped", error=str(exc))
            return
        for genre in GENRES:
            self.metrics.write(QUEUE_DEPTH, {"queue_depth_at_decision": depths[genre]}, queue=genre)
        decision = self.engine.decide_publisher(
            depths["fictional"],
            depths["non-fictional"],
            self.intervals["fictional"],
            self.intervals["non-fictional"],
        )
        self.decisions += 1
        before = dict(self.intervals)
        if decision.action != "continue":
            # "continue" means keep going as we are: intervals that come with it are ignored, so
            # a reply cannot say "no change" and change the rate at the same time.
            self.intervals = {
                "fictional": self._clamp(decision.fictional_interval),
                "non-fictional": self._clamp(decision.nonfictional_interval),
            }
        if self.intervals != before:
            now = self.clock.monotonic()
            for genre in GENRES:
                # A shorter interval takes effect now rather than after the old, longer wait.
                self.next_publish[genre] = min(
                    self.next_publish[genre], now + self.intervals[genre]
                )
            self.logger.info(
                "Publishing intervals changed",
                ai_action=decision.action,
                fictional_interval=self.intervals["fictional"],
                nonfictional_interval=self.intervals["non-fictional"],
                previous=before,
                depths_from=source,
            )

    # --- the loop ------------------------------------------------------------------------------

    def step(self) -> float:
        """Do whatever is due now; return seconds until something is next due."""
        now = self.clock.monotonic()
        for genre in GENRES:
            if now >= self.next_publish[genre]:
                self.publish_one(genre)
                # Schedule from the due time so the rate holds; after a stall (a broker outage)
                # restart from now instead of publishing the missed messages in a burst.
                due = self.next_publish[genre] + self.intervals[genre]
                self.next_publish[genre] = due if due > now else now + self.intervals[genre]
        if now >= self.next_decision:
            self.decide()
            # From the end of the decision, not from `now`: the cost guard's rate limiter counts
            # from when the call was made (after this step's publishes), so scheduling from `now`
            # came back a few ms early and every few decisions were refused as rate_limited.
            self.next_decision = self.clock.monotonic() + self.settings.decision_interval_seconds
        upcoming = min(*self.next_publish.values(), self.next_decision)
        return max(0.0, upcoming - self.clock.monotonic())

    def run(self, stop: StopFlag) -> None:
        try:
            while not stop.is_set():
                wait = self.step()
                # Waiting inside process_events keeps heartbeats and reconnects going.
                deadline = time.monotonic() + wait
                while not stop.is_set():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self.broker.process_events(min(left, 0.25))
        except Interrupted:
            pass
        self.logger.info(
            "Publisher stopping",
            published=self.published,
            failed=self.failed,
            decisions=self.decisions,
        )


def main(settings: PublisherSettings) -> int:
    def body(wiring: Wiring, stop: StopFlag) -> None:
        Publisher(
            settings,
            wiring.broker,
            wiring.engine,
            wiring.metrics,
            wiring.logger,
            wiring.clock,
            reader=reader_from_settings(settings),
        ).run(stop)

    return run_agent(
        settings,
        body,
        fictional_interval_seconds=settings.fictional_interval_seconds,
        nonfictional_interval_seconds=settings.nonfictional_interval_seconds,
        decision_interval_seconds=settings.decision_interval_seconds,
    )
