"""The cost dashboard prices tokens with the cost guard's table and draws the real spend caps."""

from __future__ import annotations

import re
from typing import Any

import pytest

from agents.core.ai.prices import PRICES, price_for
from agents.core.metrics.schema import PUBLISH
from agents.core.settings import CommonSettings
from agents.dashboards import flux, logql
from tests.dashboards.dashboard_queries import load_dashboards, panels

COST = {p["title"]: p for p in panels(load_dashboards()["cost-tracking.json"])}
DEFAULTS = CommonSettings.model_fields
FLEET = 5


def flux_price_function(text: str, name: str) -> dict[str, Any]:
    """Parse the generated `name = (m) => if ... else ...` chain back into a lookup."""
    body = text.split(f"{name} = (m) =>\n", 1)[1].splitlines()
    block = "\n".join(line for line in iter_indented(body))
    branches = re.findall(
        r'if m == "([^"]+)" or strings\.hasPrefix\(v: m, prefix: "([^"]+)"\) then ([\d.]+)', block
    )
    last = re.fullmatch(r"\s*else ([\d.]+)", block.splitlines()[-1])
    assert last, block
    default = float(last.group(1))
    return {"branches": [(m, p, float(v)) for m, p, v in branches], "default": default}


def iter_indented(lines: list[str]) -> list[str]:
    """The function body: the indented lines up to the next top-level statement."""
    body = []
    for line in lines:
        if not line.startswith(" "):
            break
        body.append(line)
    return body


def evaluate(chain: dict[str, Any], model: str) -> float:
    for exact, prefix, value in chain["branches"]:
        if model == exact or model.startswith(prefix):
            return float(value)
    return float(chain["default"])


MODELS = [*PRICES, *(f"{m}-20251001" for m in PRICES), "claude-future-9", ""]


@pytest.mark.parametrize("model", MODELS)
def test_estimated_cost_uses_the_price_table_per_model_and_direction(model: str) -> None:
    text = next(t["query"] for t in COST["Estimated cost"]["targets"])
    assert '"input_tokens"' in text and '"output_tokens"' in text
    price = price_for(model)
    assert evaluate(flux_price_function(text, "inputPrice"), model) == price.input_per_mtok
    assert evaluate(flux_price_function(text, "outputPrice"), model) == price.output_per_mtok


def test_the_specifications_sonnet_prices_are_the_table_row() -> None:
    assert (
        PRICES["claude-sonnet-4-5"].input_per_mtok,
        PRICES["claude-sonnet-4-5"].output_per_mtok,
    ) == (
        3.0,
        15.0,
    )


def _threshold_values(panel: dict[str, Any]) -> list[float]:
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    return [s["value"] for s in steps if s["value"] is not None]


def test_spend_caps_are_threshold_lines_at_five_agents_times_the_defaults() -> None:
    per_10 = COST["Spend per 10 minutes vs cap"]
    per_hour = COST["Spend per hour vs cap (last 24 h)"]
    cap_10 = FLEET * DEFAULTS["max_cost_per_10min_usd"].default
    cap_hour = FLEET * DEFAULTS["max_cost_per_hour_usd"].default
    assert _threshold_values(per_10) == [pytest.approx(cap_10)]
    assert _threshold_values(per_hour) == [pytest.approx(cap_hour)]
    for panel in (per_10, per_hour):
        custom = panel["fieldConfig"]["defaults"]["custom"]
        assert custom["thresholdsStyle"]["mode"] in ("line", "dashed", "line+area")
        assert panel["fieldConfig"]["defaults"]["unit"] == "currencyUSD"
    assert "every: 10m" in per_10["targets"][0]["query"]
    assert "every: 1h" in per_hour["targets"][0]["query"]
    # The specification's budget: ~$0.45/hour for the fleet, so ~$10.80 a day.
    projection = COST["Projected cost for 24 h"]
    assert _threshold_values(projection)[-1] == pytest.approx(cap_hour * 24)
    assert "86400000000000.0" in projection["targets"][0]["query"]


def test_cost_panels_have_their_units() -> None:
    assert COST["Total tokens"]["fieldConfig"]["defaults"]["unit"] == "suffix: tokens"
    assert '"tokens_used"' in COST["Total tokens"]["targets"][0]["query"]
    assert COST["AI calls per hour"]["fieldConfig"]["defaults"]["unit"] == "suffix: calls/h"
    assert "3600.0" in COST["AI calls per hour"]["targets"][0]["query"]
    assert '"ai_call_count"' in COST["AI calls per hour"]["targets"][0]["query"]
    assert '"cost_usd"' in COST["Recorded spend"]["targets"][0]["query"]


# --- the builders refuse names the schema or Promtail do not know ---------------------------------


def test_flux_builder_rejects_unknown_fields_and_tags() -> None:
    assert '"messages_published"' in flux.query(PUBLISH, "messages_published")
    with pytest.raises(ValueError, match="unknown or no fields"):
        flux.query(PUBLISH, "messages_sent")
    with pytest.raises(ValueError, match="unknown tags"):
        flux.query(PUBLISH, "messages_published", group_by=["genre"])
    with pytest.raises(ValueError, match="unknown tags"):
        flux.query(PUBLISH, "messages_published", where={"action": "flag"})
    with pytest.raises(ValueError, match="common tags"):
        flux.tag_values("queue")


def test_logql_builder_rejects_labels_promtail_does_not_attach() -> None:
    assert logql.selector(logql.eq("level", "ERROR")).startswith('{level="ERROR", agent_id=~`')
    with pytest.raises(ValueError, match="not produced by Promtail"):
        logql.eq("message_id", "x")
    with pytest.raises(ValueError, match="at least one matcher"):
        logql.selector(agent_filter=False)
