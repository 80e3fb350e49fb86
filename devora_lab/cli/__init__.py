"""The ``devora-lab`` command.

Every command takes ``--workspace DIR`` (before or after the command name); errors print
what was wrong and how to fix it, and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from devora_lab.errors import DevoraError

__all__ = ["build_parser", "main"]


def _common(*, top: bool) -> argparse.ArgumentParser:
    # Subcommands use SUPPRESS so that an option given before the command is not
    # overwritten by the subcommand's default.
    parser = argparse.ArgumentParser(add_help=False)
    default = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--workspace",
        metavar="DIR",
        default=default,
        help="workspace folder (default: $DEVORA_WORKSPACE or ./devora-workspace)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=default,
        help="settings file (default: $DEVORA_CONFIG or <workspace>/devora.toml)",
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    from devora_lab import __version__
    from devora_lab.cli import (
        budgets,
        cache,
        costs,
        demo,
        events,
        experiments,
        forecast,
        health,
        monitoring,
        prompts,
        rag,
        report,
        serve_metrics,
        sim,
    )

    parser = argparse.ArgumentParser(
        prog="devora-lab",
        parents=[_common(top=True)],
        description="LLM calls cached, retried, priced and logged; a workbench over the log.",
    )
    parser.add_argument("--version", action="version", version=f"devora-lab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common(top=False)
    events.register(commands, common)
    demo.register(commands, common)
    sim.register(commands, common)
    cache.register(commands, common)
    prompts.register(commands, common)
    rag.register(commands, common)
    costs.register(commands, common)
    budgets.register(commands, common)
    forecast.register(commands, common)
    experiments.register(commands, common)
    monitoring.register(commands, common)
    serve_metrics.register(commands, common)
    report.register(commands, common)
    health.register(commands, common)
    config = commands.add_parser("config", parents=[common], help="show the effective settings")
    config.set_defaults(handler=_show_config)
    return parser


def _show_config(args: argparse.Namespace) -> int:
    from devora_lab.cli.context import open_workspace

    workspace = open_workspace(args, create=False)
    print(workspace.settings.model_dump_json(indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except DevoraError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.fix:
            print(f"  fix: {exc.fix}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
