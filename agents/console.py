"""What `agents run` shows a person at a terminal: a header, one coloured line per notable event,
a status line refreshed every few seconds, and the fleet's own accounting at the stop.

It reads the very JSON lines the agents write (the Loki contract), so nothing in the agents
knows a person is watching; piped or with `--json`, the fleet prints those lines untouched
instead, and `--log-file` keeps all of them whatever the console shows.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from agents.fleet import FLEET
from agents.vocab import ANOMALY_QUEUE, Event

FLEET_SIZE = len(FLEET)
STATUS_REFRESH_S = 2.0
TEN_MINUTES = 600.0

ACTION_STYLE = {
    "continue": "green",
    "process": "green",
    "healthy": "green",
    "slow_down": "bold yellow",
    "speed_up": "bold cyan",
    "batch": "bold blue",
    "flag": "bold magenta",
    "warning": "bold yellow",
    "critical": "bold white on red",
}
QUIET_FALLBACKS = frozenset({"rate_limited"})  # the guard working as designed: counted, not shown


@dataclass
class Tally:
    """The fleet's own count of what happened, from the agents' log lines."""

    published: Counter[str] = field(default_factory=Counter)
    consumed: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)  # consumed, by action
    flagged: int = 0
    dead_lettered: int = 0
    injected_valid: int = 0
    injected_malformed: int = 0
    decisions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (agent type, action)
    fallbacks: Counter[str] = field(default_factory=Counter)
    calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    spend: deque[tuple[float, float]] = field(default_factory=deque)  # (when, usd)
    cap_10min_per_agent: float | None = None
    fleet_cap_10min_usd: float | None = None
    cap_hour_per_agent: float | None = None
    model: str | None = None
    modes: dict[str, str] = field(default_factory=dict)  # agent -> mode
    why: dict[str, str] = field(default_factory=dict)  # mode -> why (first seen)
    errors: int = 0
    up: set[str] = field(default_factory=set)  # agents that logged their start-up line
    depths: dict[str, int] = field(default_factory=dict)
    left_in_queues: dict[str, int] | None = None
    exit_codes: dict[str, Any] | None = None

    def add(self, record: Mapping[str, Any], now: float) -> None:
        message = record.get("message", "")
        level = record.get("level", "")
        agent = str(record.get("agent_id", "?"))
        context = record.get("context") or {}
        count = _int(context.get("count", 1)) or 1
        if message.startswith(Event.AGENT_STARTING):
            self.up.add(agent)
        elif message == Event.MESSAGE_PUBLISHED:
            self.published[agent] += count
        elif message == Event.MESSAGE_CONSUMED:
            self.consumed[agent] += count
            self.actions[str(context.get("action", "process"))] += count
        elif message == Event.ANOMALY_FLAGGED:
            self.flagged += 1
        elif message == Event.DEAD_LETTERED:
            self.dead_lettered += 1
        elif message == Event.SCENARIO_INJECTED:
            if context.get("valid"):
                self.injected_valid += _int(context.get("count"))
            else:
                self.injected_malformed += _int(context.get("count"))
        elif message.startswith("AI mode:"):
            mode = message.removeprefix("AI mode:").strip()
            self.modes[agent] = mode
            self.why.setdefault(mode, str(context.get("why", "")))
            self.model = self.model or context.get("model")
            self.cap_10min_per_agent = _float(context.get("max_cost_per_10min_usd"))
            self.cap_hour_per_agent = _float(context.get("max_cost_per_hour_usd"))
            # The caps the shared ledger enforces for every agent together (FLEET_MAX_COST_*).
            self.fleet_cap_10min_usd = _float(context.get("fleet_max_cost_per_10min_usd"))
        elif message in (Event.QUEUES_DRAINED, Event.DRAIN_TIMED_OUT):
            self.left_in_queues = {k: _int(v) for k, v in context.get("queue_depths", {}).items()}
        elif message == Event.FLEET_STOPPED:
            self.exit_codes = context.get("exit_codes")
        if level in ("AI_DECISION", "AI_ANALYSIS"):
            fallback = context.get("ai_fallback")
            action = str(context.get("ai_action", "?"))
            if fallback:
                self.fallbacks[str(fallback)] += 1
            else:
                self.decisions[(str(record.get("agent_type", "?")), action)] += 1
            tokens = _int(context.get("tokens_used"))
            cost = _float(context.get("cost_usd")) or 0.0
            if tokens:
                self.calls += 1
            self.tokens += tokens
            self.cost_usd += cost
            self.spend.append((now, cost))
        if level == "ERROR":
            self.errors += 1

    def spend_10min(self, now: float) -> float:
        while self.spend and self.spend[0][0] < now - TEN_MINUTES:
            self.spend.popleft()
        return sum(usd for _, usd in self.spend)

    def fleet_cap_10min(self) -> float | None:
        return self.fleet_cap_10min_usd


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _clip(text: object, width: int) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def event_line(record: Mapping[str, Any]) -> Text | None:
    """One short coloured line for a notable log record; None for routine ones."""
    message = str(record.get("message", ""))
    level = str(record.get("level", ""))
    agent = str(record.get("agent_id", "?"))
    context: Mapping[str, Any] = record.get("context") or {}
    stamp = str(record.get("timestamp", ""))[11:19]
    line = Text(f"{stamp} ", style="dim")
    line.append(f"{agent:<12} ", style="bold")
    if level == "AI_DECISION":
        fallback = context.get("ai_fallback")
        action = str(context.get("ai_action", "?"))
        if fallback in QUIET_FALLBACKS:
            return None
        if fallback:
            line.append(f"AI fallback {fallback} -> {action}", style="yellow")
            return line
        line.append(f"AI {action:<9}", style=ACTION_STYLE.get(action, "white"))
        if record.get("agent_type") == "publisher":
            line.append(
                f" every {context.get('fictional_interval')}s"
                f"/{context.get('nonfictional_interval')}s"
                f" (queues {context.get('queue_depth_fictional')}/"
                f"{context.get('queue_depth_non_fictional')})",
            )
        elif record.get("agent_type") == "consumer":
            line.append(
                f" {context.get('genre')} p{context.get('priority')}"
                f" depth {context.get('queue_depth')}",
            )
        line.append(f"  {_clip(context.get('reasoning', ''), 90)}", style="italic")
        return line
    if level == "AI_ANALYSIS":
        status = str(context.get("status", context.get("ai_action", "?")))
        if context.get("ai_fallback") in QUIET_FALLBACKS:
            return None
        line.append(f"health {status.upper():<8}", style=ACTION_STYLE.get(status, "white"))
        issues = "; ".join(str(i) for i in context.get("issues", []) or []) or "no issues"
        line.append(f"  {_clip(issues, 100)}")
        if context.get("ai_fallback"):
            line.append(f" (fallback {context.get('ai_fallback')})", style="yellow")
        return line
    if message == Event.ANOMALY_FLAGGED:
        line.append("FLAGGED  ", style="bold magenta")
        line.append(
            f"{context.get('queue')} p{context.get('priority')} -> {ANOMALY_QUEUE}  "
            f"{_clip(context.get('reasoning', ''), 70)}"
        )
        return line
    if message == Event.DEAD_LETTERED:
        line.append("DEAD-LETTERED ", style="bold red")
        line.append(f"{context.get('queue')}: {_clip(context.get('reason', ''), 80)}")
        return line
    if message == Event.HEALTH_CRITICAL:
        line.append("ALERT system health is CRITICAL", style="bold white on red")
        for issue in (context.get("issues") or [])[:3]:
            line.append(f"\n{'':21}issue: {_clip(issue, 90)}", style="red")
        for tip in (context.get("suggestions") or [])[:3]:
            line.append(f"\n{'':21}suggestion: {_clip(tip, 90)}", style="red")
        return line
    if message == Event.SCENARIO_INJECTED:
        style = "cyan" if context.get("valid") else "red"
        line.append(
            f"injected {context.get('count')} x {context.get('kind')} -> {context.get('queue')}",
            style=style,
        )
        return line
    if message == Event.FLEET_STOPPING:
        line.append(
            f"stopping ({context.get('reason')}): publishers first, then the queues drain, "
            "then the consumers and the monitor",
            style="bold",
        )
        return line
    if message == Event.BATCH_FLUSHING:
        line.append(
            f"batch of {context.get('size')} processed ({context.get('trigger')})", style="blue"
        )
        return line
    if message == Event.AGENT_EXITED or (level == "ERROR" and message != Event.HEALTH_WARNING):
        line.append(f"ERROR {_clip(message, 60)}", style="bold red")
        error = context.get("error")
        if isinstance(error, Mapping):
            line.append(f"  {_clip(error.get('message', ''), 80)}", style="red")
        elif error:
            line.append(f"  {_clip(error, 80)}", style="red")
        return line
    # Said already by the lines above (the analysis; the consumer's DEAD-LETTERED line).
    if level == "WARNING" and message not in (
        Event.HEALTH_WARNING,
        Event.REJECTED_TO_DEAD_LETTER,
    ):
        line.append(f"warning {_clip(message, 70)}", style="yellow")
        return line
    return None


@dataclass(frozen=True)
class Header:
    scenario_line: str
    metrics: str
    logs: str


@dataclass(eq=False)
class HumanView:
    """Takes the fleet's merged lines (as its output stream) and shows them to a person."""

    console: Console
    header: Header
    log_file: IO[str] | None = None
    depths: Callable[[], dict[str, int] | None] | None = None
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)
    tally: Tally = field(default_factory=Tally, init=False)
    lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    live: Live | None = field(default=None, init=False)
    _announced_modes: set[str] = field(default_factory=set, init=False)
    _depth_thread: threading.Thread | None = field(default=None, init=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    # --- the stream interface LineMerger and JsonLogger write to -----------------------------

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                self._line(line)
        return len(text)

    def flush(self) -> None:
        if self.log_file is not None:
            self.log_file.flush()

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self.console.print(Text(self.header.scenario_line, style="bold"))
        self.console.print(Text(f"metrics -> {self.header.metrics}", style="dim"))
        self.console.print(Text(f"logs    -> {self.header.logs}", style="dim"))
        self.live = Live(
            get_renderable=self.status,
            console=self.console,
            refresh_per_second=1 / STATUS_REFRESH_S,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.live.start()
        if self.depths is not None:
            self._depth_thread = threading.Thread(
                target=self._poll_depths, name="console-depths", daemon=True
            )
            self._depth_thread.start()

    def stop(self, summary_extra: list[str] | None = None) -> None:
        self._stopping.set()
        if self._depth_thread is not None:
            self._depth_thread.join(timeout=5.0)
            close = getattr(self.depths, "close", None)
            if callable(close):
                close()
        if self.live is not None:
            self.live.stop()
            self.live = None
        for line in self.summary() + (summary_extra or []):
            self.console.print(line)

    def _poll_depths(self) -> None:
        assert self.depths is not None
        while not self._stopping.wait(STATUS_REFRESH_S):
            found = self.depths()
            if found is not None:
                with self.lock:
                    self.tally.depths = found

    # --- lines --------------------------------------------------------------------------------

    def _line(self, line: str) -> None:
        if self.log_file is not None:
            self.log_file.write(line + "\n")
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            # An agent's own console output (the monitor's alert banner) or a stray line.
            style = "bold red" if line.startswith("!!!") else "dim"
            self._print(Text(line, style=style))
            return
        with self.lock:
            self.tally.add(record, self.clock())
        message = str(record.get("message", ""))
        if message.startswith("AI mode:"):
            mode = message.removeprefix("AI mode:").strip()
            if mode not in self._announced_modes:
                self._announced_modes.add(mode)
                self._print(self._mode_line(mode, record.get("context") or {}))
            return
        shown = event_line(record)
        if shown is not None:
            self._print(shown)

    def _mode_line(self, mode: str, context: Mapping[str, Any]) -> Text:
        style = {"live": "bold red", "replay": "bold green", "dry-run": "bold yellow"}
        line = Text("AI mode ", style="bold")
        line.append(mode, style=style.get(mode, "bold"))
        line.append(f" ({context.get('why', '')})")
        cap10 = _float(context.get("max_cost_per_10min_usd"))
        caph = _float(context.get("max_cost_per_hour_usd"))
        fleet10 = _float(context.get("fleet_max_cost_per_10min_usd"))
        fleeth = _float(context.get("fleet_max_cost_per_hour_usd"))
        line.append(f"\nmodel {context.get('model')}", style="dim")
        if cap10 is not None and caph is not None:
            fleet = (
                f" (fleet ${fleet10:.2f} / ${fleeth:.2f})"
                if fleet10 is not None and fleeth is not None
                else ""
            )
            line.append(
                f"; spend caps per agent ${cap10:.2f}/10 min, ${caph:.2f}/hour{fleet}",
                style="dim",
            )
        if mode != "live":
            line.append("; replay and dry-run cost $0", style="dim")
        return line

    def _print(self, renderable: Any) -> None:
        console = self.live.console if self.live is not None else self.console
        console.print(renderable, highlight=False, soft_wrap=False)

    # --- the status line and the summary ------------------------------------------------------

    def status(self) -> Group:
        with self.lock:
            tally = self.tally
            elapsed = int(self.clock() - self.started)
            agents = " ".join(
                f"{name.replace('publisher', 'pub').replace('consumer', 'con')}={count}"
                for name, count in sorted({**tally.published, **tally.consumed}.items())
            )
            depths = " ".join(f"{q}={d}" for q, d in sorted(tally.depths.items())) or "-"
            spent = tally.spend_10min(self.clock())
            cap = tally.fleet_cap_10min()
            quiet = sum(tally.fallbacks[f] for f in QUIET_FALLBACKS)
            decided = sum(tally.decisions.values())
            up = len(tally.up)
        line = Text(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] ", style="bold")
        line.append(f"{up}/{FLEET_SIZE} agents up ", style="bold" if up == FLEET_SIZE else "yellow")
        line.append(agents or "waiting for the agents...")
        line.append(f" | queues {depths}", style="cyan")
        line.append(f" | AI {decided} decisions, {quiet} rate-limited", style="green")
        cap_text = f" of ${cap:.2f} cap" if cap is not None else ""
        line.append(f" | spend ${spent:.4f}/10 min{cap_text}", style="magenta")
        return Group(line)

    def summary(self) -> list[Text]:
        with self.lock:
            tally = self.tally
            confirmed = sum(tally.published.values())
            consumed = sum(tally.consumed.values())
            left = tally.left_in_queues
        lines = [Text("--- run summary ---", style="bold")]
        by_type: dict[str, list[str]] = {}
        for (agent_type, action), n in sorted(tally.decisions.items()):
            by_type.setdefault(agent_type, []).append(f"{action} {n}")
        for agent_type, parts in by_type.items():
            lines.append(Text(f"AI {agent_type}: " + ", ".join(parts)))
        if tally.fallbacks:
            lines.append(
                Text(
                    "AI fallbacks: "
                    + ", ".join(f"{k} {v}" for k, v in sorted(tally.fallbacks.items())),
                    style="yellow",
                )
            )
        lines.append(
            Text(
                f"spend ${tally.cost_usd:.4f} for {tally.tokens} tokens in {tally.calls} calls"
                f" (model {tally.model})"
            )
        )
        queued = sum(left.values()) if left else None
        actions = ", ".join(f"{k} {v}" for k, v in sorted(tally.actions.items())) or "none"
        text = f"fleet count: {confirmed} confirmed by the broker"
        if tally.injected_valid:
            text += f" + {tally.injected_valid} injected"
        text += f"; {consumed} consumed ({actions}); {tally.flagged} flagged to {ANOMALY_QUEUE}"
        text += f"; {tally.dead_lettered} dead-lettered"
        if tally.injected_malformed:
            text += f" ({tally.injected_malformed} malformed injected)"
        if queued is not None:
            text += f"; {queued} still queued"
        lines.append(Text(text, style="bold"))
        # A flagged message is also logged as consumed (action flag), so it is in `consumed`.
        difference = confirmed + tally.injected_valid - consumed - (queued or 0)
        note = (
            " (nothing unaccounted)"
            if difference == 0
            else " (messages from before this run, or still in a stopped consumer's prefetch: "
            "they stay in the durable queues)"
        )
        lines.append(
            Text(
                f"confirmed + injected - consumed - still queued = {difference}{note}",
                style="green" if difference == 0 else "yellow",
            )
        )
        return lines


def open_view(
    settings: Any, scenario_line: str, log_path: str | None, log_file: IO[str] | None
) -> HumanView:
    """The terminal view for `agents run`, wired to the broker for queue depths."""
    from agents.core.broker import DepthReader
    from agents.fleet import metrics_destination

    logs = (
        f"{log_path} (full JSON lines)"
        if log_path
        else "this console only; --log-file PATH keeps the full JSON lines"
    )
    header = Header(scenario_line, metrics_destination(settings), logs)
    return HumanView(Console(highlight=False), header, log_file, depths=DepthReader(settings))
