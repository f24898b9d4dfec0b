"""Render all dashboards to JSON text, write them, or report drift from the committed files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from agents.dashboards import ai_decisions, common, correlation, cost, overview

DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "infra" / "grafana" / "dashboards"

# File name -> builder. Names and uids are fixed: provisioning upserts by uid, and links and the
# e2e suite address dashboards by it.
DASHBOARDS: dict[str, Callable[[], common.Dashboard]] = {
    "system-overview.json": overview.build,
    "ai-decisions.json": ai_decisions.build,
    "logs-metrics-correlation.json": correlation.build,
    "cost-tracking.json": cost.build,
}


def render() -> dict[str, str]:
    """Every dashboard as stable JSON text: sorted keys, so diffs show only real changes."""
    out: dict[str, str] = {}
    for name, build in DASHBOARDS.items():
        model = build().build()
        # Stable panel ids, so links such as ?viewPanel=3 survive regeneration.
        for number, panel in enumerate(model.panels or [], 1):
            panel.id_val = number
        out[name] = json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
    return out


def write(directory: Path = DASHBOARD_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def drift(directory: Path = DASHBOARD_DIR) -> list[str]:
    """Names whose committed JSON differs from the generated one (missing files included), and
    generated-looking JSON files in the directory that no builder produces any more."""
    rendered = render()
    changed = [
        name
        for name, text in rendered.items()
        if not (directory / name).exists() or (directory / name).read_text(encoding="utf-8") != text
    ]
    stale = sorted(p.name for p in directory.glob("*.json") if p.name not in rendered)
    return changed + stale
