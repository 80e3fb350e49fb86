"""``devora-lab events stats | tail | compact | export | import``."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from devora_lab.cli.context import console, open_workspace, parse_time

if TYPE_CHECKING:
    from devora_lab.events.summary import LogSummary

__all__ = ["register", "render_summary"]

_TAIL_COLUMNS = (
    "ts",
    "kind",
    "agent",
    "request_model",
    "status",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "latency_ms",
    "event_id",
)


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    events = commands.add_parser(
        "events", parents=[common], help="inspect and manage the event log"
    )
    sub = events.add_subparsers(dest="events_command", required=True, metavar="ACTION")

    stats = sub.add_parser("stats", parents=[common], help="counts, files, spend by model")
    stats.set_defaults(handler=_stats)

    tail = sub.add_parser("tail", parents=[common], help="the latest events")
    tail.add_argument("-n", "--lines", type=int, default=20, help="how many (default 20)")
    tail.add_argument("--kind", action="append", help="only this kind (repeatable)")
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    tail.set_defaults(handler=_tail)

    compact = sub.add_parser(
        "compact", parents=[common], help="merge small files, recover segments of dead writers"
    )
    compact.add_argument(
        "--target-rows",
        type=int,
        default=1_000_000,
        help="rows per merged file (default 1,000,000)",
    )
    compact.set_defaults(handler=_compact)

    export = sub.add_parser("export", parents=[common], help="write events to CSV, JSON or Parquet")
    export.add_argument("--format", required=True, choices=["csv", "json", "parquet"])
    export.add_argument("--out", required=True, help="file to write")
    export.add_argument("--kind", action="append", help="only this kind (repeatable)")
    export.add_argument("--since", help="from this ISO date/time (UTC if no zone)")
    export.add_argument("--until", help="before this ISO date/time (UTC if no zone)")
    export.set_defaults(handler=_export)

    imp = sub.add_parser("import", parents=[common], help="load an external trace as events")
    imp.add_argument("path", help="Azure trace CSV, Mooncake JSONL, or a devora export")
    imp.add_argument(
        "--format", choices=["azure", "mooncake", "devora"], help="default: detected from the file"
    )
    imp.add_argument("--start", help="time of the trace's first request for relative traces")
    imp.add_argument("--model", help="model to record for every row (default: none, unpriced)")
    imp.add_argument("--provider", help="provider to record for every row")
    imp.set_defaults(handler=_import)


def _stats(args: argparse.Namespace) -> int:
    from devora_lab.events.summary import summarize

    workspace = open_workspace(args)
    with workspace.event_log().store() as store:
        render_summary(summarize(store), title=f"Event log at {workspace.events_dir}")
    return 0


def render_summary(summary: LogSummary, *, title: str) -> None:
    """Print a summary as two tables: the log itself, then LLM calls by model."""
    from rich.table import Table

    out = console()
    overview = Table(title=title, show_header=False)
    overview.add_row("events", f"{summary.events:,}")
    for kind, count in summary.by_kind.items():
        overview.add_row(f"  {kind}", f"{count:,}")
    span = (
        f"{summary.first_ts:%Y-%m-%d %H:%M} .. {summary.last_ts:%Y-%m-%d %H:%M} UTC"
        if summary.first_ts and summary.last_ts
        else "-"
    )
    overview.add_row("time span", f"{span} ({summary.days} days)")
    overview.add_row(
        "parquet files", f"{summary.parquet_files:,} ({summary.parquet_bytes / 1e6:.1f} MB)"
    )
    overview.add_row("live spool segments", f"{summary.spool_segments:,}")
    if summary.corrupt_files:
        overview.add_row("damaged files skipped", f"[red]{summary.corrupt_files}[/red]")
    overview.add_row("total cost", f"${summary.total_cost_usd:,.2f}")
    out.print(overview)
    if not summary.models:
        return
    models = Table(title="LLM calls by requested model")
    for header in (
        "model",
        "calls",
        "errors",
        "input tok",
        "output tok",
        "cost",
        "p50 ms",
        "p95 ms",
    ):
        models.add_column(header, justify="left" if header == "model" else "right")
    for row in summary.models:
        if row.cost_usd is None or (row.unpriced_calls and not row.cost_usd):
            cost = f"unpriced ({row.unpriced_calls:,} calls)"
        else:
            cost = _money(row.cost_usd)
            if row.unpriced_calls:
                cost += f" (+{row.unpriced_calls:,} unpriced)"
        models.add_row(
            row.model,
            f"{row.calls:,}",
            f"{row.errors:,}",
            f"{row.input_tokens:,}",
            f"{row.output_tokens:,}",
            cost,
            _ms(row.p50_latency_ms),
            _ms(row.p95_latency_ms),
        )
    out.print(models)


def _money(value: float) -> str:
    # Cents hide small but real spend (a few fallback calls): show more digits below $1.
    return f"${value:,.2f}" if value >= 1 or value == 0 else f"${value:.4f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _tail(args: argparse.Namespace) -> int:
    workspace = open_workspace(args)
    columns = ", ".join(_TAIL_COLUMNS)
    kinds = args.kind or None
    where = "WHERE kind IN (SELECT unnest(?::VARCHAR[]))" if kinds else ""
    params: list[Any] = [kinds] if kinds else []
    out = console()
    with workspace.event_log().store() as store:
        rows = store.rows(
            f"SELECT {columns} FROM events {where} ORDER BY ts DESC, event_id DESC LIMIT ?",
            [*params, args.lines],
        )
        seen = {row[-1] for row in rows}
        for row in reversed(rows):
            out.print(_tail_line(row))
        while args.follow:
            time.sleep(1.0)
            since = max((row[0] for row in rows), default=None)
            extra = "AND" if where else "WHERE"
            clause = f"{where} {extra} ts >= ?" if since is not None else where
            fresh = store.rows(
                f"SELECT {columns} FROM events {clause} ORDER BY ts, event_id",
                [*params, since] if since is not None else params,
            )
            rows = [row for row in fresh if row[-1] not in seen] or rows
            for row in fresh:
                if row[-1] not in seen:
                    seen.add(row[-1])
                    out.print(_tail_line(row))
    return 0


def _tail_line(row: tuple[Any, ...]) -> str:
    ts, kind, agent, model, status, tokens_in, tokens_out, cost, latency, _ = row
    parts = [f"{ts:%Y-%m-%d %H:%M:%S.%f}", f"{kind:<19}", agent or "-", model or "-", status or "-"]
    if tokens_in is not None or tokens_out is not None:
        parts.append(f"{tokens_in or 0}→{tokens_out or 0} tok")
    if cost is not None:
        parts.append(f"${cost:.5f}")
    if latency is not None:
        parts.append(f"{latency:,.0f} ms")
    return "  ".join(parts)


def _compact(args: argparse.Namespace) -> int:
    workspace = open_workspace(args)
    report = workspace.event_log().compact(target_rows=args.target_rows)
    console().print(
        f"compacted {workspace.events_dir}: {report.files_before} → {report.files_after} files "
        f"({report.files_merged} merged, {report.files_deleted} deleted, "
        f"{report.temporary_files_removed} stale temporary files removed); "
        f"{report.recovered_events:,} events recovered from dead writers; "
        f"{report.events:,} events in Parquet"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    from devora_lab.events.traces import export_events

    workspace = open_workspace(args)
    with workspace.event_log().store() as store:
        rows = export_events(
            store,
            args.out,
            format=args.format,
            kinds=args.kind,
            since=parse_time(args.since),
            until=parse_time(args.until),
        )
    console().print(f"exported {rows:,} events to {args.out}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from devora_lab.events.traces import import_trace

    workspace = open_workspace(args)
    log = workspace.event_log()
    try:
        report = import_trace(
            log,
            args.path,
            format=args.format,
            start=parse_time(args.start),
            model=args.model,
            provider=args.provider,
        )
    finally:
        log.close()
    console().print(
        f"imported {report.events_written:,} of {report.rows_read:,} rows from {args.path} "
        f"({report.format} format; {report.duplicates_skipped:,} already present) "
        f"into {workspace.events_dir}"
    )
    return 0
