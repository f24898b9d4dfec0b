"""Dashboard 4, Cost Tracking: tokens, estimated and recorded spend, call rate, projection, caps.

The estimate is the specification's formula (input tokens x input price + output tokens x output
price) with the prices of `agents.core.ai.prices`, the table the cost guard charges with, turned
into a Flux function per direction. Lookup matches the table's: exact model id, else the longest
listed id that prefixes it (dated ids), else the conservative unknown-model price.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import gauge as gauge_builders
from grafana_foundation_sdk.models.common import GraphDrawStyle, GraphThresholdsStyleMode

from agents.core.ai.prices import PRICES, UNKNOWN_MODEL_PRICE, Price
from agents.core.metrics.schema import AI_DECISION, BUDGET
from agents.core.settings import CommonSettings
from agents.dashboards import common as c
from agents.dashboards.flux import label, query, rate, reduce, window

UID = "books-cost"

# The fleet caps (FLEET_MAX_COST_PER_10MIN_USD, FLEET_MAX_COST_PER_HOUR_USD defaults), which the
# shared ledger enforces over every agent, however many run.
_DEFAULTS = CommonSettings.model_fields
CAP_10MIN_USD = c.fleet_cap(_DEFAULTS["fleet_max_cost_per_10min_usd"].default, 1)
CAP_HOUR_USD = c.fleet_cap(_DEFAULTS["fleet_max_cost_per_hour_usd"].default, 1)
CAP_DAY_USD = round(CAP_HOUR_USD * 24, 6)
ALERT_RATIO = 0.8  # the provisioned alert rule fires at 80 % of a fleet cap


def _price_function(name: str, per_mtok: dict[str, float], unknown: float) -> str:
    # Longest id first, so `claude-sonnet-4-5` wins over `claude-sonnet-4` for dated ids.
    branches = [
        f'if m == "{model}" or strings.hasPrefix(v: m, prefix: "{model}-") then {price!r}'
        for model, price in sorted(per_mtok.items(), key=lambda kv: (-len(kv[0]), kv[0]))
    ]
    return f"{name} = (m) =>\n    " + "\n    else ".join(branches) + f"\n    else {unknown!r}"


def price_preamble(prices: dict[str, Price] = PRICES, unknown: Price = UNKNOWN_MODEL_PRICE) -> str:
    """Flux: `import "strings"` and inputPrice(m)/outputPrice(m), in $ per million tokens."""
    return "\n".join(
        [
            'import "strings"',
            "",
            "// $ per million tokens, generated from agents/core/ai/prices.py",
            _price_function(
                "inputPrice",
                {k: p.input_per_mtok for k, p in prices.items()},
                unknown.input_per_mtok,
            ),
            _price_function(
                "outputPrice",
                {k: p.output_per_mtok for k, p in prices.items()},
                unknown.output_per_mtok,
            ),
        ]
    )


# Per point: tokens x the price of its model, for its direction.
_PRICE_EACH_POINT = """map(fn: (r) => {
      m = if exists r.model then r.model else ""
      price = if r._field == "input_tokens" then inputPrice(m: m) else outputPrice(m: m)
      return {r with _value: float(v: r._value) * price / 1000000.0}
  })"""


def estimated_cost(*steps: str, by_direction: bool = False) -> str:
    """Flux for the estimated cost in USD of the selected agents' AI calls, then `steps`."""
    return query(
        AI_DECISION,
        "input_tokens",
        "output_tokens",
        group_by=["_field"] if by_direction else [],
        preamble=price_preamble(),
        steps=[_PRICE_EACH_POINT, *steps],
    )


def recorded_cost(*steps: str) -> str:
    return query(AI_DECISION, "cost_usd", steps=list(steps))


def _spend_vs_cap(title: str, every: str, cap: float, description: str) -> c.TimeseriesPanel:
    return (
        c.timeseries(
            title,
            description,
            c.USD,
            c.influx(estimated_cost(window("sum", every), label("estimated")), "A"),
            c.influx(recorded_cost(window("sum", every), label("recorded")), "B"),
            steps=c.thresholds((None, "green"), (cap, "red")),
        )
        .draw_style(GraphDrawStyle.BARS)
        .fill_opacity(60)
        .thresholds_style(c.threshold_lines(GraphThresholdsStyleMode.DASHED))
        .axis_soft_max(cap * 1.2)
    )


def fleet_budget(field: str, window_label: str, *steps: str) -> str:
    """Flux for one field of the fleet's `ai_budget` gauge in one window (every agent reports
    the fleet as the shared ledger showed it at its last reservation)."""
    return query(BUDGET, field, where={"scope": "fleet", "window": window_label}, steps=list(steps))


def _remaining_gauge(window_label: str, cap: float, words: str) -> gauge_builders.Panel:
    return c.gauge(
        f"Fleet budget remaining ({words})",
        f"What the fleet may still spend in the sliding {words} window: the fleet cap "
        f"(${cap:.2f}) minus settled spend and the worst cases of calls in flight, as the shared "
        "spend ledger reported it at the latest reservation of any selected agent "
        "(ai_budget.remaining_usd, scope=fleet). Orange below 50 %, red below 20 % (the alert "
        "fires at 80 % used).",
        c.USD,
        c.influx(fleet_budget("remaining_usd", window_label, 'sort(columns: ["_time"])', "last()")),
        steps=c.thresholds(
            (None, "red"), (cap * (1 - ALERT_RATIO), "orange"), (cap * 0.5, "green")
        ),
        maximum=cap,
        width=6,
    )


def build() -> c.Dashboard:
    total_tokens = c.stat(
        "Total tokens",
        "Input + output tokens of the selected agents' AI calls in the time range "
        "(sum of ai_decision.tokens_used).",
        c.TOKENS,
        c.influx(query(AI_DECISION, "tokens_used", steps=[reduce("sum")])),
    )
    estimate = c.stat(
        "Estimated cost",
        "Input tokens x input price + output tokens x output price, each token priced by the "
        "model that used it (agents/core/ai/prices.py; the specification's $3/$15 per million "
        "is the Sonnet 4.x row). Shown per direction and in total, for the time range.",
        c.USD,
        c.influx(estimated_cost(reduce("sum"), by_direction=True), "A"),
        c.influx(estimated_cost(reduce("sum"), label("total")), "B"),
        width=8,
    )
    recorded = c.stat(
        "Recorded spend",
        "What the cost guard charged (sum of ai_decision.cost_usd): zero in dry-run and replay "
        "modes, where the estimate still shows what the same calls would cost live.",
        c.USD,
        c.influx(recorded_cost(reduce("sum"))),
        width=4,
    )
    projection = c.stat(
        "Projected cost for 24 h",
        "The estimated cost of the time range scaled to 24 hours at the same rate. Red at the "
        f"fleet's daily ceiling (${CAP_DAY_USD:.2f}: the fleet's hourly cap x 24).",
        c.USD,
        c.influx(
            estimated_cost(
                reduce("sum"),
                "map(fn: (r) => ({r with _value: r._value * 86400000000000.0"
                " / float(v: int(v: v.timeRangeStop) - int(v: v.timeRangeStart))}))",
            )
        ),
        steps=c.thresholds((None, "green"), (CAP_DAY_USD * 0.8, "orange"), (CAP_DAY_USD, "red")),
    )
    calls = c.stacked_bars(
        c.timeseries(
            "AI calls per hour",
            "Requests that reached the Claude client, per hour, by mode (ai_decision.ai_call_count "
            "by mode), from 5-minute or wider windows. Decisions the guard refused (rate limit, "
            "budget, spend cap) are not calls. Only `live` calls are billed; dry-run and replay "
            "are free.",
            c.CALLS_PER_H,
            c.influx(
                query(
                    AI_DECISION,
                    "ai_call_count",
                    group_by=["mode"],
                    steps=[window("sum"), rate(3600)],
                )
            ),
        ),
        "5m",
        60,
    )
    per_10min = _spend_vs_cap(
        "Spend per 10 minutes vs cap",
        "10m",
        CAP_10MIN_USD,
        "Estimated and recorded spend in each 10-minute window. The dashed line is the fleet's "
        f"10-minute cap (${CAP_10MIN_USD:.2f}, FLEET_MAX_COST_PER_10MIN_USD default), which the "
        "shared spend ledger enforces for any number of agents.",
    )
    per_hour = _spend_vs_cap(
        "Spend per hour vs cap (last 24 h)",
        "1h",
        CAP_HOUR_USD,
        "Estimated and recorded spend in each hour of the last 24 hours. The dashed line is the "
        f"fleet's hourly cap (${CAP_HOUR_USD:.2f}, FLEET_MAX_COST_PER_HOUR_USD default).",
    ).time_from("24h")
    remaining_10min = _remaining_gauge("10min", CAP_10MIN_USD, "10 minutes")
    remaining_hour = _remaining_gauge("hour", CAP_HOUR_USD, "hour")
    used = (
        c.timeseries(
            "Fleet budget used vs caps (sliding windows)",
            "The share of each fleet cap in use in its sliding window (10 minutes, one hour), as "
            "the shared spend ledger reported it at each reservation: settled spend plus the "
            "worst cases still reserved, over the cap (ai_budget.used_ratio, scope=fleet; the "
            "highest any selected agent saw in each interval). Orange at 80 % (the provisioned "
            "alert), red at 100 %: a call that would cross a cap is refused.",
            "percentunit",
            *(
                c.influx(
                    fleet_budget(
                        "used_ratio", window_label, window("max"), label(f"per {window_label}")
                    ),
                    ref,
                )
                for window_label, ref in (("10min", "A"), ("hour", "B"))
            ),
            steps=c.thresholds((None, "green"), (ALERT_RATIO, "orange"), (1.0, "red")),
            width=12,
        )
        .thresholds_style(c.threshold_lines(GraphThresholdsStyleMode.DASHED))
        .axis_soft_max(1.1)
    )
    return (
        c.dashboard(
            UID,
            "Cost Tracking",
            "Tokens and dollars: what the AI calls cost, at what rate, against the spend caps.",
        )
        .with_panel(total_tokens)
        .with_panel(estimate)
        .with_panel(recorded)
        .with_panel(projection)
        .with_panel(calls)
        .with_panel(per_10min)
        .with_panel(per_hour)
        .with_panel(remaining_10min)
        .with_panel(remaining_hour)
        .with_panel(used)
    )
