"""The decision engine an agent holds: prompt -> guard -> client -> parse -> log line + metric.

The engine is the generic guarded call; what each agent asks (prompt, schema, bounds, the
fields of its line and point) is an `Ask` from `agents.core.ai.decisions`.

`build_engine` resolves the mode once (DRY_RUN=true -> dry-run; else an API key -> live; else a
usable cassette -> replay; else dry-run) and logs the mode and why. Every decision then follows
one path, whatever the mode, and never raises into the agent loop: a bad input, a refusal by the
guard or a failed call yields the agent's default decision with `fallback` naming the reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from agents.core.ai import cassettes as cs
from agents.core.ai import decisions, prompts
from agents.core.ai.budget import BudgetWatch
from agents.core.ai.client import DryRunClient, cassette_metadata, load_cassette, recorded_for
from agents.core.ai.decisions import Ask
from agents.core.ai.guard import CostGuard, GuardLimits, Refused
from agents.core.ai.ledger import memory_ledger, open_ledger
from agents.core.ai.prices import FREE, Price, lookup, price_for
from agents.core.ai.schemas import ConsumerDecision, Decision, MonitorAnalysis, PublisherDecision
from agents.core.logs import Logger
from agents.core.metrics import AI_DECISION, Metrics
from agents.core.settings import CommonSettings
from agents.ports import AIError, Clock, DecisionClient, Ledger, Mode, ModelRequest
from agents.vocab import Event

INVALID_INPUT = "invalid_input"
UNEXPECTED_ERROR = "unexpected_error"

# Tokens the API adds around a prompt: role framing and the structured-output instructions
# built from the schema. Generous on purpose: the reservation must be an upper bound.
PROMPT_OVERHEAD_TOKENS = 512

D = TypeVar("D", bound=Decision)


def input_tokens_upper(prompt: str, schema: Mapping[str, object]) -> int:
    """An upper bound of a request's input tokens: every token covers at least one byte."""
    return len(prompt.encode()) + len(json.dumps(schema).encode()) + PROMPT_OVERHEAD_TOKENS


@dataclass(frozen=True)
class ModeChoice:
    mode: Mode
    why: str
    cassette: Path | None = None


def resolve_mode(settings: CommonSettings, cwd: Path | None = None) -> ModeChoice:
    if settings.dry_run:
        return ModeChoice("dry-run", "DRY_RUN=true: mock answers, no network, no cost")
    key = settings.anthropic_api_key
    if key is not None and key.get_secret_value().strip():
        return ModeChoice("live", "ANTHROPIC_API_KEY is set: real API calls under the cost guard")
    directory = cs.resolve_cassettes_dir(settings.cassettes_dir, cwd)
    path = cs.cassette_path(directory, settings.agent_type)
    if not path.is_file():
        return ModeChoice("dry-run", f"no ANTHROPIC_API_KEY and no cassette at {path}")
    cassette = load_cassette(path)
    found = recorded_for(cassette, settings.claude_model, settings.max_tokens)
    if not found:
        return ModeChoice(
            "dry-run",
            f"no ANTHROPIC_API_KEY, and {path} has no recording for "
            f"CLAUDE_MODEL={settings.claude_model} MAX_TOKENS={settings.max_tokens}",
        )
    return ModeChoice("replay", f"no ANTHROPIC_API_KEY; {replay_label(cassette, found)}", path)


def replay_label(cassette: Any, found: int) -> str:
    """What replay plays, as its metadata says: synthetic answers until a real recording."""
    metadata = cassette_metadata(cassette)
    where = cassette.path
    if metadata.get("synthetic", True):
        return (
            f"replaying {found} SYNTHETIC answers from {where} (written by rules, not by "
            "Claude; `nox -s record` with a key records real ones)"
        )
    when = metadata.get("recorded_at", "an unknown date")
    model = metadata.get("model")
    return f"replaying {found} answers recorded from Claude ({model}, {when}) from {where}"


@dataclass(frozen=True)
class CallStats:
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    called: bool = False

    @property
    def tokens_used(self) -> int:
        return self.input_tokens + self.output_tokens


class DecisionEngine:
    def __init__(
        self,
        settings: CommonSettings,
        logger: Logger,
        metrics: Metrics,
        clock: Clock,
        client: DecisionClient,
        why: str = "",
        ledger: Ledger | None = None,
    ) -> None:
        self.settings = settings
        self.logger = logger
        self.metrics = metrics
        self.clock = clock
        self.client = client
        self.why = why
        ledger = ledger if ledger is not None else memory_ledger()
        self.budget = BudgetWatch(logger, metrics, clock.monotonic, ledger.description)
        self.guard = CostGuard(
            GuardLimits.from_settings(settings), clock, ledger, settings.agent_id, self.budget
        )
        # Replay and dry-run spend nothing; the guard still meters them the same way.
        self.price: Price = price_for(settings.claude_model) if client.mode == "live" else FREE

    @property
    def mode(self) -> Mode:
        return self.client.mode

    def limits_summary(self) -> dict[str, Any]:
        limits = self.guard.limits
        live_price = price_for(self.settings.claude_model)
        return {
            "ai_mode": self.mode,
            "model": self.settings.claude_model,
            "model_price_known": lookup(self.settings.claude_model) is not None,
            "usd_per_mtok_input": live_price.input_per_mtok,
            "usd_per_mtok_output": live_price.output_per_mtok,
            "min_interval_s": limits.min_interval_s,
            "max_tokens": limits.max_tokens,
            "max_tokens_per_hour": limits.max_tokens_per_hour,
            "max_cost_per_10min_usd": limits.max_usd_per_10min,
            "max_cost_per_hour_usd": limits.max_usd_per_hour,
            "fleet_max_cost_per_10min_usd": limits.fleet_max_usd_per_10min,
            "fleet_max_cost_per_hour_usd": limits.fleet_max_usd_per_hour,
            "budget_ledger": self.guard.ledger.description,
            "timeout_s": self.settings.ai_timeout_seconds,
            "max_retries": self.settings.ai_max_retries,
        }

    # --- the three decisions, each an `Ask` from `agents.core.ai.decisions` ------------------

    def decide_publisher(
        self,
        fictional_depth: int,
        nonfictional_depth: int,
        fictional_interval: float,
        nonfictional_interval: float,
    ) -> PublisherDecision:
        return self.decide(
            decisions.publisher(
                self.settings,
                fictional_depth,
                nonfictional_depth,
                fictional_interval,
                nonfictional_interval,
            )
        )

    def decide_consumer(self, genre: str, priority: int, queue_depth: int) -> ConsumerDecision:
        return self.decide(decisions.consumer(genre, priority, queue_depth))

    def analyse(
        self, messages_published: int, queue_depths: dict[str, int], errors: int
    ) -> MonitorAnalysis:
        return self.decide(decisions.monitor(messages_published, queue_depths, errors))

    # --- one path for all ---------------------------------------------------------------

    def decide(self, ask: Ask[D]) -> D:
        """Ask, under the guard; log the decision line and write its point; never raise."""
        decision, stats = self._call(ask)
        self._emit(ask, decision, stats)
        return decision

    def _call(self, ask: Ask[D]) -> tuple[D, CallStats]:
        started = self.clock.monotonic()
        default = ask.default

        def done(decision: D, **stats: Any) -> tuple[D, CallStats]:
            latency = max(0.0, (self.clock.monotonic() - started) * 1000.0)
            return decision, CallStats(latency_ms=latency, **stats)

        try:
            prompt = ask.prompt()
        except prompts.PromptInputError as exc:
            self.logger.warning(Event.AI_INPUT_REJECTED, ai_fallback=INVALID_INPUT, error=str(exc))
            return done(default(INVALID_INPUT))
        try:
            reservation = self.guard.reserve(input_tokens_upper(prompt, ask.schema), self.price)
        except Refused as refusal:
            # An unavailable ledger is logged (once a minute) and counted by the budget watch.
            return done(default(refusal.reason))
        # The request asks for exactly the output the guard reserved: one value, one source.
        request = ModelRequest(
            self.settings.agent_type, prompt, reservation.max_output_tokens, ask.schema
        )
        try:
            reply = self.client.complete(request)
        except AIError as exc:
            if exc.billing == "none":
                self.guard.release(reservation)
            else:
                self.guard.keep_worst_case(reservation)
            if exc.resume_at is not None:
                self._stop_calling(exc, exc.resume_at)
                return done(default(exc.reason), called=True)
            self.logger.warning(
                Event.AI_FALLBACK,
                ai_fallback=exc.reason,
                ai_mode=self.mode,
                error=exc.detail,
            )
            return done(default(exc.reason), called=True, cost_usd=_kept(exc, reservation.usd))
        except Exception as exc:  # a bug below must still not stop the agent
            self.guard.keep_worst_case(reservation)
            self.logger.error(
                Event.AI_FAILED_UNEXPECTEDLY, ai_fallback=UNEXPECTED_ERROR, error=repr(exc)[:300]
            )
            return done(default(UNEXPECTED_ERROR), called=True, cost_usd=reservation.usd)
        settled = self.guard.settle(
            reservation, reply.input_tokens, reply.output_tokens, self.price
        )
        if settled.overran:
            self.logger.warning(
                Event.AI_OVER_RESERVATION,
                reserved_tokens=reservation.tokens,
                reported_input_tokens=reply.input_tokens,
                reported_output_tokens=reply.output_tokens,
            )
        return done(
            ask.parse(reply.text),
            called=True,
            input_tokens=reply.input_tokens,
            output_tokens=reply.output_tokens,
            cost_usd=settled.usd,
        )

    def _stop_calling(self, exc: AIError, resume_at: float) -> None:
        """Anthropic's own spend limit is final: no agent sharing the ledger calls again before
        the reset (one ERROR here; the others' refusals say `api_spend_limit_paused`)."""
        self.guard.pause_until(resume_at)
        self.metrics.error(exc.reason)
        resume = datetime.fromtimestamp(resume_at, UTC).isoformat(timespec="seconds")
        self.logger.error(
            Event.API_SPEND_LIMIT,
            ai_fallback=exc.reason,
            ai_mode=self.mode,
            error=exc.detail,
            resume_at=resume,
        )

    def _emit(self, ask: Ask[D], decision: D, stats: CallStats) -> None:
        record = ask.record(decision)
        fallback = decision.fallback
        self.logger.log(
            ask.level,
            ask.message,
            ai_action=record.action,
            reasoning=record.reasoning,
            ai_mode=self.mode,
            ai_fallback=fallback,
            ai_decision_used=fallback is None,
            model=self.client.model,
            input_tokens=stats.input_tokens,
            output_tokens=stats.output_tokens,
            tokens_used=stats.tokens_used,
            cost_usd=round(stats.cost_usd, 8),
            decision_latency_ms=round(stats.latency_ms, 3),
            **record.context,
        )
        try:
            self.metrics.write(
                AI_DECISION,
                {
                    "ai_decision_count": 1,
                    "ai_fallback_count": int(fallback is not None),
                    "ai_call_count": int(stats.called),
                    "ai_reasoning_text": record.reasoning,
                    "tokens_used": stats.tokens_used,
                    "input_tokens": stats.input_tokens,
                    "output_tokens": stats.output_tokens,
                    "cost_usd": stats.cost_usd,
                    "decision_latency_ms": stats.latency_ms,
                    **record.fields,
                },
                mode=self.mode,
                action=record.action,
                fallback=fallback or "",
                model=self.client.model,
            )
        except (TypeError, ValueError) as exc:  # a schema slip must not stop the agent
            self.logger.error(Event.AI_METRIC_REJECTED, error=str(exc)[:300])


def _kept(exc: AIError, reserved_usd: float) -> float:
    return 0.0 if exc.billing == "none" else reserved_usd


def build_engine(
    settings: CommonSettings,
    logger: Logger,
    metrics: Metrics,
    clock: Clock,
    *,
    client: DecisionClient | None = None,
    cwd: Path | None = None,
    ledger: Ledger | None = None,
) -> DecisionEngine:
    """Resolve the mode once, log it and why, and return the agent's engine.

    Live calls reserve in the fleet's shared ledger (BUDGET_REDIS_URL, else the SQLite file
    BUDGET_LEDGER). Dry-run and replay cost nothing and keep a private in-memory ledger, as does
    a caller that supplies its own client without a ledger (tests).
    """
    resolved = client is None
    if client is not None:
        choice = ModeChoice(client.mode, "client supplied by the caller")
    else:
        choice = resolve_mode(settings, cwd)
        client = _client_for(choice, settings, clock)
    if ledger is None and resolved and choice.mode == "live":
        ledger = open_ledger(settings).ledger
    engine = DecisionEngine(settings, logger, metrics, clock, client, choice.why, ledger)
    log = logger.warning if choice.mode == "dry-run" and not settings.dry_run else logger.info
    log(f"AI mode: {choice.mode}", why=choice.why, **engine.limits_summary())
    return engine


def _client_for(choice: ModeChoice, settings: CommonSettings, clock: Clock) -> DecisionClient:
    # The SDK is imported here, by the two modes that call it: a dry-run agent never loads it.
    if choice.mode == "live" and settings.anthropic_api_key is not None:
        from agents.core.ai.sdk import AnthropicClient, live_sdk

        sdk = live_sdk(
            settings.anthropic_api_key.get_secret_value(),
            settings.anthropic_base_url,
            settings.ai_timeout_seconds,
        )
        return AnthropicClient(
            sdk, settings.claude_model, "live", clock, retries=settings.ai_max_retries
        )
    if choice.mode == "replay" and choice.cassette is not None:
        from agents.core.ai.sdk import AnthropicClient, replay_sdk

        sdk = replay_sdk(load_cassette(choice.cassette), settings.ai_timeout_seconds)
        return AnthropicClient(sdk, settings.claude_model, "replay", clock)
    return DryRunClient(settings.claude_model)
