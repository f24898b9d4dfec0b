"""What every agent process shares: the stop flag its signal handlers set, the start-up log line,
and the wiring of logger, metrics, broker and AI engine from settings.

Agents themselves are plain classes driven by `step()` / `run(stop)`; nothing here is global, so
tests build an agent from fakes and a FakeClock and never touch signals.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from agents import early_signals
from agents.core.clock import SystemClock
from agents.core.logs import JsonLogger, Level, Redactor, describe_error
from agents.core.metrics import Metrics, sink_from_settings
from agents.core.settings import SettingsError
from agents.ports import Clock, MetricsSink

if TYPE_CHECKING:
    from agents.core.ai import DecisionEngine
    from agents.core.settings import CommonSettings
    from agents.ports import Broker

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


def preflight(settings: CommonSettings, cwd: Path | None = None) -> None:
    """The start-up checks that need more than the settings model: the metrics file can be
    written and a cassette that replay would use can be read. Raises a one-line SettingsError
    naming the variable, so a bad path is exit 2 before anything connects, never a traceback
    from deep inside the wiring."""
    if settings.influxdb_url is None:
        path = settings.metrics_file
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644))
        except OSError as exc:
            parent = path.parent
            why = (
                f"{parent} is not a directory"
                if parent.exists() and not parent.is_dir()
                else exc.strerror or type(exc).__name__
            )
            raise SettingsError(
                "METRICS_FILE",
                f"{path} cannot be written ({why}); point METRICS_FILE at a writable file, "
                "or set INFLUXDB_URL",
            ) from None
    key = settings.anthropic_api_key
    if settings.dry_run or (key is not None and key.get_secret_value().strip()):
        return
    from agents.core.ai import cassettes
    from agents.core.ai.client import load_cassette

    directory = cassettes.resolve_cassettes_dir(settings.cassettes_dir, cwd)
    cassette = cassettes.cassette_path(directory, settings.agent_type)
    if not cassette.is_file():
        return  # no cassette is not an error: the agent runs in dry-run and says why
    try:
        load_cassette(cassette)
    except Exception as exc:  # yaml, vcrpy and shape errors alike: the file is unusable
        detail = describe_error(exc)
        raise SettingsError(
            "CASSETTES_DIR",
            f"{cassette} is not a readable cassette ({detail['type']}: "
            f"{_shorten(detail['message'], 160)}); restore it from git or re-record it "
            "(`nox -s record`), or set DRY_RUN=true",
        ) from None


def _shorten(text: str, width: int) -> str:
    """At most `width` characters, cut at a word boundary (never mid-word)."""
    import textwrap

    return textwrap.shorten(text, width, placeholder=" ...")


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
    """The common `main`: check, wire, log start-up, connect (interruptibly), run, close. Exit 0
    on a requested stop; 1 if the agent crashed, after logging why; a start-up failure is one
    line on stderr, never a traceback."""
    preflight(settings)
    stop = StopFlag()
    # Not restored: the process ends with the agent (see ignore_further_stop_signals).
    install_signal_handlers(stop)
    early = early_signals.received()
    if early is not None:  # stopped while still importing: nothing started, nothing to undo
        stop.set(early)
        make_logger(settings).info("Agent stopped", reason=early, exit_code=0)
        ignore_further_stop_signals()
        return 0
    try:
        wiring = wire(settings, stop)
    except Exception as exc:
        detail = describe_error(exc)
        redact = Redactor(settings.secrets())
        print(
            redact(
                f"agents {settings.agent_type}: start-up failed ({detail['type']}: "
                f"{_shorten(detail['message'], 300)})"
            ),
            file=sys.stderr,
        )
        return 1
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
    dropped = getattr(wiring.sink, "dropped_points", None)
    extra = {} if dropped is None else {"metrics_points_dropped": dropped}
    logger.info("Agent stopped", reason=stop.reason or "finished", exit_code=code, **extra)
    ignore_further_stop_signals()
    return code


def ignore_further_stop_signals() -> None:
    """Once the agent has stopped, ignore SIGTERM/SIGINT for the rest of the process.

    Interpreter teardown puts back the default action for signals that had a Python handler
    (not for ignored ones). Ctrl-C reaches the whole process group, so the fleet's own SIGTERM
    can arrive in that window, and it used to kill a cleanly stopped agent with -15."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
