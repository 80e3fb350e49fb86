"""``devora-lab health``: check every component of the workspace and say what is wrong and
how to fix it. Exit status: 0 all ok, 1 warnings only, 2 any failure (Nagios convention),
so that a script or a container health check can act on it."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any, Final

from devora_lab.cli.context import console, open_workspace

if TYPE_CHECKING:
    from devora_lab.monitoring.health import HealthReport

__all__ = ["register"]

_STYLES: Final = {"ok": "green", "warn": "yellow", "fail": "bold red", "skipped": "dim"}


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("health", parents=[common], help="check every component",
                                 description=__doc__)
    parser.add_argument("--probe", action="store_true",
                        help="also send one GET to each provider's models endpoint")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--timeout", type=float, default=2.0,
                        help="seconds per network check (default 2)")
    parser.set_defaults(handler=_health)


def _health(args: argparse.Namespace) -> int:
    from devora_lab.monitoring.health import check_health

    # Not created: a health check reports a missing or unwritable folder instead.
    workspace = open_workspace(args, create=False)
    report = check_health(workspace, probe_providers=args.probe, timeout=args.timeout)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print(report)
    return report.exit_code


def _print(report: HealthReport) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(show_lines=False)
    for column in ("status", "check", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for result in report.results:
        # Text, not markup: details hold "[cache]" and the like, which rich would eat.
        table.add_row(Text(result.status, style=_STYLES[result.status]), Text(result.name),
                      Text(result.detail), Text(result.fix or ""))
    out = console()
    out.print(table)
    counts = {s: sum(r.status == s for r in report.results) for s in _STYLES}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    out.print(Text(f"{report.status}: {summary} (exit {report.exit_code})",
                   style=_STYLES[report.status]))
