"""``devora-lab demo``: weeks of history, a live team of agents, alerts and reports.

See ``devora_lab.demo.run_demo`` for what each phase does.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devora_lab.cli.context import console, open_workspace

__all__ = ["register"]


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    demo = commands.add_parser(
        "demo", parents=[common],
        help="build a demo workspace: history, live agents on the simulator, reports")
    demo.add_argument("--days", type=_at_least(1), default=14,
                      help="days of history (default 14)")
    demo.add_argument("--calls-per-day", type=_at_least(0), default=3000,
                      help="average LLM calls per day (default 3000)")
    demo.add_argument("--live-tasks", type=_at_least(0), default=400,
                      help="agent tasks sent live through the client (default 400)")
    demo.add_argument("--seed", type=_at_least(0), default=7, help="random seed (default 7)")
    demo.add_argument("--no-reports", action="store_true",
                      help="skip running the notebooks into HTML reports")
    demo.set_defaults(handler=_demo)


def _at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
        return value

    return parse


def _demo(args: argparse.Namespace) -> int:
    from devora_lab.demo import repo_root, run_demo

    workspace = open_workspace(args, create=False)
    out = console()
    out.print(f"[bold]devora-lab demo[/bold]: {args.days} days of a three-agent team, then "
              f"{args.live_tasks} live tasks, into {workspace.root}")
    result = run_demo(workspace, days=args.days, calls_per_day=args.calls_per_day,
                      live_tasks=args.live_tasks, seed=args.seed,
                      reports=None if args.no_reports else ("all",),
                      progress=True)
    for line in result.lines():
        out.print(line, markup=False, highlight=False)
    for report in result.reports:
        out.print(f"report {report.report.name}: {report.html.resolve().as_uri()}",
                  markup=False, highlight=False)
    root = repo_root()
    here = root is not None and Path.cwd().resolve() == root
    jupyter = ".venv/bin/jupyter" if here else str(Path(sys.executable).parent / "jupyter")
    notebooks = "notebooks/" if here or root is None else str(root / "notebooks")
    out.print("\nExplore it interactively:\n"
              f"  DEVORA_WORKSPACE={result.workspace} {jupyter} lab {notebooks}\n"
              f"or: devora-lab --workspace {result.workspace} events tail",
              markup=False, highlight=False)
    return 0
