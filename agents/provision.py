"""One-shot provisioning for the compose stack's setup jobs, over each server's HTTP API.

    python -m agents.provision influxdb        # org, bucket and retention exist (creates/fixes)
    python -m agents.provision rabbitmq-user   # the agents' own RabbitMQ account exists

Both are idempotent: run on every `docker compose up`, they change nothing when all is in place.

InfluxDB's init mode creates org, bucket and retention only on an empty volume; the setup job
checks them on every start (a bucket deleted by hand, or a volume from an older setup, is fixed
before any agent writes). It is Python in the agent image rather than a shell script around the
`influx` CLI so that it is tested here, against pytest-httpserver, like the rest of the code.

RabbitMQ's guest account is an administrator; the agents get their own account whose
configure/write/read permissions match exactly the exchanges and queues of the broker's
topology (agents/core/broker.py), with no management tag. The management HTTP API is used
because the broker's AMQP connection cannot create users.

Exit codes: 0 ready, 1 failure (one line on stderr, no secret), 2 bad setting.
"""

from __future__ import annotations

import re
import sys
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.core.clock import SystemClock
from agents.core.logs import JsonLogger, Logger, Redactor
from agents.core.management import ApiError, ManagementClient, error_text, quote
from agents.core.management import Http as Http
from agents.core.management import Response as Response
from agents.core.management import Unreachable as Unreachable
from agents.core.management import UrllibHttp as UrllibHttp
from agents.core.settings import SettingsError
from agents.ports import Clock

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
_DURATION = re.compile(r"^(\d+)(s|m|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


# The HTTP transport (`Http`, `Response`, `UrllibHttp`, `Unreachable`) lives with the management
# client in agents.core.management; the InfluxDB side uses it too, and callers may import it here.


class ProvisionError(ApiError):
    """The server refused or could not be reached in time. Never contains a secret."""


def wait_until_up(
    probe: Callable[[], bool], what: str, timeout: float, clock: Clock, interval: float = 1.0
) -> None:
    """Call `probe` until it returns True; `Unreachable` and False mean "not yet"."""
    deadline = clock.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            if probe():
                return
            last = "not ready"
        except Unreachable as exc:
            last = str(exc)
        if clock.monotonic() >= deadline:
            raise ProvisionError(f"{what} not ready after {timeout:.0f} s ({last})")
        clock.sleep(interval)


def _accepted(reply: Response, what: str, ok: Sequence[int], refused: str) -> Response:
    """`reply` when its status is in `ok`. A 401 raises `refused` whatever `ok` allows: a wrong
    credential is final (waiting cannot fix it), and `refused` names the setting to fix."""
    if reply.status == 401:
        raise ProvisionError(refused)
    if reply.status not in ok:
        raise ProvisionError(f"{what} answered {reply.status}: {error_text(reply.body)}")
    return reply


def parse_duration(text: str) -> int:
    """InfluxDB-style retention ("7d", "168h", "1w"; "0" = forever) in seconds."""
    text = text.strip()
    if text in ("0", "0s"):
        return 0
    match = _DURATION.match(text)
    if not match:
        raise ValueError("must be a duration like 7d, 168h or 1w (0 keeps data forever)")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


# --------------------------------------------------------------------------------------------
# InfluxDB


class InfluxProvisionSettings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    influxdb_url: str = Field(pattern=r"^https?://[^\s/]+")
    influxdb_token: SecretStr
    influxdb_org: str = Field("monitoring", min_length=1)
    influxdb_bucket: str = Field("agent_metrics", min_length=1)
    influxdb_retention: str = "7d"
    wait_seconds: float = Field(120.0, gt=0, le=3600)

    @field_validator("influxdb_retention")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def retention_seconds(self) -> int:
        return parse_duration(self.influxdb_retention)


def ensure_influxdb(
    settings: InfluxProvisionSettings,
    http: Http,
    logger: Logger,
    clock: Clock | None = None,
) -> dict[str, Any]:
    """Wait for InfluxDB, then make org, bucket and retention match the settings."""
    clock = clock or SystemClock()
    base = settings.influxdb_url.rstrip("/")
    auth = {"Authorization": f"Token {settings.influxdb_token.get_secret_value()}"}
    changed: list[str] = []
    refused = (
        f"InfluxDB at {base} rejected INFLUXDB_TOKEN (401): it must be the operator "
        "token the database was first set up with"
    )

    def call(method: str, path: str, body: Any = None, ok: Sequence[int] = (200,)) -> Response:
        reply = http.request(method, base + path, auth, body)
        return _accepted(reply, f"InfluxDB {method} {path.split('?')[0]}", ok, refused)

    def healthy() -> bool:
        reply = http.request("GET", base + "/health", {})
        return (
            reply.status == 200
            and isinstance(reply.body, dict)
            and (reply.body.get("status") == "pass")
        )

    wait_until_up(healthy, f"InfluxDB at {base}", settings.wait_seconds, clock)

    org_name, bucket_name = settings.influxdb_org, settings.influxdb_bucket
    found = call("GET", "/api/v2/orgs?" + _query(org=org_name), ok=(200, 404))
    orgs = [o for o in _items(found, "orgs") if o.get("name") == org_name]
    if orgs:
        org_id = str(orgs[0]["id"])
    else:
        created = call("POST", "/api/v2/orgs", {"name": org_name}, ok=(201,))
        org_id = str(created.body["id"])
        changed.append(f"created org {org_name}")

    rules = _retention_rules(settings.retention_seconds)
    found = call("GET", "/api/v2/buckets?" + _query(orgID=org_id, name=bucket_name), ok=(200, 404))
    buckets = [b for b in _items(found, "buckets") if b.get("name") == bucket_name]
    if not buckets:
        body = {"orgID": org_id, "name": bucket_name, "retentionRules": rules}
        call("POST", "/api/v2/buckets", body, ok=(201,))
        changed.append(f"created bucket {bucket_name}")
    elif _expiry(buckets[0]) != settings.retention_seconds:
        call("PATCH", f"/api/v2/buckets/{buckets[0]['id']}", {"retentionRules": rules})
        changed.append(
            f"retention of {bucket_name}: {_expiry(buckets[0])} s -> {settings.retention_seconds} s"
        )

    result = {
        "influxdb": "ready",
        "url": base,
        "org": org_name,
        "bucket": bucket_name,
        "retention_seconds": settings.retention_seconds,
        "changed": changed,
    }
    logger.info("InfluxDB ready" if not changed else "InfluxDB provisioned", **result)
    return result


def _query(**params: str) -> str:
    return urllib.parse.urlencode(params)


def _items(reply: Response, key: str) -> list[dict[str, Any]]:
    if reply.status == 404 or not isinstance(reply.body, dict):
        return []
    items = reply.body.get(key) or []
    return [item for item in items if isinstance(item, dict)]


def _retention_rules(seconds: int) -> list[dict[str, Any]]:
    return [] if seconds == 0 else [{"type": "expire", "everySeconds": seconds}]


def _expiry(bucket: dict[str, Any]) -> int:
    for rule in bucket.get("retentionRules") or []:
        if rule.get("type") == "expire":
            return int(rule.get("everySeconds") or 0)
    return 0


# --------------------------------------------------------------------------------------------
# RabbitMQ


def agents_permission_pattern() -> str:
    """Exactly the broker topology's exchanges and queues, anchored: nothing else matches."""
    from agents.vocab import ANOMALY_QUEUE, DEAD_LETTER_QUEUE, DLX, EXCHANGE, QUEUES

    names = [EXCHANGE, DLX, *QUEUES, DEAD_LETTER_QUEUE, ANOMALY_QUEUE]
    return "^(" + "|".join(re.escape(name) for name in dict.fromkeys(names)) + ")$"


class RabbitUserSettings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    rabbitmq_management_url: str = Field("http://localhost:15672", pattern=r"^https?://[^\s/]+")
    rabbitmq_admin_user: str = Field("guest", min_length=1)
    rabbitmq_admin_pass: SecretStr = SecretStr("guest")
    rabbitmq_user: str = Field(min_length=1, max_length=64)
    rabbitmq_pass: SecretStr
    rabbitmq_vhost: str = Field("/", min_length=1)
    wait_seconds: float = Field(120.0, gt=0, le=3600)

    @field_validator("rabbitmq_pass")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 8:
            raise ValueError("must be at least 8 characters")
        return value


def ensure_rabbitmq_user(
    settings: RabbitUserSettings,
    http: Http,
    logger: Logger,
    clock: Clock | None = None,
) -> dict[str, Any]:
    """Create or update the agents' account and set its permissions on the vhost."""
    clock = clock or SystemClock()
    if settings.rabbitmq_user == settings.rabbitmq_admin_user:
        # Updating the administrator here would strip its tags and narrow its permissions.
        raise ProvisionError(
            f"RABBITMQ_USER ({settings.rabbitmq_user}) must differ from RABBITMQ_ADMIN_USER: "
            "the agents need their own, limited account"
        )
    client = ManagementClient(
        settings.rabbitmq_management_url,
        settings.rabbitmq_admin_user,
        settings.rabbitmq_admin_pass.get_secret_value(),
        http=http,
    )
    base = client.base_url
    vhost, user = quote(settings.rabbitmq_vhost), quote(settings.rabbitmq_user)
    refused = (
        f"RabbitMQ management at {base} refused RABBITMQ_ADMIN_USER "
        f"{settings.rabbitmq_admin_user!r} (401)"
    )

    def call(method: str, path: str, body: Any = None, ok: Sequence[int] = (200,)) -> Response:
        reply = client.request(method, path, body)
        return _accepted(reply, f"RabbitMQ management {method} {path}", ok, refused)

    def answering() -> bool:
        # 401 fails at once (waiting cannot fix a password); anything else but 200 is "not yet".
        return call("GET", "/api/overview", ok=(200, 404, 500, 502, 503)).status == 200

    wait_until_up(answering, f"RabbitMQ management at {base}", settings.wait_seconds, clock)

    changed: list[str] = []
    if call("GET", f"/api/vhosts/{vhost}", ok=(200, 404)).status == 404:
        call("PUT", f"/api/vhosts/{vhost}", {}, ok=(201, 204))
        changed.append(f"created vhost {settings.rabbitmq_vhost}")
    existed = call("GET", f"/api/users/{user}", ok=(200, 404)).status == 200
    # PUT sets the password every time, so rotating it in .env takes effect on the next `up`.
    call(
        "PUT",
        f"/api/users/{user}",
        {"password": settings.rabbitmq_pass.get_secret_value(), "tags": ""},
        ok=(201, 204),
    )
    if not existed:
        changed.append(f"created user {settings.rabbitmq_user}")
    pattern = agents_permission_pattern()
    permissions = {"configure": pattern, "write": pattern, "read": pattern}
    call("PUT", f"/api/permissions/{vhost}/{user}", permissions, ok=(201, 204))

    result = {
        "rabbitmq_user": settings.rabbitmq_user,
        "vhost": settings.rabbitmq_vhost,
        "permissions": pattern,
        "changed": changed,
    }
    logger.info("RabbitMQ agents account ready", **result)
    return result


# --------------------------------------------------------------------------------------------
# Command line


def _load(cls: type[BaseSettings]) -> Any:
    try:
        return cls()
    except ValidationError as exc:
        error = exc.errors()[0]
        variable = str(error["loc"][0]).upper() if error["loc"] else "?"
        reason = str(error["msg"]).removeprefix("Value error, ")
        raise SettingsError(variable, reason) from None


def main(argv: Sequence[str] | None = None, http: Http | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0] not in ("influxdb", "rabbitmq-user"):
        print("usage: python -m agents.provision influxdb|rabbitmq-user", file=sys.stderr)
        return EXIT_CONFIG
    target = args[0]
    secrets: list[str] = []
    try:
        if target == "influxdb":
            influx: InfluxProvisionSettings = _load(InfluxProvisionSettings)
            secrets = [influx.influxdb_token.get_secret_value()]
            logger = JsonLogger("influxdb-setup", "setup", redactor=Redactor(secrets))
            ensure_influxdb(influx, http or UrllibHttp(), logger)
        else:
            rabbit: RabbitUserSettings = _load(RabbitUserSettings)
            secrets = [
                rabbit.rabbitmq_pass.get_secret_value(),
                rabbit.rabbitmq_admin_pass.get_secret_value(),
            ]
            logger = JsonLogger("rabbitmq-setup", "setup", redactor=Redactor(secrets))
            ensure_rabbitmq_user(rabbit, http or UrllibHttp(), logger)
    except SettingsError as exc:
        print(f"agents.provision: invalid setting {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ApiError as exc:  # ProvisionError, Unreachable
        print(f"agents.provision {target}: {Redactor(secrets)(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
