"""Grafana dashboards as code: the specification's four dashboards, generated into
infra/grafana/dashboards/*.json by `python -m agents.dashboards` (`nox -s dashboards`).

Built with grafana-foundation-sdk 0.0.21 (Grafana Labs' typed builders, pinned exactly), not
hand-written dicts, because:
  - panel options and field config are typed from Grafana's own schema (schemaVersion 42), so a
    misspelt option such as `thresholdStyle` fails mypy instead of being silently ignored by
    Grafana, and layout (gridPos) is computed;
  - it is pure Python with no dependencies, and lives in the `dashboards` dependency group (which
    the `test` group includes for the drift test), so the runtime image does not carry it.
Its gaps are small and contained in `common.py`: it has no InfluxDB query model (a Flux target is
a four-key dict, `FluxQuery`), and its v1 `Dashboard` builder warns that v2 exists, while file
provisioning reads v1 JSON.

Every Flux query is built from the `Measurement` objects of `agents.core.metrics.schema`
(`flux.py`), every LogQL selector from the Promtail labels (`logql.py`), and the cost panels from
the price table and spend-cap defaults the cost guard uses, so the dashboards follow the code they
show.
"""

from __future__ import annotations
