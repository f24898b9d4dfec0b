"""Catch SIGTERM/SIGINT from the first line of an agent process, before the heavy imports.

An agent takes a second or more to import its SDKs. Without this, a Ctrl-C in that window (the
terminal signals the whole process group, fleet and children alike) raised KeyboardInterrupt
with a traceback, and a SIGTERM killed the child outright (-15), so `agents run` reported a
failure after a perfectly ordinary stop. The handlers only remember the signal; the agent's own
handlers take over once installed and see it as an already requested stop.

Kept free of imports beyond the standard library so it can run first.
"""

from __future__ import annotations

import signal
from types import FrameType

_received: list[str] = []  # process-wide by nature: signals are delivered to the process


def _remember(signum: int, frame: FrameType | None) -> None:
    _received.append(signal.Signals(signum).name)


def latch() -> None:
    """Install the remembering handlers (idempotent)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _remember)


def received() -> str | None:
    """The first stop signal that arrived before the agent's own handlers, if any."""
    return _received[0] if _received else None
