"""``devora-lab serve-metrics``: serve the workspace's event log as Prometheus metrics.

Every agent writing the log is covered by this one exporter; metrics are computed from the
log at scrape time (see ``devora_lab.monitoring.prometheus``). Runs until Ctrl-C.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from devora_lab.cli.context import open_workspace

if TYPE_CHECKING:
    import pandas as pd

    from devora_lab.events import EventLog
    from devora_lab.monitoring.prometheus import BudgetStatus
    from devora_lab.workspace import Workspace

__all__ = ["register"]


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("serve-metrics", parents=[common],
                                 help="serve the event log as Prometheus metrics",
                                 description=__doc__)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=9464,
                        help="port to listen on (default 9464; 0 picks a free one)")
    parser.set_defaults(handler=_serve)


class _LogBudgets:
    """Budget status read afresh at each scrape. A guard over a local ledger in this process
    would know only what it seeded from the log once, not what the agents spent since; a
    new guard seeds from the log each time. (Redis ledgers are shared: one guard will do.)
    """

    def __init__(self, workspace: Workspace, event_log: EventLog) -> None:
        self.workspace = workspace
        self.event_log = event_log

    def status(self) -> pd.DataFrame:
        from devora_lab.costs.budgets import BudgetGuard
        from devora_lab.costs.ledger import LocalLedger
        from devora_lab.costs.wiring import budget_registry, spent_in_log

        guard = BudgetGuard(budget_registry(self.workspace).list(), LocalLedger(),
                            spent_lookup=spent_in_log(self.event_log))
        return guard.status()


def _budgets(workspace: Workspace, event_log: EventLog) -> BudgetStatus | None:
    """The budgets' status source, or None when the workspace has no budgets."""
    from devora_lab.costs.wiring import budget_guard, budget_registry

    if not budget_registry(workspace).list():
        return None
    if workspace.settings.budgets.backend == "redis":
        return budget_guard(workspace, event_log)
    return _LogBudgets(workspace, event_log)


def _serve(args: argparse.Namespace) -> int:
    from devora_lab.monitoring.prometheus import EventLogCollector, serve_metrics

    workspace = open_workspace(args)
    event_log = workspace.event_log()
    collector = EventLogCollector(event_log, budget_guard=_budgets(workspace, event_log))
    server = serve_metrics(collector, host=args.host, port=args.port)
    # Plain print, flushed: a supervisor or a test reads the URL from a pipe.
    print(f"serving metrics of {workspace.events_dir} at {server.url} (Ctrl-C stops)",
          flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.close()
        collector.close()
    return 0
