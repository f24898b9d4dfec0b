"""The environment cleaner (`agents.testing.clean_env`) applied to this test's own process."""

from __future__ import annotations

import os
from collections.abc import Iterable

import pytest

from agents.testing import clean_env


def scrub_env(monkeypatch: pytest.MonkeyPatch, drop: Iterable[str]) -> None:
    """Remove, for this test only, every variable `clean_env(drop=drop)` would leave out."""
    for name in os.environ.keys() - clean_env(drop=drop).keys():
        monkeypatch.delenv(name)
