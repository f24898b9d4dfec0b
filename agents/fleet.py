"""`agents run`: the whole fleet on one machine without Docker.

Five child processes (`python -m agents publisher|consumer|monitor`, ids set through the same
variables compose uses), their JSON log lines merged onto one stream, and an orderly stop:
publishers first, then a short drain so the consumers empty the queues, then consumers and the
monitor. Every child handles SIGTERM itself (finishes or requeues in-flight work), so the fleet
only signals and waits; a child that outlives the grace period is killed.

Before any child starts, every child's settings are validated (a bad value is exit 2, one line),
so no publisher ever fills queues that no consumer will drain. While the fleet runs, a child that
dies is restarted by `agents.supervisor` (capped backoff; too many restarts stop the fleet).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

from agents.core.logs import JsonLogger, Redactor, display_url
from agents.core.settings import SETTINGS_BY_TYPE, SettingsError, load_settings
from agents.runtime import StopFlag, install_signal_handlers, preflight
from agents.supervisor import RestartPolicy, Supervisor
from agents.vocab import Event

if TYPE_CHECKING:
    from agents.core.settings import CommonSettings, FleetSettings
    from agents.ports import MetricsSink

GRACE_SECONDS = 12.0  # a child's own budget is 10 s
DRAIN_SECONDS = 5.0
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class AgentSpec:
    name: str
    kind: str
    env: dict[str, str]


FLEET: tuple[AgentSpec, ...] = (
    AgentSpec("consumer-1", "consumer", {"CONSUMER_ID": "consumer-1"}),
    AgentSpec("consumer-2", "consumer", {"CONSUMER_ID": "consumer-2"}),
    AgentSpec("monitor-1", "monitor", {"AGENT_ID": "monitor-1"}),
    AgentSpec("publisher-1", "publisher", {"PUBLISHER_ID": "publisher-1"}),
    AgentSpec("publisher-2", "publisher", {"PUBLISHER_ID": "publisher-2"}),
)


@dataclass
class Child:
    spec: AgentSpec
    process: subprocess.Popen[bytes]
    pump: threading.Thread
    returncode: int | None = None
    err_pump: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.kind

    def poll(self) -> int | None:
        return self.process.poll()


class LineMerger:
    """Copies whole lines from the children's stdout to one output, never interleaving them."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.lock = threading.Lock()

    def write(self, line: str) -> None:
        with self.lock:
            try:
                self.out.write(line if line.endswith("\n") else line + "\n")
                self.out.flush()
            except (OSError, ValueError):
                pass

    def pump(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.write(raw.decode("utf-8", errors="replace"))
        stream.close()


def rabbit_unreachable(settings: CommonSettings) -> str | None:
    """None when RabbitMQ accepts a connection (and the topology is declared), else one line
    saying which of "not reachable", "authentication refused", "vhost not found" (or "no access
    to the vhost") it is, with the fix for each. Every secret is scrubbed from the line, should
    pika or the broker ever echo one."""
    problem = _rabbit_problem(settings)
    return None if problem is None else Redactor(settings.secrets())(problem)


def _rabbit_problem(settings: CommonSettings) -> str | None:
    import pika
    import pika.exceptions

    from agents.core.broker import AUTH_ERRORS, connection_parameters, declare_topology
    from agents.ports import TopologyError

    where = f"{settings.rabbitmq_host}:{settings.rabbitmq_port}"
    user, vhost = settings.rabbitmq_user, settings.rabbitmq_vhost
    try:
        connection = pika.BlockingConnection(connection_parameters(settings))
    except AUTH_ERRORS as exc:
        return (
            f"RabbitMQ at {where} refused authentication for user {user!r} ({_detail(exc)}); "
            "check RABBITMQ_USER and RABBITMQ_PASS"
        )
    except pika.exceptions.ProbableAccessDeniedError as exc:
        if "not found" in str(exc):
            return (
                f"RabbitMQ at {where} has no vhost {vhost!r} ({_detail(exc)}); create it "
                f"(`rabbitmqctl add_vhost {vhost}`) or set RABBITMQ_VHOST to an existing one"
            )
        return (
            f"RabbitMQ at {where} denied user {user!r} access to vhost {vhost!r} "
            f"({_detail(exc)}); grant it (`rabbitmqctl set_permissions -p {vhost} {user} "
            "'.*' '.*' '.*'`) or set RABBITMQ_VHOST"
        )
    except (pika.exceptions.AMQPError, OSError) as exc:
        return f"RabbitMQ is not reachable at {where}/{vhost} ({_detail(exc)}); {HOW_TO_START}"
    try:
        declare_topology(connection.channel(), settings.queue_type)
    except TopologyError as exc:
        return str(exc)
    except (pika.exceptions.AMQPError, OSError) as exc:  # e.g. 403: no configure permission
        return f"RabbitMQ at {where}/{vhost} refused the topology ({_detail(exc)})"
    finally:
        if connection.is_open:
            connection.close()
    return None


def _detail(exc: BaseException) -> str:
    """`Type: message` on one line, shortened at a word boundary, never mid-word."""
    text = " ".join(str(exc).split())
    text = textwrap.shorten(text, 200, placeholder=" ...") if text else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


HOW_TO_START = (
    "start one with `rabbitmq-server -detached` (or `docker compose up -d rabbitmq`), "
    "or point RABBITMQ_HOST/RABBITMQ_PORT at yours"
)


def validate(specs: Sequence[AgentSpec], env: Mapping[str, str]) -> None:
    """Every child's settings, as that child will read them (`env` plus its own variables),
    before any child starts: raises the first one-line SettingsError (exit 2), naming the agent.
    """
    checked: set[tuple[object, ...]] = set()
    for spec in specs:
        try:
            settings = load_settings(SETTINGS_BY_TYPE[spec.kind], env={**env, **spec.env})
            # The file checks once per distinct input: two consumers share a cassette.
            key = (
                settings.agent_type,
                settings.metrics_file,
                settings.cassettes_dir,
                settings.influxdb_url,
                settings.dry_run,
                settings.anthropic_api_key is not None,
            )
            if key not in checked:
                checked.add(key)
                preflight(settings)
        except SettingsError as exc:
            raise SettingsError(exc.variable, f"{exc.problem} (agent {spec.name})") from None


class Fleet:
    def __init__(
        self,
        out: IO[str],
        specs: Sequence[AgentSpec] = FLEET,
        env: dict[str, str] | None = None,
        logger: JsonLogger | None = None,
        capture_stderr: bool = False,
        policy: RestartPolicy | None = None,
        settings: CommonSettings | None = None,
    ) -> None:
        self.specs = specs
        # A person's console takes the children's stderr too (the monitor's alert banner), so
        # nothing writes over its live status line; for machines it stays the terminal's.
        self.capture_stderr = capture_stderr
        self.env = dict(os.environ if env is None else env)
        self.merger = LineMerger(out)
        self.logger = logger or JsonLogger("fleet", "fleet", stream=out)
        self.children: list[Child] = []
        self.settings = settings
        self.supervisor = Supervisor(
            policy or RestartPolicy(), self.logger, self.restart, self.record_restart
        )
        self._sink: MetricsSink | None = None

    def spawn(
        self, spec: AgentSpec
    ) -> tuple[subprocess.Popen[bytes], threading.Thread, threading.Thread | None]:
        env = {**self.env, **spec.env}
        process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            [sys.executable, "-m", "agents", spec.kind],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if self.capture_stderr else None,
        )
        assert process.stdout is not None
        pump = threading.Thread(
            target=self.merger.pump, args=(process.stdout,), name=f"pump-{spec.name}"
        )
        pump.daemon = True
        pump.start()
        err_pump = None
        if process.stderr is not None:
            err_pump = threading.Thread(
                target=self.merger.pump, args=(process.stderr,), name=f"err-{spec.name}"
            )
            err_pump.daemon = True
            err_pump.start()
        return process, pump, err_pump

    def start(self) -> None:
        for spec in self.specs:
            process, pump, err_pump = self.spawn(spec)
            self.children.append(Child(spec, process, pump, err_pump=err_pump))
        self.logger.info(
            Event.FLEET_STARTED,
            agents={c.spec.name: c.process.pid for c in self.children},
        )

    def restart(self, child: Any) -> int:
        assert isinstance(child, Child)
        child.pump.join(timeout=2.0)  # the dead child's last lines first
        if child.err_pump is not None:
            child.err_pump.join(timeout=2.0)
        child.process, child.pump, child.err_pump = self.spawn(child.spec)
        return child.process.pid

    def record_restart(self, child: Any) -> None:
        """One `errors` point (kind=agent_restarted) tagged with the restarted agent."""
        if self.settings is None:
            return
        from agents.core.metrics import Metrics, sink_from_settings

        if self._sink is None:  # built on first use: most runs never restart anything
            self._sink = sink_from_settings(self.settings, self.logger)
        Metrics(self._sink, child.name, child.kind).error("agent_restarted")

    def run(self, stop: StopFlag, duration: float | None) -> None:
        deadline = None if duration is None else time.monotonic() + duration
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                stop.set("duration elapsed")
                break
            failure = self.supervisor.check(self.children)
            if failure is not None:
                stop.set(failure)
                break
            stop.wait(POLL_SECONDS)

    def running(self, kind: str) -> bool:
        return any(c.spec.kind == kind and c.process.poll() is None for c in self.children)

    def stop(self, kinds: Sequence[str]) -> None:
        """SIGTERM the children of these kinds and wait for them (kill after the grace period).

        A child that already got the signal (Ctrl-C reaches the whole process group) is
        stopping anyway; the second signal only re-sets its stop flag."""
        group = [c for c in self.children if c.spec.kind in kinds]
        for child in group:
            if child.process.poll() is None:
                child.process.terminate()
        end = time.monotonic() + GRACE_SECONDS
        for child in group:
            try:
                child.process.wait(timeout=max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.logger.error(Event.AGENT_KILLED, agent=child.spec.name)
                child.process.kill()
                child.process.wait()
            child.pump.join(timeout=2.0)
            if child.err_pump is not None:
                child.err_pump.join(timeout=2.0)
            child.returncode = child.process.returncode

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()

    def exit_code(self) -> int:
        """0 only when every agent's last process stopped cleanly (exit 0) and the supervisor
        did not give up on any agent."""
        codes = {c.spec.name: c.returncode for c in self.children}
        waiting = self.supervisor.waiting()
        failed = {name: code for name, code in codes.items() if code != 0}
        self.logger.info(
            Event.FLEET_STOPPED,
            exit_codes=codes,
            restarts=self.supervisor.restarts(),
            **({"waiting_for_restart": waiting} if waiting else {}),
        )
        return 1 if failed or waiting or self.supervisor.failure else 0


def drain(
    settings: CommonSettings,
    seconds: float,
    logger: JsonLogger,
    consumers_running: Callable[[], bool] = lambda: True,
) -> None:
    """Wait (bounded) until the main queues are empty, so stopped publishers' last messages are
    consumed before the consumers stop. Leftovers are safe in durable queues either way."""
    from agents.core.broker import DepthReader

    end = time.monotonic() + seconds
    reader = DepthReader(settings)
    try:
        while True:
            depths = reader()
            if depths is None:  # RabbitMQ is gone: nothing to wait for
                return
            if not any(depths.values()) or time.monotonic() >= end or not consumers_running():
                break
            reader.sleep(POLL_SECONDS)
        logger.info(
            Event.DRAIN_TIMED_OUT if any(depths.values()) else Event.QUEUES_DRAINED,
            queue_depths=depths,
        )
    finally:
        reader.close()


def main(settings: FleetSettings, args: argparse.Namespace) -> int:
    from agents import scenarios

    scenario = scenarios.get(getattr(args, "scenario", None) or "steady")
    human = bool(getattr(args, "human", False))
    env = scenario.environment(os.environ)
    specs = [
        AgentSpec(spec.name, spec.kind, {**spec.env, **scenario.agent_env(spec.name)})
        for spec in FLEET
    ]
    validate(specs, env)  # SettingsError -> exit 2 in agents.cli, before anything connects
    problem = rabbit_unreachable(settings)
    if problem is not None:
        print(f"agents run: {problem}.", file=sys.stderr)
        return 1
    log_file = getattr(args, "log_file", None)
    file: IO[str] | None = open(log_file, "a", encoding="utf-8") if log_file else None  # noqa: SIM115
    view = None
    if human:
        from agents import console

        view = console.open_view(settings, scenario.header(env), log_file, file)
        out: IO[str] = view  # type: ignore[assignment]
    else:
        out = file or sys.stdout
    logger = JsonLogger("fleet", "fleet", stream=out, redactor=Redactor(settings.secrets()))
    if log_file and not human:
        print(f"agents run: fleet logs go to {log_file}; Ctrl-C stops it.", file=sys.stderr)
    started_at = datetime.now(UTC)
    logger.info(Event.SCENARIO, scenario=scenario.name, header=scenario.header(env))
    logger.info(Event.METRICS_DESTINATION, destination=metrics_destination(settings))
    stop = StopFlag()
    restore = install_signal_handlers(stop)
    fleet = Fleet(
        out,
        specs=specs,
        env=env,
        logger=logger,
        capture_stderr=human,
        policy=RestartPolicy.from_settings(settings),
        settings=settings,
    )
    if view is not None:
        view.start()
    try:
        fleet.start()
        scenarios.run_traffic(scenario, settings, logger, stop)
        fleet.run(stop, getattr(args, "duration", None))
        logger.info(Event.FLEET_STOPPING, reason=stop.reason)
        fleet.stop(["publisher"])
        drain(settings, DRAIN_SECONDS, logger, lambda: fleet.running("consumer"))
        fleet.stop(["consumer", "monitor"])
    finally:
        for child in fleet.children:  # whatever happened above, leave no orphans
            if child.process.poll() is None:
                child.process.kill()
        fleet.close()
        restore()
    code = fleet.exit_code()
    if fleet.supervisor.failure:
        print(f"agents run: stopped the fleet: {fleet.supervisor.failure}", file=sys.stderr)
    report = report_hint(settings, started_at, log_file)
    if view is not None:
        view.stop([report])
    else:
        print(report, file=sys.stderr)
    if file is not None:
        file.close()
    return code


def metrics_destination(settings: CommonSettings) -> str:
    """Said once for the fleet (agents no longer warn five times): where the points go."""
    if settings.influxdb_url:
        return f"InfluxDB at {shown_url(settings.influxdb_url, settings)}"
    return (
        f"the embedded file {settings.metrics_file} "
        "(INFLUXDB_URL is not set; `agents report` draws it)"
    )


def report_hint(settings: CommonSettings, started_at: datetime, log_file: str | None) -> str:
    since = started_at.isoformat(timespec="seconds").replace("+00:00", "Z")
    command = f"uv run --extra report agents report --since {since}"
    if log_file:
        command += f" --log-file {log_file}"
    if settings.influxdb_url:
        url = shown_url(settings.influxdb_url, settings)
        return f"agents run: metrics went to InfluxDB ({url}); see Grafana."
    return f"agents run: metrics in {settings.metrics_file}; draw this run: {command}"


def shown_url(url: str, settings: CommonSettings) -> str:
    """A URL as the fleet prints it: no credentials in it (`display_url`), and any secret the
    settings know scrubbed from what is left."""
    return Redactor(settings.secrets())(display_url(url))
