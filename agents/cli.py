"""`agents ...`: thin subcommands that build settings once, then call into the package.

Every command exits 2 with one line naming the variable when a setting is bad, and never prints
a secret. Heavy imports happen inside the handlers so `agents --help` stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from agents.vocab import AGENT_TYPES

if TYPE_CHECKING:
    from agents.core.settings import CommonSettings

# Settings (pydantic) are imported inside the handlers: `agents run` prints its first line
# before anything heavy is loaded, and `agents --help` stays instant.


def load(kind: str) -> CommonSettings:
    from agents.core.settings import (
        SETTINGS_BY_TYPE,
        BrokerSettings,
        FleetSettings,
        load_settings,
    )

    cls: type[CommonSettings]
    if kind == "broker":
        cls = BrokerSettings
    elif kind == "fleet":
        cls = FleetSettings
    else:
        cls = SETTINGS_BY_TYPE[kind]
    return load_settings(cls)


EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


def _config(args: argparse.Namespace) -> int:
    settings = load(args.agent_type)
    print(json.dumps(settings.masked(), indent=2, sort_keys=True))
    return EXIT_OK


def _setup_rabbitmq(args: argparse.Namespace) -> int:
    from agents.core.broker import setup_topology
    from agents.ports import BrokerError

    settings = load("broker")
    try:
        declared = setup_topology(settings, attempts=args.attempts)
    except BrokerError as exc:
        print(f"agents setup rabbitmq: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(json.dumps({"rabbitmq": "ready", **declared}))
    return EXIT_OK


def _publisher(args: argparse.Namespace) -> int:
    from agents.publisher import main as run

    return run(load("publisher"))  # type: ignore[arg-type]


def _consumer(args: argparse.Namespace) -> int:
    from agents.consumer import main as run

    return run(load("consumer"))  # type: ignore[arg-type]


def _monitor(args: argparse.Namespace) -> int:
    from agents.monitor import main as run

    return run(load("monitor"))  # type: ignore[arg-type]


def _run_fleet(args: argparse.Namespace) -> int:
    # A person at a terminal gets the readable view; a pipe (or --json) the JSON contract.
    args.human = sys.stdout.isatty() and not args.json
    if args.human:
        # First, before the heavy imports below, so a person sees at once that it started.
        print(f"agents run: starting 5 agents, scenario {args.scenario}...", flush=True)
    from agents.fleet import main as run

    return run(load("fleet"), args)  # type: ignore[arg-type]


def _report(args: argparse.Namespace) -> int:
    try:
        from agents.report import main as run
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("matplotlib"):
            print(
                "agents report: needs matplotlib; run it as "
                "`uv run --extra report agents report` (or pip install matplotlib)",
                file=sys.stderr,
            )
            return EXIT_FAILURE
        raise
    return run(load("broker"), args)


def _cost(args: argparse.Namespace) -> int:
    from agents.cost_cli import main as run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agents",
        description="AI agents on RabbitMQ that ask Claude at runtime, under hard cost controls. "
        "Settings come from environment variables (see README).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_: str) -> Any:
        command = sub.add_parser(name, help=help_, description=help_)
        command.set_defaults(handler=handler)
        return command

    config = add("config", _config, "print the resolved settings of an agent, secrets masked")
    config.add_argument("agent_type", choices=sorted(AGENT_TYPES), nargs="?", default="publisher")

    setup = sub.add_parser("setup", help="create infrastructure (idempotent)")
    setup_sub = setup.add_subparsers(dest="target", required=True, metavar="TARGET")
    rabbit = setup_sub.add_parser("rabbitmq", help="declare exchanges, queues and bindings")
    rabbit.add_argument(
        "--attempts", type=int, default=30, help="connection attempts before giving up (default 30)"
    )
    rabbit.set_defaults(handler=_setup_rabbitmq)

    add("publisher", _publisher, "run a publisher agent (PUBLISHER_ID)")
    add("consumer", _consumer, "run a consumer agent (CONSUMER_ID)")
    add("monitor", _monitor, "run the monitor agent (AGENT_ID)")
    fleet = add(
        "run",
        _run_fleet,
        "run the whole fleet (2 publishers, 2 consumers, 1 monitor) as child processes",
    )
    fleet.add_argument("--log-file", default=None, help="write the merged JSON logs here")
    fleet.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop after this many seconds (default: run until Ctrl-C)",
    )
    fleet.add_argument(
        "--scenario",
        choices=("steady", "surge", "incident"),
        default="steady",
        help="steady (default): normal settings; surge: a backlog the AI manages; "
        "incident: floods, malformed messages and a stalled consumer",
    )
    fleet.add_argument(
        "--json",
        action="store_true",
        help="print the agents' JSON log lines even on a terminal (always when piped)",
    )
    report = add(
        "report",
        _report,
        "draw a run from the metrics file (and the JSON log file): one PNG and one HTML page",
    )
    report.add_argument("--metrics-file", default=None, help="default: METRICS_FILE")
    report.add_argument("--log-file", default=None, help="the JSON log of the run (optional)")
    report.add_argument(
        "--since", default=None, help="only points at or after this UTC time (ISO 8601)"
    )
    report.add_argument("--out", default="var/report", help="output path without extension")

    cost = sub.add_parser("cost", help="cost plan (worst case) and report (actual spend)")
    cost_sub = cost.add_subparsers(dest="cost_command", required=True, metavar="WHAT")
    plan = cost_sub.add_parser("plan", help="worst-case spend per agent and fleet")
    plan.add_argument("--json", action="store_true", help="print JSON instead of a table")
    plan.set_defaults(handler=_cost)
    report = cost_sub.add_parser("report", help="tokens, calls and cost from the metrics")
    report.add_argument("--json", action="store_true", help="print JSON instead of a table")
    report.set_defaults(handler=_cost)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from agents.core.settings import SettingsError  # not before: see the note at the top

        if not isinstance(exc, SettingsError):
            raise
        print(f"agents: invalid setting {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return result


def entry() -> None:
    """The process entry point (`agents`, `python -m agents`): an agent process catches stop
    signals from its first moment, so a Ctrl-C while it is still importing is an ordinary stop,
    not a traceback (see agents.early_signals)."""
    if sys.argv[1:2] and sys.argv[1] in AGENT_TYPES:
        from agents import early_signals

        early_signals.latch()
    raise SystemExit(main())
