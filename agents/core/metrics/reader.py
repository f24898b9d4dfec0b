"""Reading metrics back: the monitor's 5-minute summary, the publishers' queue depths and
`agents cost report` all ask the same three questions, of InfluxDB or of the embedded file.

Both readers raise `MetricsReadError` on any failure, so callers have one thing to catch and a
clear fallback (the broker for queue depths, "unknown" for summaries).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from agents.core.metrics.line_protocol import ParsedPoint, parse_line
from agents.core.metrics.sinks import silence_client_logging
from agents.ports import MetricsReader, MetricsReadError

if TYPE_CHECKING:
    from agents.core.settings import CommonSettings

Aggregate = Literal["sum", "last", "count"]


@dataclass(frozen=True)
class Question:
    """One field of one measurement since a moment, aggregated per value of the `group_by` tag
    (one key, "", without it): what every public reader method asks its store."""

    how: Aggregate
    measurement: str
    field: str
    since: datetime
    group_by: str | None


def iter_file(path: Path) -> Iterator[ParsedPoint]:
    """Every parseable point in a line-protocol file; a torn or foreign line is skipped."""
    try:
        handle = path.open(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise MetricsReadError(f"cannot read metrics file {path}: {exc}") from exc
    with handle:
        for line in handle:
            if not line.strip() or line.startswith("#"):
                continue
            try:
                yield parse_line(line)
            except ValueError:
                continue


class _Aggregating:
    """The three public questions, answered by one `_answer` per store."""

    def _answer(self, question: Question) -> dict[str, float]:
        raise NotImplementedError

    def sum_field(
        self, measurement: str, field: str, since: datetime, group_by: str | None = None
    ) -> dict[str, float]:
        return self._answer(Question("sum", measurement, field, since, group_by))

    def last_field(
        self, measurement: str, field: str, since: datetime, group_by: str | None = None
    ) -> dict[str, float]:
        return self._answer(Question("last", measurement, field, since, group_by))

    def count(
        self, measurement: str, field: str, since: datetime, group_by: str | None = None
    ) -> dict[str, int]:
        found = self._answer(Question("count", measurement, field, since, group_by))
        return {key: int(value) for key, value in found.items()}


class FileMetricsReader(_Aggregating):
    """Answers from the embedded line-protocol file (INFLUXDB_URL unset)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _answer(self, question: Question) -> dict[str, float]:
        since_ns = int(question.since.timestamp() * 1e9)
        group_by = question.group_by
        totals: dict[str, float] = defaultdict(float)
        latest: dict[str, int] = {}
        for point in iter_file(self.path):
            if point.measurement != question.measurement or point.time_ns < since_ns:
                continue
            value = point.fields.get(question.field)
            if value is None or isinstance(value, str):
                continue
            key = point.tags.get(group_by, "") if group_by else ""
            if question.how == "sum":
                totals[key] += float(value)
            elif question.how == "count":
                totals[key] += 1
            elif point.time_ns >= latest.get(key, -1):
                latest[key] = point.time_ns
                totals[key] = float(value)
        return dict(totals)


# --- InfluxDB ---------------------------------------------------------------------------------

_FLUX_STRING = re.compile(r'["\\$]')


def flux_string(value: str) -> str:
    """A Flux string literal (escapes quotes, backslashes and interpolation)."""
    return '"' + _FLUX_STRING.sub(lambda m: "\\" + m.group(0), value) + '"'


def flux_query(
    bucket: str,
    how: Aggregate,
    measurement: str,
    field: str,
    since: datetime,
    group_by: str | None,
) -> str:
    start = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    group = f"[{flux_string(group_by)}]" if group_by else "[]"
    aggregate = {"sum": "sum()", "count": "count()", "last": "last()"}[how]
    return (
        f"from(bucket: {flux_string(bucket)})\n"
        f"  |> range(start: {start})\n"
        f"  |> filter(fn: (r) => r._measurement == {flux_string(measurement)}"
        f" and r._field == {flux_string(field)})\n"
        f"  |> group(columns: {group})\n"
        + ('  |> sort(columns: ["_time"])\n' if how == "last" else "")
        + f"  |> {aggregate}"
    )


class InfluxMetricsReader(_Aggregating):
    """Answers with Flux queries through influxdb-client's query API."""

    def __init__(self, url: str, token: str, org: str, bucket: str, timeout_ms: int = 5_000):
        from influxdb_client import InfluxDBClient

        self.bucket = bucket
        self._org = org
        self._client = InfluxDBClient(url=url, token=token, org=org, timeout=timeout_ms)
        silence_client_logging()

    def _answer(self, question: Question) -> dict[str, float]:
        query = flux_query(
            self.bucket,
            question.how,
            question.measurement,
            question.field,
            question.since,
            question.group_by,
        )
        try:
            tables = self._client.query_api().query(query, org=self._org)
        except Exception as exc:  # urllib3, ApiException, ...: translate once, here
            raise MetricsReadError(
                f"InfluxDB query failed: {type(exc).__name__}: {str(exc)[:200]}"
            ) from None
        group_by = question.group_by
        result: dict[str, float] = {}
        for table in tables:
            for record in table.records:
                key = str(record.values.get(group_by, "")) if group_by else ""
                value = record.get_value()
                if isinstance(value, int | float) and not isinstance(value, bool):
                    result[key] = result.get(key, 0.0) + float(value)
        return result

    def close(self) -> None:
        self._client.close()


def reader_from_settings(settings: CommonSettings) -> MetricsReader:
    if settings.influxdb_url:
        token = settings.influxdb_token.get_secret_value() if settings.influxdb_token else ""
        return InfluxMetricsReader(
            settings.influxdb_url, token, settings.influxdb_org, settings.influxdb_bucket
        )
    return FileMetricsReader(settings.metrics_file)
