"""`nox -s record` proven without a key: the recorder drives every situation through the real SDK
and vcrpy against a local fake Messages API (ANTHROPIC_BASE_URL), the result holds no secret and is
labelled synthetic (it did not come from Claude), and replaying it gives every action."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agents.core.ai import cassettes as cs
from agents.core.ai.engine import resolve_mode
from agents.core.settings import PublisherSettings, load_settings
from agents.devtools import record
from agents.devtools.seed import synthetic_answer
from agents.testing.claude import FakeMessagesAPI
from agents.vocab import AGENT_TYPES
from tests.integration.test_ai_replay import assert_every_action_replays

FAKE_KEY = "sk-ant-api03-FAKE-recording-key-0123456789abcdef"


def record_through_fake(directory: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """Run the recorder (the code `nox -s record` runs) against the fake; its request count."""
    # Answers by the seed's rules, usage roughly four bytes a token: what the API would send.
    with FakeMessagesAPI(
        answer=synthetic_answer, usage=lambda prompt, text: (len(prompt) // 4 + 60, len(text) // 4)
    ) as api:
        monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
        monkeypatch.setenv("CASSETTES_DIR", str(directory))
        monkeypatch.delenv("DRY_RUN", raising=False)
        monkeypatch.delenv("CLAUDE_MODEL", raising=False)
        assert record.main() == 0
        # The key reached the API in the SDK's credential header (the cassettes must not keep it).
        assert all(
            FAKE_KEY in (r.headers.get("x-api-key", "") + r.headers.get("authorization", ""))
            for r in api.requests
        )
        return len(api.requests)


def test_recording_through_the_real_sdk_covers_every_situation_and_leaks_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "cassettes"
    sent = record_through_fake(directory, monkeypatch)
    situations = sum(len(v) for v in record.SCENARIOS.values())
    assert sent == situations

    for agent_type in AGENT_TYPES:
        path = cs.cassette_path(directory, agent_type)
        text = path.read_text()
        assert cs.scan_for_keys(text) == [], path
        assert FAKE_KEY not in text
        assert "x-api-key" not in text.lower() and "authorization" not in text.lower()
        data = yaml.safe_load(text)
        assert len(data["interactions"]) == len(record.SCENARIOS[agent_type])
        metadata = data["metadata"]
        # Not from Anthropic, so not "real": the label follows the endpoint.
        assert metadata["synthetic"] is True
        assert metadata["endpoint"].startswith("http://127.0.0.1:")
        assert metadata["api_version"] and metadata["sdk"].startswith("anthropic-python")
        assert metadata["model"] == "claude-haiku-5-5" and metadata["recorded_at"]

    # Replay the new cassettes, network off, and see every action.
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    monkeypatch.delenv("ANTHROPIC_BASE_URL")
    monkeypatch.delenv("CASSETTES_DIR")
    why = resolve_mode(load_settings(PublisherSettings), cwd=tmp_path).why
    assert "SYNTHETIC" in why and "nox -s record" in why
    assert_every_action_replays(tmp_path)


def test_a_recording_from_the_real_endpoint_is_labelled_real(tmp_path: Path) -> None:
    header = record.cassette_header(
        synthetic=False, model="claude-haiku-5-5", generator="test", note="real"
    )
    directory = tmp_path / "cassettes"
    directory.mkdir()
    shipped = yaml.safe_load((cs.packaged_cassettes_dir() / "publisher.yaml").read_text())
    shipped["metadata"] = header
    (directory / "publisher.yaml").write_text(yaml.safe_dump(shipped))
    why = resolve_mode(load_settings(PublisherSettings), cwd=tmp_path).why
    assert "SYNTHETIC" not in why and "recorded from Claude" in why
