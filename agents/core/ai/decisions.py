"""What each agent asks Claude, as one `Ask` per decision: the prompt, the reply schema, how a
reply (or its absence) becomes the agent's decision within its bounds, and what the decision's
log line and metric point carry.

The engine (`agents.core.ai.engine`) runs every `Ask` the same way (guard, call, parse, settle,
log, metric) and knows nothing of publishers, genres or intervals; that knowledge lives here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from agents.core.ai import prompts, schemas
from agents.core.ai.schemas import ConsumerDecision, Decision, MonitorAnalysis, PublisherDecision
from agents.core.logs import Level
from agents.core.settings import CommonSettings, PublisherSettings
from agents.vocab import FICTIONAL, NON_FICTIONAL, Event

D = TypeVar("D", bound=Decision)

# The publisher's interval bounds when the engine runs under another agent's settings (tools,
# tests): PublisherSettings' own defaults.
DEFAULT_INTERVAL_BOUNDS = (1.0, 300.0)

# Which `ai_decision` field holds the queue depth a decision was made at.
DEPTH_FIELDS = {FICTIONAL: "queue_depth_fictional", NON_FICTIONAL: "queue_depth_non_fictional"}


@dataclass(frozen=True)
class Record:
    """What a decision adds to the common fields of its log line and its `ai_decision` point."""

    action: str
    reasoning: str
    context: dict[str, Any]
    fields: dict[str, Any]


@dataclass(frozen=True)
class Ask(Generic[D]):
    level: Level
    message: str
    prompt: Callable[[], str]  # may raise prompts.PromptInputError: the input was not valid
    schema: Mapping[str, object]
    parse: Callable[[str], D]  # any text -> a valid decision (the default when it is garbage)
    default: Callable[[str], D]  # the decision when there is no reply; the argument is why
    record: Callable[[D], Record]


def interval_bounds(settings: CommonSettings) -> tuple[float, float]:
    if isinstance(settings, PublisherSettings):
        return settings.min_publish_interval_seconds, settings.max_publish_interval_seconds
    return DEFAULT_INTERVAL_BOUNDS


def publisher(
    settings: CommonSettings,
    fictional_depth: int,
    nonfictional_depth: int,
    fictional_interval: float,
    nonfictional_interval: float,
) -> Ask[PublisherDecision]:
    bounds = interval_bounds(settings)
    low = bounds[0]
    current = (finite(fictional_interval, low), finite(nonfictional_interval, low))

    def record(decision: PublisherDecision) -> Record:
        return Record(
            decision.action,
            decision.reasoning,
            context={
                "fictional_interval": decision.fictional_interval,
                "nonfictional_interval": decision.nonfictional_interval,
                "queue_depth_fictional": fictional_depth,
                "queue_depth_non_fictional": nonfictional_depth,
            },
            fields={
                "queue_depth_fictional": count(fictional_depth),
                "queue_depth_non_fictional": count(nonfictional_depth),
                "fictional_interval_s": decision.fictional_interval,
                "nonfictional_interval_s": decision.nonfictional_interval,
            },
        )

    return Ask(
        Level.AI_DECISION,
        Event.AI_DECISION,
        lambda: prompts.publisher_prompt(
            fictional_depth, nonfictional_depth, fictional_interval, nonfictional_interval
        ),
        schemas.PUBLISHER_SCHEMA,
        lambda text: schemas.parse_publisher(text, current, bounds),
        lambda reason: schemas.default_publisher(current, bounds, reason),
        record,
    )


def consumer(genre: str, priority: int, queue_depth: int) -> Ask[ConsumerDecision]:
    depth_field = DEPTH_FIELDS.get(str(genre), "")  # str(): the genre came from a message

    def record(decision: ConsumerDecision) -> Record:
        return Record(
            decision.action,
            decision.reasoning,
            context={
                "genre": schemas.clean_text(genre, 40),
                "priority": priority if isinstance(priority, int) else str(priority)[:20],
                "queue_depth": count(queue_depth),
            },
            fields={depth_field: count(queue_depth)} if depth_field else {},
        )

    return Ask(
        Level.AI_DECISION,
        Event.AI_DECISION,
        lambda: prompts.consumer_prompt(genre, priority, queue_depth),
        schemas.CONSUMER_SCHEMA,
        schemas.parse_consumer,
        schemas.default_consumer,
        record,
    )


def monitor(
    messages_published: int, queue_depths: dict[str, int], errors: int
) -> Ask[MonitorAnalysis]:
    error_count = count(errors)
    depths = queue_depths if isinstance(queue_depths, Mapping) else {}

    def record(analysis: MonitorAnalysis) -> Record:
        return Record(
            analysis.status,
            "; ".join(analysis.issues) or analysis.status,
            context={
                "status": analysis.status,
                "issues": analysis.issues,
                "suggestions": analysis.suggestions,
                "messages_published": count(messages_published),
                "queue_depths": {str(k): count(v) for k, v in depths.items()},
                "errors": error_count,
            },
            fields={
                "queue_depth_fictional": count(depths.get(FICTIONAL, 0)),
                "queue_depth_non_fictional": count(depths.get(NON_FICTIONAL, 0)),
            },
        )

    return Ask(
        Level.AI_ANALYSIS,
        Event.HEALTH_CHECK,
        lambda: prompts.monitor_prompt(messages_published, queue_depths, errors),
        schemas.MONITOR_SCHEMA,
        lambda text: schemas.parse_monitor(text, error_count),
        lambda reason: schemas.default_monitor(error_count, reason),
        record,
    )


def count(value: object) -> int:
    """A count for a log field or metric: anything but a plain int (a bool, a float, garbage
    from a message) is 0, and the value fits a signed 64-bit field."""
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return max(0, min(value, 2**62))


def finite(value: object, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    number = float(value)
    return number if number == number and abs(number) != float("inf") and number > 0 else default
