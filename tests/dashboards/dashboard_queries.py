"""Read the committed dashboard JSON and pull out what its queries reference.

Deliberately independent of agents/dashboards: these parsers read the generated text, the way
Grafana and InfluxDB will, so a builder bug cannot vouch for itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "infra" / "grafana" / "dashboards"
DATASOURCES_DIR = ROOT / "infra" / "grafana" / "provisioning" / "datasources"
PROMTAIL_CONFIG = ROOT / "infra" / "promtail" / "promtail-config.yaml"
FIXTURE = ROOT / "fixtures" / "metrics-sample.lp"

# Columns every Flux table has; everything else a query names is a tag.
FLUX_COLUMNS = frozenset({"_measurement", "_field", "_value", "_time", "_start", "_stop"})


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {
        p.name: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted(DASHBOARD_DIR.glob("*.json"))
    }


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows


@dataclass(frozen=True)
class Query:
    where: str  # "file / panel title / refId", for messages
    datasource: dict[str, Any]
    text: str


def queries(dashboards: dict[str, dict[str, Any]]) -> list[Query]:
    found = []
    for name, dashboard in dashboards.items():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                ds = target.get("datasource") or panel.get("datasource") or {}
                text = target.get("query") or target.get("expr") or ""
                found.append(
                    Query(f"{name} / {panel.get('title')} / {target.get('refId')}", ds, text)
                )
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                text = variable["query"] if isinstance(variable["query"], str) else ""
                found.append(Query(f"{name} / ${variable['name']}", variable["datasource"], text))
    return found


def flux_queries(dashboards: dict[str, dict[str, Any]]) -> list[Query]:
    return [q for q in queries(dashboards) if q.datasource.get("type") == "influxdb"]


def logql_queries(dashboards: dict[str, dict[str, Any]]) -> list[Query]:
    return [q for q in queries(dashboards) if q.datasource.get("type") == "loki"]


# --- Flux ---------------------------------------------------------------------------------------

_STRING = r'"((?:[^"\\]|\\.)*)"'

# The datasource's default bucket, which Grafana's backend substitutes before the query reaches
# InfluxDB (provisioning sets it from INFLUXDB_BUCKET).
DEFAULT_BUCKET = "v.defaultBucket"


def as_grafana_sends(text: str, bucket: str) -> str:
    """The Flux InfluxDB receives: `v.defaultBucket` replaced by the datasource's bucket."""
    return re.sub(r"\bv\.defaultBucket\b", json.dumps(bucket), text)


def bucket_expressions(text: str) -> list[str]:
    """What each `bucket:` argument is, verbatim: a string literal or an expression."""
    code = re.sub(r"//[^\n]*", "", text)
    return re.findall(r'\bbucket:\s*("(?:[^"\\]|\\.)*"|[A-Za-z_][\w.]*)', code)


@dataclass
class FluxRefs:
    buckets: set[str] = field(default_factory=set)
    measurements: set[str] = field(default_factory=set)
    fields: set[str] = field(default_factory=set)
    columns: set[str] = field(default_factory=set)  # r.x, r["x"], columns: [...], tag:, key:
    filter_equals: dict[str, str] = field(default_factory=dict)  # tag == "v" inside filter()
    group_columns: set[str] = field(default_factory=set)
    tag_values_of: set[str] = field(default_factory=set)  # schema.tagValues(tag: ...)


def flux_refs(text: str) -> FluxRefs:
    refs = FluxRefs()
    code = re.sub(r"//[^\n]*", "", text)  # comments may name anything
    refs.buckets = set(re.findall(r"\bbucket:\s*" + _STRING, code))
    refs.measurements = set(re.findall(r"\br\._measurement\s*==\s*" + _STRING, code))
    refs.fields = set(re.findall(r"\br\._field\s*==\s*" + _STRING, code))
    refs.columns |= set(re.findall(r"\br\.([A-Za-z_]\w*)", code))
    refs.columns |= set(re.findall(r"\br\[" + _STRING + r"\]", code))
    for listed in re.findall(r"\bcolumns:\s*\[([^\]]*)\]", code):
        names = set(re.findall(_STRING, listed))
        refs.columns |= names
        refs.group_columns |= names
    refs.columns |= set(re.findall(r"\bkey:\s*" + _STRING, code))
    refs.tag_values_of = set(re.findall(r"\btag:\s*" + _STRING, code))
    refs.columns |= refs.tag_values_of
    for line in code.splitlines():
        if "filter(fn:" in line:
            for column, value in re.findall(r"\br\.([A-Za-z_]\w*)\s*==\s*" + _STRING, line):
                if column not in FLUX_COLUMNS:
                    refs.filter_equals[column] = value
    return refs


# --- LogQL --------------------------------------------------------------------------------------

_MATCHER = re.compile(r'\s*([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|`[^`]*`)\s*')


@dataclass(frozen=True)
class LabelMatcher:
    label: str
    op: str
    value: str


def logql_selector(expr: str) -> list[LabelMatcher]:
    """The stream selector's matchers; raises ValueError on anything it cannot account for."""
    start = expr.find("{")
    if start < 0:
        raise ValueError(f"no stream selector in {expr!r}")
    depth_free = expr[start + 1 :]
    matchers: list[LabelMatcher] = []
    pos = 0
    while True:
        m = _MATCHER.match(depth_free, pos)
        if not m:
            raise ValueError(f"unparsable selector at {depth_free[pos : pos + 30]!r} in {expr!r}")
        raw = m.group(3)
        value = json.loads(raw) if raw.startswith('"') else raw[1:-1]
        matchers.append(LabelMatcher(m.group(1), m.group(2), value))
        pos = m.end()
        if depth_free[pos : pos + 1] == ",":
            pos += 1
            continue
        if depth_free[pos : pos + 1] == "}":
            return matchers
        raise ValueError(f"unexpected {depth_free[pos : pos + 20]!r} in selector of {expr!r}")


# --- line protocol ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinePoint:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, str]  # raw values; the tie only needs the keys


def _split(text: str, sep: str) -> list[str]:
    """Split on `sep` outside backslash escapes and double-quoted strings."""
    parts, current, quoted, i = [], [], False, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\([ ,=\\\"])", r"\1", text)


def read_line_protocol(path: Path) -> list[LinePoint]:
    points = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        sections = _split(line, " ")
        if len(sections) not in (2, 3):
            raise ValueError(f"{path.name}:{number}: not line protocol: {line[:60]!r}")
        series = _split(sections[0], ",")
        tags = {}
        for item in series[1:]:
            key, *value = _split(item, "=")
            tags[_unescape(key)] = _unescape("=".join(value))
        fields = {}
        for item in _split(sections[1], ","):
            key, *value = _split(item, "=")
            fields[_unescape(key)] = "=".join(value)
        points.append(LinePoint(_unescape(series[0]), tags, fields))
    return points
