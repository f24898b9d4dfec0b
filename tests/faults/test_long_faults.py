"""Long scenarios, run by `nox -s faults` only (--run-long-faults):

2. Broker restart: `rabbitmqctl stop_app` / `start_app` mid-run. This stops the whole local
   broker, so it must run alone (never alongside the default suite).
8. Load plus faults: Locust publishes at a steady rate for two minutes while the agents' broker
   connections are force-closed several times and a consumer is SIGKILLed (and replaced).
"""

from __future__ import annotations

import importlib.util
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agents.testing.waiting import wait_until

from .toolkit.ledger import Ledger
from .toolkit.procs import Fleet, agent_env, consumer_env, fleet, publisher_env
from .toolkit.rabbit import HOST, PORT, QueueInspector, agent_connections, close_connections
from .toolkit.report import FaultReport
from .toolkit.scenario import assert_no_loss, consumed_count, run_fleet_scenario, settled

pytestmark = [pytest.mark.faults, pytest.mark.rabbitmq, pytest.mark.long_fault]

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = REPO / "benchmarks" / "locustfile.py"


def rabbitmqctl(*args: str) -> None:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl not on PATH: the broker restart scenario needs a local broker")
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


def test_broker_restart(
    vhost: str, tmp_path: Path, inspector: QueueInspector, fault_report: FaultReport
) -> None:
    restart: dict[str, float] = {}

    def inject(running: Fleet) -> list[float]:
        at = time.time()
        rabbitmqctl("stop_app")
        try:
            # Agents notice and keep retrying; let them fail a few attempts.
            wait_until(
                lambda: all(
                    p.messages("RabbitMQ connection attempt failed") for p in running.procs.values()
                ),
                60,
                "every agent retrying while the broker is down",
            )
        finally:
            rabbitmqctl("start_app")
            restart["up"] = time.time()
        inspector.close()  # its connection died with the broker
        wait_until(
            lambda: all(p.messages("RabbitMQ reconnected") for p in running.procs.values()),
            90,
            "every agent reconnected after the restart",
        )
        seen = consumed_count(running)
        wait_until(lambda: consumed_count(running) > seen, 30, "consumption after the restart")
        restart["flowing"] = time.time()
        return [at]

    outcome = run_fleet_scenario("broker_restart", vhost, tmp_path, inspector, inject)
    # Recovery: from start_app until messages are consumed again.
    recovered = round(restart["flowing"] - restart["up"], 3)
    fault_report.add({**outcome.summary, "seconds_to_recover": recovered})
    assert_no_loss(outcome)
    assert all(code == 0 for code in outcome.exit_codes.values())


def test_load_plus_faults(
    vhost: str, tmp_path: Path, inspector: QueueInspector, fault_report: FaultReport
) -> None:
    if not LOCUSTFILE.exists():
        pytest.skip("benchmarks/locustfile.py is missing")
    # Never import locust here: it monkey-patches the test process with gevent (breaks ssl).
    if importlib.util.find_spec("locust") is None:
        pytest.skip("locust is not installed (it is in the bench dependency group)")
    sent = tmp_path / "locust-sent.log"
    locust_bin = Path(sys.executable).with_name("locust")
    duration = 120
    env = agent_env(vhost, tmp_path, PROCESSING_TIME_MS="2")
    fault_times: list[float] = []
    with fleet(tmp_path, env) as running:
        for i in (1, 2):
            running.start(f"consumer-{i}", "consumer", **consumer_env(i))
            running.start(f"publisher-{i}", "publisher", **publisher_env(i, 0.1))
        for process in list(running.procs.values()):
            process.wait_connected()
        locust = subprocess.Popen(
            [
                str(locust_bin),
                "-f",
                str(LOCUSTFILE),
                "--headless",
                "-u",
                "2",
                "-r",
                "2",
                "-t",
                f"{duration}s",
                "--host",
                f"amqp://guest:guest@{HOST}:{PORT}/{vhost}",
                "--only-summary",
                "PublisherUser",
            ],
            env={**env, "BENCH_RATE_PER_USER": "25", "BENCH_SENT_LOG": str(sent)},
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "locust.err").open("wb"),
        )
        try:
            started = time.monotonic()
            wait_until(lambda: consumed_count(running) > 200, 60, "load flowing")
            # Scenario 1 three times and scenario 3 once, spread over the two minutes.
            for round_ in range(1, 4):
                wait_until(lambda: len(agent_connections(vhost)) >= 4, 30, "agents connected")
                fault_times.append(time.time())
                close_connections(vhost, f"load fault round {round_}")
                time.sleep(15)  # load keeps running between faults: spacing, not a wait
                if round_ == 2:
                    fault_times.append(time.time())
                    running.procs["consumer-1"].proc.send_signal(signal.SIGKILL)
                    running.start("consumer-3", "consumer", **consumer_env(3))
            wait_until(lambda: locust.poll() is not None, duration + 60, "locust finished")
            assert time.monotonic() - started >= 0.9 * duration
        finally:
            if locust.poll() is None:
                locust.terminate()
                locust.wait(30)
        for process in running.publishers():
            assert process.stop() == 0
        wait_until(lambda: settled(inspector), 120, "the consumers drained the queues")
        for process in running.consumers():
            if process.proc.poll() is None:
                process.stop()
        ledger = Ledger().read_logs(running.log_files()).read_sent_log(sent).read_queues(inspector)
    recover = [r for r in (ledger.recovery_seconds(t) for t in fault_times) if r is not None]
    summary = ledger.summary("load_plus_faults", max(recover) if recover else None)
    fault_report.add(summary)
    lost = ledger.lost()
    assert not lost, f"{len(lost)} lost, e.g. {sorted(lost)[:5]}"
    assert not ledger.repeats_within_lifetime
    assert summary["published"] > 20 * duration  # the load really was there
