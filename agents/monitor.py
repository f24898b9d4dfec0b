"""The monitor agent: samples queue depths for everyone, and judges the system's health.

Two timers. Every QUEUE_SAMPLE_INTERVAL_SECONDS it asks the broker for the queue depths and
writes them as `queue_depth` points: the dashboards' queue series and the publishers' decision
inputs both come from here. Every CHECK_INTERVAL_SECONDS it summarises the last
SUMMARY_WINDOW_SECONDS of metrics (published, consumed, errors, tokens, cost), asks the engine
for an analysis, writes a `health` point and, when the status is critical, prints an alert
banner to the console besides the ERROR log line.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import IO, TYPE_CHECKING, Any

from agents.core.metrics import HEALTH, QUEUE_DEPTH
from agents.core.metrics.reader import reader_from_settings
from agents.messages import GENRES
from agents.ports import BrokerError, MetricsReader, MetricsReadError
from agents.runtime import Agent, StopFlag, Wiring, run_agent, serve
from agents.vocab import Event

if TYPE_CHECKING:
    from agents.core.ai import MonitorAnalysis
    from agents.core.settings import MonitorSettings

STATUS_CODES = {"healthy": 0, "warning": 1, "critical": 2}
# Shown in the start-up line.
STARTUP_SETTINGS = ("check_interval_seconds", "queue_sample_interval_seconds")


class Monitor(Agent["MonitorSettings"]):
    def __init__(
        self, wiring: Wiring[MonitorSettings], reader: MetricsReader, console: IO[str] | None = None
    ) -> None:
        """`reader` is where the summaries are read; `console` takes the alert banner
        (stderr by default)."""
        super().__init__(wiring)
        self.reader = reader
        self.console = console
        now = self.clock.monotonic()
        self.next_sample = now
        self.next_check = now + self.settings.check_interval_seconds
        self.depths: dict[str, int] = {}
        self.checks = 0
        self.last_analysis: MonitorAnalysis | None = None

    # --- sampling ------------------------------------------------------------------------------

    def sample(self) -> dict[str, int] | None:
        try:
            depths = self.broker.queue_depths(GENRES)
        except BrokerError as exc:
            self.logger.warning(Event.DEPTH_SAMPLE_FAILED, error=str(exc)[:200])
            self.metrics.error("queue_sample_failed")
            return None
        self.depths = dict(depths)
        for queue, depth in depths.items():
            self.metrics.write(QUEUE_DEPTH, {"queue_depth": int(depth)}, queue=queue)
        self.logger.debug(Event.DEPTHS_SAMPLED, queue_depths=self.depths)
        return self.depths

    # --- health check ----------------------------------------------------------------------------

    def summarise(self) -> dict[str, Any]:
        """The window's totals from the metrics store; None for anything it could not read."""
        since = self.clock.now() - timedelta(seconds=self.settings.summary_window_seconds)
        questions = {
            "messages_published": ("publish", "messages_published"),
            "messages_consumed": ("consume", "messages_consumed"),
            "errors": ("errors", "error_count"),
            "anomalies": ("anomaly", "anomaly_count"),
            "tokens_used": ("ai_decision", "tokens_used"),
            "cost_usd": ("ai_decision", "cost_usd"),
        }
        summary: dict[str, Any] = {"window_seconds": self.settings.summary_window_seconds}
        for key, (measurement, field) in questions.items():
            try:
                summary[key] = sum(self.reader.sum_field(measurement, field, since).values())
            except MetricsReadError as exc:
                summary[key] = None
                summary.setdefault("unavailable", str(exc)[:200])
        summary["queue_depths"] = dict(self.depths)
        return summary

    def check(self) -> MonitorAnalysis:
        summary = self.summarise()
        self.logger.info(Event.METRICS_SUMMARY, **summary)
        analysis = self.engine.analyse(
            int(summary["messages_published"] or 0),
            dict(self.depths),
            int(summary["errors"] or 0),
        )
        self.checks += 1
        self.last_analysis = analysis
        self.metrics.write(
            HEALTH,
            {
                "status_code": STATUS_CODES.get(analysis.status, 1),
                "issues_count": len(analysis.issues),
                "issues": "; ".join(analysis.issues)[:1000],
                "suggestions": "; ".join(analysis.suggestions)[:1000],
            },
            status=analysis.status,
        )
        if analysis.status == "critical":
            self._alert(analysis)
        elif analysis.status == "warning":
            self.logger.warning(Event.HEALTH_WARNING, issues=analysis.issues)
        return analysis

    def _alert(self, analysis: MonitorAnalysis) -> None:
        self.logger.error(
            Event.HEALTH_CRITICAL,
            status=analysis.status,
            issues=analysis.issues,
            suggestions=analysis.suggestions,
        )
        rule = "!" * 72
        lines = [rule, f"!!! CRITICAL ({self.settings.agent_id}): system health is critical"]
        lines += [f"!!!   issue: {issue}" for issue in analysis.issues[:10]]
        lines += [f"!!!   suggestion: {tip}" for tip in analysis.suggestions[:10]]
        lines.append(rule)
        console = self.console or sys.stderr
        try:
            console.write("\n".join(lines) + "\n")
            console.flush()
        except (OSError, ValueError):
            pass

    # --- the loop ----------------------------------------------------------------------------

    def step(self) -> float:
        now = self.clock.monotonic()
        if now >= self.next_sample:
            self.sample()
            self.next_sample = now + self.settings.queue_sample_interval_seconds
        if now >= self.next_check:
            self.check()
            # From the end of the check: the cost guard counts its interval from the call, which
            # came after this step's sampling, so counting from `now` would be refused at times.
            self.next_check = self.clock.monotonic() + self.settings.check_interval_seconds
        return max(0.0, min(self.next_sample, self.next_check) - self.clock.monotonic())

    def run(self, stop: StopFlag) -> None:
        serve(self.step, self.broker, self.clock, stop)
        self.logger.info(Event.MONITOR_STOPPING, checks=self.checks)


def main(settings: MonitorSettings) -> int:
    def build(wiring: Wiring[MonitorSettings]) -> Monitor:
        return Monitor(wiring, reader_from_settings(settings))

    return run_agent(settings, build, STARTUP_SETTINGS)
