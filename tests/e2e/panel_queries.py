"""Every provisioned panel's own query, as Grafana's `POST /api/ds/query` takes it.

Grafana's frontend interpolates dashboard variables before a query leaves the browser; the
backend then substitutes the datasource macros (`v.defaultBucket`, `v.timeRangeStart`,
`v.windowPeriod` for Flux; `$__interval`, `$__range`, `$__auto` for Loki). A test calling the API
directly plays the frontend's part: each variable at its "All" value, each panel's own time range
and interval. Pure functions over the dashboard JSON, unit-tested offline
(tests/stack/test_e2e_helpers.py); the e2e suite sends what they build to a real Grafana.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# Grafana's default when a query variable has no allValue: a regex Loki refuses on its own
# ({a=~".*"} matches the empty string), so the dashboards must set `.+`.
GRAFANA_DEFAULT_ALL = ".*"
MAX_DATA_POINTS = 500
_UNITS_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
# ${name}, ${name:format}, $name, [[name]] - Grafana's three variable syntaxes.
_VARIABLE = re.compile(
    r"\$\{(?P<a>\w+)(?::(?P<fmt>\w+))?\}|\$(?P<b>[A-Za-z_]\w*)|\[\[(?P<c>\w+)(?::\w+)?\]\]"
)


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str  # dashboard uid
    panel: str  # panel title
    panel_type: str
    ref_id: str
    datasource: dict[str, str | None]  # type and uid, None where the panel leaves one out
    text: str  # the query as written in the dashboard (variables not yet interpolated)
    time_from: str  # e.g. "now-30m", or the panel's own relative time
    time_to: str
    target: dict[str, Any]

    @property
    def where(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref_id}"


def all_values(dashboard: Mapping[str, Any]) -> dict[str, str]:
    """Each template variable's "All" value: its allValue, else Grafana's default `.*`."""
    values: dict[str, str] = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("includeAll"):
            values[variable["name"]] = variable.get("allValue") or GRAFANA_DEFAULT_ALL
    return values


def interpolate(text: str, values: Mapping[str, str]) -> str:
    """Replace dashboard variables with `values` verbatim, as Grafana does for a custom "All"
    value (it is never escaped); Grafana's own `$__...` macros are left to the backend."""

    def one(match: re.Match[str]) -> str:
        name = match["a"] or match["b"] or match["c"]
        if name.startswith("__") or name not in values:
            return match[0]
        return values[name]

    return _VARIABLE.sub(one, text)


def unresolved_variables(text: str) -> set[str]:
    """Dashboard variables (not `$__` macros) still in an interpolated query."""
    names = {m["a"] or m["b"] or m["c"] for m in _VARIABLE.finditer(text)}
    return {name for name in names if not name.startswith("__")}


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows


def panel_queries(dashboard: Mapping[str, Any]) -> list[PanelQuery]:
    """Every visible target of every panel, with the time range the panel shows."""
    default_from = dashboard.get("time", {}).get("from", "now-6h")
    default_to = dashboard.get("time", {}).get("to", "now")
    found = []
    for panel in panels(dashboard):
        time_from = f"now-{panel['timeFrom']}" if panel.get("timeFrom") else default_from
        for target in panel.get("targets", []):
            if target.get("hide"):
                continue
            datasource = target.get("datasource") or panel.get("datasource") or {}
            text = target.get("query") or target.get("expr") or ""
            found.append(
                PanelQuery(
                    dashboard=str(dashboard.get("uid")),
                    panel=str(panel.get("title")),
                    panel_type=str(panel.get("type")),
                    ref_id=str(target.get("refId", "A")),
                    datasource={"type": datasource.get("type"), "uid": datasource.get("uid")},
                    text=text,
                    time_from=time_from,
                    time_to=default_to,
                    target=dict(target),
                )
            )
    return found


def relative_ms(expression: str) -> int:
    """Milliseconds in a relative time such as "now-30m" or "now-24h"."""
    match = re.fullmatch(r"now-(\d+)([smhdw])", expression)
    if not match:
        raise ValueError(f"not a relative time Grafana panels use here: {expression!r}")
    return int(match.group(1)) * _UNITS_MS[match.group(2)]


def interval_ms(query: PanelQuery, min_interval_ms: int) -> int:
    """The interval Grafana gives a panel: its range over max data points, at least the
    datasource's minimum (timeInterval). This is what `v.windowPeriod` becomes."""
    span = relative_ms(query.time_from)
    return max(min_interval_ms, span // MAX_DATA_POINTS)


def ds_query_payload(
    query: PanelQuery, values: Mapping[str, str], min_interval_ms: int = 10_000
) -> dict[str, Any]:
    """The body of `POST /api/ds/query` for one panel target, variables at `values`."""
    target = dict(query.target)
    key = "query" if "query" in target else "expr"
    target[key] = interpolate(query.text, values)
    target.update(
        {
            "refId": query.ref_id,
            "datasource": query.datasource,
            "intervalMs": interval_ms(query, min_interval_ms),
            "maxDataPoints": MAX_DATA_POINTS,
        }
    )
    return {"queries": [target], "from": query.time_from, "to": query.time_to}


@dataclass(frozen=True)
class Answer:
    status: int
    error: str | None
    rows: int  # rows over all frames
    numbers: int  # non-null numeric values over all frames


def read_answer(body: Mapping[str, Any], ref_id: str) -> Answer:
    """Summarise one refId's result of `/api/ds/query` (data frames in JSON)."""
    result = (body.get("results") or {}).get(ref_id)
    if result is None:
        return Answer(0, f"no result for refId {ref_id}", 0, 0)
    rows = numbers = 0
    for frame in result.get("frames") or []:
        fields = (frame.get("schema") or {}).get("fields") or []
        columns = (frame.get("data") or {}).get("values") or []
        if columns:
            rows += max(len(column) for column in columns)
        for schema, column in zip(fields, columns, strict=False):
            if schema.get("type") == "number":
                numbers += sum(1 for value in column if isinstance(value, int | float))
    status = int(result.get("status", 200))
    return Answer(status, result.get("error"), rows, numbers)


NUMERIC_PANELS = frozenset({"timeseries", "stat", "gauge", "bargauge", "barchart"})


def missing_data(query: PanelQuery, answer: Answer) -> str | None:
    """Why a panel target shows nothing, or None when it has data."""
    if answer.error or answer.status >= 400:
        return f"error {answer.status}: {answer.error}"
    if answer.rows == 0:
        return "no rows"
    if query.panel_type in NUMERIC_PANELS and answer.numbers == 0:
        return "rows but no numbers"
    return None
