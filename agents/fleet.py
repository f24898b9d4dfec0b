"""`agents run`: the whole fleet on one machine without Docker.

Five child processes (`python -m agents publisher|consumer|monitor`, ids set through the same
variables compose uses), their JSON log lines merged onto one stream, and an orderly stop:
publishers first, then a short drain so the consumers empty the queues, then consumers and the
monitor. Every child handles SIGTERM itself (finishes or requeues in-flight work), so the fleet
only signals and waits; a child that outlives the grace period is killed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

from agents.core.logs import JsonLogger, Redactor
from agents.runtime import StopFlag, install_signal_handlers

if TYPE_CHECKING:
    from agents.core.settings import CommonSettings

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
    reported: bool = field(default=False)


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
    """None when RabbitMQ accepts a connection (and the topology is declared), else why not."""
    import pika
    import pika.exceptions

    from agents.core.broker import TopologyError, connection_parameters, declare_topology

    where = f"{settings.rabbitmq_host}:{settings.rabbitmq_port}/{settings.rabbitmq_vhost}"
    try:
        connection = pika.BlockingConnection(connection_parameters(settings))
    except (pika.exceptions.AMQPError, OSError) as exc:
        detail = " ".join(str(exc).split())[:120] or type(exc).__name__
        return f"RabbitMQ is not reachable at {where} ({type(exc).__name__}: {detail})"
    try:
        declare_topology(connection.channel(), settings.queue_type)
    except TopologyError as exc:
        return str(exc)
    except (pika.exceptions.AMQPError, OSError) as exc:  # e.g. 403: no configure permission
        detail = " ".join(str(exc).split())[:160] or type(exc).__name__
        return f"RabbitMQ at {where} refused the topology ({type(exc).__name__}: {detail})"
    finally:
        if connection.is_open:
            connection.close()
    return None


HOW_TO_START = (
    "start one with `rabbitmq-server -detached` (or `docker compose up -d rabbitmq`), "
    "or point RABBITMQ_HOST/RABBITMQ_PORT at yours"
)


class Fleet:
    def __init__(
        self,
        out: IO[str],
        specs: Sequence[AgentSpec] = FLEET,
        env: dict[str, str] | None = None,
        logger: JsonLogger | None = None,
    ) -> None:
        self.specs = specs
        self.env = dict(os.environ if env is None else env)
        self.merger = LineMerger(out)
        self.logger = logger or JsonLogger("fleet", "fleet", stream=out)
        self.children: list[Child] = []

    def start(self) -> None:
        for spec in self.specs:
            env = {**self.env, **spec.env}
            process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
                [sys.executable, "-m", "agents", spec.kind],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
            )
            assert process.stdout is not None
            pump = threading.Thread(
                target=self.merger.pump, args=(process.stdout,), name=f"pump-{spec.name}"
            )
            pump.daemon = True
            pump.start()
            self.children.append(Child(spec, process, pump))
        self.logger.info(
            "Fleet started",
            agents={c.spec.name: c.process.pid for c in self.children},
        )

    def check_children(self) -> None:
        for child in self.children:
            code = child.process.poll()
            if code is not None and not child.reported:
                child.reported = True
                child.returncode = code
                self.logger.error(
                    "Agent exited unexpectedly", agent=child.spec.name, exit_code=code
                )

    def run(self, stop: StopFlag, duration: float | None) -> None:
        deadline = None if duration is None else time.monotonic() + duration
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                stop.set("duration elapsed")
                break
            self.check_children()
            if all(c.process.poll() is not None for c in self.children):
                stop.set("every agent exited")
                break
            stop.wait(POLL_SECONDS)

    def stop(self, kinds: Sequence[str]) -> None:
        """SIGTERM the children of these kinds and wait for them (kill after the grace period)."""
        group = [c for c in self.children if c.spec.kind in kinds]
        for child in group:
            if child.process.poll() is None:
                child.process.terminate()
        end = time.monotonic() + GRACE_SECONDS
        for child in group:
            try:
                child.process.wait(timeout=max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.logger.error("Agent did not stop in time; killed", agent=child.spec.name)
                child.process.kill()
                child.process.wait()
            child.pump.join(timeout=2.0)
            if not child.reported:
                child.returncode = child.process.returncode

    def exit_code(self) -> int:
        codes = {c.spec.name: c.returncode for c in self.children}
        failed = {name: code for name, code in codes.items() if code not in (0, None)}
        self.logger.info("Fleet stopped", exit_codes=codes)
        return 1 if failed else 0


def drain(settings: CommonSettings, seconds: float, logger: JsonLogger) -> None:
    """Wait (bounded) until the main queues are empty, so stopped publishers' last messages are
    consumed before the consumers stop. Leftovers are safe in durable queues either way."""
    import pika
    import pika.exceptions

    from agents.core.broker import QUEUES, connection_parameters

    end = time.monotonic() + seconds
    try:
        connection = pika.BlockingConnection(connection_parameters(settings))
    except (pika.exceptions.AMQPError, OSError):
        return
    try:
        channel = connection.channel()
        while True:
            depths = {
                q: channel.queue_declare(q, passive=True).method.message_count for q in QUEUES
            }
            if not any(depths.values()) or time.monotonic() >= end:
                break
            connection.sleep(POLL_SECONDS)
        logger.info(
            "Queues drained" if not any(depths.values()) else "Drain timed out", queue_depths=depths
        )
    except (pika.exceptions.AMQPError, OSError):
        pass
    finally:
        if connection.is_open:
            connection.close()


def main(settings: CommonSettings, args: argparse.Namespace) -> int:
    problem = rabbit_unreachable(settings)
    if problem is not None:
        print(f"agents run: {problem}; {HOW_TO_START}.", file=sys.stderr)
        return 1
    log_file = getattr(args, "log_file", None)
    out: IO[str] = open(log_file, "a", encoding="utf-8") if log_file else sys.stdout  # noqa: SIM115
    logger = JsonLogger("fleet", "fleet", stream=out, redactor=Redactor(settings.secrets()))
    if log_file:
        print(f"agents run: fleet logs go to {log_file}; Ctrl-C stops it.", file=sys.stderr)
    stop = StopFlag()
    restore = install_signal_handlers(stop)
    fleet = Fleet(out, logger=logger)
    try:
        fleet.start()
        fleet.run(stop, getattr(args, "duration", None))
        logger.info("Fleet stopping", reason=stop.reason)
        fleet.stop(["publisher"])
        drain(settings, DRAIN_SECONDS, logger)
        fleet.stop(["consumer", "monitor"])
    finally:
        for child in fleet.children:  # whatever happened above, leave no orphans
            if child.process.poll() is None:
                child.process.kill()
        restore()
    code = fleet.exit_code()
    if log_file:
        out.close()
    return code
