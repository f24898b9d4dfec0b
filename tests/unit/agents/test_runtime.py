"""The shared agent lifecycle: signals set the stop flag; a stop ends a reconnect backoff; one
serve loop on the agent's clock; `wire` builds an agent's dependencies with overrides."""

from __future__ import annotations

import io
import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from agents.core.logs import JsonLogger
from agents.core.metrics import MemorySink
from agents.core.settings import ConsumerSettings, PublisherSettings, load_settings
from agents.publisher import Publisher
from agents.runtime import (
    POLL_SECONDS,
    Interrupted,
    StopFlag,
    StoppableClock,
    install_signal_handlers,
    log_startup,
    serve,
    wire,
)
from agents.testing import MemoryBroker
from agents.testing.clock import FakeClock


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_sets_the_stop_flag_and_handlers_are_restored(sig: signal.Signals) -> None:
    before = signal.getsignal(sig)
    stop = StopFlag()
    restore = install_signal_handlers(stop)
    try:
        os.kill(os.getpid(), sig)
        assert stop.wait(2.0)
        assert stop.reason == sig.name
    finally:
        restore()
    assert signal.getsignal(sig) == before


# Ctrl-C at a terminal reaches the whole process group: an agent gets SIGINT, and the fleet's
# SIGTERM a moment later, often while the first handler is still running. A handler that takes
# a lock (threading.Event.set does) then waits forever on the lock its own interrupted frame
# holds: the agent hung until the fleet killed it (-9, fleet exit 1; seen about 1 run in 6).
NESTED_SIGNAL = """
import signal, sys, threading
from agents.runtime import StopFlag, install_signal_handlers

stop = StopFlag()
install_signal_handlers(stop)
nested = []

class SecondSignalMidSet(threading.Event):
    def set(self):
        with self._cond:  # what Event.set holds when the second signal lands
            if not nested:
                nested.append(1)
                signal.raise_signal(signal.SIGTERM)
            self._flag = True
            self._cond.notify_all()

for name, value in vars(stop).items():  # whichever Event the flag keeps
    if isinstance(value, threading.Event):
        setattr(stop, name, SecondSignalMidSet())
signal.raise_signal(signal.SIGINT)
print(stop.is_set(), stop.reason, stop.wait(1.0))
"""


def test_a_second_signal_during_the_first_ones_handler_cannot_hang_the_agent() -> None:
    import subprocess
    import sys

    try:
        done = subprocess.run(
            [sys.executable, "-c", NESTED_SIGNAL],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the process hung: a signal handler waited on a lock its own frame held")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "SIGINT", "True"]


def test_a_stop_ends_a_backoff_sleep_at_once() -> None:
    stop = StopFlag()
    clock = StoppableClock(stop)
    clock.sleep(0.01)  # not stopped: an ordinary sleep
    stop.set("SIGTERM")
    started = time.monotonic()
    with pytest.raises(Interrupted):
        clock.sleep(30.0)
    assert time.monotonic() - started < 0.5


def test_interrupted_escapes_except_exception() -> None:
    caught = False
    try:
        try:
            raise Interrupted("SIGTERM")
        except Exception:
            caught = True
    except Interrupted:
        pass
    assert not caught


def test_the_start_up_line_names_agent_mode_limits_and_metrics() -> None:
    settings = load_settings(ConsumerSettings, consumer_id="consumer-2")
    out = io.StringIO()
    logger = JsonLogger("consumer-2", "consumer", stream=out)
    log_startup(
        logger, settings, mode="dry-run", cost_limits={"max_tokens": 200}, metrics="file:x.lp"
    )
    line = json.loads(out.getvalue())
    assert line["level"] == "INFO"
    assert "consumer-2" in line["message"]
    assert line["context"]["mode"] == "dry-run"
    assert line["context"]["cost_limits"] == {"max_tokens": 200}
    assert line["context"]["metrics_destination"] == "file:x.lp"


class _TimedBroker(MemoryBroker):
    """Waiting in the broker advances the FakeClock, as real waiting advances real time."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.waits: list[float] = []

    def process_events(self, time_limit: float, until: Callable[[], bool] | None = None) -> None:
        self.waits.append(time_limit)
        self.clock.advance(time_limit)


def test_serve_steps_when_due_and_waits_in_the_broker_in_slices_of_the_poll() -> None:
    clock = FakeClock()
    broker = _TimedBroker(clock)
    stop = StopFlag()
    steps: list[float] = []

    def step() -> float:
        steps.append(clock.monotonic() - 1_000.0)
        if len(steps) == 3:
            stop.set("test")
        return 0.6

    serve(step, broker, clock, stop)
    assert steps == pytest.approx([0.0, 0.6, 1.2])
    # 0.6 s waited as 0.25 + 0.25 + 0.1, twice; none after the stop.
    assert broker.waits == pytest.approx([POLL_SECONDS, POLL_SECONDS, 0.1] * 2)


def test_serve_ends_quietly_when_a_stop_interrupts_a_reconnect() -> None:
    clock = FakeClock()

    class Interrupting(MemoryBroker):
        def process_events(self, time_limit: float, until: Any = None) -> None:
            raise Interrupted("SIGTERM")

    serve(lambda: 1.0, Interrupting(), clock, StopFlag())  # returns instead of raising


def test_wire_takes_overrides_and_starts_nothing() -> None:
    settings = load_settings(PublisherSettings, dry_run=True)
    clock, out, sink, broker = FakeClock(), io.StringIO(), MemorySink(), MemoryBroker()
    wiring = wire(settings, clock=clock, stream=out, sink=sink, broker=broker)
    assert (wiring.clock, wiring.sink, wiring.broker) == (clock, sink, broker)
    assert wiring.engine.mode == "dry-run"
    assert wiring.metrics.aggregator._flusher is None  # run_agent starts it, not wire
    publisher = Publisher(wiring)
    assert (publisher.settings, publisher.broker, publisher.clock) == (settings, broker, clock)
    publisher.step()
    assert [p.routing_key for p in broker.published] == ["fictional", "non-fictional"]
    assert [json.loads(line)["message"] for line in out.getvalue().splitlines()][-1] == (
        "Message published"
    )


def test_wire_builds_the_broker_from_a_factory_given_the_logger() -> None:
    settings = load_settings(ConsumerSettings, dry_run=True)
    given: list[JsonLogger] = []

    def factory(logger: JsonLogger) -> MemoryBroker:
        given.append(logger)
        return MemoryBroker()

    wiring = wire(settings, stream=io.StringIO(), sink=MemorySink(), broker=factory)
    assert given == [wiring.logger]
    assert isinstance(wiring.broker, MemoryBroker)
