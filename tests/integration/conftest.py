"""Fixtures for the tests that drive `RabbitBroker` itself in the test's own vhost."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from agents.core.broker import RabbitBroker
from agents.core.logs import JsonLogger
from agents.core.settings import BrokerSettings, load_settings
from agents.testing import LogCapture


@pytest.fixture
def settings(rabbit_env: dict[str, str]) -> BrokerSettings:
    """Broker settings for the test's vhost, read from the environment `rabbit_env` set."""
    return load_settings(BrokerSettings)


@pytest.fixture
def logs() -> LogCapture:
    return LogCapture()


@pytest.fixture
def broker_options() -> dict[str, Any]:
    """Extra `RabbitBroker` arguments; a module overrides this fixture to change them."""
    return {}


@pytest.fixture
def broker(
    settings: BrokerSettings, logs: LogCapture, broker_options: dict[str, Any]
) -> Iterator[RabbitBroker]:
    """A connected broker that logs as a consumer into `logs`; closed afterwards."""
    broker = RabbitBroker(
        settings, JsonLogger("consumer-9", "consumer", stream=logs), **broker_options
    )
    broker.connect()
    yield broker
    broker.close()
