"""What every dashboard shares: datasource refs, targets, template variables, units, defaults."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Protocol, Self, TypeVar

from agents.core.metrics.schema import QUEUE_DEPTH
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
        GraphDrawStyle,
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


def queue_depths(step: str) -> FluxTarget:
    """The monitor's sampled depth per queue. Queues are shared, so no agent filter applies."""
    return influx(
        flux.query(QUEUE_DEPTH, "queue_depth", group_by=["queue"], agent_filter=False, steps=[step])
    )


def fleet_cap(per_agent_default: Any, agents: int) -> float:
    """A fleet-wide cap from a per-agent settings default, rounded to whole cents' fractions."""
    return round(float(per_agent_default) * agents, 6)


Target = cogbuilder.Builder[cogvariants.Dataquery]
TimeseriesPanel = timeseries_builders.Panel


class _PanelBuilder(Protocol):
    """The setters every SDK panel builder has (each returns the builder)."""

    def title(self, title: str) -> Self: ...
    def description(self, description: str) -> Self: ...
    def datasource(self, datasource: DataSourceRef) -> Self: ...
    def unit(self, unit: str) -> Self: ...
    def span(self, w: int) -> Self: ...
    def height(self, h: int) -> Self: ...
    def with_target(self, target: Target) -> Self: ...


PanelT = TypeVar("PanelT", bound=_PanelBuilder)


def _panel(
    panel: PanelT,
    title: str,
    description: str,
    unit: str,
    targets: Sequence[Target],
    size: tuple[int, int],
    datasource: DataSourceRef = INFLUX,
) -> PanelT:
    """What every panel sets: its words, unit, queries, size (width, height) and data source."""
    width, height = size
    panel = (
        panel.title(title)
        .description(description)
        .datasource(datasource)
        .unit(unit)
        .span(width)
        .height(height)
    )
    for target in targets:
        panel = panel.with_target(target)
    return panel


def threshold_lines(mode: GraphThresholdsStyleMode) -> GraphThresholdsStyleConfig:
    """Draw the panel's thresholds on the graph (the spend caps as lines)."""
    return GraphThresholdsStyleConfig().mode(mode)


def stacked_bars(panel: TimeseriesPanel, interval: str, opacity: int) -> TimeseriesPanel:
    """Bars per `interval`, stacked: counts per minute (or hour) that add up to a total."""
    return (
        panel.interval(interval)
        .draw_style(GraphDrawStyle.BARS)
        .fill_opacity(opacity)
        .stacking(STACKED)
    )


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
    panel = timeseries_builders.Panel()
    return (
        _panel(panel, title, description, unit, targets, (width, height), datasource)
        .min(0)
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


def stat(
    title: str,
    description: str,
    unit: str,
    *targets: Target,
    steps: ThresholdsConfig = BASE_THRESHOLDS,
    width: int = 6,
    height: int = 5,
) -> stat_builders.Panel:
    return (
        _panel(stat_builders.Panel(), title, description, unit, targets, (width, height))
        .thresholds(steps)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .color_mode(BigValueColorMode.VALUE)
        .graph_mode(BigValueGraphMode.NONE)
    )


def _log_panel(
    panel: PanelT, title: str, description: str, expr: str, max_lines: int, height: int
) -> PanelT:
    # Log lines need the width: every log panel spans the dashboard.
    target = loki(expr, max_lines=max_lines)
    return _panel(panel, title, description, "string", [target], (24, height), LOKI)


def log_table(
    title: str, description: str, expr: str, *, max_lines: int, height: int = 10
) -> table_builders.Panel:
    """Log lines as a table (time, line, labels), newest first."""
    return (
        _log_panel(table_builders.Panel(), title, description, expr, max_lines, height)
        .sort_by([TableSortByFieldState().display_name("Time").desc(True)])
        .cell_height(TableCellHeight.SM)
    )


def log_stream(
    title: str, description: str, expr: str, *, max_lines: int, height: int = 10
) -> logs_builders.Panel:
    """A logs panel: the one that follows the shared crosshair and opens log details."""
    return (
        _log_panel(logs_builders.Panel(), title, description, expr, max_lines, height)
        .show_time(True)
        .wrap_log_message(True)
        .enable_log_details(True)
        .sort_order(LogsSortOrder.DESCENDING)
    )


def gauge(
    title: str,
    description: str,
    unit: str,
    target: Target,
    *,
    steps: ThresholdsConfig,
    maximum: float,
    width: int = 8,
) -> gauge_builders.Panel:
    return (
        _panel(gauge_builders.Panel(), title, description, unit, [target], (width, 8))
        .min(0)
        .max(maximum)
        .thresholds(steps)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .show_threshold_markers(True)
    )
