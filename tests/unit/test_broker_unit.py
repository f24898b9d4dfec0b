"""Broker pieces that need no broker: parameters, backoff schedule, settling a delivery once."""

from __future__ import annotations

import pytest

from agents.core.broker import BASE_BACKOFF_SECONDS, backoff_delay, connection_parameters
from agents.core.settings import BrokerSettings, load_settings
from agents.ports import Delivery, Outcome

SECRET = "Sup3r-Secret-Pa55"


def _settings() -> BrokerSettings:
    return load_settings(
        BrokerSettings,
        rabbitmq_host="rabbit.example",
        rabbitmq_port=5673,
        rabbitmq_user="books",
        rabbitmq_pass=SECRET,
        rabbitmq_vhost="books-vhost",
    )


def test_connection_parameters_carry_settings_and_make_one_attempt() -> None:
    params = connection_parameters(_settings())
    assert (params.host, params.port) == ("rabbit.example", 5673)
    assert params.virtual_host == "books-vhost"
    assert params.credentials.username == "books"
    assert params.credentials.password == SECRET
    # Our loop retries (so it can log each failure); pika must not retry silently underneath it.
    assert params.connection_attempts == 1
    assert params.heartbeat == 60
    assert params.client_properties["connection_name"] == "books-agents/setup"


def test_connection_parameters_never_print_the_password() -> None:
    params = connection_parameters(_settings())
    assert SECRET not in repr(params)
    assert SECRET not in str(params)


def test_backoff_doubles_then_stays_at_the_cap() -> None:
    delays = [backoff_delay(n, max_backoff=5.0) for n in range(1, 9)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0]
    assert backoff_delay(10_000, max_backoff=30.0) == 30.0  # no overflow after a long outage
    assert backoff_delay(1, max_backoff=0.1) == 0.1
    assert backoff_delay(1, max_backoff=30.0) == BASE_BACKOFF_SECONDS


def _delivery(settled: list[tuple[Outcome, str | None]]) -> Delivery:
    def settle(_delivery: Delivery, outcome: Outcome, reason: str | None) -> bool:
        settled.append((outcome, reason))
        return True  # as the broker's settler does once the channel took the ack/nack

    return Delivery(
        body=b"{}",
        queue="fictional",
        routing_key="fictional",
        message_id="m-1",
        headers={},
        content_type="application/json",
        redelivered=False,
        delivery_tag=7,
        settler=settle,
    )


@pytest.mark.parametrize(
    ("first", "expected"),
    [("ack", ("ack", None)), ("reject", ("reject", "bad")), ("requeue", ("requeue", None))],
)
def test_a_delivery_is_settled_once_whatever_is_called_after(
    first: str, expected: tuple[str, str | None]
) -> None:
    # A second ack/reject of the same tag is a protocol error that would close the channel.
    settled: list[tuple[Outcome, str | None]] = []
    delivery = _delivery(settled)
    if first == "reject":
        delivery.reject("bad")
    else:
        getattr(delivery, first)()
    delivery.ack()
    delivery.reject("again")
    delivery.requeue()
    assert settled == [expected]
    assert delivery.outcome == expected[0]


def test_a_delivery_without_a_broker_records_its_outcome() -> None:
    # Test doubles of the broker can build deliveries with no settler at all.
    delivery = Delivery(b"{}", "fictional", "fictional", None, {}, None, False, 1)
    delivery.reject("why")
    assert delivery.outcome == "reject"
