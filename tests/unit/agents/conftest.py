"""Agents driven in-process (see tests/support/rig.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.env import scrub_env
from tests.support.rig import Rig, build_rig


@pytest.fixture
def make_rig(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Rig]:
    scrub_env(monkeypatch, ("DRY_RUN", "ANTHROPIC_API_KEY", "INFLUXDB_URL", "AI_SAMPLING_SEED"))
    return build_rig
