"""Settings: one pydantic-settings model per agent type, validated once at start-up.

Every variable of the specification is here with its default. A bad value raises
`SettingsError`, whose message is one line naming the variable and what is allowed; the CLI
turns that into exit code 2. Secrets are `SecretStr`, so printing a model never shows them.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from annotated_types import Ge, Gt, Le, Lt
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.vocab import QUEUES, AgentType

AGENT_ID_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
# In an agent id, replaced by the container's hostname (Docker: the short container id), so
# every replica of a scaled service (`docker compose up --scale consumer=4`) has its own id.
HOSTNAME_PLACEHOLDER = "{hostname}"

QueueType = Literal["quorum", "classic"]

# RabbitMQ's own limits that the settings are checked against.
QUORUM_MAX_PREFETCH = 2000  # quorum queues cap a consumer's prefetch here
DEFAULT_CONSUMER_TIMEOUT_SECONDS = 1800.0  # rabbit's consumer_timeout default (30 min)
CONSUMER_TIMEOUT_MARGIN_SECONDS = 60.0  # the broker checks the timeout about once a minute


class SettingsError(Exception):
    """A setting is missing or out of range. `str(err)` is one line naming the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        self.problem = problem
        super().__init__(f"{variable}: {problem}")


class CommonSettings(BaseSettings):
    """Variables every agent reads: broker, metrics, AI and cost limits."""

    model_config = SettingsConfigDict(
        case_sensitive=False,
        extra="ignore",
        env_ignore_empty=True,  # compose passes `${VAR:-}` as "" for unset secrets
        frozen=True,
    )

    agent_type: ClassVar[AgentType]

    # --- Claude -------------------------------------------------------------------------
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    claude_model: str = Field("claude-haiku-5-5", min_length=1, max_length=100)
    dry_run: bool = False
    ai_timeout_seconds: float = Field(10.0, gt=0, le=120)
    ai_max_retries: int = Field(1, ge=0, le=5)
    max_tokens: int = Field(300, ge=16, le=4096)
    max_tokens_per_hour: int = Field(50_000, ge=0, le=10_000_000)
    # Per agent. Five agents x these = $0.10 per 10 min and $0.45 per hour, the
    # specification's budget, so the fleet cannot exceed it whatever happens.
    max_cost_per_10min_usd: float = Field(0.02, ge=0, le=100)
    max_cost_per_hour_usd: float = Field(0.09, ge=0, le=1000)
    cassettes_dir: Path = Path("cassettes")

    # --- The fleet's shared spend ledger (issue 14) --------------------------------------
    # Caps over every agent that shares the ledger, however many run, wherever, after any
    # number of restarts. Checked with the per-agent caps above, which stay.
    fleet_max_cost_per_10min_usd: float = Field(0.10, ge=0, le=1000)
    fleet_max_cost_per_hour_usd: float = Field(0.45, ge=0, le=10_000)
    # SQLite file shared by the agents of one machine (`agents run`, single agents)...
    budget_ledger: Path = Path("var/budget.sqlite")
    # ...or, when set, Redis shared by agents on any number of hosts.
    budget_redis_url: SecretStr | None = None
    budget_redis_prefix: str = Field("books-agents:budget", min_length=1, max_length=100)

    # --- InfluxDB -----------------------------------------------------------------------
    influxdb_url: str | None = None
    influxdb_token: SecretStr | None = None
    influxdb_org: str = Field("monitoring", min_length=1)
    influxdb_bucket: str = Field("agent_metrics", min_length=1)
    metrics_file: Path = Path("var/metrics.lp")
    # Publish and consume counts and durations are written as one aggregate per this interval.
    metrics_flush_interval_seconds: float = Field(1.0, gt=0, le=300)

    # --- RabbitMQ -----------------------------------------------------------------------
    rabbitmq_host: str = Field("localhost", min_length=1)
    rabbitmq_port: int = Field(5672, ge=1, le=65535)
    rabbitmq_user: str = Field("guest", min_length=1)
    rabbitmq_pass: SecretStr = SecretStr("guest")
    rabbitmq_vhost: str = "/"
    # Quorum (RabbitMQ 4's choice where data safety matters) or classic. A queue's type cannot
    # change in place: `agents setup rabbitmq` says what to do when the broker holds the other.
    queue_type: QueueType = "quorum"
    # The broker's consumer_timeout: a message held unacked longer gets its consumer cancelled.
    # Set it to the broker's value when that is not the default; batching is checked against it.
    rabbitmq_consumer_timeout_seconds: float = Field(
        DEFAULT_CONSUMER_TIMEOUT_SECONDS, ge=120, le=7 * 86_400
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("budget_redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.match(
            r"^(redis|rediss|unix)://\S+$", value.get_secret_value()
        ):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("influxdb_url", "anthropic_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        # The whole value, not a prefix: "http://host name" passed a prefix match and then
        # failed on every request instead of at start-up.
        if value is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
            raise ValueError("must be an http:// or https:// URL without spaces")
        return value

    @field_validator("claude_model", "rabbitmq_host")
    @classmethod
    def _no_blanks(cls, value: str) -> str:
        # A blank model id or a host name with a space is accepted by the type but can never
        # work: every API call or connection attempt would fail at run time instead.
        if not value.strip() or any(ch.isspace() for ch in value):
            raise ValueError("must not be blank or contain spaces")
        return value

    @property
    def agent_id(self) -> str:
        raise NotImplementedError

    @property
    def ai_min_interval_seconds(self) -> float:
        """At most one Claude call per this many seconds (the rate limiter's interval)."""
        raise NotImplementedError

    def secrets(self) -> list[str]:
        """Every secret value, so log and error redaction can scrub them wherever they appear."""
        values = [
            self.anthropic_api_key,
            self.influxdb_token,
            self.rabbitmq_pass,
            self.budget_redis_url,  # may carry a password
        ]
        found = [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
        if self.budget_redis_url is not None:
            from urllib.parse import urlsplit

            password = urlsplit(self.budget_redis_url.get_secret_value()).password
            found += [password] if password else []
        return found

    def masked(self) -> dict[str, Any]:
        """The resolved settings as JSON-ready data, secrets shown as '**********' (or null)."""
        data = self.model_dump(mode="json")
        data["agent_type"] = self.agent_type
        data["agent_id"] = self.agent_id
        return {key.upper(): value for key, value in data.items()}


def expand_agent_id(value: object, hostname: str | None = None) -> object:
    """Replace `{hostname}` in an agent id with this host's name, made id-safe.

    Docker names a container's host after its short id (12 hex digits), unique per replica.
    The result still has to match AGENT_ID_PATTERN (checked by the field afterwards).
    """
    if not isinstance(value, str) or HOSTNAME_PLACEHOLDER not in value:
        return value
    raw = (hostname if hostname is not None else socket.gethostname()).split(".")[0]
    safe = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-") or "host"
    expanded = value.replace(HOSTNAME_PLACEHOLDER, safe)
    return expanded[:63].rstrip("-")


class PublisherSettings(CommonSettings):
    agent_type: ClassVar[AgentType] = "publisher"

    publisher_id: str = Field("publisher-1", pattern=AGENT_ID_PATTERN)
    max_tokens: int = Field(300, ge=16, le=4096)
    decision_interval_seconds: float = Field(60.0, ge=1, le=86_400)
    fictional_interval_seconds: float = Field(5.0, gt=0, le=3600)
    nonfictional_interval_seconds: float = Field(10.0, gt=0, le=3600)
    # Whatever the model answers, intervals are clamped into [min, max].
    min_publish_interval_seconds: float = Field(1.0, gt=0, le=3600)
    max_publish_interval_seconds: float = Field(300.0, gt=0, le=86_400)

    _id_template = field_validator("publisher_id", mode="before")(expand_agent_id)

    @property
    def agent_id(self) -> str:
        return self.publisher_id

    @property
    def ai_min_interval_seconds(self) -> float:
        return self.decision_interval_seconds


class ConsumerSettings(CommonSettings):
    agent_type: ClassVar[AgentType] = "consumer"

    consumer_id: str = Field("consumer-1", pattern=AGENT_ID_PATTERN)
    max_tokens: int = Field(200, ge=16, le=4096)
    ai_decision_rate: float = Field(0.1, ge=0, le=1)
    ai_call_interval_seconds: float = Field(30.0, ge=1, le=86_400)
    ai_sampling_seed: int | None = None
    consumer_queues: str = ",".join(QUEUES)
    prefetch_count: int = Field(150, ge=1, le=10_000)  # benchmarks/prefetch_choice.py
    batch_size: int = Field(10, ge=1, le=1000)
    batch_max_wait_seconds: float = Field(5.0, gt=0, le=3600)
    processing_time_ms: float = Field(0.0, ge=0, le=60_000)
    # Group commit: handled messages' lines are written in one write, then acked at once, every
    # COMMIT_EVERY_MESSAGES messages or COMMIT_INTERVAL_MS, and whenever the consumer would wait.
    commit_every_messages: int = Field(64, ge=1, le=10_000)
    commit_interval_ms: float = Field(20.0, ge=1, le=10_000)

    _id_template = field_validator("consumer_id", mode="before")(expand_agent_id)

    def longest_unacked_seconds(self) -> float:
        """Worst case a delivery waits unacked: the whole prefetch window worked through one
        by one, a batch held to its deadline, and one Claude call with all its retries."""
        work = self.prefetch_count * self.processing_time_ms / 1000.0
        ai = self.ai_timeout_seconds * (self.ai_max_retries + 1)
        return self.batch_max_wait_seconds + work + ai

    @field_validator("consumer_queues")
    @classmethod
    def _known_queues(cls, value: str) -> str:
        names = [part.strip() for part in value.split(",") if part.strip()]
        unknown = sorted(set(names) - set(QUEUES))
        if not names or unknown:
            raise ValueError(f"must be a comma-separated subset of {','.join(QUEUES)}")
        return ",".join(dict.fromkeys(names))

    @property
    def queues(self) -> tuple[str, ...]:
        return tuple(self.consumer_queues.split(","))

    @property
    def agent_id(self) -> str:
        return self.consumer_id

    @property
    def ai_min_interval_seconds(self) -> float:
        return self.ai_call_interval_seconds


class MonitorSettings(CommonSettings):
    agent_type: ClassVar[AgentType] = "monitor"

    # The specification names this AGENT_ID (monitor-1).
    agent_id_: str = Field("monitor-1", pattern=AGENT_ID_PATTERN, alias="AGENT_ID")
    max_tokens: int = Field(400, ge=16, le=4096)
    check_interval_seconds: float = Field(120.0, ge=1, le=86_400)
    queue_sample_interval_seconds: float = Field(10.0, ge=1, le=3600)
    summary_window_seconds: float = Field(300.0, ge=10, le=86_400)

    _id_template = field_validator("agent_id_", mode="before")(expand_agent_id)

    model_config = SettingsConfigDict(populate_by_name=True)

    @property
    def agent_id(self) -> str:
        return self.agent_id_

    @property
    def ai_min_interval_seconds(self) -> float:
        return self.check_interval_seconds

    def masked(self) -> dict[str, Any]:
        data = super().masked()
        data.pop("AGENT_ID_", None)
        return data


class BrokerSettings(CommonSettings):
    """For commands that only talk to RabbitMQ (`agents setup rabbitmq`, `agents run`)."""

    agent_type: ClassVar[AgentType] = "monitor"

    @property
    def agent_id(self) -> str:
        return "setup"

    @property
    def ai_min_interval_seconds(self) -> float:
        return 0.0


class FleetSettings(BrokerSettings):
    """`agents run`: the broker settings plus the supervisor's restart policy."""

    # More than this many restarts of one agent within the window stops the fleet (exit 1).
    fleet_max_restarts: int = Field(5, ge=0, le=1000)
    fleet_restart_window_seconds: float = Field(300.0, gt=0, le=86_400)
    # Backoff before restart n is min(initial * 2**(n-1), max).
    fleet_restart_backoff_seconds: float = Field(1.0, gt=0, le=600)
    fleet_restart_backoff_max_seconds: float = Field(30.0, gt=0, le=3600)


SETTINGS_BY_TYPE: dict[str, type[CommonSettings]] = {
    "publisher": PublisherSettings,
    "consumer": ConsumerSettings,
    "monitor": MonitorSettings,
}

S = TypeVar("S", bound=CommonSettings)


def load_settings(cls: type[S], env: Mapping[str, str] | None = None, **overrides: Any) -> S:
    """Build settings from the environment (plus `overrides`), or raise a one-line SettingsError.

    With `env`, that mapping is read instead of the process environment, with the same rules
    (names case-insensitive, empty values ignored): the fleet validates each child's
    environment this way before it starts any child.
    """
    try:
        if env is None:
            settings = cls(**overrides)
        else:
            # A prefix no variable has keeps the process environment out of it.
            settings = cls(_env_prefix=_NO_SUCH_PREFIX, **{**_values_from(cls, env), **overrides})
    except ValidationError as exc:
        raise _first_error(cls, exc) from None
    if isinstance(settings, PublisherSettings) and (
        settings.min_publish_interval_seconds > settings.max_publish_interval_seconds
    ):
        raise SettingsError(
            "MIN_PUBLISH_INTERVAL_SECONDS",
            "must not exceed MAX_PUBLISH_INTERVAL_SECONDS",
        )
    if isinstance(settings, ConsumerSettings):
        _check_against_broker_limits(settings)
    return settings


def _check_against_broker_limits(settings: ConsumerSettings) -> None:
    if settings.queue_type == "quorum" and settings.prefetch_count > QUORUM_MAX_PREFETCH:
        raise SettingsError(
            "PREFETCH_COUNT",
            f"must be at most {QUORUM_MAX_PREFETCH} with QUEUE_TYPE=quorum "
            f"(got {settings.prefetch_count}; RabbitMQ caps a quorum consumer's prefetch there)",
        )
    budget = settings.rabbitmq_consumer_timeout_seconds - CONSUMER_TIMEOUT_MARGIN_SECONDS
    held = settings.longest_unacked_seconds()
    if held > budget:
        raise SettingsError(
            "BATCH_MAX_WAIT_SECONDS",
            f"a message could wait {held:.0f} s unacked (BATCH_MAX_WAIT_SECONDS + PREFETCH_COUNT "
            "x PROCESSING_TIME_MS + AI_TIMEOUT_SECONDS x (AI_MAX_RETRIES + 1)), more than "
            f"RABBITMQ_CONSUMER_TIMEOUT_SECONDS ({settings.rabbitmq_consumer_timeout_seconds:.0f})"
            f" minus {CONSUMER_TIMEOUT_MARGIN_SECONDS:.0f} s: the broker would cancel the "
            "consumer and redeliver the batch",
        )


_NO_SUCH_PREFIX = "AGENTS_SETTINGS_FROM_MAPPING_ONLY_"


def _values_from(cls: type[CommonSettings], env: Mapping[str, str]) -> dict[str, str]:
    lowered = {key.lower(): value for key, value in env.items()}
    values = {}
    for name, field in cls.model_fields.items():
        key = field.alias or name
        value = lowered.get(key.lower())
        if value:  # env_ignore_empty, as for the process environment
            values[key] = value
    return values


def _first_error(cls: type[CommonSettings], exc: ValidationError) -> SettingsError:
    error = exc.errors()[0]
    field_name = str(error["loc"][0]) if error["loc"] else "?"
    field = cls.model_fields.get(field_name)
    if field is None:  # reported by alias
        field_name = next(
            (n for n, f in cls.model_fields.items() if f.alias == field_name), field_name
        )
        field = cls.model_fields.get(field_name)
    variable = (field.alias if field and field.alias else field_name).upper()
    secret = field is not None and "SecretStr" in str(field.annotation)
    shown = "" if secret else f" (got {str(error.get('input'))[:40]!r})"
    allowed = _allowed(field.metadata) if field else ""
    reason = str(error["msg"]).removeprefix("Value error, ")
    problem = f"{reason}{shown}" + (f"; allowed range {allowed}" if allowed else "")
    return SettingsError(variable, problem)


def _allowed(metadata: list[Any]) -> str:
    low = high = ""
    for item in metadata:
        if isinstance(item, Ge):
            low = f"[{item.ge}"
        elif isinstance(item, Gt):
            low = f"({item.gt}"
        elif isinstance(item, Le):
            high = f"{item.le}]"
        elif isinstance(item, Lt):
            high = f"{item.lt})"
    if not (low or high):
        return ""
    return f"{low or '(-inf'}, {high or 'inf)'}"


__all__ = [
    "QUEUES",
    "AgentType",
    "Annotated",
    "BrokerSettings",
    "CommonSettings",
    "ConsumerSettings",
    "FleetSettings",
    "MonitorSettings",
    "PublisherSettings",
    "QueueType",
    "SettingsError",
    "expand_agent_id",
    "load_settings",
]
