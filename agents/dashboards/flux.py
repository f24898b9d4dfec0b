"""Flux queries built from the metrics schema objects, never from free-typed names.

A query names its measurement as a `Measurement` from `agents.core.metrics.schema`, and every
field and tag it filters or groups on is checked against that object when the dashboard is
generated, so a renamed field breaks `nox -s dashboards` instead of leaving a panel silently
empty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agents.core.metrics.schema import COMMON_TAGS, Measurement

# Every query reads the datasource's default bucket, which provisioning sets from INFLUXDB_BUCKET
# (the bucket the agents write to): Grafana's backend replaces `v.defaultBucket` with it, so a
# changed INFLUXDB_BUCKET still shows data. A Flux expression, not a string literal.
BUCKET: str = "v.defaultBucket"

# Dashboard template variables, interpolated by Grafana before the query reaches InfluxDB.
# `:regex` escapes each selected value and joins several as (a|b); "All" sends `.+` verbatim.
AGENT_VARIABLES: tuple[str, ...] = ("agent_id", "agent_type")


def var_regex(name: str) -> str:
    return "${" + name + ":regex}"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _columns(names: Sequence[str]) -> str:
    return "[" + ", ".join(_quote(n) for n in names) + "]"


@dataclass(frozen=True)
class FluxQuery:
    """from(bucket) |> range |> filter(measurement, fields, tags, agent variables) |> steps.

    `steps` are further pipeline stages made by the helpers below; `group_by` must name tags of
    the measurement (or `_field`), checked here.
    """

    measurement: Measurement
    fields: tuple[str, ...]
    where: Mapping[str, str]
    group_by: tuple[str, ...]
    steps: tuple[str, ...]
    agent_filter: bool = True
    preamble: str = ""
    bucket: str = BUCKET

    def __post_init__(self) -> None:
        name = self.measurement.name
        unknown = [f for f in self.fields if f not in self.measurement.fields]
        if not self.fields or unknown:
            raise ValueError(f"{name}: unknown or no fields {unknown}")
        bad_tags = [t for t in [*self.where, *self.group_by] if t not in self.measurement.tags]
        bad_tags = [t for t in bad_tags if t != "_field"]
        if bad_tags:
            raise ValueError(f"{name}: unknown tags {bad_tags}")
        if self.agent_filter and not self.measurement.tags >= COMMON_TAGS:
            raise ValueError(f"{name}: has no agent tags to filter on")

    def render(self) -> str:
        field_test = " or ".join(f"r._field == {_quote(f)}" for f in self.fields)
        lines = [self.preamble, ""] if self.preamble else []
        lines += [
            f"from(bucket: {self.bucket})",
            "  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)",
            f"  |> filter(fn: (r) => r._measurement == {_quote(self.measurement.name)})",
            f"  |> filter(fn: (r) => {field_test})",
        ]
        for tag, value in self.where.items():
            lines.append(f"  |> filter(fn: (r) => r.{tag} == {_quote(value)})")
        if self.agent_filter:
            tests = " and ".join(f"r.{v} =~ /^{var_regex(v)}$/" for v in AGENT_VARIABLES)
            lines.append(f"  |> filter(fn: (r) => {tests})")
        # Explicit even when empty: series then never split by tags the panel did not ask for.
        lines.append(
            f"  |> group(columns: {_columns(self.group_by)})" if self.group_by else "  |> group()"
        )
        lines.extend(f"  |> {step}" for step in self.steps)
        return "\n".join(lines)


def query(
    measurement: Measurement,
    *fields: str,
    where: Mapping[str, str] | None = None,
    group_by: Sequence[str] = (),
    steps: Sequence[str] = (),
    agent_filter: bool = True,
    preamble: str = "",
) -> str:
    """Render a validated Flux query (see `FluxQuery`)."""
    return FluxQuery(
        measurement,
        tuple(fields),
        dict(where or {}),
        tuple(group_by),
        tuple(steps),
        agent_filter,
        preamble,
    ).render()


# --- pipeline steps -------------------------------------------------------------------------


def window(fn: str, every: str = "v.windowPeriod", *, create_empty: bool = False) -> str:
    """aggregateWindow; `every` is a Flux duration literal or Grafana's v.windowPeriod."""
    if fn not in {"sum", "mean", "max", "last", "count"}:
        raise ValueError(f"unsupported aggregate {fn}")
    empty = "true" if create_empty else "false"
    return f"aggregateWindow(every: {every}, fn: {fn}, createEmpty: {empty})"


def rate(per_seconds: float) -> str:
    """Turn per-window sums from `window("sum")` into a rate per `per_seconds`, at any zoom."""
    return (
        f"map(fn: (r) => ({{r with _value: float(v: r._value) * {float(per_seconds)!r}"
        " / (float(v: int(v: v.windowPeriod)) / 1000000000.0)}))"
    )


def scale(factor: float) -> str:
    return f"map(fn: (r) => ({{r with _value: float(v: r._value) * {factor!r}}}))"


def reduce(fn: str) -> str:
    if fn not in {"sum", "mean", "max", "last", "count"}:
        raise ValueError(f"unsupported selector/aggregate {fn}")
    return f"{fn}()"


def label(name: str) -> str:
    """Name a single resulting series (Grafana shows `_field` as the series name)."""
    return f'set(key: "_field", value: {_quote(name)})'


def tag_values(tag: str, *, predicate_on: Sequence[str] = ()) -> str:
    """A template-variable query: the values a common tag takes, narrowed by other variables."""
    if tag not in COMMON_TAGS or any(p not in COMMON_TAGS for p in predicate_on):
        raise ValueError(f"template variables use the common tags only: {tag}, {predicate_on}")
    lines = [
        'import "influxdata/influxdb/schema"',
        "",
        f"schema.tagValues(bucket: {BUCKET}, tag: {_quote(tag)}",
    ]
    if predicate_on:
        tests = " and ".join(f"r.{p} =~ /^{var_regex(p)}$/" for p in predicate_on)
        lines[-1] += f", predicate: (r) => {tests}"
    lines[-1] += ", start: -7d)"
    return "\n".join(lines)
