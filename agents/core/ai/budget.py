"""The budget made visible: gauges per window, threshold events, and loud ledger failures.

At every reservation the ledger reports each cap's window (reserved worst cases, settled usage).
`BudgetWatch` writes them as `ai_budget` points (reserved, settled, remaining, per window, for
this agent and for the fleet), logs a WARNING `budget_threshold` line and writes an
`ai_budget_threshold` point when the fleet's spend crosses 50, 80 or 100 % of a fleet cap (100 %:
the cap refused a call), and turns ledger failures into one ERROR per minute plus a counted
`errors` point each time.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

from agents.core.ai.guard import BudgetObserver
from agents.core.logs import Logger
from agents.core.metrics import BUDGET, BUDGET_THRESHOLD, Measurement, Metrics
from agents.ports import Usage
from agents.vocab import Event

THRESHOLDS = (0.5, 0.8, 1.0)
ERROR_EVERY_S = 60.0
LEDGER_ERROR_KIND = "budget_ledger"
THRESHOLD_EVENT = "budget_threshold"


class BudgetWatch(BudgetObserver):
    def __init__(
        self,
        logger: Logger,
        metrics: Metrics,
        monotonic: Callable[[], float],
        ledger_description: str = "",
    ) -> None:
        self.logger = logger
        self.metrics = metrics
        self.ledger_description = ledger_description
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._levels: dict[tuple[str, str], float] = {}  # fleet cap -> highest level reported
        self._last_error = -math.inf
        self._suppressed = 0
        self.ledger_errors = 0

    def usage(self, usage: tuple[Usage, ...], refused: str | None) -> None:
        for u in usage:
            if u.cap.unit != "usd":
                continue
            ratio = _ratio(u)
            self._write_gauge(u, ratio)
            if u.cap.scope == "fleet":
                self._threshold(u, 1.0 if refused == u.cap.reason else ratio)

    def _write_gauge(self, u: Usage, ratio: float) -> None:
        fields = {
            "reserved_usd": u.reserved,
            "settled_usd": u.settled,
            "remaining_usd": u.remaining,
            "cap_usd": float(u.cap.limit),
            "used_ratio": ratio,
        }
        self._write(BUDGET, fields, scope=u.cap.scope, window=u.cap.window)

    def _write(self, measurement: Measurement, fields: dict[str, float], **tags: str) -> None:
        try:
            self.metrics.write(measurement, fields, None, **tags)
        except (TypeError, ValueError) as exc:  # a schema slip must not stop the agent
            self.logger.error(Event.BUDGET_METRIC_REJECTED, error=str(exc)[:300])

    def _threshold(self, u: Usage, ratio: float) -> None:
        key = (u.cap.scope, u.cap.window)
        level = max((t for t in THRESHOLDS if ratio >= t - 1e-12), default=0.0)
        with self._lock:
            previous = self._levels.get(key, 0.0)
            self._levels[key] = level  # falling back below a threshold re-arms it
            crossed = [t for t in THRESHOLDS if previous < t <= level]
        for threshold in crossed:
            percent = round(threshold * 100)
            self.logger.warning(
                f"Fleet spend reached {percent}% of its {u.cap.window} cap",
                event=THRESHOLD_EVENT,
                budget_threshold=percent,
                window=u.cap.window,
                used_usd=round(u.used, 8),
                cap_usd=u.cap.limit,
                used_ratio=round(ratio, 4),
            )
            self._write(
                BUDGET_THRESHOLD,
                {"budget_threshold_count": 1, "used_ratio": ratio, "cap_usd": float(u.cap.limit)},
                scope=u.cap.scope,
                window=u.cap.window,
                threshold=str(percent),
            )

    def ledger_error(self, operation: str, detail: str) -> None:
        now = self._monotonic()
        with self._lock:
            self.ledger_errors += 1
            loud = now - self._last_error >= ERROR_EVERY_S
            if loud:
                suppressed, self._suppressed, self._last_error = self._suppressed, 0, now
            else:
                self._suppressed += 1
        self.metrics.error(LEDGER_ERROR_KIND)
        if loud:
            self.logger.error(
                Event.LEDGER_UNAVAILABLE,
                operation=operation,
                ledger=self.ledger_description,
                error=detail[:300],
                similar_errors_suppressed=suppressed,
            )


def _ratio(u: Usage) -> float:
    if u.cap.limit <= 0:
        return 1.0
    return max(0.0, u.used / u.cap.limit)
