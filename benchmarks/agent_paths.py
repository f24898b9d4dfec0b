"""The agents' own per-message paths, run in-process against the real RabbitMQ.

The consumer agent is built by the same `wire()` as `agents consumer` (RabbitBroker, AI engine in
dry-run, the JSON logger, the embedded line-protocol FileSink: what `agents run` uses without
InfluxDB), except that its log lines go to a file instead of stdout. The only addition is a thin
wrapper around `Consumer.handle` that notes when the N-th message has been handled, so the clock
stops at the last ack exactly as it does for the raw clients.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from agents.core.metrics import MemorySink
from agents.core.settings import CommonSettings, ConsumerSettings, PublisherSettings, load_settings
from agents.ports import MetricsSink
from agents.runtime import Wiring, wire
from benchmarks import rabbit


def _common(vhost: str, workdir: Path, name: str) -> dict[str, Any]:
    return {
        "rabbitmq_host": rabbit.HOST,
        "rabbitmq_port": rabbit.PORT,
        "rabbitmq_user": rabbit.USER,
        "rabbitmq_pass": rabbit.PASSWORD,
        "rabbitmq_vhost": vhost,
        "dry_run": True,
        "influxdb_url": None,
        "metrics_file": workdir / f"{name}.lp",
    }


S = TypeVar("S", bound=CommonSettings)


@contextlib.contextmanager
def _wired(settings: S, workdir: Path, files: bool = True) -> Iterator[Wiring[S]]:
    """`agents.runtime.wire`, with the log stream pointed at a file. `files=False` is a
    diagnostic variant: logs to /dev/null and metrics kept in memory, so no disk writes."""
    log_path = workdir / f"{settings.agent_id}.log" if files else Path(os.devnull)
    with log_path.open("a", encoding="utf-8") as stream:
        sink: MetricsSink | None = None if files else MemorySink()
        wiring = wire(settings, stream=stream, sink=sink)
        try:
            wiring.broker.connect()
            yield wiring
        finally:
            wiring.close()


def consumer_settings(vhost: str, workdir: Path, prefetch: int) -> ConsumerSettings:
    return load_settings(
        ConsumerSettings,
        consumer_id="consumer-1",
        prefetch_count=prefetch,
        processing_time_ms=0.0,
        **_common(vhost, workdir, "consumer-1"),
    )


def consumer_agent(
    vhost: str,
    expected: int,
    prefetch: int,
    workdir: Path,
    timeout: float = 120.0,
    around: Callable[[Callable[[], None]], None] | None = None,
) -> float:
    """Messages/s of the consumer agent's handling path draining `expected` messages."""
    from agents.consumer import Consumer

    settings = consumer_settings(vhost, workdir, prefetch)
    with _wired(settings, workdir) as built:
        consumer = Consumer(built)
        finished: list[float] = []

        def handle(delivery: Any) -> None:
            consumer.handle(delivery)
            if consumer.stats.consumed >= expected and not finished:
                finished.append(time.perf_counter())

        def drain() -> None:
            started = time.perf_counter()
            # `Consumer.start()` registers `consumer.handle`; this registers the timing wrapper
            # around it with the same queues and prefetch.
            built.broker.consume(settings.queues, handle, settings.prefetch_count)
            deadline = started + timeout
            while not finished:
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"consumer agent got {consumer.stats.consumed}/{expected}")
                built.broker.process_events(0.02)
                consumer.step()
            elapsed.append(finished[0] - started)

        elapsed: list[float] = []
        if around is None:
            drain()
        else:
            around(drain)
        if consumer.stats.consumed != expected:
            raise AssertionError(f"consumer agent handled {consumer.stats.consumed} != {expected}")
    return expected / elapsed[0]


def publisher_settings(vhost: str, workdir: Path) -> PublisherSettings:
    return load_settings(
        PublisherSettings, publisher_id="publisher-1", **_common(vhost, workdir, "publisher-1")
    )


def publisher_agent(
    vhost: str,
    count: int,
    workdir: Path,
    around: Callable[[Callable[[], None]], None] | None = None,
    files: bool = True,
) -> float:
    """Messages/s of the publisher agent's publish path (build, confirm, log, metric)."""
    from agents.messages import GENRES
    from agents.publisher import Publisher

    settings = publisher_settings(vhost, workdir)
    with _wired(settings, workdir, files) as built:
        publisher = Publisher(built)
        elapsed: list[float] = []

        def publish_all() -> None:
            started = time.perf_counter()
            for i in range(count):
                if publisher.publish_one(GENRES[i % 2]) is None:
                    raise AssertionError("publisher agent failed to publish")
            elapsed.append(time.perf_counter() - started)

        if around is None:
            publish_all()
        else:
            around(publish_all)
    return count / elapsed[0]
