"""``devora-lab forecast``: daily cost (or tokens, calls) for the next days, with 80 % and
95 % intervals, and for a budget the probability it runs out by each day of its period."""

from __future__ import annotations

import argparse
from typing import Any

from devora_lab.cli.context import console, open_workspace

__all__ = ["register"]


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("forecast", parents=[common], help="forecast daily cost",
                                 description=__doc__)
    parser.add_argument("--metric", choices=["cost", "tokens", "calls"], default="cost")
    parser.add_argument("--horizon", type=int, default=14, help="days ahead (default 14)")
    parser.add_argument("--budget", default=None,
                        help="a budget's name: forecast its scope to its period's end")
    parser.add_argument("--history-days", type=int, default=120,
                        help="days of history to fit on (default 120)")
    parser.set_defaults(handler=_forecast)


def _forecast(args: argparse.Namespace) -> int:
    from devora_lab.costs.workbench import Costs

    result = Costs(open_workspace(args)).forecast(args.metric, horizon=args.horizon,
                                                  budget=args.budget,
                                                  history_days=args.history_days)
    out = console()
    fit = result.forecast
    out.print(f"{args.metric} per day: {fit.model} fitted on {fit.history_days} days",
              markup=False)
    for note in fit.notes:
        out.print(f"  note: {note}", markup=False)
    if fit.backtest is not None:
        out.print(fit.backtest.to_string(float_format=lambda v: f"{v:.3f}"), markup=False,
                  soft_wrap=True)
    out.print(fit.frame.to_string(float_format=lambda v: f"{v:,.2f}"), markup=False,
              soft_wrap=True)
    if result.exhaustion is not None and result.budget is not None:
        budget = result.budget
        out.print(f"budget {budget.name}: ${result.spent_so_far or 0:,.2f} of "
                  f"${budget.limit_usd:,.2f} spent this {budget.period} period", markup=False)
        out.print(result.exhaustion.frame.to_string(float_format=lambda v: f"{v:,.3f}"),
                  markup=False, soft_wrap=True)
        median = result.exhaustion.median_date
        out.print("median exhaustion date: " + ("not before the period ends" if median is None
                                                else str(median.date())), markup=False)
    return 0
