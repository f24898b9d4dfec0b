"""pyinstrument around one extra (untimed) round of an agent path: where does the time go?"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

# Self time is attributed to the first matching area, by file path; order matters.
AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("logs (JSON line per message)", ("agents/core/logs.py", "/json/")),
    ("metrics (line protocol + file write)", ("agents/core/metrics/", "influxdb_client")),
    ("validation (pydantic BookMessage)", ("agents/messages.py", "pydantic")),
    ("AI engine (dry-run + guard)", ("agents/core/ai/",)),
    ("agent logic", ("agents/consumer.py", "agents/publisher.py")),
    ("broker wrapper", ("agents/core/broker.py",)),
    ("pika (AMQP framing + socket I/O)", ("pika/",)),
    ("socket calls and other built-ins", ("selectors.py", "socket.py", "<built-in>")),
)


def area_of(file_path: str) -> str:
    path = file_path.replace("\\", "/")
    for area, needles in AREAS:
        if any(n in path for n in needles):
            return area
    return "other"


def self_time_by_area(root: Any) -> dict[str, float]:
    """Walk a pyinstrument frame tree and sum each real frame's self time into its area.

    pyinstrument keeps self time in synthetic `[self]` children without a file; a real frame's
    `total_self_time` already includes them, so synthetic frames are skipped.
    """
    totals: dict[str, float] = {}
    stack = [root]
    while stack:
        frame = stack.pop()
        stack.extend(frame.children)
        if getattr(frame, "is_synthetic", False):
            continue
        area = area_of(str(frame.file_path or ""))
        totals[area] = totals.get(area, 0.0) + float(frame.total_self_time)
    return totals


def shares(totals: dict[str, float]) -> dict[str, float]:
    whole = sum(totals.values())
    if whole <= 0:
        return {}
    ordered = sorted(totals.items(), key=lambda kv: kv[1], reverse=True)
    return {area: round(100.0 * t / whole, 1) for area, t in ordered}


def profiled(out: Path, name: str, summary: dict[str, Any]) -> Callable[[Callable[[], None]], None]:
    """An `around` hook for agent_paths: runs the path under pyinstrument, writes the call tree
    and a flat self-time list to `out`, and puts the per-area shares into `summary[name]`."""

    def around(fn: Callable[[], None]) -> None:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
        try:
            fn()
        finally:
            profiler.stop()
        out.mkdir(parents=True, exist_ok=True)
        tree = profiler.output_text(unicode=False, color=False)
        flat = profiler.output_text(unicode=False, color=False, flat=True)
        (out / f"profile_{name}.txt").write_text(
            f"{tree}\n\n=== flat (self time) ===\n{flat}", encoding="utf-8"
        )
        session = profiler.last_session
        root = session.root_frame() if session is not None else None
        summary[name] = shares(self_time_by_area(root)) if root is not None else {}

    return around
