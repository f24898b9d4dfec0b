"""What the fleet prints about where things are never carries a credential."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agents import fleet
from agents.core.settings import FleetSettings, load_settings


@pytest.mark.parametrize(
    "url",
    [
        "https://admin:hunter2-password@influx.example:8086/base?org=x",
        "https://influx.example:8086/base?token=hunter2-password",
        "https://influx.example:8086/base#token=hunter2-password",
    ],
)
def test_the_influxdb_url_is_printed_without_userinfo_or_query(url: str) -> None:
    settings = load_settings(FleetSettings, influxdb_url=url, influxdb_token="tok-secret-value")
    destination = fleet.metrics_destination(settings)
    hint = fleet.report_hint(settings, datetime(2026, 1, 31, tzinfo=UTC), None)
    for text in (destination, hint):
        assert "hunter2-password" not in text
        assert "admin" not in text
        assert "https://influx.example:8086/base" in text


def test_a_secret_echoed_in_the_rabbitmq_problem_is_scrubbed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings(FleetSettings, rabbitmq_pass="canary-rabbit-pass")
    monkeypatch.setattr(
        fleet, "_rabbit_problem", lambda s: "refused: PLAIN guest canary-rabbit-pass"
    )
    problem = fleet.rabbit_unreachable(settings)
    assert problem is not None
    assert "canary-rabbit-pass" not in problem
    assert "refused: PLAIN guest" in problem
