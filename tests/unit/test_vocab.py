"""The log events are part of the log contract: what Loki's queries, the dashboards' LogQL, the
console and an operator searching the logs match on. Code and most tests name them through
`agents.vocab.Event`, so a changed text would pass everywhere else; here each text is written out
once more, so a rename is a deliberate, visible change."""

from __future__ import annotations

from agents.vocab import Event

PINNED = {
    "AI_DECISION": "AI decision",
    "HEALTH_CHECK": "System health check",
    "REJECTED_TO_DEAD_LETTER": "message rejected to the dead-letter queue",
    "ACKS_NOT_DELIVERED": "Acks not delivered: channel closed, the broker redelivers the messages",
    "AGENT_CRASHED": "Agent crashed",
    "AGENT_EXITED": "Agent exited unexpectedly",
    "AGENT_KEEPS_FAILING": "Agent keeps failing; stopping the fleet",
    "AGENT_KILLED": "Agent did not stop in time; killed",
    "AGENT_RESTARTED": "Agent restarted",
    "AGENT_STARTING": "Agent starting",
    "AGENT_STOPPED": "Agent stopped",
    "AI_FAILED_UNEXPECTEDLY": "AI call failed unexpectedly",
    "AI_FALLBACK": "AI call failed; using the default decision",
    "AI_INPUT_REJECTED": "AI decision input rejected",
    "AI_METRIC_REJECTED": "AI decision metric rejected",
    "AI_OVER_RESERVATION": (
        "AI reply reported more usage than its reservation allows; charged at the reservation"
    ),
    "ANOMALY_FLAGGED": "Anomaly flagged",
    "API_SPEND_LIMIT": "Anthropic spend limit reached: no AI calls until it resets",
    "BATCH_FLUSHING": "Flushing batch",
    "BATCH_REQUEUED": "Held batch requeued",
    "BUDGET_METRIC_REJECTED": "Budget metric rejected",
    "CONNECT_FAILED": "RabbitMQ connection attempt failed",
    "CONSUMER_STOPPING": "Consumer stopping",
    "DEAD_LETTERED": "Invalid message dead-lettered",
    "DEPTHS_SAMPLED": "Queue depths sampled",
    "DEPTHS_UNAVAILABLE": "Queue depths unavailable; decision skipped",
    "DEPTH_SAMPLE_FAILED": "Queue depth sample failed",
    "DRAIN_TIMED_OUT": "Drain timed out",
    "DUPLICATE_ACKED": "Duplicate delivery acknowledged",
    "FLEET_STARTED": "Fleet started",
    "FLEET_STOPPED": "Fleet stopped",
    "FLEET_STOPPING": "Fleet stopping",
    "HEALTH_CRITICAL": "CRITICAL system health",
    "HEALTH_WARNING": "System health warning",
    "HELD_RETURNED": "Held messages returned to the broker: their channel closed",
    "INTERVALS_CHANGED": "Publishing intervals changed",
    "LEDGER_UNAVAILABLE": "Spend ledger unavailable: AI calls are refused until it is back",
    "MESSAGE_CONSUMED": "Message consumed",
    "MESSAGE_PUBLISHED": "Message published",
    "METRICS_DESTINATION": "Metrics destination",
    "METRICS_NOT_FLUSHED": "Metrics not flushed in time; points dropped",
    "METRICS_STORE_UNAVAILABLE": "Metrics store unavailable for queue depths",
    "METRICS_SUMMARY": "Metrics summary",
    "METRICS_TO_FILE": "INFLUXDB_URL is not set: metrics go to an embedded line-protocol file",
    "METRICS_WRITE_FAILED": "Metrics write failed; points dropped",
    "MONITOR_STOPPING": "Monitor stopping",
    "PUBLISHER_STOPPING": "Publisher stopping",
    "QUEUES_DRAINED": "Queues drained",
    "QUEUE_DEPTH_UNAVAILABLE": "Queue depth unavailable",
    "SCENARIO": "Scenario",
    "SCENARIO_BROKER_ERROR": "Scenario traffic stopped: broker error",
    "SCENARIO_INJECTED": "Scenario traffic injected",
    "SCENARIO_NOT_STARTED": "Scenario traffic not started: no consumers on the queues",
    "SETTLE_NOT_DELIVERED": (
        "Settle not delivered: channel closed, the broker redelivers the message"
    ),
}


def test_every_log_event_text_is_pinned() -> None:
    events = {name: value for name, value in vars(Event).items() if name.isupper()}
    assert events == PINNED


def test_log_event_texts_are_distinct() -> None:
    assert len(set(PINNED.values())) == len(PINNED)
