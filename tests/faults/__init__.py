"""Fault-injection scenarios: the real agents on the real broker, faults injected, every confirmed
message accounted for (consumed, flagged or dead-lettered)."""
