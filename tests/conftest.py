"""Shared fixtures. RabbitMQ tests get a fresh vhost each, so they never see each other's messages
while still using the specification's exchange and queue names. The helpers behind them live in
tests/support, which is what tests import."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agents.testing import AI_VARIABLES
from tests.support.env import scrub_env
from tests.support.rabbit import fresh_vhost, require_rabbitmq, vhost_env
from tests.support.redis_space import RedisSpace
from tests.support.redis_space import redis_space as open_redis_space


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("rabbitmq"):
        require_rabbitmq()


@pytest.fixture
def vhost() -> Iterator[str]:
    """A brand-new vhost with guest permissions, deleted afterwards."""
    require_rabbitmq()
    with fresh_vhost() as name:
        yield name


@pytest.fixture
def rabbit_env(vhost: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment pointing agents at the test vhost, with AI in dry-run and metrics in memory."""
    env = vhost_env(vhost)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    scrub_env(monkeypatch, ("INFLUXDB_URL", "ANTHROPIC_API_KEY"))
    return env


@pytest.fixture
def no_ambient_ai(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose the AI mode themselves; a developer's own key must never leak in."""
    scrub_env(monkeypatch, AI_VARIABLES)


@pytest.fixture
def redis_space() -> Iterator[RedisSpace]:
    """Real Redis on this machine under a fresh key prefix, whose keys are deleted afterwards
    (never FLUSHALL: the server is shared). Fails under CI=true when Redis is down."""
    with open_redis_space() as space:
        yield space


@pytest.fixture(autouse=True)
def own_spend_ledger(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test gets its own SQLite spend ledger unless it names one: the default
    (./var/budget.sqlite) is shared by every process started in the same directory, so spend
    one test recorded would rate-limit or cap the next. Subprocesses started with this
    environment inherit it (those built by `clean_env()` drop it and run in their own directory)."""
    monkeypatch.setenv("BUDGET_LEDGER", str(tmp_path_factory.mktemp("ledger") / "budget.sqlite"))
