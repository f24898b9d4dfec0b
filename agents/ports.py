"""The ports: every dependency on the world outside the process, as a small Protocol, and the
plain values that cross it.

Adapters (RabbitMQ through pika, the Anthropic SDK, InfluxDB, SQLite and Redis ledgers, the
system clock) import this module; nothing here imports them, or anything beyond the standard
library and `agents.vocab`, so a test double, a benchmark or a reader of the code can take the
contract without paying for a client library's import. The fakes beside them live in
`agents.testing`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from agents.vocab import EXCHANGE, QUEUES

# --- time ------------------------------------------------------------------------------------


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for intervals and windows)."""

    def now(self) -> datetime:
        """Wall-clock time, timezone-aware UTC (for timestamps)."""

    def sleep(self, seconds: float) -> None:
        """Block for `seconds` (a fake clock advances instead)."""


# --- the broker ------------------------------------------------------------------------------

# "ack_multiple": ack this delivery and every unsettled one before it on its channel.
Outcome = Literal["ack", "ack_multiple", "reject", "requeue"]


class BrokerError(Exception):
    """Connection or setup failure. Names host:port/vhost, never the password."""


class PublishError(BrokerError):
    """A publish was nacked, unroutable (mandatory), or the connection was lost while publishing."""


class TopologyError(BrokerError):
    """The broker holds an exchange or queue with different arguments: retrying cannot help."""


def _ignore_settle(delivery: Delivery, outcome: Outcome, reason: str | None) -> bool:
    """Default for deliveries built without a broker (test doubles): settling records only."""
    return True


def _always_open() -> bool:
    return True


@dataclass
class Delivery:
    """One received message. Settle it exactly once with `ack`, `reject` or `requeue`.

    Each settle method returns True only when the broker was told. False means the channel the
    message arrived on is gone: the broker has taken the message back and will redeliver it (on
    a new channel, with a new delivery tag). A caller must never log such a settle as done.
    """

    body: bytes
    queue: str
    routing_key: str
    message_id: str | None
    headers: dict[str, Any]
    content_type: str | None
    redelivered: bool
    delivery_tag: int
    timestamp: int | None = None  # seconds since the epoch, as set by the publisher
    settler: Callable[[Delivery, Outcome, str | None], bool] = field(
        default=_ignore_settle, repr=False, compare=False
    )
    # Whether the channel this delivery arrived on is still open (its tag still means anything).
    channel_open: Callable[[], bool] = field(default=_always_open, repr=False, compare=False)
    # Which consume channel it came on: delivery tags are per channel, so a cumulative ack
    # must only ever cover tags of the same channel_id.
    channel_id: int = 0
    outcome: Outcome | None = None  # how it was settled; later calls are ignored
    settled: bool = False  # True once the broker was told (the settle call returned True)

    @property
    def live(self) -> bool:
        """True while this delivery is unsettled and its channel open (it can still be settled)."""
        return self.outcome is None and self.channel_open()

    def ack(self, *, multiple: bool = False) -> bool:
        """Ack this delivery; with `multiple`, also every unsettled earlier one of its channel
        (the caller marks those with `covered_by_ack`)."""
        done = self._settle("ack_multiple" if multiple else "ack", None)
        if self.outcome == "ack_multiple":
            self.outcome = "ack"
        return done

    def covered_by_ack(self) -> None:
        """Record that a cumulative ack of a later tag on the same channel settled this one."""
        if self.outcome is None:
            self.outcome = "ack"
            self.settled = True

    def reject(self, reason: str) -> bool:
        """Dead-letter without requeueing; `reason` travels in the `x-reject-reason` header."""
        return self._settle("reject", reason)

    def requeue(self) -> bool:
        return self._settle("requeue", None)

    def _settle(self, outcome: Outcome, reason: str | None) -> bool:
        # Settling a delivery tag twice is a protocol error that closes the whole channel, and a
        # failed settle cannot be retried either (the tag died with its channel).
        if self.outcome is not None:
            return False
        self.outcome = outcome
        self.settled = bool(self.settler(self, outcome, reason))
        return self.settled


class Broker(Protocol):
    def connect(self) -> None: ...

    def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        exchange: str = EXCHANGE,
        headers: dict[str, object] | None = None,
    ) -> float: ...

    def queue_depths(self, queues: Sequence[str] = QUEUES) -> dict[str, int]: ...

    def consume(
        self, queues: Sequence[str], on_message: Callable[[Delivery], None], prefetch: int
    ) -> None: ...

    def process_events(
        self, time_limit: float, until: Callable[[], bool] | None = None
    ) -> None: ...

    def close(self) -> None: ...


# --- the decision client (Claude) ---------------------------------------------------------------

Mode = Literal["live", "dry-run", "replay"]
Billing = Literal["none", "unknown"]


@dataclass(frozen=True)
class ModelRequest:
    agent_type: str
    prompt: str
    max_tokens: int
    schema: Mapping[str, object]


@dataclass(frozen=True)
class ModelReply:
    text: str
    input_tokens: int
    output_tokens: int
    model: str
    stop_reason: str | None = None


class AIError(Exception):
    """A call that produced no usable reply. `reason` goes to the log and the metric as the
    fallback; `billing` tells the guard whether the call may still have been charged."""

    def __init__(
        self, reason: str, billing: Billing, detail: str = "", resume_at: float | None = None
    ) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.billing = billing
        self.detail = detail
        # Set for Anthropic's own spend limits: no call may be sent before this time (epoch s).
        self.resume_at = resume_at


class DecisionClient(Protocol):
    mode: Mode
    model: str

    def complete(self, request: ModelRequest) -> ModelReply: ...


# --- the spend ledger --------------------------------------------------------------------------

Scope = Literal["agent", "fleet"]
Unit = Literal["usd", "tokens"]
State = Literal["reserved", "settled", "released", "kept"]


class LedgerUnavailable(Exception):
    """The ledger cannot be read or written (down, locked, corrupt): refuse, never guess."""


@dataclass(frozen=True)
class Cap:
    """One limit over a sliding window: this agent's entries, or every agent's."""

    scope: Scope
    window: str  # a label for logs and metric tags: "10min", "hour"
    window_s: float
    unit: Unit
    limit: float
    reason: str  # the refusal reason when this cap says no


@dataclass(frozen=True)
class Usage:
    """One cap's window as the ledger saw it: open worst cases and settled amounts."""

    cap: Cap
    reserved: float
    settled: float

    @property
    def used(self) -> float:
        return self.reserved + self.settled

    @property
    def remaining(self) -> float:
        return max(0.0, self.cap.limit - self.used)


@dataclass(frozen=True)
class Request:
    agent: str
    now: float  # seconds since the epoch on the caller's clock
    usd: float
    tokens: int
    min_interval_s: float
    caps: tuple[Cap, ...]


@dataclass(frozen=True)
class Admission:
    """The ledger's answer. `usage` is each cap's window before this reservation."""

    refused: str | None
    detail: str
    entry_id: int
    at: float
    usage: tuple[Usage, ...]


@dataclass(frozen=True)
class Entry:
    id: int
    agent: str
    at: float
    usd: float
    tokens: int
    reserved_usd: float
    state: str


class Ledger(Protocol):
    description: str

    def reserve(self, request: Request) -> Admission:
        """Check every cap and the rate limit and record the reservation, as one atomic step."""

    def finish(self, entry_id: int, usd: float, tokens: int, state: State) -> None:
        """Settle (actual usage), release (zero) or keep (worst case) an open reservation;
        amounts can only go down. A finished or pruned entry is left alone."""

    def pause(self, until: float) -> None:
        """Refuse every agent's calls until `until` (Anthropic said the spend limit is hit)."""

    def paused_until(self) -> float:
        """0.0 when not paused."""

    def entries(self, since: float = -math.inf) -> list[Entry]:
        """Every retained entry recorded after `since`, oldest first (reports, replay)."""

    def close(self) -> None: ...


# --- metrics ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricPoint:
    """One measurement's tags and fields at one time; encoding it is the sink's business."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, int | float | str | bool]
    time_ns: int = field(default_factory=time.time_ns)

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.time_ns / 1e9, tz=UTC)


class MetricsSink(Protocol):
    def write(self, point: MetricPoint) -> None:
        """Queue a point; never raises into the caller."""

    def close(self) -> None:
        """Flush what is queued and release resources."""

    @property
    def description(self) -> str:
        """Where the points go, for the start-up log line."""


class MetricsReadError(Exception):
    """The metrics store could not be read (unreachable, refused, malformed data)."""


class MetricsReader(Protocol):
    def sum_field(
        self, measurement: str, field: str, since: datetime, group_by: str | None = None
    ) -> dict[str, float]: ...

    def last_field(
        self, measurement: str, field: str, since: datetime, group_by: str | None = None
    ) -> dict[str, float]: ...

    def count(
        self, measurement: str, field: str, since: datetime, group_by: str | None = None
    ) -> dict[str, int]: ...
