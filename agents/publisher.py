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
from datetime import timedelta
from typing import TYPE_CHECKING

from agents.core.metrics import PUBLISH, QUEUE_DEPTH
from agents.core.metrics.reader import reader_from_settings
from agents.messages import GENRES, Catalogue, Genre
from agents.ports import BrokerError, MetricsReader, MetricsReadError
from agents.runtime import Agent, StopFlag, Wiring, run_agent, serve
from agents.vocab import FICTIONAL, NON_FICTIONAL, Event

if TYPE_CHECKING:
    from agents.core.settings import PublisherSettings

# The monitor samples every 10 s by default; older than this and the broker is asked instead.
DEPTH_MAX_AGE_SECONDS = 60.0


# Shown in the start-up line.
STARTUP_SETTINGS = (
    "fictional_interval_seconds",
    "nonfictional_interval_seconds",
    "decision_interval_seconds",
)


class Publisher(Agent["PublisherSettings"]):
    def __init__(
        self,
        wiring: Wiring[PublisherSettings],
        *,
        reader: MetricsReader | None = None,
        catalogue: Catalogue | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """`reader` is where sampled queue depths are read (None: always ask the broker)."""
        super().__init__(wiring)
        settings = self.settings
        self.reader = reader
        self.catalogue = catalogue or Catalogue.load()
        self.rng = rng or random.Random()
        self._agent_id = settings.agent_id
        self.intervals: dict[Genre, float] = {
            FICTIONAL: self._clamp(settings.fictional_interval_seconds),
            NON_FICTIONAL: self._clamp(settings.nonfictional_interval_seconds),
        }
        now = self.clock.monotonic()
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
            Event.MESSAGE_PUBLISHED,
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
                self.logger.warning(Event.METRICS_STORE_UNAVAILABLE, error=str(exc))
                found = {}
            if all(genre in found for genre in GENRES):
                return {genre: int(found[genre]) for genre in GENRES}, "metrics"
        return self.broker.queue_depths(GENRES), "broker"

    def decide(self) -> None:
        try:
            depths, source = self.queue_depths()
        except BrokerError as exc:
            self.logger.warning(Event.DEPTHS_UNAVAILABLE, error=str(exc))
            return
        for genre in GENRES:
            self.metrics.write(QUEUE_DEPTH, {"queue_depth_at_decision": depths[genre]}, queue=genre)
        decision = self.engine.decide_publisher(
            depths[FICTIONAL],
            depths[NON_FICTIONAL],
            self.intervals[FICTIONAL],
            self.intervals[NON_FICTIONAL],
        )
        self.decisions += 1
        before = dict(self.intervals)
        if decision.action != "continue":
            # "continue" means keep going as we are: intervals that come with it are ignored, so
            # a reply cannot say "no change" and change the rate at the same time.
            self.intervals = {
                FICTIONAL: self._clamp(decision.fictional_interval),
                NON_FICTIONAL: self._clamp(decision.nonfictional_interval),
            }
        if self.intervals != before:
            now = self.clock.monotonic()
            for genre in GENRES:
                # A shorter interval takes effect now rather than after the old, longer wait.
                self.next_publish[genre] = min(
                    self.next_publish[genre], now + self.intervals[genre]
                )
            self.logger.info(
                Event.INTERVALS_CHANGED,
                ai_action=decision.action,
                fictional_interval=self.intervals[FICTIONAL],
                nonfictional_interval=self.intervals[NON_FICTIONAL],
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
        serve(self.step, self.broker, self.clock, stop)
        self.logger.info(
            Event.PUBLISHER_STOPPING,
            published=self.published,
            failed=self.failed,
            decisions=self.decisions,
        )


def main(settings: PublisherSettings) -> int:
    def build(wiring: Wiring[PublisherSettings]) -> Publisher:
        return Publisher(wiring, reader=reader_from_settings(settings))

    return run_agent(settings, build, STARTUP_SETTINGS)
