"""The fleet's restart policy, on a fake clock and fake children: backoff doubles up to its cap,
restarts older than the window are forgotten, one restart too many stops the fleet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agents.supervisor import RestartHistory, RestartPolicy, Supervised, Supervisor
from agents.testing import LogCapture


def test_backoff_doubles_and_is_capped() -> None:
    policy = RestartPolicy(max_restarts=10, backoff_seconds=1.0, backoff_max_seconds=5.0)
    assert [policy.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_more_than_max_restarts_within_the_window_gives_up() -> None:
    history = RestartHistory(RestartPolicy(max_restarts=2, window_seconds=60))
    assert history.next_delay(0.0) == 1.0
    assert history.next_delay(10.0) == 2.0
    assert history.next_delay(20.0) is None


def test_restarts_older_than_the_window_are_forgotten() -> None:
    history = RestartHistory(RestartPolicy(max_restarts=2, window_seconds=60))
    assert history.next_delay(0.0) == 1.0
    assert history.next_delay(10.0) == 2.0
    # At 65 s the first restart has left the window, the second not: this is restart 2 again.
    assert history.next_delay(65.0) == 2.0
    assert history.total == 3


@dataclass
class FakeChild:
    name: str
    kind: str = "consumer"
    code: int | None = None

    def poll(self) -> int | None:
        return self.code


class Harness:
    def __init__(self, policy: RestartPolicy) -> None:
        self.now = 0.0
        self.out = LogCapture()
        self.restarted: list[str] = []
        self.metrics: list[str] = []
        self.supervisor = Supervisor(
            policy,
            self.out.logger("fleet", "fleet"),
            self.restart,
            lambda child: self.metrics.append(child.name),
            clock=lambda: self.now,
        )

    def restart(self, child: Supervised) -> int:
        assert isinstance(child, FakeChild)
        child.code = None
        self.restarted.append(child.name)
        return 4242

    def lines(self, message: str) -> list[dict[str, Any]]:
        return self.out.where(message)


def test_a_dead_child_is_restarted_after_its_backoff_with_a_warning_and_a_metric() -> None:
    h = Harness(RestartPolicy(max_restarts=5, backoff_seconds=2.0))
    child = FakeChild("consumer-1")
    assert h.supervisor.check([child]) is None
    child.code = -9
    assert h.supervisor.check([child]) is None
    assert h.restarted == []  # waiting out the backoff
    assert h.supervisor.waiting() == ["consumer-1"]
    h.now = 1.9
    h.supervisor.check([child])
    assert h.restarted == []
    h.now = 2.0
    h.supervisor.check([child])
    assert h.restarted == ["consumer-1"]
    assert h.metrics == ["consumer-1"]
    [warning] = h.lines("Agent restarted")
    assert warning["level"] == "WARNING"
    assert warning["context"] == {
        "agent": "consumer-1",
        "exit_code": -9,
        "restart_count": 1,
        "pid": 4242,
    }
    assert h.supervisor.restarts() == {"consumer-1": 1}


def test_one_restart_too_many_stops_the_fleet_naming_the_agent() -> None:
    h = Harness(RestartPolicy(max_restarts=2, window_seconds=300, backoff_seconds=1.0))
    child, other = FakeChild("consumer-1"), FakeChild("publisher-1", "publisher")
    for _ in range(2):
        child.code = 1
        assert h.supervisor.check([child, other]) is None
        h.now += 10
        assert h.supervisor.check([child, other]) is None  # restarted
    child.code = 1
    failure = h.supervisor.check([child, other])
    assert failure is not None
    assert "consumer-1" in failure and "exited with code 1" in failure
    assert "FLEET_MAX_RESTARTS=2" in failure
    assert h.restarted == ["consumer-1", "consumer-1"]
    [line] = h.lines("Agent keeps failing; stopping the fleet")
    assert line["level"] == "ERROR" and line["context"]["agent"] == "consumer-1"


def test_a_refused_setting_is_not_restarted() -> None:
    h = Harness(RestartPolicy())
    child = FakeChild("consumer-1", code=2)
    failure = h.supervisor.check([child])
    assert failure is not None and "code 2" in failure
    assert h.restarted == []
