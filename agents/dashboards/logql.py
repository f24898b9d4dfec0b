"""LogQL stream selectors restricted to the labels the Promtail pipeline produces.

Loki only indexes labels, so a selector on a label Promtail never attaches matches nothing and
the panel stays empty without any error. Building selectors here makes that a generation-time
failure instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agents.dashboards.flux import AGENT_VARIABLES, var_regex

# infra/promtail: level/agent_id/agent_type from the JSON line, container_name/stream from Docker,
# service from the compose service label.
PROMTAIL_LABELS: frozenset[str] = frozenset(
    {"agent_id", "agent_type", "level", "container_name", "stream", "service"}
)

Op = Literal["=", "!=", "=~", "!~"]


@dataclass(frozen=True)
class Matcher:
    label: str
    op: Op
    value: str

    def __post_init__(self) -> None:
        if self.label not in PROMTAIL_LABELS:
            raise ValueError(f"label {self.label!r} is not produced by Promtail")
        if "`" in self.value or '"' in self.value or "\\" in self.value:
            raise ValueError(f"matcher value {self.value!r} needs quoting this module avoids")

    def render(self) -> str:
        if "$" in self.value:
            # Raw string: Grafana's :regex escaping emits `\-`, which a "..." string rejects.
            return f"{self.label}{self.op}`{self.value}`"
        return f'{self.label}{self.op}"{self.value}"'


def eq(label: str, value: str) -> Matcher:
    return Matcher(label, "=", value)


def selector(*matchers: Matcher, agent_filter: bool = True, pipeline: str = "") -> str:
    """`{m1, m2, agent_id=~..., agent_type=~...} pipeline`.

    The template variables' "All" value is `.+`, which Loki accepts alone in a selector
    (unlike `.*`), so a query with only the agent variables is still valid.
    """
    parts = [m.render() for m in matchers]
    if agent_filter:
        parts += [Matcher(v, "=~", var_regex(v)).render() for v in AGENT_VARIABLES]
    if not parts:
        raise ValueError("a LogQL selector needs at least one matcher")
    text = "{" + ", ".join(parts) + "}"
    return f"{text} {pipeline}".rstrip()
