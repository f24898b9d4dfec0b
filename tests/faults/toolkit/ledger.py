"""Zero-loss accounting. Every message a publisher logged as confirmed ("Message published") must
be found consumed (a consumer's "Message consumed" line), flagged (a copy in `books.anomalies`) or
dead-lettered (a copy in `books.dead-letter`). Anything else is lost.

Duplicates are at-least-once redeliveries that were handled again (a second "Message consumed"
for the same id) or recognised and dropped ("Duplicate delivery acknowledged"). One log file is
one process lifetime: within it, a message id must never be consumed twice.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .procs import Line, read_lines
from .rabbit import QueueInspector, Raw

PUBLISHED = "Message published"
CONSUMED = "Message consumed"
DUPLICATE = "Duplicate delivery acknowledged"
MAIN_QUEUES = ("fictional", "non-fictional")
ANOMALY_QUEUE = "books.anomalies"
DEAD_LETTER_QUEUE = "books.dead-letter"


def parse_ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass
class Ledger:
    published: dict[str, float] = field(default_factory=dict)  # id -> confirm time
    consumed_at: dict[str, float] = field(default_factory=dict)  # id -> first consume time
    consumed: Counter[str] = field(default_factory=Counter)
    dropped_duplicates: int = 0
    repeats_within_lifetime: list[tuple[str, str]] = field(default_factory=list)  # (file, id)
    flagged: Counter[str] = field(default_factory=Counter)
    dead_lettered: Counter[str] = field(default_factory=Counter)
    dead_letter_reasons: dict[str, str] = field(default_factory=dict)
    pending: Counter[str] = field(default_factory=Counter)  # still in a main queue
    malformed_lines: list[str] = field(default_factory=list)

    # --- collecting ------------------------------------------------------------------------

    def read_logs(self, paths: Iterable[Path]) -> Ledger:
        for path in paths:
            lines, bad = read_lines(path)
            self.malformed_lines += [f"{path.name}: {b[:200]}" for b in bad]
            self.add_lines(lines, source=path.name)
        return self

    def add_lines(self, lines: Sequence[Line], source: str = "") -> None:
        seen: set[str] = set()
        for line in lines:
            message = line.get("message")
            context: dict[str, Any] = line.get("context") or {}
            message_id = context.get("message_id")
            if not isinstance(message_id, str):
                continue
            when = parse_ts(line["timestamp"])
            if message == PUBLISHED:
                self.published.setdefault(message_id, when)
            elif message == CONSUMED:
                self.consumed[message_id] += 1
                self.consumed_at.setdefault(message_id, when)
                if message_id in seen:
                    self.repeats_within_lifetime.append((source, message_id))
                seen.add(message_id)
            elif message == DUPLICATE:
                self.dropped_duplicates += 1

    def read_sent_log(self, path: Path) -> Ledger:
        """Confirmed publishes of the Locust users: `message_id epoch` per line."""
        if path.exists():
            for raw in path.read_text().splitlines():
                parts = raw.split()
                if len(parts) == 2:
                    self.published.setdefault(parts[0], float(parts[1]))
        return self

    def read_queues(self, inspector: QueueInspector) -> Ledger:
        """Drain the anomaly and dead-letter queues, and note anything left in the main ones.

        First wait (bounded) until no consumer is attached to the main queues: the broker
        returns a stopped consumer's unacked messages as it handles the closed connection, a
        moment after the process exited, and draining before that would miss them.
        """
        deadline = time.monotonic() + 15
        while any(inspector.consumers(q) for q in MAIN_QUEUES) and time.monotonic() < deadline:
            time.sleep(0.1)
        for raw in inspector.drain(ANOMALY_QUEUE):
            self.flagged[_id_of(raw)] += 1
        for raw in inspector.drain(DEAD_LETTER_QUEUE):
            message_id = _id_of(raw)
            self.dead_lettered[message_id] += 1
            self.dead_letter_reasons[message_id] = str(raw.headers.get("x-reject-reason", ""))
        for queue in MAIN_QUEUES:
            for raw in inspector.drain(queue):
                self.pending[_id_of(raw)] += 1
        return self

    # --- the verdict -----------------------------------------------------------------------

    def lost(self) -> set[str]:
        found = set(self.consumed) | set(self.flagged) | set(self.dead_lettered)
        return set(self.published) - found

    def duplicates(self) -> int:
        again = sum(n - 1 for n in self.consumed.values() if n > 1)
        dead_again = sum(n - 1 for n in self.dead_lettered.values() if n > 1)
        return again + dead_again + self.dropped_duplicates

    def recovery_seconds(self, fault_at: float) -> float | None:
        """Seconds from a fault until a message published after it had been consumed."""
        after = [
            self.consumed_at[mid]
            for mid, t in self.published.items()
            if t >= fault_at and mid in self.consumed_at
        ]
        return round(min(after) - fault_at, 3) if after else None

    def summary(self, scenario: str, recover_s: float | None = None) -> dict[str, Any]:
        return {
            "scenario": scenario,
            "published": len(self.published),
            "consumed": len(set(self.consumed) & set(self.published)),
            "flagged": len(set(self.flagged) & set(self.published)),
            "dead_lettered": len(set(self.dead_lettered) & set(self.published)),
            "lost": len(self.lost()),
            "duplicates": self.duplicates(),
            "pending": len(self.pending),
            "seconds_to_recover": recover_s,
        }


def _id_of(raw: Raw) -> str:
    if raw.message_id:
        return raw.message_id
    try:
        data = json.loads(raw.body)
    except (ValueError, UnicodeDecodeError):
        return f"<no id: {len(raw.body)} bytes>"
    return str(data.get("message_id")) if isinstance(data, dict) else "<no id>"


def summary_line(summary: dict[str, Any]) -> str:
    return "FAULTS " + json.dumps(summary, sort_keys=False)
