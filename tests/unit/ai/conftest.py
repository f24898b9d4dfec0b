from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_ambient_ai_env(no_ambient_ai: None) -> None:
    """Every test here: tests choose the AI mode themselves (see `no_ambient_ai`)."""
