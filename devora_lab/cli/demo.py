"""``devora-lab demo``: a realistic workload into a fresh workspace, then a summary.

The workload (three agents, ~25 users, two weeks, faults, cache, an experiment) is shaped
after public production traces; see ``devora_lab.sim.workload``.
"""

from __future__ import annotations

import argparse
import shutil
from typing import Any

from devora_lab.cli.context import console, open_workspace
from devora_lab.errors import WorkspaceError
from devora_lab.workspace import Workspace

__all__ = ["register"]

_MARKER = ".devora-demo"


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    demo = commands.add_parser(
        "demo", parents=[common], help="generate a realistic workload into a fresh workspace"
    )
    demo.add_argument("--days", type=int, default=14, help="days of history (default 14)")
    demo.add_argument(
        "--calls-per-day", type=int, default=3000, help="average LLM calls per day (default 3000)"
    )
    demo.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    demo.set_defaults(handler=_demo)


def _reset(workspace: Workspace) -> None:
    """Empty the event log if it holds only an earlier demo's events; refuse otherwise."""
    events = workspace.events_dir
    if not events.exists() or not any(events.iterdir()):
        return
    if not (workspace.root / _MARKER).exists():
        raise WorkspaceError(
            f"{workspace.root} already holds events that the demo did not write",
            fix="run the demo in another folder: devora-lab demo --workspace /tmp/devora-demo",
        )
    shutil.rmtree(events)


def _demo(args: argparse.Namespace) -> int:
    from devora_lab.cli.events import render_summary
    from devora_lab.events.summary import summarize
    from devora_lab.sim.workload import generate_workload

    workspace = open_workspace(args, create=False)
    _reset(workspace)
    workspace.ensure()
    (workspace.root / _MARKER).write_text("written by devora-lab demo\n")
    out = console()
    out.print(
        f"[bold]devora-lab demo[/bold]: {args.days} days of a three-agent team "
        f"into {workspace.root}"
    )
    log = workspace.event_log()
    generate_workload(
        log, days=args.days, calls_per_day=args.calls_per_day, seed=args.seed, progress=True
    )
    log.close()
    report = log.compact()
    with log.store() as store:
        render_summary(summarize(store), title=f"Event log at {workspace.events_dir}")
    out.print(
        f"\n{report.files_after} Parquet files, partitioned by day, readable by any Parquet "
        "reader, e.g.:\n"
        f"  python -c \"import pyarrow.dataset as ds; print(ds.dataset('{workspace.events_dir}', "
        "format='parquet', partitioning='hive').count_rows())\"\n"
        f"Next: devora-lab --workspace {workspace.root} events tail"
    )
    return 0
