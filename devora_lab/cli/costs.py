"""``devora-lab costs breakdown | reprice | recommend``: where the money went and how to
spend less, from the workspace's event log."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

from devora_lab.cli.context import console, open_workspace, parse_time

__all__ = ["register"]


def _dimensions(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _period(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", help="ISO date or time (inclusive)")
    parser.add_argument("--until", help="ISO date or time (exclusive)")
    parser.add_argument("--csv", type=Path, help="also write the table to this CSV file")


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    from devora_lab.costs.breakdown import DIMENSIONS

    costs = commands.add_parser("costs", parents=[common], help="cost breakdowns, re-pricing, "
                                "recommendations", description=__doc__)
    sub = costs.add_subparsers(dest="costs_command", required=True, metavar="ACTION")
    names = ", ".join(DIMENSIONS)

    breakdown = sub.add_parser("breakdown", parents=[common],
                               help="cost, tokens and calls by dimensions")
    breakdown.add_argument("--by", type=_dimensions, default=["model"],
                           help=f"comma-separated dimensions (default model): {names}")
    breakdown.add_argument("--top", type=int, default=None, help="show only the top N rows")
    _period(breakdown)
    breakdown.set_defaults(handler=_breakdown)

    reprice = sub.add_parser("reprice", parents=[common],
                             help="history under another price book or as another model")
    reprice.add_argument("--by", type=_dimensions, default=["model"],
                         help=f"comma-separated dimensions (default model): {names}")
    reprice.add_argument("--price-book", type=Path, default=None,
                         help="a price book JSON (ours or LiteLLM's) over the shipped one")
    reprice.add_argument("--as-model", default=None,
                         help="price every call's tokens as if sent to this model")
    _period(reprice)
    reprice.set_defaults(handler=_reprice)

    recommend = sub.add_parser("recommend", parents=[common],
                               help="ways to spend less, with savings and evidence")
    recommend.add_argument("--days", type=float, default=30.0, help="look-back (default 30)")
    recommend.add_argument("--margin", type=float, default=0.02,
                           help="non-inferiority margin on success rate (default 0.02)")
    recommend.set_defaults(handler=_recommend)


def _show(frame: pd.DataFrame, title: str, csv: Path | None) -> int:
    out = console()
    out.print(title)
    if frame.empty:
        out.print("no LLM calls in this period")
        return 0
    out.print(frame.to_string(index=False, float_format=lambda v: f"{v:,.4f}"), markup=False,
              soft_wrap=True)
    if csv is not None:
        frame.to_csv(csv, index=False)
        out.print(f"written to {csv}")
    return 0


def _breakdown(args: argparse.Namespace) -> int:
    from devora_lab.costs.breakdown import breakdown

    workspace = open_workspace(args)
    with workspace.event_log().store() as store:
        frame = breakdown(store, args.by, since=parse_time(args.since),
                          until=parse_time(args.until))
    if args.top:
        frame = frame.head(args.top)
    return _show(frame, f"cost by {', '.join(args.by) or 'total'}", args.csv)


def _reprice(args: argparse.Namespace) -> int:
    from devora_lab.costs.repricing import reprice
    from devora_lab.llm.pricing import PriceBook

    workspace = open_workspace(args)
    book = workspace.price_book()
    if args.price_book is not None:
        book = book.with_overrides(PriceBook.load(args.price_book))
    with workspace.event_log().store() as store:
        frame = reprice(store, book, by=args.by, as_model=args.as_model,
                        since=parse_time(args.since), until=parse_time(args.until))
    what = f"as {args.as_model}" if args.as_model else f"with price book {book.version}"
    return _show(frame, f"recorded cost vs re-priced {what}", args.csv)


def _recommend(args: argparse.Namespace) -> int:
    from devora_lab.costs.recommend import recommend

    workspace = open_workspace(args)
    with workspace.event_log().store() as store:
        found = recommend(store, workspace.price_book(), days=args.days, margin=args.margin)
    out = console()
    if not found:
        out.print("no recommendations: nothing in the log supports one")
        return 0
    for number, item in enumerate(found, start=1):
        saving = (f"~${item.monthly_saving_usd:,.2f}/month" if item.monthly_saving_usd > 0
                  else "no saving claimed")
        out.print(f"{number}. [{item.kind}] {item.title} — {saving}", markup=False)
        out.print(f"   {item.rationale}", markup=False)
    return 0
