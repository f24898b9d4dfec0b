from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_ambient_ai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose the AI mode themselves; a developer's own key must never leak in."""
    for name in ("ANTHROPIC_API_KEY", "DRY_RUN", "CLAUDE_MODEL", "CASSETTES_DIR", "MAX_TOKENS"):
        monkeypatch.delenv(name, raising=False)
