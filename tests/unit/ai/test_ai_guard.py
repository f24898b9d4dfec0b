"""The cost guard: rate limit, sliding token budget, USD caps with reserve/settle, thread safety."""

from __future__ import annotations

import contextlib
import functools
import threading
from pathlib import Path

import pytest
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from agents.core.ai.guard import (
    HOUR,
    RATE_LIMITED,
    SPEND_CAP_10MIN,
    SPEND_CAP_HOUR,
    TEN_MINUTES,
    TOKEN_BUDGET,
    CostGuard,
    Refused,
    Reservation,
)
from agents.core.ai.ledger import SqliteLedger
from agents.core.ai.prices import PRICES, Price
from agents.testing.clock import FakeClock
from tests.support.guard import guard_limits

SONNET = PRICES["claude-sonnet-4-5"]  # $3 / $15: the specification's row


# One agent's budget and caps (no fleet caps); a test overrides the limit it is about.
limits = functools.partial(
    guard_limits, max_tokens_per_hour=50_000, max_usd_per_10min=0.02, max_usd_per_hour=0.09
)


def test_rate_limiter_allows_one_call_per_interval() -> None:
    clock = FakeClock()
    guard = CostGuard(limits(min_interval_s=60), clock)
    guard.reserve(100, SONNET)
    with pytest.raises(Refused) as refused:
        guard.reserve(100, SONNET)
    assert refused.value.reason == RATE_LIMITED
    clock.advance(59.9)
    with pytest.raises(Refused):
        guard.reserve(100, SONNET)
    clock.advance(0.1)
    guard.reserve(100, SONNET)


def test_token_budget_slides_instead_of_never_resetting() -> None:
    clock = FakeClock()
    guard = CostGuard(
        limits(max_tokens_per_hour=1000, max_usd_per_hour=10, max_usd_per_10min=10), clock
    )
    reservation = guard.reserve(200, SONNET)  # 200 + 300 reserved
    guard.settle(reservation, 200, 300, SONNET)
    clock.advance(1800)
    guard.reserve(200, SONNET)  # 1000 in the hour: exactly the budget
    with pytest.raises(Refused) as refused:
        guard.reserve(0, SONNET)
    assert refused.value.reason == TOKEN_BUDGET
    clock.advance(1800.001)  # the first call has left the window
    guard.reserve(200, SONNET)


def test_spend_cap_reserves_the_worst_case_then_settles_to_actual() -> None:
    clock = FakeClock()
    # Worst case of one call: 1000 in x $3/M + 300 out x $15/M = $0.0075
    guard = CostGuard(limits(max_usd_per_10min=0.02), clock)
    first = guard.reserve(1000, SONNET)
    second = guard.reserve(1000, SONNET)
    assert first.usd == pytest.approx(0.0075)
    with pytest.raises(Refused) as refused:  # 3 x 0.0075 > 0.02
        guard.reserve(1000, SONNET)
    assert refused.value.reason == SPEND_CAP_10MIN
    guard.settle(first, 100, 20, SONNET)  # actual $0.0006 frees room
    guard.settle(second, 100, 20, SONNET)
    guard.reserve(1000, SONNET)
    assert guard.usage()["usd_last_10min"] == pytest.approx(0.0006 * 2 + 0.0075)


def test_hour_cap_applies_across_ten_minute_windows() -> None:
    clock = FakeClock()
    guard = CostGuard(limits(max_usd_per_10min=0.02, max_usd_per_hour=0.025), clock)
    for _ in range(2):
        guard.reserve(1000, SONNET)
        clock.advance(TEN_MINUTES)
    guard.reserve(1000, SONNET)
    clock.advance(TEN_MINUTES)
    with pytest.raises(Refused) as refused:
        guard.reserve(1000, SONNET)
    assert refused.value.reason == SPEND_CAP_HOUR


def test_release_frees_everything_and_keep_worst_case_frees_nothing() -> None:
    clock = FakeClock()
    guard = CostGuard(limits(max_usd_per_10min=0.01), clock)
    unbilled = guard.reserve(1000, SONNET)
    guard.release(unbilled)  # e.g. a 529: the API did not bill it
    timed_out = guard.reserve(1000, SONNET)
    guard.keep_worst_case(timed_out)  # a timeout may still be billed
    assert guard.usage()["usd_last_10min"] == pytest.approx(0.0075)
    with pytest.raises(Refused):
        guard.reserve(1000, SONNET)


def test_settle_caps_impossible_usage_at_the_reservation() -> None:
    guard = CostGuard(limits(), FakeClock())
    reservation = guard.reserve(10, SONNET)
    settled = guard.settle(reservation, 5000, 10**9, SONNET)
    assert settled.overran
    assert (settled.tokens, settled.usd) == (reservation.tokens, reservation.usd)
    assert guard.usage()["tokens_last_hour"] == reservation.tokens


def _window_sums(ledger: list[tuple[float, float]], window: float) -> float:
    """The largest spend over any window of `window` seconds in a ledger of (time, usd)."""
    worst = 0.0
    for end, _ in ledger:
        worst = max(worst, sum(usd for at, usd in ledger if end - window < at <= end))
    return worst


class GuardMachine(RuleBasedStateMachine):
    """Random reserve/settle/release/advance sequences never let any window exceed a cap."""

    @initialize(
        cap10=st.floats(0.0, 0.05),
        cap_hour=st.floats(0.0, 0.2),
        budget=st.integers(0, 20_000),
        interval=st.sampled_from([0.0, 1.0, 30.0, 60.0]),
    )
    def setup(self, cap10: float, cap_hour: float, budget: int, interval: float) -> None:
        self.clock = FakeClock()
        self.limits = limits(
            min_interval_s=interval,
            max_tokens_per_hour=budget,
            max_usd_per_10min=cap10,
            max_usd_per_hour=cap_hour,
        )
        self.guard = CostGuard(self.limits, self.clock)
        self.open: dict[int, tuple[Reservation, Price]] = {}
        self.ledger: dict[int, list[float]] = {}  # id -> [time, usd, tokens]
        self.admissions: list[float] = []

    @rule(seconds=st.floats(0.0, 900.0))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(input_tokens=st.integers(0, 3000), price=st.sampled_from(list(PRICES.values())))
    def reserve(self, input_tokens: int, price: Price) -> None:
        try:
            reservation = self.guard.reserve(input_tokens, price)
        except Refused:
            return
        self.open[reservation.id] = (reservation, price)
        self.ledger[reservation.id] = [reservation.at, reservation.usd, reservation.tokens]
        self.admissions.append(reservation.at)

    def take_open(self, data: st.DataObject) -> tuple[int, Reservation, Price] | None:
        """One open reservation, drawn and no longer open; None when there is none."""
        if not self.open:
            return None
        key = data.draw(st.sampled_from(sorted(self.open)))
        reservation, price = self.open.pop(key)
        return key, reservation, price

    @rule(data=st.data())
    def settle(self, data: st.DataObject) -> None:
        taken = self.take_open(data)
        if taken is None:
            return
        key, reservation, price = taken
        input_upper = reservation.tokens - self.limits.max_tokens
        used_in = data.draw(st.integers(0, max(0, input_upper)))
        used_out = data.draw(st.integers(0, self.limits.max_tokens))
        settled = self.guard.settle(reservation, used_in, used_out, price)
        assert not settled.overran
        self.ledger[key][1:] = [settled.usd, settled.tokens]

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        taken = self.take_open(data)
        if taken is None:
            return
        key, reservation, _ = taken
        self.guard.release(reservation)
        self.ledger[key][1:] = [0.0, 0]

    @invariant()
    def no_window_exceeds_a_cap(self) -> None:
        if not hasattr(self, "guard"):
            return
        usd = [(at, spent) for at, spent, _ in self.ledger.values()]
        tokens = [(at, float(n)) for at, _, n in self.ledger.values()]
        assert _window_sums(usd, TEN_MINUTES) <= self.limits.max_usd_per_10min + 1e-12
        assert _window_sums(usd, HOUR) <= self.limits.max_usd_per_hour + 1e-12
        assert _window_sums(tokens, HOUR) <= self.limits.max_tokens_per_hour

    @invariant()
    def calls_respect_the_interval(self) -> None:
        if not hasattr(self, "guard"):
            return
        gaps = [b - a for a, b in zip(self.admissions, self.admissions[1:], strict=False)]
        assert all(gap >= self.limits.min_interval_s for gap in gaps)


GuardMachine.TestCase.settings = hsettings(max_examples=60, stateful_step_count=40, deadline=None)
TestGuardMachine = GuardMachine.TestCase


def file_guards(path: Path, n: int, **kw: float) -> list[CostGuard]:
    """`n` guards of one agent, each with its own connection to one ledger file: concurrent
    callers that only the ledger's BEGIN IMMEDIATE keeps apart (threads of one process here;
    tests/faults/test_budget_hammer.py does the same with processes)."""
    clock = FakeClock()
    return [
        CostGuard(limits(**kw), clock, SqliteLedger(path), "publisher-1", refusal_backoff_s=0)
        for _ in range(n)
    ]


def test_concurrent_callers_cannot_overshoot_the_cap(tmp_path: Path) -> None:
    # $0.0075 per call at worst, cap $0.10: at most 13 calls may be admitted, whoever races.
    guards = file_guards(
        tmp_path / "budget.sqlite", 16, max_usd_per_10min=0.10, max_usd_per_hour=1.0
    )
    admitted: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def hammer(guard: CostGuard) -> None:
        start.wait()
        for _ in range(20):
            try:
                reservation = guard.reserve(1000, SONNET)
            except Refused:
                continue
            with lock:
                admitted.append(reservation.usd)

    threads = [threading.Thread(target=hammer, args=(guard,)) for guard in guards]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert len(admitted) == 13
    assert sum(admitted) <= 0.10


def test_concurrent_callers_get_one_call_per_interval(tmp_path: Path) -> None:
    guards = file_guards(tmp_path / "budget.sqlite", 16, min_interval_s=60)
    wins: list[int] = []
    start = threading.Barrier(16)

    def once(guard: CostGuard) -> None:
        start.wait()
        with contextlib.suppress(Refused):
            wins.append(guard.reserve(10, SONNET).id)

    threads = [threading.Thread(target=once, args=(guard,)) for guard in guards]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(wins) == 1
