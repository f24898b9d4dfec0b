"""The names the system is built from, in one place: the broker topology and headers, the agent
types, and the log events other parts rely on (the console, the dashboards' LogQL, the report,
the tests and benchmarks that count lines).

Dependency-free on purpose: agents, dashboards, tests and benchmarks all import it, and renaming
an event here renames it for every reader at once. A log event's text is what the JSON line's
`message` holds, so these strings are part of the log contract and must not drift.
"""

from __future__ import annotations

from typing import Final, Literal

# --- broker topology -------------------------------------------------------------------------

EXCHANGE: Final = "books"
FICTIONAL: Final = "fictional"
NON_FICTIONAL: Final = "non-fictional"
QUEUES: Final[tuple[str, ...]] = (FICTIONAL, NON_FICTIONAL)  # routing key == queue name
DLX: Final = "books.dlx"
DEAD_LETTER_QUEUE: Final = "books.dead-letter"
ANOMALY_QUEUE: Final = "books.anomalies"
# Every queue the topology declares: the two the agents consume, and where rejects and flags go.
ALL_QUEUES: Final[tuple[str, ...]] = (*QUEUES, DEAD_LETTER_QUEUE, ANOMALY_QUEUE)

REJECT_REASON_HEADER: Final = "x-reject-reason"
ORIGINAL_QUEUE_HEADER: Final = "x-original-queue"
ORIGINAL_ROUTING_KEY_HEADER: Final = "x-original-routing-key"

# --- agents ----------------------------------------------------------------------------------

AgentType = Literal["publisher", "consumer", "monitor"]
AGENT_TYPES: Final[tuple[AgentType, ...]] = ("publisher", "consumer", "monitor")


class Event:
    """Log events (the `message` of a JSON line) that something outside the emitting module
    reads. Namespaced constants rather than an Enum so they are plain `str` at every call site
    and in f-strings, with no `.value`."""

    # every agent
    AGENT_STARTING: Final = "Agent starting"  # a prefix: the line goes on with the agent's id
    AGENT_STOPPED: Final = "Agent stopped"
    AGENT_CRASHED: Final = "Agent crashed"

    # publisher
    MESSAGE_PUBLISHED: Final = "Message published"
    INTERVALS_CHANGED: Final = "Publishing intervals changed"
    DEPTHS_UNAVAILABLE: Final = "Queue depths unavailable; decision skipped"
    METRICS_STORE_UNAVAILABLE: Final = "Metrics store unavailable for queue depths"
    PUBLISHER_STOPPING: Final = "Publisher stopping"

    # consumer
    MESSAGE_CONSUMED: Final = "Message consumed"
    BATCH_FLUSHING: Final = "Flushing batch"
    BATCH_REQUEUED: Final = "Held batch requeued"
    HELD_RETURNED: Final = "Held messages returned to the broker: their channel closed"
    ANOMALY_FLAGGED: Final = "Anomaly flagged"
    DEAD_LETTERED: Final = "Invalid message dead-lettered"
    DUPLICATE_ACKED: Final = "Duplicate delivery acknowledged"
    ACKS_NOT_DELIVERED: Final = (
        "Acks not delivered: channel closed, the broker redelivers the messages"
    )
    SETTLE_NOT_DELIVERED: Final = (
        "Settle not delivered: channel closed, the broker redelivers the message"
    )
    QUEUE_DEPTH_UNAVAILABLE: Final = "Queue depth unavailable"
    CONSUMER_STOPPING: Final = "Consumer stopping"

    # monitor
    METRICS_SUMMARY: Final = "Metrics summary"
    HEALTH_WARNING: Final = "System health warning"
    HEALTH_CRITICAL: Final = "CRITICAL system health"
    DEPTHS_SAMPLED: Final = "Queue depths sampled"
    DEPTH_SAMPLE_FAILED: Final = "Queue depth sample failed"
    MONITOR_STOPPING: Final = "Monitor stopping"

    # the AI engine and the spend guard (a decision's level says which: AI_DECISION, AI_ANALYSIS)
    AI_DECISION: Final = "AI decision"
    HEALTH_CHECK: Final = "System health check"
    AI_FALLBACK: Final = "AI call failed; using the default decision"
    AI_FAILED_UNEXPECTEDLY: Final = "AI call failed unexpectedly"
    AI_INPUT_REJECTED: Final = "AI decision input rejected"
    AI_METRIC_REJECTED: Final = "AI decision metric rejected"
    AI_OVER_RESERVATION: Final = (
        "AI reply reported more usage than its reservation allows; charged at the reservation"
    )
    API_SPEND_LIMIT: Final = "Anthropic spend limit reached: no AI calls until it resets"
    BUDGET_METRIC_REJECTED: Final = "Budget metric rejected"
    LEDGER_UNAVAILABLE: Final = "Spend ledger unavailable: AI calls are refused until it is back"

    # metrics and broker
    METRICS_TO_FILE: Final = "INFLUXDB_URL is not set: metrics go to an embedded line-protocol file"
    METRICS_WRITE_FAILED: Final = "Metrics write failed; points dropped"
    METRICS_NOT_FLUSHED: Final = "Metrics not flushed in time; points dropped"
    CONNECT_FAILED: Final = "RabbitMQ connection attempt failed"
    REJECTED_TO_DEAD_LETTER: Final = "message rejected to the dead-letter queue"

    # the fleet (`agents run`) and its supervisor
    FLEET_STARTED: Final = "Fleet started"
    FLEET_STOPPING: Final = "Fleet stopping"
    FLEET_STOPPED: Final = "Fleet stopped"
    QUEUES_DRAINED: Final = "Queues drained"
    DRAIN_TIMED_OUT: Final = "Drain timed out"
    METRICS_DESTINATION: Final = "Metrics destination"
    SCENARIO: Final = "Scenario"
    AGENT_KILLED: Final = "Agent did not stop in time; killed"
    AGENT_EXITED: Final = "Agent exited unexpectedly"
    AGENT_RESTARTED: Final = "Agent restarted"
    AGENT_KEEPS_FAILING: Final = "Agent keeps failing; stopping the fleet"
    SCENARIO_INJECTED: Final = "Scenario traffic injected"
    SCENARIO_NOT_STARTED: Final = "Scenario traffic not started: no consumers on the queues"
    SCENARIO_BROKER_ERROR: Final = "Scenario traffic stopped: broker error"
