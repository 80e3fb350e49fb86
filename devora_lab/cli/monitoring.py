"""``devora-lab metrics`` (a metric table, or a trend, shown or exported), ``devora-lab query``
(raw SQL over the events, shown or exported) and ``devora-lab alerts check | watch | list |
history``."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from devora_lab.cli.context import console, open_workspace
from devora_lab.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from devora_lab.monitoring.alerting import CheckResult

__all__ = ["register"]


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    _register_metrics(commands, common)
    _register_query(commands, common)
    _register_alerts(commands, common)


def _register_metrics(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "metrics", parents=[common], help="latency, errors, throughput, cache, cost by anything",
        description="Operational metrics of the LLM calls; --out writes them to a file.")
    parser.add_argument("--metric", "-m", action="append", metavar="NAME",
                        help="a metric (repeatable; default: the overview set); see --list")
    parser.add_argument("--by", default="", help="dimensions, comma-separated: model,agent")
    parser.add_argument("--window", default="24h",
                        help="15m, 24h, 7d, today, this_week, last_month, all (default 24h)")
    parser.add_argument("--filter", "-f", action="append", default=[], metavar="DIM=VALUE",
                        help="only calls with this value (repeatable)")
    parser.add_argument("--trend", metavar="BUCKET", help="one row per time bucket: 5m, 1h, 1d")
    parser.add_argument("--tz", default="UTC", help="time zone of calendar windows")
    parser.add_argument("--out", metavar="FILE", help="write to .csv, .json, .jsonl, .parquet")
    parser.add_argument("--list", action="store_true", help="list the metrics and exit")
    parser.set_defaults(handler=_metrics)


def _register_query(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "query", parents=[common], help="run SQL over the events view; show or export it",
        description="SQL over the `events` view (DuckDB); `?` placeholders take --param values.")
    parser.add_argument("sql", help="e.g. \"SELECT * FROM events WHERE kind = ?\"")
    parser.add_argument("--param", "-p", action="append", default=[],
                        help="a value for the next ? placeholder (repeatable)")
    parser.add_argument("--out", metavar="FILE", help="write to .csv, .json, .jsonl, .parquet")
    parser.add_argument("--limit", type=int, default=50, help="rows shown (default 50)")
    parser.set_defaults(handler=_query)


def _register_alerts(commands: Any, common: argparse.ArgumentParser) -> None:
    alerts = commands.add_parser("alerts", parents=[common], help="alert rules: check, watch")
    sub = alerts.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    for name, text in (("check", "evaluate the rules once (for cron)"),
                       ("watch", "evaluate the rules every --interval seconds until Ctrl-C")):
        parser = sub.add_parser(name, parents=[common], help=text)
        parser.add_argument("--rules", metavar="FILE",
                            help="rules file (default: <workspace>/alerts.toml)")
        if name == "watch":
            parser.add_argument("--interval", type=float, default=60.0,
                                help="seconds between checks (default 60)")
        else:
            parser.add_argument("--fail-on-firing", action="store_true",
                                help="exit with status 1 while any alert fires")
        parser.set_defaults(handler=_check if name == "check" else _watch)
    listing = sub.add_parser("list", parents=[common], help="the rules and what fires now")
    listing.add_argument("--rules", metavar="FILE")
    listing.set_defaults(handler=_list)
    history = sub.add_parser("history", parents=[common], help="past firings and resolutions")
    history.add_argument("--window", default="7d", help="how far back (default 7d)")
    history.set_defaults(handler=_history)


def _filters(pairs: list[str]) -> dict[str, str]:
    filters: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ConfigError(f"--filter {pair!r} is not DIM=VALUE",
                              fix="write e.g. --filter model=gpt-4o")
        filters[name.strip()] = value
    return filters


def _show(frame: pd.DataFrame, limit: int | None = None) -> None:
    shown = frame if limit is None else frame.head(limit)
    console().print(shown.to_string(index=False, float_format=lambda v: f"{v:,.4g}"),
                    markup=False, soft_wrap=True)
    if limit is not None and len(frame) > limit:
        console().print(f"... {len(frame) - limit:,} more rows (use --out to get them all)")


def _metrics(args: argparse.Namespace) -> int:
    from devora_lab.monitoring.metrics import METRICS, OVERVIEW_METRICS, metrics, trend

    if args.list:
        for metric in METRICS.values():
            console().print(f"{metric.name:<22} {metric.unit:<9} {metric.description}",
                            markup=False)
        return 0
    names = args.metric or list(OVERVIEW_METRICS)
    by = [part.strip() for part in args.by.split(",") if part.strip()]
    filters = _filters(args.filter)
    with open_workspace(args).event_log().store() as store:
        if args.trend:
            frame = trend(store, names, bucket=args.trend, by=by, window=args.window,
                          filters=filters)
        else:
            frame = metrics(store, names, by=by, window=args.window, filters=filters, tz=args.tz)
    return _emit(frame, args.out)


def _emit(frame: pd.DataFrame, out: str | None, limit: int | None = None) -> int:
    if out:
        from devora_lab.monitoring.export import export_frame

        path = export_frame(frame, out)
        console().print(f"wrote {len(frame):,} rows to {path}", markup=False)
    else:
        _show(frame, limit)
    return 0


def _query(args: argparse.Namespace) -> int:
    params: list[Any] = list(args.param)
    with open_workspace(args).event_log().store() as store:
        if args.out:
            from devora_lab.monitoring.export import export_query

            path = export_query(store, args.sql, args.out, params=params)
            console().print(f"wrote {path}", markup=False)
            return 0
        frame = store.df(args.sql, params)
    return _emit(frame, None, args.limit)


def _manager(args: argparse.Namespace) -> Any:
    from devora_lab.monitoring.wiring import alert_manager

    workspace = open_workspace(args)
    return alert_manager(workspace, workspace.event_log(), getattr(args, "rules", None))


def _report(result: CheckResult) -> None:
    out = console()
    for ev in result.evaluations:
        mark = {True: "FIRING", False: "ok", None: "no verdict"}[ev.firing]
        group = f" [{ev.group}]" if ev.group else ""
        out.print(f"{mark:<10} {ev.rule.name}{group}: {ev.summary()} ({ev.requests:,} calls)",
                  markup=False)
    out.print(f"{len(result.fired)} notified, {len(result.resolved)} resolved, "
              f"{len(result.suppressed)} held back by cooldown", markup=False)


def _check(args: argparse.Namespace) -> int:
    manager = _manager(args)
    try:
        if not manager.config.rules:
            console().print("no alert rules: write them in <workspace>/alerts.toml "
                            "(see the README's Monitoring section)", markup=False)
            return 0
        result = manager.check()
        _report(result)
        if not manager.dispatcher.flush(timeout=30):
            console().print("some notifications were still being sent after 30 s",
                            markup=False)
    finally:
        manager.dispatcher.close()
        manager.event_log.close()
    return 1 if args.fail_on_firing and result.firing else 0


def _watch(args: argparse.Namespace) -> int:
    if args.interval <= 0:
        raise ConfigError(f"--interval must be positive, got {args.interval}",
                          fix="pass seconds between checks, e.g. --interval 60")
    manager = _manager(args)
    console().print(f"checking {len(manager.config.rules)} rules every {args.interval:g} s; "
                    "Ctrl-C stops", markup=False)
    try:
        while True:
            _report(manager.check())
            time.sleep(args.interval)
    finally:
        manager.dispatcher.flush(timeout=10)
        manager.dispatcher.close()
        manager.event_log.close()


def _list(args: argparse.Namespace) -> int:
    manager = _manager(args)
    state = manager.state()
    out = console()
    for rule in manager.config.rules:
        what = (f"{rule.op} {rule.threshold:g}" if rule.type == "threshold"
                else f"outside {rule.interval:.0%} of the last {rule.history}")
        firing = [key.partition("|")[2] or "-" for key, entry in state.items()
                  if entry.get("rule") == rule.name and entry.get("status") == "firing"]
        out.print(f"{rule.name}: {rule.metric} over {rule.window} {what} [{rule.severity}]"
                  + (f"  FIRING: {', '.join(firing)}" if firing else ""), markup=False)
    for sink in manager.config.sinks:
        out.print(f"sink: {sink.type}", markup=False)
    manager.event_log.close()
    return 0


def _history(args: argparse.Namespace) -> int:
    from devora_lab.monitoring.windows import parse_window

    window = parse_window(args.window)
    with open_workspace(args).event_log().store() as store:
        frame = store.df(
            "SELECT ts, name AS rule, status, severity, attributes->>'group' AS \"group\", "
            "value, threshold, attributes->>'summary' AS summary FROM events "
            "WHERE kind = 'alert' AND (CAST(? AS TIMESTAMPTZ) IS NULL OR ts >= ?) ORDER BY ts",
            [window.since, window.since])
    return _emit(frame, None)
