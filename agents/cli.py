"""`agents ...`: thin subcommands that build settings once, then call into the package.

Every command exits 2 with one line naming the variable when a setting is bad, and never prints
a secret. Heavy imports happen inside the handlers so `agents --help` stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from agents.core.settings import (
    SETTINGS_BY_TYPE,
    BrokerSettings,
    ConsumerSettings,
    FleetSettings,
    MonitorSettings,
    PublisherSettings,
    SettingsError,
    load_settings,
)

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
AGENT_COMMANDS = ("publisher", "consumer", "monitor")


def _config(args: argparse.Namespace) -> int:
    settings = load_settings(SETTINGS_BY_TYPE[args.agent_type])
    print(json.dumps(settings.masked(), indent=2, sort_keys=True))
    return EXIT_OK


def _setup_rabbitmq(args: argparse.Namespace) -> int:
    from agents.core.broker import BrokerError, setup_topology

    settings = load_settings(BrokerSettings)
    try:
        declared = setup_topology(settings, attempts=args.attempts)
    except BrokerError as exc:
        print(f"agents setup rabbitmq: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(json.dumps({"rabbitmq": "ready", **declared}))
    return EXIT_OK


def _publisher(args: argparse.Namespace) -> int:
    from agents.publisher import main as run

    return run(load_settings(PublisherSettings))


def _consumer(args: argparse.Namespace) -> int:
    from agents.consumer import main as run

    return run(load_settings(ConsumerSettings))


def _monitor(args: argparse.Namespace) -> int:
    from agents.monitor import main as run

    return run(load_settings(MonitorSettings))


def _run_fleet(args: argparse.Namespace) -> int:
    from agents.fleet import main as run

    return run(load_settings(FleetSettings), args)


def _cost(args: argparse.Namespace) -> int:
    from agents.core.ai.costcli import main as run

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
    config.add_argument(
        "agent_type", choices=sorted(SETTINGS_BY_TYPE), nargs="?", default="publisher"
    )

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
    except SettingsError as exc:
        print(f"agents: invalid setting {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    return result


def entry() -> None:
    """The process entry point (`agents`, `python -m agents`): an agent process catches stop
    signals from its first moment, so a Ctrl-C while it is still importing is an ordinary stop,
    not a traceback (see agents.early_signals)."""
    if sys.argv[1:2] and sys.argv[1] in AGENT_COMMANDS:
        from agents import early_signals

        early_signals.latch()
    raise SystemExit(main())
