"""`python -m agents.provision rabbitmq-user` against the real RabbitMQ: the agents' account can
do everything the agents do (declare the topology, publish, consume) and nothing else."""

from __future__ import annotations

import contextlib
import io
import urllib.error
import uuid
from base64 import b64encode
from collections.abc import Iterator
from typing import Any

import pika
import pika.exceptions
import pytest

from agents.core.broker import declare_topology
from agents.core.logs import JsonLogger
from agents.provision import (
    ProvisionError,
    RabbitUserSettings,
    UrllibHttp,
    agents_permission_pattern,
    ensure_rabbitmq_user,
    main,
)
from agents.testing.clock import FakeClock
from agents.vocab import DEAD_LETTER_QUEUE, EXCHANGE
from tests.support.rabbit import MGMT_URL, RABBIT_HOST, RABBIT_PORT, management

pytestmark = pytest.mark.rabbitmq

PASSWORD = "agents-" + uuid.uuid4().hex[:12]


@pytest.fixture
def agents_user() -> Iterator[str]:
    name = f"agents-test-{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:
        with contextlib.suppress(OSError):
            management("DELETE", f"/api/users/{name}")


def provision(vhost: str, user: str, password: str = PASSWORD, **extra: Any) -> dict[str, Any]:
    settings = RabbitUserSettings(
        rabbitmq_management_url=MGMT_URL,
        rabbitmq_user=user,
        rabbitmq_pass=password,
        rabbitmq_vhost=vhost,
        wait_seconds=10,
        **extra,
    )
    logger = JsonLogger("rabbitmq-setup", "setup", stream=io.StringIO())
    return ensure_rabbitmq_user(settings, UrllibHttp(), logger, FakeClock())


def connect(vhost: str, user: str, password: str = PASSWORD) -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            host=RABBIT_HOST,
            port=RABBIT_PORT,
            virtual_host=vhost,
            credentials=pika.PlainCredentials(user, password),
            connection_attempts=1,
        )
    )


def test_agents_account_can_declare_topology_publish_and_consume(
    vhost: str, agents_user: str
) -> None:
    result = provision(vhost, agents_user)
    assert result["changed"] == [f"created user {agents_user}"]

    with connect(vhost, agents_user) as connection:
        channel = connection.channel()
        declared = declare_topology(channel)
        channel.confirm_delivery()
        channel.basic_publish(EXCHANGE, "fictional", b'{"genre": "fictional"}', mandatory=True)
        method, _, body = channel.basic_get("fictional", auto_ack=False)
        assert method is not None and body == b'{"genre": "fictional"}'
        # Rejecting dead-letters through books.dlx: needs write there, read on the DLQ.
        channel.basic_reject(method.delivery_tag, requeue=False)
        assert channel.queue_declare(DEAD_LETTER_QUEUE, passive=True).method.message_count in (0, 1)
    assert set(declared["exchanges"]) == {"books", "books.dlx"}  # type: ignore[call-overload]


def test_agents_account_cannot_touch_anything_else(vhost: str, agents_user: str) -> None:
    provision(vhost, agents_user)

    with connect(vhost, agents_user) as connection:
        channel = connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            channel.queue_declare("not-a-books-queue", durable=True)
        assert refused.value.reply_code == 403
        channel = connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            channel.exchange_declare("books-evil", exchange_type="fanout")
        assert refused.value.reply_code == 403

    # No management tag: the HTTP API (and the UI) refuse the account.
    with pytest.raises(urllib.error.HTTPError) as denied:
        _management_as(agents_user, PASSWORD, "/api/overview")
    assert denied.value.code == 401


def test_second_run_is_idempotent_and_rotates_the_password(vhost: str, agents_user: str) -> None:
    provision(vhost, agents_user)
    new_password = "rotated-" + uuid.uuid4().hex[:12]

    result = provision(vhost, agents_user, password=new_password)

    assert result["changed"] == []
    permissions = management("GET", f"/api/permissions/{vhost}/{agents_user}")
    pattern = agents_permission_pattern()
    assert (permissions["configure"], permissions["write"], permissions["read"]) == (
        pattern,
        pattern,
        pattern,
    )
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect(vhost, agents_user, PASSWORD)
    connect(vhost, agents_user, new_password).close()


def test_missing_vhost_is_created(agents_user: str) -> None:
    vhost = f"test-{uuid.uuid4().hex[:10]}"
    try:
        result = provision(vhost, agents_user)
        assert f"created vhost {vhost}" in result["changed"]
        connect(vhost, agents_user).close()
    finally:
        management("DELETE", f"/api/vhosts/{vhost}")


def test_refuses_to_rewrite_the_administrator(vhost: str) -> None:
    with pytest.raises(ProvisionError, match="must differ from RABBITMQ_ADMIN_USER"):
        provision(vhost, "guest")

    assert "administrator" in management("GET", "/api/users/guest")["tags"]


def test_wrong_admin_password_fails_at_once_without_secrets(
    vhost: str,
    agents_user: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RABBITMQ_MANAGEMENT_URL", MGMT_URL)
    monkeypatch.setenv("RABBITMQ_ADMIN_PASS", "wrong-admin-password")
    monkeypatch.setenv("RABBITMQ_USER", agents_user)
    monkeypatch.setenv("RABBITMQ_PASS", PASSWORD)
    monkeypatch.setenv("RABBITMQ_VHOST", vhost)

    assert main(["rabbitmq-user"]) == 1

    err = capsys.readouterr().err
    assert "refused RABBITMQ_ADMIN_USER 'guest' (401)" in err
    assert "wrong-admin-password" not in err and PASSWORD not in err


def test_short_agents_password_is_a_setting_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RABBITMQ_USER", "agents")
    monkeypatch.setenv("RABBITMQ_PASS", "short")

    assert main(["rabbitmq-user"]) == 2
    assert "invalid setting RABBITMQ_PASS: must be at least 8 characters" in capsys.readouterr().err


def _management_as(user: str, password: str, path: str) -> Any:
    import urllib.request

    request = urllib.request.Request(
        MGMT_URL + path,
        headers={"Authorization": "Basic " + b64encode(f"{user}:{password}".encode()).decode()},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()
