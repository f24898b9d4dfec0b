"""What every dashboard shares: datasource refs, targets, template variables, units, defaults."""

from __future__ import annotations

import warnings
from typing import Any

from agents.dashboards import flux

with warnings.catch_warnings():
    # The SDK's v1 dashboard modules warn on import that v2 exists; file provisioning reads v1.
    warnings.simplefilter("ignore", DeprecationWarning)
    from grafana_foundation_sdk.builders import gauge as gauge_builders
    from grafana_foundation_sdk.builders import logs as logs_builders
    from grafana_foundation_sdk.builders import loki as loki_builders
    from grafana_foundation_sdk.builders import stat as stat_builders
    from grafana_foundation_sdk.builders import table as table_builders
    from grafana_foundation_sdk.builders import timeseries as timeseries_builders
    from grafana_foundation_sdk.builders.common import (
        GraphThresholdsStyleConfig,
        ReduceDataOptions,
        StackingConfig,
        TableSortByFieldState,
        VizLegendOptions,
        VizTooltipOptions,
    )
    from grafana_foundation_sdk.builders.dashboard import Dashboard as Dashboard
    from grafana_foundation_sdk.builders.dashboard import QueryVariable, ThresholdsConfig
    from grafana_foundation_sdk.cog import builder as cogbuilder
    from grafana_foundation_sdk.cog import variants as cogvariants
    from grafana_foundation_sdk.models import dashboard as dm
    from grafana_foundation_sdk.models import loki as loki_models
    from grafana_foundation_sdk.models.common import (
        BigValueColorMode,
        BigValueGraphMode,
        DataSourceRef,
        GraphThresholdsStyleMode,
        LegendDisplayMode,
        LegendPlacement,
        LogsSortOrder,
        SortOrder,
        StackingMode,
        TableCellHeight,
        TooltipDisplayMode,
    )

# Fixed in infra/grafana/provisioning/datasources/*.yaml.
INFLUX = DataSourceRef(type_val="influxdb", uid="influxdb-agents")
LOKI = DataSourceRef(type_val="loki", uid="loki-agents")

# Units. Grafana has none for tokens or messages, so those are custom suffix units.
MS = "ms"
USD = "currencyUSD"
TOKENS = "suffix: tokens"
MSG_PER_S = "suffix: msg/s"
CALLS_PER_H = "suffix: calls/h"
ERRORS_PER_MIN = "suffix: errors/min"
MESSAGES = "suffix: msg"
DECISIONS = "suffix: decisions"

TIME_FROM, TIME_TO, REFRESH = "now-30m", "now", "10s"
TAGS = ["books-agents", "generated"]


class FluxQuery(cogvariants.Dataquery):
    """An InfluxDB target in Flux mode: the SDK has no InfluxDB query model of its own."""

    def __init__(self, ref_id: str, query: str) -> None:
        self.ref_id = ref_id
        self.query = query

    def to_json(self) -> dict[str, object]:
        return {"datasource": INFLUX.to_json(), "query": self.query, "refId": self.ref_id}


class FluxTarget(cogbuilder.Builder[FluxQuery]):
    def __init__(self, ref_id: str, query: str) -> None:
        self._query = FluxQuery(ref_id, query)

    def build(self) -> FluxQuery:
        return self._query


def influx(query: str, ref_id: str = "A") -> FluxTarget:
    return FluxTarget(ref_id, query)


def loki(expr: str, *, ref_id: str = "A", max_lines: int | None = None) -> loki_builders.Dataquery:
    target = (
        loki_builders.Dataquery()
        .ref_id(ref_id)
        .datasource(LOKI)
        .expr(expr)
        .query_type(loki_models.LokiQueryType.RANGE)
        .editor_mode(loki_models.QueryEditorMode.CODE)
    )
    if max_lines is not None:
        target = target.max_lines(max_lines)
    return target


def thresholds(*steps: tuple[float | None, str]) -> ThresholdsConfig:
    """Absolute thresholds; the first step's value is None (the base colour)."""
    return (
        ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=value, color=color) for value, color in steps])
    )


BASE_THRESHOLDS = thresholds((None, "green"))
STACKED = StackingConfig().mode(StackingMode.NORMAL).group("A")


def _agent_variable(name: str, label: str, narrowed_by: tuple[str, ...]) -> QueryVariable:
    query = flux.tag_values(name, predicate_on=narrowed_by)
    return (
        QueryVariable(name)
        .label(label)
        .description(f"Filter every panel by {name} (values are the tag's values in InfluxDB).")
        .datasource(INFLUX)
        .query(query)
        .definition(query)
        .multi(True)
        .include_all(True)
        # `.+` rather than Grafana's default `.*`: Loki rejects a selector whose matchers all
        # match the empty string.
        .all_value(".+")
        .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )


def dashboard(uid: str, title: str, description: str) -> Dashboard:
    """A dashboard with the shared defaults: last 30 min, 10 s refresh, agent variables."""
    return (
        Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .timezone("browser")
        .time(TIME_FROM, TIME_TO)
        .refresh(REFRESH)
        .with_variable(_agent_variable("agent_type", "Agent type", ()))
        .with_variable(_agent_variable("agent_id", "Agent", ("agent_type",)))
    )


def fleet_cap(per_agent_default: Any, agents: int) -> float:
    """A fleet-wide cap from a per-agent settings default, rounded to whole cents' fractions."""
    return round(float(per_agent_default) * agents, 6)


Target = cogbuilder.Builder[cogvariants.Dataquery]
TimeseriesPanel = timeseries_builders.Panel


def threshold_lines(mode: GraphThresholdsStyleMode) -> GraphThresholdsStyleConfig:
    """Draw the panel's thresholds on the graph (the spend caps as lines)."""
    return GraphThresholdsStyleConfig().mode(mode)


def timeseries(
    title: str,
    description: str,
    unit: str,
    *targets: Target,
    datasource: DataSourceRef = INFLUX,
    steps: ThresholdsConfig = BASE_THRESHOLDS,
    width: int = 12,
    height: int = 8,
) -> TimeseriesPanel:
    """A time series panel; callers add draw style, stacking or thresholds."""
    panel = (
        timeseries_builders.Panel()
        .title(title)
        .description(description)
        .datasource(datasource)
        .unit(unit)
        .min(0)
        .span(width)
        .height(height)
        .thresholds(steps)
        .legend(
            VizLegendOptions()
            .display_mode(LegendDisplayMode.TABLE)
            .placement(LegendPlacement.RIGHT)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
        .tooltip(VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING))
    )
    for target in targets:
        panel = panel.with_target(target)
    return panel


def stat(
    title: str,
    description: str,
    unit: str,
    *targets: Target,
    steps: ThresholdsConfig = BASE_THRESHOLDS,
    width: int = 6,
    height: int = 5,
) -> stat_builders.Panel:
    panel = (
        stat_builders.Panel()
        .title(title)
        .description(description)
        .datasource(INFLUX)
        .unit(unit)
        .span(width)
        .height(height)
        .thresholds(steps)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .color_mode(BigValueColorMode.VALUE)
        .graph_mode(BigValueGraphMode.NONE)
    )
    for target in targets:
        panel = panel.with_target(target)
    return panel


def log_table(
    title: str, description: str, expr: str, *, max_lines: int, width: int = 24, height: int = 10
) -> table_builders.Panel:
    """Log lines as a table (time, line, labels), newest first."""
    return (
        table_builders.Panel()
        .title(title)
        .description(description)
        .datasource(LOKI)
        .unit("string")
        .span(width)
        .height(height)
        .with_target(loki(expr, max_lines=max_lines))
        .sort_by([TableSortByFieldState().display_name("Time").desc(True)])
        .cell_height(TableCellHeight.SM)
    )


def log_stream(
    title: str, description: str, expr: str, *, max_lines: int, width: int = 24, height: int = 10
) -> logs_builders.Panel:
    """A logs panel: the one that follows the shared crosshair and opens log details."""
    return (
        logs_builders.Panel()
        .title(title)
        .description(description)
        .datasource(LOKI)
        .unit("string")
        .span(width)
        .height(height)
        .with_target(loki(expr, max_lines=max_lines))
        .show_time(True)
        .wrap_log_message(True)
        .enable_log_details(True)
        .sort_order(LogsSortOrder.DESCENDING)
    )


def gauge(
    title: str,
    description: str,
    unit: str,
    *targets: Target,
    steps: ThresholdsConfig,
    maximum: float,
    width: int = 8,
    height: int = 8,
) -> gauge_builders.Panel:
    panel = (
        gauge_builders.Panel()
        .title(title)
        .description(description)
        .datasource(INFLUX)
        .unit(unit)
        .min(0)
        .max(maximum)
        .span(width)
        .height(height)
        .thresholds(steps)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .show_threshold_markers(True)
    )
    for target in targets:
        panel = panel.with_target(target)
    return panel
