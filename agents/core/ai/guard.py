"""The cost guard: every AI call, in every mode, asks it first.

Four limits, per agent, all on the injectable monotonic clock:
1. a rate limiter (at most one call per `min_interval_s`);
2. `max_tokens` per call (the worst case of a reply);
3. a token budget over a *sliding* hour (the specification's counter never reset);
4. spend caps in USD over sliding windows of ten minutes and of one hour.

A call first *reserves* its worst case (an upper bound of the prompt's input tokens plus
`max_tokens`, priced). The reservation is refused if it would cross any limit. After the reply it
is *settled* to the actual usage, which can only lower it. Since every admission checks the
window that ends at its own time, and entries only shrink afterwards, the sum over ANY window of
that length stays within the cap: the last admission inside a window saw every other entry of that
window. One lock makes check-and-reserve atomic, so concurrent callers cannot overshoot together.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agents.core.ai.prices import Price
from agents.core.clock import Clock

if TYPE_CHECKING:
    from agents.core.settings import CommonSettings

TEN_MINUTES = 600.0
HOUR = 3600.0

# Refusal reasons, as they appear in the `ai_fallback` log field and the metric's tag.
RATE_LIMITED = "rate_limited"
TOKEN_BUDGET = "token_budget_exhausted"  # noqa: S105 (a refusal reason, not a secret)
SPEND_CAP_10MIN = "spend_cap_10min"
SPEND_CAP_HOUR = "spend_cap_hour"


@dataclass(frozen=True)
class GuardLimits:
    min_interval_s: float
    max_tokens: int
    max_tokens_per_hour: int
    max_usd_per_10min: float
    max_usd_per_hour: float

    def __post_init__(self) -> None:
        if self.min_interval_s < 0 or self.max_tokens < 1 or self.max_tokens_per_hour < 0:
            raise ValueError("guard limits must be non-negative (max_tokens >= 1)")
        if self.max_usd_per_10min < 0 or self.max_usd_per_hour < 0:
            raise ValueError("spend caps must be non-negative")

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> GuardLimits:
        return cls(
            min_interval_s=settings.ai_min_interval_seconds,
            max_tokens=settings.max_tokens,
            max_tokens_per_hour=settings.max_tokens_per_hour,
            max_usd_per_10min=settings.max_cost_per_10min_usd,
            max_usd_per_hour=settings.max_cost_per_hour_usd,
        )


class Refused(Exception):
    """The guard said no; `reason` is one of the module's refusal constants."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class _Entry:
    at: float
    tokens: int
    usd: float
    settled: bool = False


@dataclass(frozen=True)
class Reservation:
    id: int
    at: float
    tokens: int
    usd: float


@dataclass(frozen=True)
class Settlement:
    tokens: int
    usd: float
    overran: bool  # actual usage exceeded the reservation: the input bound was wrong


class CostGuard:
    def __init__(self, limits: GuardLimits, clock: Clock) -> None:
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[int, _Entry] = {}
        self._order: deque[int] = deque()
        self._ids = itertools.count(1)
        self._last_call: float | None = None

    def reserve(self, input_tokens_upper: int, price: Price) -> Reservation:
        """Admit one call at its worst case, or raise `Refused`."""
        tokens = max(0, input_tokens_upper) + self.limits.max_tokens
        usd = price.cost(max(0, input_tokens_upper), self.limits.max_tokens)
        with self._lock:
            now = self._clock.monotonic()
            self._prune(now)
            limits = self.limits
            # The microsecond of slack absorbs float rounding in `now - last` (a call exactly one
            # interval later must pass); it cannot admit a meaningful extra call.
            elapsed = None if self._last_call is None else now - self._last_call
            if elapsed is not None and elapsed + 1e-6 < limits.min_interval_s:
                wait = limits.min_interval_s - elapsed
                raise Refused(RATE_LIMITED, f"next call allowed in {wait:.1f}s")
            used_tokens = self._sum_tokens(now, HOUR)
            if used_tokens + tokens > limits.max_tokens_per_hour:
                raise Refused(
                    TOKEN_BUDGET,
                    f"{used_tokens} + {tokens} tokens > {limits.max_tokens_per_hour} per hour",
                )
            for window, cap, reason in (
                (TEN_MINUTES, limits.max_usd_per_10min, SPEND_CAP_10MIN),
                (HOUR, limits.max_usd_per_hour, SPEND_CAP_HOUR),
            ):
                spent = self._sum_usd(now, window)
                if spent + usd > cap:
                    raise Refused(reason, f"${spent:.6f} + ${usd:.6f} > ${cap:.4f}")
            entry_id = next(self._ids)
            self._entries[entry_id] = _Entry(now, tokens, usd)
            self._order.append(entry_id)
            self._last_call = now
            return Reservation(entry_id, now, tokens, usd)

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
        with self._lock:
            entry = self._entries.get(reservation.id)
            if entry is not None and not entry.settled:
                entry.tokens, entry.usd, entry.settled = tokens, usd, True
        return Settlement(tokens, usd, overran)

    def release(self, reservation: Reservation) -> None:
        """The call provably cost nothing (refused by the API, or never sent)."""
        with self._lock:
            entry = self._entries.get(reservation.id)
            if entry is not None and not entry.settled:
                entry.tokens, entry.usd, entry.settled = 0, 0.0, True

    def keep_worst_case(self, reservation: Reservation) -> None:
        """The outcome is unknown (a timeout may still be billed): keep the worst case."""
        with self._lock:
            entry = self._entries.get(reservation.id)
            if entry is not None:
                entry.settled = True

    def usage(self) -> dict[str, float]:
        """Current window totals, for logs and `agents cost`."""
        with self._lock:
            now = self._clock.monotonic()
            self._prune(now)
            return {
                "tokens_last_hour": float(self._sum_tokens(now, HOUR)),
                "usd_last_10min": self._sum_usd(now, TEN_MINUTES),
                "usd_last_hour": self._sum_usd(now, HOUR),
            }

    def _in_window(self, now: float, window: float) -> list[_Entry]:
        return [e for i in self._order if (e := self._entries[i]).at > now - window]

    def _sum_tokens(self, now: float, window: float) -> int:
        return sum(e.tokens for e in self._in_window(now, window))

    def _sum_usd(self, now: float, window: float) -> float:
        return sum(e.usd for e in self._in_window(now, window))

    def _prune(self, now: float) -> None:
        while self._order and self._entries[self._order[0]].at <= now - HOUR:
            del self._entries[self._order.popleft()]
