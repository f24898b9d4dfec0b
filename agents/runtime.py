"""What every agent process shares: the stop flag its signal handlers set, the start-up log line,
and the wiring of logger, metrics, broker and AI engine from settings.

Agents themselves are plain classes driven by `step()` / `run(stop)`; nothing here is global, so
tests build an agent from fakes and a FakeClock and never touch signals.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from agents.core.clock import Clock, SystemClock
from agents.core.logs import JsonLogger, Level, Redactor
from agents.core.metrics import Metrics, MetricsSink, sink_from_settings

if TYPE_CHECKING:
    from agents.core.ai import DecisionEngine
    from agents.core.broker import Broker
    from agents.core.settings import CommonSettings

# SIGTERM to exit must fit inside the 10 s that `docker stop` and the fleet allow.
SHUTDOWN_BUDGET_SECONDS = 8.0


class Interrupted(BaseException):
    """Raised out of a stop-aware sleep (a broker's reconnect backoff) once a stop is requested,
    so SIGTERM ends the process promptly even while the broker is down. A BaseException, like
    KeyboardInterrupt, so retry loops that catch Exception do not swallow it."""


class StopFlag:
    """Set once by SIGTERM/SIGINT (or a test); agent loops poll it between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def set(self, reason: str = "requested") -> None:
        if not self._event.is_set():
            self.reason = reason
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


class StoppableClock(SystemClock):
    """The system clock whose `sleep` ends early, raising Interrupted, when `stop` is set. Given
    to the broker, whose only sleeps are reconnect backoffs."""

    def __init__(self, stop: StopFlag) -> None:
        self._stop = stop

    def sleep(self, seconds: float) -> None:
        if self._stop.wait(max(0.0, seconds)):
            raise Interrupted(self._stop.reason)


def install_signal_handlers(stop: StopFlag) -> Callable[[], None]:
    """SIGTERM and SIGINT set `stop`; returns a function that restores the previous handlers."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def make_logger(settings: CommonSettings, clock: Clock | None = None) -> JsonLogger:
    return JsonLogger(
        settings.agent_id,
        settings.agent_type,
        clock=clock,
        redactor=Redactor(settings.secrets()),
        min_level=Level(settings.log_level),
    )


def log_startup(
    logger: JsonLogger,
    settings: CommonSettings,
    *,
    mode: str,
    cost_limits: dict[str, Any],
    metrics: str,
    **details: Any,
) -> None:
    """The one line an operator reads first: who this is, AI mode, spend limits, metrics target."""
    logger.info(
        f"Agent starting: {settings.agent_id} ({settings.agent_type}), AI mode {mode}",
        agent=settings.agent_id,
        mode=mode,
        cost_limits=cost_limits,
        metrics_destination=metrics,
        broker=f"{settings.rabbitmq_host}:{settings.rabbitmq_port}/{settings.rabbitmq_vhost}",
        **details,
    )


@dataclass
class Wiring:
    """The real dependencies of one agent process, built from settings in `main`."""

    settings: CommonSettings
    logger: JsonLogger
    clock: Clock
    sink: MetricsSink
    metrics: Metrics
    broker: Broker
    engine: DecisionEngine

    def close(self) -> None:
        """Close in dependency order; each step is attempted even if an earlier one fails."""
        for step in (self.broker.close, self.metrics.close):
            try:
                step()
            except Exception as exc:  # shutdown must finish whatever a dependency does
                self.logger.exception("Error while closing", exc)


def wire(settings: CommonSettings, stop: StopFlag) -> Wiring:
    from agents.core.ai import build_engine
    from agents.core.broker import RabbitBroker

    clock = SystemClock()
    logger = make_logger(settings, clock)
    sink = sink_from_settings(settings, logger)
    metrics = Metrics(
        sink,
        settings.agent_id,
        settings.agent_type,
        clock=clock,
        flush_interval_seconds=settings.metrics_flush_interval_seconds,
    )
    metrics.aggregator.start_flusher()
    broker = RabbitBroker(settings, logger, clock=StoppableClock(stop))
    engine = build_engine(settings, logger, metrics, clock)
    return Wiring(settings, logger, clock, sink, metrics, broker, engine)


def run_agent(
    settings: CommonSettings,
    body: Callable[[Wiring, StopFlag], None],
    **startup_details: Any,
) -> int:
    """The common `main`: wire, log start-up, connect (interruptibly), run, close. Exit 0 on a
    requested stop; 1 if the agent crashed, after logging why."""
    stop = StopFlag()
    restore = install_signal_handlers(stop)
    wiring = wire(settings, stop)
    logger = wiring.logger
    log_startup(
        logger,
        settings,
        mode=wiring.engine.mode,
        cost_limits=wiring.engine.limits_summary(),
        metrics=wiring.sink.description,
        **startup_details,
    )
    code = 0
    try:
        wiring.broker.connect()
        body(wiring, stop)
    except Interrupted:
        pass
    except Exception as exc:
        logger.exception("Agent crashed", exc)
        code = 1
    finally:
        wiring.close()
        restore()
    logger.info("Agent stopped", reason=stop.reason or "finished", exit_code=code)
    return code
