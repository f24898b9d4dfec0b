"""What every agent process shares: the stop flag its signal handlers set, the start-up log line,
the wiring of logger, metrics, broker and AI engine from settings, and the serve loop.

Agents themselves are plain classes built from one `Wiring` and driven by `step()` / `run(stop)`;
nothing here is global. `wire(settings, **overrides)` is the one place dependencies are built:
`main` takes it as it is, tests, benchmarks and tools replace what they must (a FakeClock, an
in-memory broker, a scripted model, a captured log stream) and keep the rest.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from agents import early_signals
from agents.core.clock import SystemClock
from agents.core.logs import JsonLogger, Level, Redactor, describe_error
from agents.core.metrics import Metrics, sink_from_settings
from agents.core.settings import SettingsError
from agents.ports import Clock, MetricsSink
from agents.vocab import Event

if TYPE_CHECKING:
    from agents.core.ai import DecisionEngine
    from agents.core.settings import CommonSettings
    from agents.ports import Broker, DecisionClient

# SIGTERM to exit must fit inside the 10 s that `docker stop` and the fleet allow.
SHUTDOWN_BUDGET_SECONDS = 8.0
# The longest an agent waits inside the broker's event loop before it looks at the stop flag.
POLL_SECONDS = 0.25

S = TypeVar("S", bound="CommonSettings")


class Interrupted(BaseException):
    """Raised out of a stop-aware sleep (a broker's reconnect backoff) once a stop is requested,
    so SIGTERM ends the process promptly even while the broker is down. A BaseException, like
    KeyboardInterrupt, so retry loops that catch Exception do not swallow it."""


class StopFlag:
    """Set once by SIGTERM/SIGINT (or a test); agent loops poll it between steps.

    A signal handler runs in the main thread between two bytecodes of whatever it interrupted,
    which may be another handler in the middle of setting this flag (Ctrl-C signals the whole
    group, and the fleet's SIGTERM follows at once). So `request`, which handlers call, only
    assigns attributes: taking a lock there (as threading.Event.set does) can wait forever on
    the lock the interrupted frame holds. `wait` therefore also looks at the request itself,
    in short slices, rather than relying on the event alone."""

    _SLICE_SECONDS = 0.05

    def __init__(self) -> None:
        self._event = threading.Event()
        self._requested = False
        self.reason = ""

    def request(self, reason: str) -> None:
        """Signal-safe: no lock, no allocation beyond the assignment."""
        if not self._requested:
            self.reason = reason
            self._requested = True

    def set(self, reason: str = "requested") -> None:
        self.request(reason)
        self._event.set()

    def is_set(self) -> bool:
        return self._requested

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self._requested:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._event.wait(min(left, self._SLICE_SECONDS))
        return True


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
        stop.request(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def make_logger(
    settings: CommonSettings, clock: Clock | None = None, stream: IO[str] | None = None
) -> JsonLogger:
    return JsonLogger(
        settings.agent_id,
        settings.agent_type,
        stream=stream,
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
        f"{Event.AGENT_STARTING}: {settings.agent_id} ({settings.agent_type}), AI mode {mode}",
        agent=settings.agent_id,
        mode=mode,
        cost_limits=cost_limits,
        metrics_destination=metrics,
        broker=f"{settings.rabbitmq_host}:{settings.rabbitmq_port}/{settings.rabbitmq_vhost}",
        **details,
    )


@dataclass
class Wiring(Generic[S]):
    """The dependencies of one agent, built by `wire` (the real ones in `main`)."""

    settings: S
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


def wire(
    settings: S,
    stop: StopFlag | None = None,
    *,
    clock: Clock | None = None,
    stream: IO[str] | None = None,
    sink: MetricsSink | None = None,
    broker: Broker | Callable[[JsonLogger], Broker] | None = None,
    client: DecisionClient | None = None,
    cwd: Path | None = None,
) -> Wiring[S]:
    """Build an agent's dependencies from its settings; each keyword replaces one of them.

    `clock` is the agent's (its timers, log and metric timestamps, the cost guard); the broker
    always runs on real time, since pika's heartbeats and reconnects do, and with `stop` its
    reconnect backoff ends as soon as a stop is requested. `stream` is where the JSON lines go
    (stdout by default), `sink` where the metric points go (from the settings by default),
    `broker` an instance or a factory given the logger (RabbitBroker by default), `client` the
    model behind the real engine (resolved from the settings by default), `cwd` where relative
    cassette paths start. Nothing is started: no thread, no connection.
    """
    from agents.core.ai import build_engine

    clock = clock or SystemClock()
    logger = make_logger(settings, clock, stream)
    sink = sink if sink is not None else sink_from_settings(settings, logger)
    metrics = Metrics(
        sink,
        settings.agent_id,
        settings.agent_type,
        clock=clock,
        flush_interval_seconds=settings.metrics_flush_interval_seconds,
    )
    if broker is None:
        from agents.core.broker import RabbitBroker

        broker = RabbitBroker(
            settings, logger, clock=StoppableClock(stop) if stop is not None else None
        )
    elif callable(broker):
        broker = broker(logger)
    engine = build_engine(settings, logger, metrics, clock, client=client, cwd=cwd)
    return Wiring(settings, logger, clock, sink, metrics, broker, engine)


class Agent(Generic[S]):
    """The wired dependencies every agent uses, unpacked once from its `Wiring`."""

    def __init__(self, wiring: Wiring[S]) -> None:
        self.settings: S = wiring.settings
        self.broker = wiring.broker
        self.engine = wiring.engine
        self.metrics = wiring.metrics
        self.logger = wiring.logger
        self.clock = wiring.clock


class Runnable(Protocol):
    def run(self, stop: StopFlag) -> None: ...


def serve(step: Callable[[], float], broker: Broker, clock: Clock, stop: StopFlag) -> None:
    """The agents' loop, on the agent's clock: do what is due (`step` returns the seconds until
    something is next due), then wait that long inside the broker's event loop, which keeps
    heartbeats, reconnects and deliveries going, looking at `stop` at least every POLL_SECONDS.
    Returns once `stop` is set, or a stop interrupted a reconnect backoff."""
    try:
        while not stop.is_set():
            deadline = clock.monotonic() + step()
            while not stop.is_set():
                left = deadline - clock.monotonic()
                if left <= 0:
                    break
                broker.process_events(min(left, POLL_SECONDS))
    except Interrupted:
        pass


def run_agent(
    settings: S,
    build: Callable[[Wiring[S]], Runnable],
    shown: tuple[str, ...] = (),
) -> int:
    """The common `main`: check, wire, log start-up (with the settings named in `shown`),
    connect (interruptibly), build the agent and run it, close. Exit 0 on a requested stop; 1 if
    the agent crashed, after logging why; a start-up failure is one line on stderr, never a
    traceback."""
    preflight(settings)
    stop = StopFlag()
    # Not restored: the process ends with the agent (see ignore_further_stop_signals).
    install_signal_handlers(stop)
    early = early_signals.received()
    if early is not None:  # stopped while still importing: nothing started, nothing to undo
        stop.set(early)
        make_logger(settings).info(Event.AGENT_STOPPED, reason=early, exit_code=0)
        ignore_further_stop_signals()
        return 0
    try:
        wiring = wire(settings, stop)
        wiring.metrics.aggregator.start_flusher()
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
        **{name: getattr(settings, name) for name in shown},
    )
    code = 0
    try:
        wiring.broker.connect()
        build(wiring).run(stop)
    except Interrupted:
        pass
    except Exception as exc:
        logger.exception(Event.AGENT_CRASHED, exc)
        code = 1
    finally:
        wiring.close()
    dropped = getattr(wiring.sink, "dropped_points", None)
    extra = {} if dropped is None else {"metrics_points_dropped": dropped}
    logger.info(Event.AGENT_STOPPED, reason=stop.reason or "finished", exit_code=code, **extra)
    ignore_further_stop_signals()
    return code


def ignore_further_stop_signals() -> None:
    """Once the agent has stopped, ignore SIGTERM/SIGINT for the rest of the process.

    Interpreter teardown puts back the default action for signals that had a Python handler
    (not for ignored ones). Ctrl-C reaches the whole process group, so the fleet's own SIGTERM
    can arrive in that window, and it used to kill a cleanly stopped agent with -15."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
