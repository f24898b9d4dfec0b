"""InfluxDB line protocol, both ways: `line_protocol` encodes a point (the file sink and the
InfluxDB write body), `parse_line` reads one back (the file reader and the report).

`influx_point` builds the same point with influxdb-client's `Point`, the reference encoder the
tests compare `line_protocol` against; it imports the client lazily, as it costs ~2 s to load.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agents.ports import MetricPoint

if TYPE_CHECKING:
    from influxdb_client import Point

# --- encoding --------------------------------------------------------------------------------

_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_KEY = str.maketrans(
    {",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"}
)
_ESCAPE_STRING = str.maketrans({'"': r"\"", "\\": r"\\"})


@functools.lru_cache(maxsize=4096)
def _escape_key(key: str) -> str:
    return key.translate(_ESCAPE_KEY)


@functools.lru_cache(maxsize=4096)  # tags are low-cardinality by design: the cache stays warm
def _escape_tag_value(value: str) -> str:
    escaped = value.translate(_ESCAPE_KEY)
    # A trailing backslash would escape the separator that follows.
    return escaped + " " if escaped.endswith("\\") else escaped


def _field_text(value: int | float | str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        text = str(value)
        return text[:-2] if text.endswith(".0") else text
    return '"' + value.translate(_ESCAPE_STRING) + '"'


def line_protocol(point: MetricPoint) -> str:
    """InfluxDB line protocol, byte for byte what influxdb-client's `Point` produces.

    Encoded here because this runs once per message on the consumer's hot path, where
    building a `Point` cost several times more; tests/unit/test_metrics.py proves the two
    agree on arbitrary points.
    """
    tags = "".join(
        f",{_escape_key(key)}={_escape_tag_value(value)}"
        for key, value in sorted(point.tags.items())
        if value != ""
    )
    fields = ",".join(
        f"{_escape_key(key)}={_field_text(value)}" for key, value in sorted(point.fields.items())
    )
    return f"{point.measurement.translate(_ESCAPE_MEASUREMENT)}{tags} {fields} {point.time_ns}"


def influx_point(point: MetricPoint) -> Point:
    """The same point as influxdb-client's `Point` (the reference encoder)."""
    from influxdb_client import Point, WritePrecision

    result = Point(point.measurement)
    for key in sorted(point.tags):
        result.tag(key, point.tags[key])
    for key in sorted(point.fields):
        result.field(key, point.fields[key])
    result.time(point.time_ns, WritePrecision.NS)
    return result


# --- parsing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedPoint:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, int | float | str | bool]
    time_ns: int


def _split_unescaped(text: str, sep: str, *, quotes: bool = False) -> list[str]:
    """Split on `sep` where it is not backslash-escaped (nor inside double quotes)."""
    parts, current, i, in_quotes = [], [], 0, False
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if quotes and char == '"':
            in_quotes = not in_quotes
        if char == sep and not in_quotes:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return parts


_UNESCAPE = re.compile(r"\\(.)")


def _unescape(text: str) -> str:
    return _UNESCAPE.sub(r"\1", text)


def _field_value(raw: str) -> int | float | str | bool:
    if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
        return raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if raw in ("t", "T", "true", "True", "TRUE"):
        return True
    if raw in ("f", "F", "false", "False", "FALSE"):
        return False
    if raw.endswith(("i", "u")):
        return int(raw[:-1])
    return float(raw)


def parse_line(line: str) -> ParsedPoint:
    """Parse one line of InfluxDB line protocol (as written by influxdb-client's Point)."""
    # Quotes only delimit string field values: a `"` in a tag is an ordinary character.
    head, *rest = _split_unescaped(line.strip(), " ")
    sections = _split_unescaped(" ".join(rest), " ", quotes=True)
    if len(sections) != 2:
        raise ValueError(f"expected 'measurement,tags fields time', got {line[:80]!r}")
    field_text, time_text = sections
    key_parts = _split_unescaped(head, ",")
    tags = {}
    for pair in key_parts[1:]:
        key, _, value = pair.partition("=")
        tags[_unescape(key)] = _unescape(value)
    fields: dict[str, int | float | str | bool] = {}
    for pair in _split_unescaped(field_text, ",", quotes=True):
        key, _, value = pair.partition("=")
        fields[_unescape(key)] = _field_value(value)
    return ParsedPoint(_unescape(key_parts[0]), tags, fields, int(time_text))
