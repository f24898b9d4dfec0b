"""The shared spend ledger, on every backend: SQLite file, in-memory SQLite and the real Redis.

Several `CostGuard`s over one ledger are several agents (processes, hosts): the fleet caps bind
them together, a new guard over the same storage is a restarted agent, and a ledger that cannot
be read refuses the call.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from agents.core.ai.budget import BudgetWatch
from agents.core.ai.guard import (
    FLEET_CAP_10MIN,
    FLEET_CAP_HOUR,
    HOUR,
    LEDGER_UNAVAILABLE,
    RATE_LIMITED,
    SPEND_CAP_10MIN,
    TEN_MINUTES,
    CostGuard,
    Refused,
)
from agents.core.ai.ledger import RedisLedger, SqliteLedger, max_window_sum, memory_ledger
from agents.core.ai.prices import PRICES, Price
from agents.core.metrics import MemorySink, Metrics
from agents.ports import Entry, Ledger, LedgerUnavailable
from agents.testing import LogCapture
from agents.testing.clock import FakeClock
from agents.vocab import Event
from tests.support.guard import check_replay, guard_limits

SONNET = PRICES["claude-sonnet-4-5"]  # worst case of reserve(1000): $0.0075
WORST = 0.0075

Factory = Callable[[], Ledger]


# Each agent's own caps far above the fleet's, so the fleet caps are what bind; a test overrides
# the limit it is about.
limits = functools.partial(
    guard_limits,
    max_tokens_per_hour=1_000_000,
    max_usd_per_10min=1.0,
    max_usd_per_hour=1.0,
    fleet_max_usd_per_10min=0.02,
    fleet_max_usd_per_hour=0.09,
)


@pytest.fixture(params=["sqlite", "redis"])
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    """Each call opens the same ledger again, as another process or a restarted agent would."""
    opened: list[Ledger] = []
    if request.param == "sqlite":

        def factory() -> Ledger:
            opened.append(SqliteLedger(tmp_path / "var" / "budget.sqlite"))
            return opened[-1]

    else:
        space = request.getfixturevalue("redis_space")

        def factory() -> Ledger:
            opened.append(RedisLedger(space.client, space.prefix))
            return opened[-1]

    yield factory
    for ledger in opened:
        if isinstance(ledger, SqliteLedger):
            ledger.close()


def agent(factory: Factory, clock: FakeClock, name: str, **kw: float) -> CostGuard:
    return CostGuard(limits(**kw), clock, factory(), name)


def test_fleet_cap_binds_agents_that_share_the_ledger(reopen: Factory) -> None:
    clock = FakeClock()
    a, b, c = (agent(reopen, clock, n) for n in ("consumer-1", "consumer-2", "consumer-3"))
    a.reserve(1000, SONNET)
    b.reserve(1000, SONNET)  # $0.015 of the fleet's $0.02
    with pytest.raises(Refused) as refused:
        c.reserve(1000, SONNET)  # each agent's own cap ($1) is far away
    assert refused.value.reason == FLEET_CAP_10MIN
    assert "fleet" in refused.value.detail


def test_settlement_frees_room_for_every_agent(reopen: Factory) -> None:
    clock = FakeClock()
    a, b = agent(reopen, clock, "publisher-1"), agent(reopen, clock, "publisher-2")
    first = a.reserve(1000, SONNET)
    a.reserve(1000, SONNET)
    with pytest.raises(Refused):
        b.reserve(1000, SONNET)
    a.settle(first, 100, 20, SONNET)  # $0.0006 actual
    clock.advance(1)  # b does not ask the ledger again within a second of a refusal
    b.reserve(1000, SONNET)


def test_hour_fleet_cap_spans_ten_minute_windows(reopen: Factory) -> None:
    clock = FakeClock()
    guards = [agent(reopen, clock, f"a{i}", fleet_max_usd_per_hour=0.02) for i in range(3)]
    guards[0].reserve(1000, SONNET)
    clock.advance(TEN_MINUTES)
    guards[1].reserve(1000, SONNET)
    clock.advance(TEN_MINUTES)
    with pytest.raises(Refused) as refused:
        guards[2].reserve(1000, SONNET)
    assert refused.value.reason == FLEET_CAP_HOUR
    clock.advance(HOUR - 2 * TEN_MINUTES + 0.001)  # the first entry has left the hour
    guards[2].reserve(1000, SONNET)


def test_a_restarted_agent_finds_its_windows_and_its_last_call(reopen: Factory) -> None:
    """LiteLLM #34733: a reset must not forget spend. A new process starts with the ledger's
    windows, not empty ones, and its rate limiter remembers the last call."""
    clock = FakeClock()
    before = agent(reopen, clock, "consumer-1", min_interval_s=30, max_usd_per_10min=0.01)
    before.reserve(1000, SONNET)
    after = agent(reopen, clock, "consumer-1", min_interval_s=30, max_usd_per_10min=0.01)
    with pytest.raises(Refused) as refused:
        after.reserve(1000, SONNET)
    assert refused.value.reason == RATE_LIMITED
    clock.advance(30)
    with pytest.raises(Refused) as refused:
        after.reserve(1000, SONNET)
    assert refused.value.reason == SPEND_CAP_10MIN  # its own cap, still holding the first call


def test_a_crashed_call_stays_at_its_worst_case_until_its_window_passes(reopen: Factory) -> None:
    clock = FakeClock()
    crashed = agent(reopen, clock, "consumer-1")
    crashed.reserve(1000, SONNET)  # ...and the process dies: never settled
    crashed.reserve(1000, SONNET)
    survivor = agent(reopen, clock, "consumer-2")
    with pytest.raises(Refused):
        survivor.reserve(1000, SONNET)
    clock.advance(TEN_MINUTES - 1)
    with pytest.raises(Refused):
        survivor.reserve(1000, SONNET)
    clock.advance(1.001)
    survivor.reserve(1000, SONNET)
    states = sorted(e.state for e in reopen().entries())
    assert states == ["reserved", "reserved", "reserved"]


def test_release_and_keep_worst_case(reopen: Factory) -> None:
    clock = FakeClock()
    guard = agent(reopen, clock, "monitor-1")
    unbilled = guard.reserve(1000, SONNET)
    guard.release(unbilled)
    timed_out = guard.reserve(1000, SONNET)
    guard.keep_worst_case(timed_out)
    guard.settle(timed_out, 1, 1, SONNET)  # a late settle cannot lower a kept worst case
    entries = {e.id: e for e in reopen().entries()}
    assert (entries[unbilled.id].usd, entries[unbilled.id].state) == (0.0, "released")
    assert (entries[timed_out.id].usd, entries[timed_out.id].state) == (WORST, "kept")


def test_ledger_time_never_goes_back_so_admissions_are_recorded_in_order(
    reopen: Factory,
) -> None:
    """A process whose clock lags (or that read the time before another one committed) is
    recorded at the ledger's latest time, so the admission saw every earlier entry."""
    ahead, behind = FakeClock(start=1_000.0), FakeClock(start=995.0)
    agent(reopen, ahead, "a").reserve(1000, SONNET)
    late = agent(reopen, behind, "b").reserve(1000, SONNET)
    assert late.at == ahead.now().timestamp()
    times = [e.at for e in reopen().entries()]
    assert times == sorted(times)


def test_anthropic_pause_stops_every_agent_until_the_reset(reopen: Factory) -> None:
    clock = FakeClock()
    a, b = agent(reopen, clock, "consumer-1"), agent(reopen, clock, "consumer-2")
    a.pause_until(clock.now().timestamp() + 120)
    with pytest.raises(Refused) as refused:
        b.reserve(10, SONNET)
    assert refused.value.reason == "api_spend_limit_paused"
    clock.advance(120)
    b.reserve(10, SONNET)


# --- fail closed -----------------------------------------------------------------------------


def watched(ledger: Ledger, clock: FakeClock) -> tuple[CostGuard, LogCapture, MemorySink]:
    stream, sink = LogCapture(), MemorySink()
    logger = stream.logger("consumer-1", "consumer", clock=clock)
    watch = BudgetWatch(logger, Metrics(sink, "consumer-1", "consumer"), clock.monotonic)
    return CostGuard(limits(), clock, ledger, "consumer-1", watch), stream, sink


def errors(stream: LogCapture) -> list[dict[str, Any]]:
    return stream.where(level="ERROR")


def test_a_corrupt_sqlite_file_refuses_every_call(tmp_path: Path) -> None:
    path = tmp_path / "budget.sqlite"
    path.write_bytes(b"this is not a database, it is a text file" * 200)
    clock = FakeClock()
    guard, stream, sink = watched(SqliteLedger(path), clock)
    for _ in range(3):
        with pytest.raises(Refused) as refused:
            guard.reserve(10, SONNET)
        assert refused.value.reason == LEDGER_UNAVAILABLE
        clock.advance(10)
    # One ERROR per minute, every failure counted.
    (line,) = errors(stream)
    assert line["message"] == Event.LEDGER_UNAVAILABLE
    assert len(sink.where("errors", kind="budget_ledger")) == 3
    clock.advance(60)
    with pytest.raises(Refused):
        guard.reserve(10, SONNET)
    assert len(errors(stream)) == 2


def test_a_corrupt_entry_refuses_instead_of_being_skipped(tmp_path: Path) -> None:
    path = tmp_path / "budget.sqlite"
    clock = FakeClock()
    guard, _, _ = watched(SqliteLedger(path), clock)
    guard.reserve(10, SONNET)
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE entries SET at = 'garbage'")
    clock.advance(1)
    with pytest.raises(Refused) as refused:
        guard.reserve(10, SONNET)
    assert refused.value.reason == LEDGER_UNAVAILABLE


def test_an_unreachable_redis_refuses_every_call() -> None:
    clock = FakeClock()
    ledger = RedisLedger.from_url("redis://127.0.0.1:1/0", "unreachable")
    guard, stream, sink = watched(ledger, clock)
    with pytest.raises(Refused) as refused:
        guard.reserve(10, SONNET)
    assert refused.value.reason == LEDGER_UNAVAILABLE
    assert len(errors(stream)) == 1 and sink.where("errors", kind="budget_ledger")


def test_corrupt_redis_entries_refuse(redis_space: object) -> None:
    space = redis_space
    ledger = RedisLedger(space.client, space.prefix)  # type: ignore[attr-defined]
    clock = FakeClock()
    guard, _, _ = watched(ledger, clock)
    reservation = guard.reserve(10, SONNET)
    space.client.hset(f"{{{space.prefix}}}:e:{reservation.id}", "usd", "NaN-ish")  # type: ignore[attr-defined]
    clock.advance(1)
    with pytest.raises(Refused) as refused:
        guard.reserve(10, SONNET)
    assert refused.value.reason == LEDGER_UNAVAILABLE


def test_a_ledger_failure_after_the_reservation_keeps_the_worst_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "budget.sqlite"
    clock = FakeClock()
    ledger = SqliteLedger(path)
    guard, stream, _ = watched(ledger, clock)
    reservation = guard.reserve(1000, SONNET)

    def broken(*args: object) -> None:
        raise LedgerUnavailable("disk full")

    monkeypatch.setattr(ledger, "finish", broken)
    guard.settle(reservation, 1, 1, SONNET)  # logged, not raised
    assert errors(stream)
    (entry,) = SqliteLedger(path).entries()
    assert (entry.usd, entry.state) == (WORST, "reserved")


# --- gauges and threshold events ---------------------------------------------------------------


def test_gauges_per_window_and_threshold_events_at_50_80_100_percent() -> None:
    clock = FakeClock()
    guard, stream, sink = watched(memory_ledger(), clock)
    # Fleet cap $0.02 per 10 min: 0.0075 (37 %), 0.015 (75 %: crosses 50), refused (100 %).
    guard.reserve(1000, SONNET)
    guard.reserve(1000, SONNET)
    with pytest.raises(Refused):
        guard.reserve(1000, SONNET)
    gauges = sink.where("ai_budget", scope="fleet", window="10min")
    # Float fields (a string would break InfluxDB's sums); float() below only narrows the type.
    assert all(
        isinstance(p.fields[key], float)
        for p in gauges
        for key in ("reserved_usd", "remaining_usd")
    )
    assert [round(float(p.fields["reserved_usd"]), 6) for p in gauges] == [0.0075, 0.015, 0.015]
    assert [round(float(p.fields["remaining_usd"]), 6) for p in gauges] == [0.0125, 0.005, 0.005]
    assert {p.tags["window"] for p in sink.where("ai_budget", scope="agent")} == {"10min", "hour"}
    events = sink.where("ai_budget_threshold", window="10min")
    assert [p.tags["threshold"] for p in events] == ["50", "80", "100"]
    warnings = stream.where(level="WARNING")
    assert [w["context"]["budget_threshold"] for w in warnings] == [50, 80, 100]
    assert all(w["context"]["event"] == "budget_threshold" for w in warnings)
    # Settling frees the window: the gauge shows it at the next reservation.
    clock.advance(TEN_MINUTES + 1)
    guard.reserve(10, SONNET)
    last = sink.where("ai_budget", scope="fleet", window="10min")[-1]
    small = SONNET.cost(10, 300)
    assert last.fields["reserved_usd"] == pytest.approx(small)
    assert last.fields["remaining_usd"] == pytest.approx(0.02 - small)


# --- a hypothesis state machine: one ledger, several agents ------------------------------------


class FleetLedgerMachine(RuleBasedStateMachine):
    """Several simulated agents share one ledger: they reserve, settle, release, keep the worst
    case, crash and restart, while time moves. Replaying the ledger, no window ever exceeds a
    cap (LiteLLM #34732/#40095: no concurrent bypass; #34733: no reset forgets spend)."""

    reservations = Bundle("reservations")

    @initialize(
        fleet10=st.floats(0.0, 0.05),
        fleet_hour=st.floats(0.0, 0.2),
        # Each agent's caps as a share of the fleet's: above 1 only the fleet caps bind.
        share=st.sampled_from([0.3, 0.6, 1.0, 2.0]),
        interval=st.sampled_from([0.0, 1.0, 30.0]),
    )
    def setup(self, fleet10: float, fleet_hour: float, share: float, interval: float) -> None:
        self.clock = FakeClock()
        self.ledger = memory_ledger()
        self.limits = limits(
            min_interval_s=interval,
            max_tokens_per_hour=20_000,
            max_usd_per_10min=fleet10 * share,
            max_usd_per_hour=fleet_hour * share,
            fleet_max_usd_per_10min=fleet10,
            fleet_max_usd_per_hour=fleet_hour,
        )
        self.agents = {n: self._start(n) for n in ("a1", "a2", "a3", "a4")}
        self.open: dict[int, tuple[str, object, Price]] = {}

    def _start(self, name: str) -> CostGuard:
        return CostGuard(self.limits, self.clock, self.ledger, name)

    @rule(seconds=st.floats(0.0, 700.0))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(
        name=st.sampled_from(["a1", "a2", "a3", "a4"]),
        input_tokens=st.integers(0, 3000),
        price=st.sampled_from(list(PRICES.values())),
    )
    def reserve(self, name: str, input_tokens: int, price: Price) -> None:
        try:
            reservation = self.agents[name].reserve(input_tokens, price)
        except Refused:
            return
        self.open[reservation.id] = (name, reservation, price)

    @rule(data=st.data(), how=st.sampled_from(["settle", "release", "keep"]))
    def finish(self, data: st.DataObject, how: str) -> None:
        if not self.open:
            return
        key = data.draw(st.sampled_from(sorted(self.open)))
        name, reservation, price = self.open.pop(key)
        guard = self.agents[name]
        if how == "settle":
            tokens_in = data.draw(st.integers(0, 5000))
            guard.settle(reservation, tokens_in, data.draw(st.integers(0, 400)), price)  # type: ignore[arg-type]
        elif how == "release":
            guard.release(reservation)  # type: ignore[arg-type]
        else:
            guard.keep_worst_case(reservation)  # type: ignore[arg-type]

    @rule(name=st.sampled_from(["a1", "a2", "a3", "a4"]))
    def crash_and_restart(self, name: str) -> None:
        # Its open reservations are never finished: they stay at their worst case.
        for key in [k for k, (n, _, _) in self.open.items() if n == name]:
            del self.open[key]
        self.agents[name] = self._start(name)

    @invariant()
    def no_window_exceeds_a_cap(self) -> None:
        if hasattr(self, "ledger"):
            check_replay(self.ledger.entries(), self.limits)


FleetLedgerMachine.TestCase.settings = hsettings(
    max_examples=40, stateful_step_count=40, deadline=None
)
TestFleetLedgerMachine = FleetLedgerMachine.TestCase


def test_replay_check_catches_an_overshoot() -> None:
    """The replay is what the hammer and the state machine trust: it must see a bypass."""
    lim = limits(fleet_max_usd_per_10min=0.01)
    entries = [Entry(1, "a", 0.0, 0.006, 10, 0.006, "settled")]
    check_replay(entries, lim)
    entries.append(Entry(2, "b", TEN_MINUTES - 1, 0.006, 10, 0.006, "settled"))
    with pytest.raises(AssertionError):
        check_replay(entries, lim)
    assert math.isfinite(max_window_sum([(e.at, e.usd) for e in entries], TEN_MINUTES))
