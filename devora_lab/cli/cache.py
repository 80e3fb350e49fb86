"""``devora-lab cache analyze``: what a response cache or prompt caching would have saved."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import TYPE_CHECKING, Any

from devora_lab.cli.context import console, open_workspace, parse_time

if TYPE_CHECKING:
    from rich.console import Console

    from devora_lab.cache.analysis import CacheAnalysis, PrefixReuse

__all__ = ["register", "render_analysis"]


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    cache = commands.add_parser(
        "cache", parents=[common], help="what-if analysis of response and prompt caching"
    )
    sub = cache.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    analyze = sub.add_parser(
        "analyze", parents=[common],
        help="replay the log through cache policies; estimate provider prompt caching",
    )
    analyze.add_argument("--since", help="from this ISO date/time (UTC if no zone)")
    analyze.add_argument("--until", help="before this ISO date/time (UTC if no zone)")
    analyze.add_argument(
        "--model", action="extend", nargs="+", metavar="M",
        help="price prompt caching for these models "
        "(default: gpt-4o and claude-3-5-sonnet-20241022)",
    )
    analyze.set_defaults(handler=_analyze)


def _analyze(args: argparse.Namespace) -> int:
    from devora_lab.cache.analysis import DEFAULT_PREFIX_MODELS, analyze_workspace

    workspace = open_workspace(args)
    since, until = parse_time(args.since), parse_time(args.until)
    with workspace.event_log().store() as store:
        analysis = analyze_workspace(store, since=since, until=until,
                                     models=args.model or DEFAULT_PREFIX_MODELS)
    render_analysis(analysis, where=f"{workspace.events_dir}{_span(since, until)}")
    return 0


def _span(since: datetime | None, until: datetime | None) -> str:
    if since is None and until is None:
        return ""
    return f" ({since.isoformat() if since else '…'} .. {until.isoformat() if until else '…'})"


def render_analysis(analysis: CacheAnalysis, *, where: str) -> None:
    """Print the what-if table (or why it cannot run) and the prompt-caching section."""
    out = console()
    if not analysis.requests:
        out.print(f"no llm.call events in {where}: nothing to analyse")
        return
    if analysis.keyed_requests:
        _policy_table(out, analysis, where)
    else:
        out.print(
            f"[yellow]The {analysis.requests:,} llm.call events in {where} have no cache keys "
            "(events imported from traces, or written without the response cache): the "
            "exact-key what-if cannot run.[/yellow]"
            + (" Prefix analysis can, from the traces' block ids:" if analysis.prefix else "")
        )
    if analysis.prefix is not None:
        _prefix_tables(out, analysis.prefix, analysis.prefix_savings)


def _policy_table(out: Console, analysis: CacheAnalysis, where: str) -> None:
    from rich.table import Table

    table = Table(title=f"What-if: response cache policies over {analysis.requests:,} "
                        f"llm.call events in {where}")
    table.add_column("policy", no_wrap=True)
    for header in ("hit rate", "hits", "lookups", "bypassed", "$ saved", "% spend",
                   "time saved", "evicted"):
        table.add_column(header, justify="right")
    unavailable: dict[str, list[str]] = {}
    for result in analysis.results:
        if result.unavailable:
            table.add_row(result.policy.name, "[dim]n/a[/dim]", *["-"] * 7)
            unavailable.setdefault(result.unavailable, []).append(result.policy.name)
            continue
        table.add_row(
            result.policy.name, f"{100 * result.hit_rate:.1f}%", f"{result.hits:,}",
            f"{result.lookups:,}", f"{result.bypassed:,}", f"${result.dollars_saved:,.2f}",
            f"{100 * result.spend_saved_share:.1f}%", _duration(result.latency_saved_ms),
            f"{result.evictions:,}",
        )
    out.print(table)
    for reason, names in unavailable.items():
        out.print(f"n/a ({', '.join(names)}): {reason}")
    if analysis.keyed_requests < analysis.requests:
        out.print(f"{analysis.requests - analysis.keyed_requests:,} events without a cache key "
                  "are counted as bypassed.")


def _prefix_tables(out: Console, reuse: PrefixReuse, savings: dict[str, float | None]) -> None:
    from rich.table import Table

    from devora_lab.llm.pricing import PriceBook

    stats = Table(title=f"Provider prompt caching: {reuse.requests:,} requests in "
                        f"{reuse.block_tokens}-token prefix blocks", show_header=False)
    stats.add_row("blocks reusable as a prefix",
                  f"{reuse.blocks_reused:,} of {reuse.blocks_total:,} ({reuse.block_share:.1%})")
    stats.add_row("blocks seen before anywhere",
                  f"{reuse.blocks_seen_before:,} ({reuse.seen_block_share:.1%})")
    stats.add_row("input tokens reusable",
                  f"{reuse.tokens_reused:,} of {reuse.tokens_total:,} ({reuse.token_share:.1%})")
    stats.add_row("requests with a prefix hit",
                  f"{reuse.requests_with_hit:,} ({reuse.requests_with_hit / reuse.requests:.1%})")
    out.print(stats)
    if not savings:
        return
    book = PriceBook.default()
    models = Table(title="Prompt caching savings on input (vs no caching)")
    for header in ("model", "input $/M", "cached $/M", "write $/M", "$ saved", "% of input"):
        models.add_column(header, justify="left" if header == "model" else "right")
    for model, saved in savings.items():
        price = book.price(model)
        if price is None or saved is None:
            models.add_row(model, "[dim]not in the price book[/dim]")
            continue
        spend = reuse.tokens_total * price.input / 1e6
        models.add_row(model, f"{price.input:g}", _rate(price.cached_input),
                       _rate(price.cache_write), f"${saved:,.2f}",
                       f"{100 * saved / spend:.1f}%" if spend else "-")
    out.print(models)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _duration(ms: float) -> str:
    seconds = ms / 1000
    if seconds >= 3600:
        return f"{seconds / 3600:,.1f} h"
    return f"{seconds / 60:,.1f} min" if seconds >= 60 else f"{seconds:,.1f} s"
