"""Readers for the stack's files (compose, .env.example, service configs), shared by the static
checks in tests/stack and the end-to-end suite in tests/e2e."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
LOKI_CONFIG = ROOT / "infra" / "loki" / "loki-config.yaml"
PROMTAIL_CONFIG = ROOT / "infra" / "promtail" / "promtail-config.yaml"
GRAFANA_PROVISIONING = ROOT / "infra" / "grafana" / "provisioning"
DASHBOARDS_DIR = ROOT / "infra" / "grafana" / "dashboards"
DOCKERFILE = ROOT / "infra" / "Dockerfile"

# The agent services: service -> (agent_type, agent id or id template). Publishers and consumers
# scale (`--scale consumer=N`), each replica naming itself after its container hostname.
AGENTS: dict[str, tuple[str, str]] = {
    "publisher": ("publisher", "publisher-{hostname}"),
    "consumer": ("consumer", "consumer-{hostname}"),
    "monitor": ("monitor", "monitor-1"),
}
# Replicas by default: the specification's five agents (two publishers, two consumers, a monitor).
REPLICAS: dict[str, int] = {"publisher": 2, "consumer": 2, "monitor": 1}
SCALABLE = ("publisher", "consumer")
AGENT_IMAGE = "books-agents:local"
README = ROOT / "README.md"
# The infrastructure of the specification with the container ports it publishes.
INFRA_PORTS: dict[str, set[int]] = {
    "rabbitmq": {5672, 15672},
    "influxdb": {8086},
    "loki": {3100},
    "promtail": set(),
    "grafana": {3000},
}
SETUP_JOBS = ("rabbitmq-setup", "influxdb-setup")

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


@cache
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def services() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose()["services"]
    return result


def env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """KEY=VALUE lines of a dotenv file (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
        values[key.strip()] = value.strip()
    return values


def referenced_variables(text: str | None = None) -> dict[str, str | None]:
    """Every ${VAR...} in the compose file -> its operator (':-', ':?', ...) or None."""
    source = COMPOSE_FILE.read_text() if text is None else text
    return {m["name"]: m["op"] for m in _VARIABLE.finditer(source)}


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation (${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error})."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"] or ""
        current = env.get(name)
        unset_or_empty = not current
        if op == ":-":
            return arg if unset_or_empty else str(current)
        if op == "-":
            return arg if current is None else current
        if op in (":?", "?") and (unset_or_empty if op == ":?" else current is None):
            raise KeyError(f"{name}: {arg}")
        return current or ""

    return _VARIABLE.sub(one, value)


def service_env(name: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """A service's `environment`, interpolated with .env.example (or `env`)."""
    raw = services()[name].get("environment") or {}
    assert isinstance(raw, dict), f"{name}: use the mapping form of environment"
    resolved = interpolate(raw, env_file() if env is None else env)
    return {str(k): str(v) for k, v in resolved.items()}


def published_ports(name: str, env: dict[str, str] | None = None) -> dict[int, tuple[str, int]]:
    """container port -> (host address, host port), interpolated."""
    result: dict[int, tuple[str, int]] = {}
    for entry in services()[name].get("ports", []):
        text = interpolate(entry, env_file() if env is None else env)
        host, _, rest = str(text).rpartition(":")
        address, _, host_port = host.rpartition(":")
        result[int(rest)] = (address, int(host_port))
    return result


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS_DIR.glob("*.json"))}


def walk(node: Any) -> list[dict[str, Any]]:
    """Every dict nested anywhere in a JSON document."""
    found: list[dict[str, Any]] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.append(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


_MATCHER = re.compile(
    r"(?<=[{,])\s*(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*"
    r"(?:\"(?:[^\"\\]|\\.)*\"|`[^`]*`)"
)


def stream_selector_labels(logql: str) -> set[str]:
    """Label names used in a LogQL query's stream selectors ({name="..."}), not in filters."""
    return {m["label"] for m in _MATCHER.finditer(logql)}
