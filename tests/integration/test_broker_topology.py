"""The topology on the real broker, checked through the management API, not through our code."""

from __future__ import annotations

import json

import pika
import pytest

from agents.core.broker import RabbitBroker, connection_parameters, queue_arguments, setup_topology
from agents.core.logs import JsonLogger
from agents.core.settings import BrokerSettings, load_settings
from agents.ports import BrokerError, TopologyError
from agents.testing import LogCapture
from agents.testing.clock import FakeClock
from agents.vocab import (
    ALL_QUEUES,
    ANOMALY_QUEUE,
    DEAD_LETTER_QUEUE,
    DLX,
    EXCHANGE,
    FICTIONAL,
    NON_FICTIONAL,
    QUEUES,
)
from tests.support.rabbit import management

pytestmark = pytest.mark.rabbitmq


@pytest.fixture(params=["quorum", "classic"])
def settings(rabbit_env: dict[str, str], request: pytest.FixtureRequest) -> BrokerSettings:
    return load_settings(BrokerSettings, queue_type=request.param)


def _logger(stream: LogCapture) -> JsonLogger:
    return JsonLogger("setup", "setup", stream=stream)


def _bindings(vhost: str, exchange: str, queue: str) -> list[str]:
    found = management("GET", f"/api/bindings/{vhost}/e/{exchange}/q/{queue}")
    return sorted(b["routing_key"] for b in found)


def test_setup_declares_a_durable_topology_bound_as_specified(
    settings: BrokerSettings, vhost: str
) -> None:
    result = setup_topology(settings, attempts=1, logger=_logger(LogCapture()))

    books = management("GET", f"/api/exchanges/{vhost}/{EXCHANGE}")
    assert (books["type"], books["durable"], books["auto_delete"]) == ("direct", True, False)
    dlx = management("GET", f"/api/exchanges/{vhost}/{DLX}")
    assert (dlx["type"], dlx["durable"], dlx["auto_delete"]) == ("fanout", True, False)

    queues = {q["name"]: q for q in management("GET", f"/api/queues/{vhost}")}
    assert set(queues) == set(ALL_QUEUES)
    for name, queue in queues.items():
        assert queue["durable"] is True, name
        assert queue["auto_delete"] is False, name
        assert queue["exclusive"] is False, name
        assert queue["type"] == settings.queue_type, name
        assert queue["arguments"] == queue_arguments(name, settings.queue_type), name
    for name in QUEUES:
        # Rejected (and expired) messages go to the dead-letter exchange, not into the void.
        assert queues[name]["arguments"]["x-dead-letter-exchange"] == DLX
        assert _bindings(vhost, EXCHANGE, name) == [name]
    assert _bindings(vhost, DLX, DEAD_LETTER_QUEUE) == [""]
    assert _bindings(vhost, EXCHANGE, ANOMALY_QUEUE) == [ANOMALY_QUEUE]
    # Nothing else is bound to `books`: a typo'd routing key stays unroutable.
    routed = management("GET", f"/api/exchanges/{vhost}/{EXCHANGE}/bindings/source")
    assert sorted(b["routing_key"] for b in routed) == sorted([*QUEUES, ANOMALY_QUEUE])

    assert result["broker"] == f"{settings.rabbitmq_host}:{settings.rabbitmq_port}/{vhost}"
    assert result["queues"] == dict.fromkeys([*QUEUES, DEAD_LETTER_QUEUE, ANOMALY_QUEUE], 0)
    assert result["queue_type"] == settings.queue_type
    json.dumps(result)  # the CLI prints it as JSON


def test_setup_twice_changes_nothing_and_keeps_messages(
    settings: BrokerSettings, vhost: str
) -> None:
    logs = LogCapture()
    setup_topology(settings, attempts=1, logger=_logger(logs))
    before_bindings = management("GET", f"/api/bindings/{vhost}")
    with RabbitBroker(settings, _logger(logs)) as broker:
        broker.publish(FICTIONAL, b'{"title": "kept"}', message_id="kept-1")

    again = setup_topology(settings, attempts=1, logger=_logger(logs))

    assert again["queues"] == {
        FICTIONAL: 1,
        NON_FICTIONAL: 0,
        DEAD_LETTER_QUEUE: 0,
        ANOMALY_QUEUE: 0,
    }
    after_bindings = management("GET", f"/api/bindings/{vhost}")
    key = "source", "destination", "routing_key"
    assert sorted(tuple(b[k] for k in key) for b in after_bindings) == sorted(
        tuple(b[k] for k in key) for b in before_bindings
    )
    assert {q["name"] for q in management("GET", f"/api/queues/{vhost}")} == set(ALL_QUEUES)
    assert not logs.where(level="ERROR")


def test_a_conflicting_queue_is_a_clear_error_without_retries(
    settings: BrokerSettings, vhost: str
) -> None:
    # Someone declared `fictional` (of the same type) without the dead-letter argument:
    # redeclaring cannot fix it.
    connection = pika.BlockingConnection(connection_parameters(settings))
    wrong = {"x-queue-type": "quorum"} if settings.queue_type == "quorum" else None
    connection.channel().queue_declare(FICTIONAL, durable=True, arguments=wrong)
    connection.close()
    logs = LogCapture()
    clock = FakeClock()

    with pytest.raises(TopologyError) as caught:
        setup_topology(settings, attempts=5, logger=_logger(logs), clock=clock)

    assert isinstance(caught.value, BrokerError)
    assert "PRECONDITION_FAILED" in str(caught.value)
    assert FICTIONAL in str(caught.value)
    assert clock.monotonic() == 1_000.0  # no backoff: it failed at once
    assert not logs.where(level="ERROR")
