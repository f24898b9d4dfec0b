"""The shared agent lifecycle: signals set the stop flag; a stop ends a reconnect backoff."""

from __future__ import annotations

import io
import json
import os
import signal
import time

import pytest

from agents.core.logs import JsonLogger
from agents.core.settings import ConsumerSettings, load_settings
from agents.runtime import (
    Interrupted,
    StopFlag,
    StoppableClock,
    install_signal_handlers,
    log_startup,
)


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
