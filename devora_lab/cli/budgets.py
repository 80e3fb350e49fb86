"""``devora-lab budgets set | remove | list | status``: spending limits per period.

Budgets live in ``<workspace>/budgets.json``; every client of the workspace (``Lab``,
``Client.from_workspace``) enforces them: a hard budget refuses a call before it is sent
when its worst-case cost could pass the limit. ``[budgets] backend = "redis"`` shares the
totals across processes and machines.
"""

from __future__ import annotations

import argparse
from typing import Any

from devora_lab.cli.context import console, open_workspace

__all__ = ["register"]


def _shares(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(",") if part.strip())


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    budgets = commands.add_parser("budgets", parents=[common], help="spending limits",
                                  description=__doc__)
    sub = budgets.add_subparsers(dest="budgets_command", required=True, metavar="ACTION")

    put = sub.add_parser("set", parents=[common], help="add or replace a budget")
    put.add_argument("name", help="the budget's name (letters, digits, _ . -)")
    put.add_argument("--limit", type=float, required=True, help="limit in US dollars")
    put.add_argument("--period", choices=["daily", "weekly", "monthly"], default="daily")
    put.add_argument("--scope", choices=["global", "user", "model", "agent", "tag"],
                     default="global")
    put.add_argument("--match", default=None,
                     help='the user/model/agent, "key=value" for a tag, "*" for each one')
    put.add_argument("--thresholds", type=_shares, default=(0.8, 1.0),
                     help="alert at these shares of the limit (default 0.8,1.0)")
    put.add_argument("--soft", action="store_true", help="alert only, never refuse calls")
    put.add_argument("--timezone", default="UTC", help="IANA zone for period boundaries")
    put.set_defaults(handler=_set)

    remove = sub.add_parser("remove", parents=[common], help="delete a budget")
    remove.add_argument("name")
    remove.set_defaults(handler=_remove)

    sub.add_parser("list", parents=[common], help="the budgets").set_defaults(handler=_list)
    sub.add_parser("status", parents=[common],
                   help="spend in the current period").set_defaults(handler=_status)


def _set(args: argparse.Namespace) -> int:
    from devora_lab.costs.budgets import Budget
    from devora_lab.costs.wiring import budget_registry

    budget = Budget(name=args.name, limit_usd=args.limit, period=args.period, scope=args.scope,
                    match=args.match, thresholds=args.thresholds, hard=not args.soft,
                    timezone=args.timezone)
    budget_registry(open_workspace(args)).set(budget)
    console().print(f"budget {budget.name}: ${budget.limit_usd:,.2f} {budget.period}, "
                    f"{'hard' if budget.hard else 'soft'}", markup=False)
    return 0


def _remove(args: argparse.Namespace) -> int:
    from devora_lab.costs.wiring import budget_registry

    budget_registry(open_workspace(args)).remove(args.name)
    console().print(f"budget {args.name} removed", markup=False)
    return 0


def _list(args: argparse.Namespace) -> int:
    from devora_lab.costs.wiring import budget_registry

    out = console()
    budgets = budget_registry(open_workspace(args)).list()
    if not budgets:
        out.print("no budgets: add one with `devora-lab budgets set NAME --limit USD`")
    for budget in budgets:
        scope = budget.scope if budget.match is None else f"{budget.scope} {budget.match}"
        out.print(f"{budget.name}: ${budget.limit_usd:,.2f} {budget.period} ({scope}; "
                  f"{'hard' if budget.hard else 'soft'}; alerts at "
                  f"{', '.join(f'{t:.0%}' for t in budget.thresholds)}; {budget.timezone})",
                  markup=False)
    return 0


def _status(args: argparse.Namespace) -> int:
    from devora_lab.costs.wiring import budget_guard

    workspace = open_workspace(args)
    log = workspace.event_log()
    try:
        guard = budget_guard(workspace, log)
        if guard is None:
            console().print("no budgets set")
            return 0
        frame = guard.status()
    finally:
        log.close()
    console().print(frame.to_string(index=False, float_format=lambda v: f"{v:,.4f}"),
                    markup=False, soft_wrap=True)
    return 0
