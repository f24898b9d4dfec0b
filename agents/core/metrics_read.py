"""The old home of the metrics readers, kept as an alias while its importers outside the metrics
package (publisher, monitor, the cost CLI, benchmarks, some tests) move to
`agents.core.metrics.reader`; new code imports that module."""

from __future__ import annotations

from agents.core.metrics.line_protocol import ParsedPoint, parse_line
from agents.core.metrics.reader import (
    Aggregate,
    FileMetricsReader,
    InfluxMetricsReader,
    flux_query,
    flux_string,
    iter_file,
    reader_from_settings,
)
from agents.ports import MetricsReadError

__all__ = [
    "Aggregate",
    "FileMetricsReader",
    "InfluxMetricsReader",
    "MetricsReadError",
    "ParsedPoint",
    "flux_query",
    "flux_string",
    "iter_file",
    "parse_line",
    "reader_from_settings",
]
