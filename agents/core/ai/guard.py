"""The cost guard: every AI call, in every mode, asks it first.

Limits, all over sliding windows:
1. a rate limiter per agent (at most one call per `min_interval_s`);
2. `max_tokens` per call (the worst case of a reply);
3. a token budget per agent over a sliding hour (the specification's counter never reset);
4. spend caps in USD per agent over ten minutes and one hour;
5. spend caps in USD for the whole fleet over the same windows, whatever the number of agents.

A call first *reserves* its worst case (an upper bound of the prompt's input tokens plus
`max_tokens`, priced). The reservation is refused if it would cross any limit. After the reply it
is *settled* to the actual usage, which can only lower it. Since every admission checks the
window that ends at its own time, and entries only shrink afterwards, the sum over ANY window of
that length stays within the cap: the last admission inside a window saw every other entry of that
window. The check-and-reserve is one atomic step of the ledger (`agents.core.ai.ledger`), which
all agents share, so concurrent callers in any number of processes cannot overshoot together, and
a restarted agent finds its windows and its last call where it left them.

A ledger that cannot be read or written refuses the call (fail closed).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agents.core.ai.ledger import API_SPEND_LIMIT, INTERVAL_SLACK, RATE_LIMITED, memory_ledger
from agents.core.ai.prices import Price
from agents.ports import Cap, Clock, Ledger, LedgerUnavailable, Request, State, Usage

if TYPE_CHECKING:
    from agents.core.settings import CommonSettings

TEN_MINUTES = 600.0
HOUR = 3600.0

# Refusal reasons, as they appear in the `ai_fallback` log field and the metric's tag.
TOKEN_BUDGET = "token_budget_exhausted"  # noqa: S105 (a refusal reason, not a secret)
SPEND_CAP_10MIN = "spend_cap_10min"
SPEND_CAP_HOUR = "spend_cap_hour"
FLEET_CAP_10MIN = "fleet_spend_cap_10min"
FLEET_CAP_HOUR = "fleet_spend_cap_hour"
LEDGER_UNAVAILABLE = "budget_ledger_unavailable"
__all__ = [
    "API_SPEND_LIMIT",
    "FLEET_CAP_10MIN",
    "FLEET_CAP_HOUR",
    "HOUR",
    "LEDGER_UNAVAILABLE",
    "RATE_LIMITED",
    "SPEND_CAP_10MIN",
    "SPEND_CAP_HOUR",
    "TEN_MINUTES",
    "TOKEN_BUDGET",
    "CostGuard",
    "GuardLimits",
    "Refused",
]

# After the ledger refused a call (a cap, the rate limit, a pause), refuse locally for this long
# before asking again: a consumer that asks on every message must not turn an exhausted budget
# into a write storm.
CAP_REFUSAL_BACKOFF_S = 1.0
# ...and after the ledger could not be reached, this many times as long.
LEDGER_RETRY_S = 5.0


@dataclass(frozen=True)
class GuardLimits:
    min_interval_s: float
    max_tokens: int
    max_tokens_per_hour: int
    max_usd_per_10min: float
    max_usd_per_hour: float
    fleet_max_usd_per_10min: float = float("inf")
    fleet_max_usd_per_hour: float = float("inf")
    # The two windows' lengths: ten minutes and an hour, compressed only by tests.
    short_window_s: float = TEN_MINUTES
    long_window_s: float = HOUR

    def __post_init__(self) -> None:
        if self.min_interval_s < 0 or self.max_tokens < 1 or self.max_tokens_per_hour < 0:
            raise ValueError("guard limits must be non-negative (max_tokens >= 1)")
        caps = (
            self.max_usd_per_10min,
            self.max_usd_per_hour,
            self.fleet_max_usd_per_10min,
            self.fleet_max_usd_per_hour,
        )
        if any(cap < 0 for cap in caps):
            raise ValueError("spend caps must be non-negative")
        if not 0 < self.short_window_s <= self.long_window_s:
            raise ValueError("windows must be positive, the short one first")

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> GuardLimits:
        return cls(
            min_interval_s=settings.ai_min_interval_seconds,
            max_tokens=settings.max_tokens,
            max_tokens_per_hour=settings.max_tokens_per_hour,
            max_usd_per_10min=settings.max_cost_per_10min_usd,
            max_usd_per_hour=settings.max_cost_per_hour_usd,
            fleet_max_usd_per_10min=settings.fleet_max_cost_per_10min_usd,
            fleet_max_usd_per_hour=settings.fleet_max_cost_per_hour_usd,
        )

    def caps(self) -> tuple[Cap, ...]:
        """Every cap, in the order refusals are reported; infinite ones are not checked."""
        short, long_ = self.short_window_s, self.long_window_s
        every = (
            Cap("agent", "hour", long_, "tokens", self.max_tokens_per_hour, TOKEN_BUDGET),
            Cap("agent", "10min", short, "usd", self.max_usd_per_10min, SPEND_CAP_10MIN),
            Cap("agent", "hour", long_, "usd", self.max_usd_per_hour, SPEND_CAP_HOUR),
            Cap("fleet", "10min", short, "usd", self.fleet_max_usd_per_10min, FLEET_CAP_10MIN),
            Cap("fleet", "hour", long_, "usd", self.fleet_max_usd_per_hour, FLEET_CAP_HOUR),
        )
        return tuple(cap for cap in every if cap.limit != float("inf"))


class Refused(Exception):
    """The guard said no; `reason` is one of the module's refusal constants."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Reservation:
    id: int
    at: float
    tokens: int  # the worst case: the input's upper bound plus `max_output_tokens`
    usd: float
    # The reply's length the worst case assumes: the request must send exactly this as its
    # `max_tokens`, or the reservation no longer bounds what the call can cost.
    max_output_tokens: int


@dataclass(frozen=True)
class Settlement:
    tokens: int
    usd: float
    overran: bool  # actual usage exceeded the reservation: the input bound was wrong


class BudgetObserver:
    """What the guard reports as it goes; `agents.core.ai.budget.BudgetWatch` turns it into
    gauges, threshold events and rate-limited ERROR lines. The default does nothing."""

    def usage(self, usage: tuple[Usage, ...], refused: str | None) -> None:
        return None

    def ledger_error(self, operation: str, detail: str) -> None:
        return None


class CostGuard:
    def __init__(
        self,
        limits: GuardLimits,
        clock: Clock,
        ledger: Ledger | None = None,
        agent: str = "agent",
        observer: BudgetObserver | None = None,
        refusal_backoff_s: float = CAP_REFUSAL_BACKOFF_S,
    ) -> None:
        self.limits = limits
        self.refusal_backoff_s = refusal_backoff_s
        self.agent = agent
        self.ledger: Ledger = ledger if ledger is not None else memory_ledger()
        self.observer = observer or BudgetObserver()
        self._clock = clock
        self._caps = limits.caps()
        self._lock = threading.Lock()
        # Local shortcuts that can only refuse more, never admit: the ledger decides admissions.
        self._last_admitted: float | None = None
        self._backoff_until = 0.0
        self._backoff_reason = ""
        self._paused_until = 0.0

    def now(self) -> float:
        """Seconds since the epoch: the one time base every process and host shares."""
        return self._clock.now().timestamp()

    def reserve(self, input_tokens_upper: int, price: Price) -> Reservation:
        """Admit one call at its worst case, or raise `Refused`."""
        output = self.limits.max_tokens
        tokens = max(0, input_tokens_upper) + output
        usd = price.cost(max(0, input_tokens_upper), output)
        now = self.now()
        with self._lock:
            self._refuse_locally(now)
        request = Request(self.agent, now, usd, tokens, self.limits.min_interval_s, self._caps)
        try:
            admission = self.ledger.reserve(request)
        except LedgerUnavailable as exc:
            # Fail closed, and do not hammer (or wait on) a ledger that is down for every
            # message: refuse locally for a few seconds before trying it again.
            self._back_off(now, LEDGER_UNAVAILABLE, LEDGER_RETRY_S)
            self.observer.ledger_error("reserve", str(exc))
            raise Refused(LEDGER_UNAVAILABLE, str(exc)) from exc
        if admission.refused is not None:
            self._back_off(now, admission.refused, 1.0)
            self.observer.usage(admission.usage, admission.refused)
            raise Refused(admission.refused, admission.detail)
        with self._lock:
            self._last_admitted = now
        self.observer.usage(_with(admission.usage, usd, tokens), None)
        return Reservation(admission.entry_id, admission.at, tokens, usd, output)

    def _back_off(self, now: float, reason: str, scale: float) -> None:
        with self._lock:
            self._backoff_until = now + self.refusal_backoff_s * scale
            self._backoff_reason = reason

    def _refuse_locally(self, now: float) -> None:
        if now < self._paused_until:
            raise Refused(
                API_SPEND_LIMIT,
                f"Anthropic's spend limit: paused for {self._paused_until - now:.0f}s",
            )
        last = self._last_admitted
        interval = self.limits.min_interval_s
        if last is not None and now - last + INTERVAL_SLACK < interval:
            raise Refused(RATE_LIMITED, f"next call allowed in {interval - (now - last):.1f}s")
        if now < self._backoff_until:
            raise Refused(self._backoff_reason, "refused by the ledger moments ago")

    def settle(
        self, reservation: Reservation, input_tokens: int, output_tokens: int, price: Price
    ) -> Settlement:
        """Replace the worst case by the actual usage the API reported, capped at the worst case.

        The reservation is a hard upper bound (output cannot exceed `max_tokens`; input is
        bounded by the prompt's size), so reported usage above it is impossible: a lying proxy or
        a corrupted reply. Charging it would let one bad reply lock the agent out for an hour and
        poison the cost metrics, so it is counted at the reservation and flagged as `overran`.
        """
        tokens = max(0, input_tokens) + max(0, output_tokens)
        usd = price.cost(max(0, input_tokens), max(0, output_tokens))
        overran = tokens > reservation.tokens or usd > reservation.usd + 1e-12
        if overran:
            tokens, usd = min(tokens, reservation.tokens), min(usd, reservation.usd)
        self._finish(reservation, usd, tokens, "settled")
        return Settlement(tokens, usd, overran)

    def release(self, reservation: Reservation) -> None:
        """The call provably cost nothing (refused by the API, or never sent)."""
        self._finish(reservation, 0.0, 0, "released")

    def keep_worst_case(self, reservation: Reservation) -> None:
        """The outcome is unknown (a timeout may still be billed): keep the worst case."""
        self._finish(reservation, reservation.usd, reservation.tokens, "kept")

    def _finish(self, reservation: Reservation, usd: float, tokens: int, state: State) -> None:
        try:
            self.ledger.finish(reservation.id, usd, tokens, state)
        except LedgerUnavailable as exc:
            # The entry stays at its worst case: the ledger errs on the side of the budget.
            self.observer.ledger_error(state, str(exc))
            return
        if state != "kept":
            with self._lock:  # room was freed: the next reservation may ask the ledger again
                self._backoff_until = 0.0

    def pause_until(self, until: float) -> None:
        """Anthropic said the organisation's spend limit is reached: no call, from any agent
        sharing the ledger, until `until` (seconds since the epoch)."""
        with self._lock:
            self._paused_until = max(self._paused_until, until)
        try:
            self.ledger.pause(until)
        except LedgerUnavailable as exc:
            self.observer.ledger_error("pause", str(exc))

    def usage(self) -> dict[str, float]:
        """This agent's window totals from the ledger, for logs and tests."""
        now = self.now()
        short, long_ = self.limits.short_window_s, self.limits.long_window_s
        mine = [e for e in self.ledger.entries(now - long_) if e.agent == self.agent]
        return {
            "tokens_last_hour": float(sum(e.tokens for e in mine)),
            "usd_last_10min": sum(e.usd for e in mine if e.at > now - short),
            "usd_last_hour": sum(e.usd for e in mine),
        }


def _with(usage: tuple[Usage, ...], usd: float, tokens: int) -> tuple[Usage, ...]:
    """The windows after an admission: the new reservation counts as reserved."""
    return tuple(
        Usage(u.cap, u.reserved + (usd if u.cap.unit == "usd" else tokens), u.settled)
        for u in usage
    )
