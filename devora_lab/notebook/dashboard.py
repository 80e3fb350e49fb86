"""The overview and reliability dashboards: small queries over the log and one object,
``Dashboard``, that a notebook cell calls into.

``Dashboard(workspace, period=..., model=...)`` fixes the selection and the moment "now"
once, so every table and chart of a notebook describes the same window. Two ways to show it:

- ``render()`` displays the static view (KPIs, linked charts, top spenders, slowest calls)
  as ordinary cell outputs: what papermill, nbval and the HTML reports see;
- ``widget()`` returns the interactive explorer: dropdowns populated from the log, which
  redraw ``render()`` for the picked filters into an ``ipywidgets.Output`` in JupyterLab.

All aggregation happens in DuckDB (``monitoring.metrics``, ``costs.breakdown`` and the SQL
here); charts receive a few hundred rows at most.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Final

import pandas as pd

from devora_lab.costs.breakdown import breakdown
from devora_lab.costs.breakdown import top_spenders as _top_spenders
from devora_lab.errors import ConfigError, WorkspaceError
from devora_lab.monitoring.metrics import Filters, error_breakdown, metrics, selection, trend
from devora_lab.monitoring.windows import Window, parse_duration
from devora_lab.notebook import charts
from devora_lab.notebook.widgets import DashboardWidget, Selection, filter_options

if TYPE_CHECKING:
    import altair as alt

    from devora_lab.events.store import EventStore
    from devora_lab.workspace import Workspace

__all__ = ["KPI_METRICS", "Dashboard", "Kpis", "alert_history", "attempt_errors",
           "bucket_for", "provider_issues", "slowest_calls", "top_spenders"]

#: The KPI row of the overview.
KPI_METRICS: Final = ("requests", "cost_usd", "error_rate", "latency_p95_ms", "cache_hit_rate",
                      "unpriced_calls")
_TREND_METRICS: Final = ("requests", "errors", "cost_usd", "latency_p95_ms", "cache_hits",
                         "cache_lookups")
#: Bucket width by window length: about 50 to 170 points per chart.
_BUCKETS: Final = ((timedelta(hours=6), "5m"), (timedelta(days=1), "15m"),
                   (timedelta(days=3), "1h"), (timedelta(days=15), "3h"),
                   (timedelta(days=62), "12h"))


def bucket_for(seconds: float | None) -> str:
    """The trend bucket for a window of ``seconds`` (None or 0: one day)."""
    if not seconds:
        return "1d"
    span = timedelta(seconds=seconds)
    return next((bucket for limit, bucket in _BUCKETS if span <= limit), "1d")


def slowest_calls(store: EventStore, n: int = 10, window: Window | None = None,
                  filters: Filters | None = None) -> pd.DataFrame:
    """The ``n`` LLM calls with the highest latency in ``window``, slowest first, with what
    explains them: model, provider, tokens, attempts, status."""
    if n < 1:
        raise ConfigError(f"n must be positive, got {n}", fix="ask for at least one row")
    where, params = selection(window or Window(None, None), filters)
    return store.df(f"""
        SELECT ts, coalesce(response_model, request_model) AS model, provider, agent,
               user_id AS "user", latency_ms, ttft_ms, input_tokens, output_tokens,
               attempt, status, error_type, request_id
        FROM events WHERE {where} AND latency_ms IS NOT NULL
        ORDER BY latency_ms DESC, ts DESC, request_id LIMIT ?""", [*params, n])


def top_spenders(store: EventStore, by: str = "user", n: int = 10,
                 window: Window | None = None, filters: Filters | None = None) -> pd.DataFrame:
    """``costs.breakdown.top_spenders`` for a window, honouring filters when there are any
    (through ``breakdown``, which takes them; same columns)."""
    window = window or Window(None, None)
    if not filters:
        return _top_spenders(store, by, n, since=window.since, until=window.until)
    if n < 1:
        raise ConfigError(f"n must be positive, got {n}", fix="ask for at least one row")
    single = {k: v if isinstance(v, str) else ",".join(v) for k, v in filters.items()}
    frame = breakdown(store, (by,), since=window.since, until=window.until, filters=single)
    frame = frame[frame[by].notna()]
    return frame.head(n)[[by, "calls", "cost_usd", "share", "cost_per_success_usd"]] \
        .reset_index(drop=True)


def attempt_errors(store: EventStore, window: Window, filters: Filters | None = None, *,
                   bucket: str = "1h") -> pd.DataFrame:
    """Failed provider requests (``llm.attempt`` events, retried ones included) per bucket,
    provider and error type; only non-zero rows."""
    where, params = selection(window, filters, kind="llm.attempt")
    micros = int(parse_duration(bucket).total_seconds() * 1_000_000)
    return store.df(f"""
        SELECT time_bucket(to_microseconds(?), ts) AS bucket, provider,
               coalesce(error_type, 'unknown') AS error_type, count(*) AS errors
        FROM events WHERE {where} AND status = 'error'
        GROUP BY ALL ORDER BY 1, 2, 3""", [micros, *params])


def provider_issues(store: EventStore, window: Window,
                    filters: Filters | None = None) -> pd.DataFrame:
    """Per provider: calls and failed calls, and what went wrong on the wire: failed
    requests, rate limits (429), server errors (5xx, 529 overloaded), timeouts, requests
    skipped by an open circuit breaker, and the last failure."""
    calls, call_params = selection(window, filters)
    attempts, attempt_params = selection(window, filters, kind="llm.attempt")
    failed = "kind = 'llm.attempt' AND status = 'error'"
    return store.df(f"""
        SELECT coalesce(provider, '(none)') AS provider,
               count(*) FILTER (WHERE kind = 'llm.call') AS calls,
               count(*) FILTER (WHERE kind = 'llm.call' AND status = 'error') AS failed_calls,
               count(*) FILTER (WHERE {failed}) AS failed_requests,
               count(*) FILTER (WHERE {failed} AND http_status = 429) AS rate_limited,
               count(*) FILTER (WHERE {failed} AND http_status >= 500) AS server_errors,
               count(*) FILTER (WHERE {failed} AND error_type ILIKE '%timeout%') AS timeouts,
               count(*) FILTER (WHERE kind = 'llm.attempt' AND status = 'skipped')
                   AS circuit_open_skips,
               max(ts) FILTER (WHERE kind = 'llm.attempt' AND status <> 'ok') AS last_issue
        FROM events WHERE ({calls}) OR ({attempts})
        GROUP BY 1 ORDER BY failed_requests DESC, calls DESC, provider""",
        [*call_params, *attempt_params])


def alert_history(store: EventStore, window: Window) -> pd.DataFrame:
    """Alert events (firing, resolved; their state is ``status``, or ``attributes.state``
    for generated history) and budget thresholds crossed (state ``crossed``), in order."""
    alerts, alert_params = selection(window, None, kind="alert")
    budgets, budget_params = selection(window, None, kind="budget")
    return store.df(f"""
        SELECT ts, kind, name,
               CASE WHEN kind = 'budget' THEN 'crossed'
                    ELSE coalesce(status, attributes->>'state') END AS state,
               severity,
               CASE WHEN kind = 'budget' THEN coalesce(user_id, agent, request_model)
                    ELSE attributes->>'group' END AS "group",
               value, threshold, item_count AS calls,
               coalesce(attributes->>'summary', '') AS summary
        FROM events WHERE ({alerts}) OR ({budgets}) ORDER BY ts, kind, name""",
        [*alert_params, *budget_params])


@dataclass(frozen=True, slots=True)
class Kpis:
    """The KPI row: shown as cards in a notebook or report, as one line in a console."""

    label: str
    values: dict[str, float]

    def cards(self) -> list[tuple[str, str]]:
        """(title, formatted value) for each KPI."""
        v = self.values
        unpriced = int(v.get("unpriced_calls", 0) or 0)
        return [("Requests", f"{int(v['requests']):,}"),
                ("Cost", f"${v['cost_usd']:,.2f}" + (f" (+{unpriced:,} unpriced)"
                                                       if unpriced else "")),
                ("Error rate", _fmt(v["error_rate"], "{:.2%}")),
                ("p95 latency", _fmt(v["latency_p95_ms"], "{:,.0f} ms")),
                ("Cache hit rate", _fmt(v["cache_hit_rate"], "{:.1%}"))]

    def _repr_html_(self) -> str:
        card = ("<div style='display:inline-block;min-width:130px;margin:0 8px 8px 0;"
                "padding:8px 12px;border:1px solid #ccc;border-radius:6px'>"
                "<div style='font-size:85%;opacity:.75'>{}</div>"
                "<div style='font-size:150%;font-weight:600'>{}</div></div>")
        body = "".join(card.format(html.escape(t), html.escape(v)) for t, v in self.cards())
        return f"<div><div style='margin-bottom:4px'>{html.escape(self.label)}</div>{body}</div>"

    def __str__(self) -> str:
        return f"{self.label}: " + ", ".join(f"{t} {v}" for t, v in self.cards())

    __repr__ = __str__


def _fmt(value: float, pattern: str) -> str:
    return "n/a" if value is None or pd.isna(value) else pattern.format(value)


class Dashboard:
    """One selection over one workspace's log, and everything the notebooks show of it."""

    def __init__(self, workspace: str | os.PathLike[str] | Workspace | None = None, *,
                 period: str = "14d", model: str | None = None, agent: str | None = None,
                 user: str | None = None, variant: str | None = None,
                 now: datetime | None = None, store: EventStore | None = None,
                 bucket: str | None = None) -> None:
        self.selection = Selection(period, model, agent, user, variant)
        self.now = now if now is not None else datetime.now(timezone.utc)
        self.store = store if store is not None else _open_store(workspace)
        self.window = self.selection.window(self.now)
        self.filters = self.selection.filters()
        self.bucket = bucket or bucket_for(self.window.seconds or self._data_seconds())

    def _data_seconds(self) -> float:
        where, params = selection(self.window, self.filters)
        first, last = self.store.rows(f"SELECT min(ts), max(ts) FROM events WHERE {where}",
                                      params)[0]
        return 0.0 if first is None else float((last - first).total_seconds())

    def with_selection(self, new: Selection) -> Dashboard:
        """The same log and "now" under another selection (what the explorer draws)."""
        return Dashboard(period=new.period, model=new.model, agent=new.agent, user=new.user,
                         variant=new.variant, now=self.now, store=self.store)

    # -- tables -------------------------------------------------------------------------

    def kpis(self) -> Kpis:
        """Requests, cost, error rate, p95 latency and cache hit rate for the selection."""
        frame = metrics(self.store, KPI_METRICS, window=self.window, filters=self.filters)
        values = {name: float(frame[name].iloc[0]) for name in KPI_METRICS}
        return Kpis(str(self.selection), values)

    def top_spenders(self, by: str = "user", n: int = 10) -> pd.DataFrame:
        return top_spenders(self.store, by, n, self.window, self.filters)

    def slowest_calls(self, n: int = 10) -> pd.DataFrame:
        return slowest_calls(self.store, n, self.window, self.filters)

    def error_table(self, by: Sequence[str] = ("provider",)) -> pd.DataFrame:
        """Failed calls per error type (and ``by``), share and rate (``error_breakdown``)."""
        return error_breakdown(self.store, by=by, window=self.window, filters=self.filters)

    def provider_issues(self) -> pd.DataFrame:
        return provider_issues(self.store, self.window, self.filters)

    def alerts(self) -> pd.DataFrame:
        """Alert and budget events of the period (not filtered: rules watch everything)."""
        return alert_history(self.store, self.window)

    # -- chart data -----------------------------------------------------------------------

    def model_trend(self) -> pd.DataFrame:
        """Per bucket and model: requests, errors, cost, p95 latency, cache hits/lookups."""
        return self._trend(_TREND_METRICS, by=("model",))

    def latency(self) -> pd.DataFrame:
        """Per bucket: overall p50, p95 and p99 latency."""
        return self._trend(("latency_p50_ms", "latency_p95_ms", "latency_p99_ms"))

    def error_trend(self) -> pd.DataFrame:
        """Per bucket and error type: failed calls (every bucket of the window for each
        type seen, so the chart's time axis is the window's)."""
        frame = self._trend(("errors",), by=("error_type",))
        return self._ends(frame[frame["error_type"].notna()])

    def retry_trend(self) -> pd.DataFrame:
        """Per bucket: calls, retries, fallbacks and their rates."""
        return self._trend(("requests", "retries", "fallbacks", "retry_rate", "fallback_rate"))

    def attempt_errors(self) -> pd.DataFrame:
        """Per bucket, provider and error type: failed provider requests (non-zero rows)."""
        return self._ends(attempt_errors(self.store, self.window, self.filters,
                                         bucket=self.bucket))

    def _ends(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Sparse rows carry their bucket's end, so a lone bar is one bucket wide."""
        frame = frame.reset_index(drop=True)
        frame["end"] = pd.to_datetime(frame["bucket"], utc=True) + parse_duration(self.bucket)
        return frame

    def _trend(self, names: Sequence[str], by: Sequence[str] = ()) -> pd.DataFrame:
        return trend(self.store, names, bucket=self.bucket, by=by, window=self.window,
                     filters=self.filters)

    # -- charts and views -----------------------------------------------------------------

    def linked_chart(self) -> alt.VConcatChart:
        return charts.overview_linked(self.model_trend(), self.error_trend())

    def latency_chart(self) -> alt.Chart:
        return charts.latency_chart(self.latency())

    def render(self) -> None:
        """Display the static overview for this selection as ordinary outputs."""
        from IPython.display import display

        from devora_lab.notebook.display import show

        display(self.kpis())  # type: ignore[no-untyped-call]
        show(self.linked_chart())
        show(self.latency_chart())
        for title, frame in (("Top spenders", self.top_spenders()),
                             ("Slowest calls", self.slowest_calls())):
            display(_Titled(title, frame))  # type: ignore[no-untyped-call]

    def widget(self) -> DashboardWidget:
        """The interactive explorer: filter dropdowns drawing ``render()`` on each change."""
        return DashboardWidget(self.selection, filter_options(self.store),
                               lambda picked: self.with_selection(picked).render())

    def __repr__(self) -> str:
        return f"Dashboard({self.selection}, bucket {self.bucket})"


@dataclass(frozen=True, slots=True)
class _Titled:
    """A table under a heading, as HTML (notebooks, reports) and text (consoles)."""

    title: str
    frame: pd.DataFrame

    def _repr_html_(self) -> str:
        return f"<h4>{html.escape(self.title)}</h4>{self.frame.to_html(index=False)}"

    def __repr__(self) -> str:
        return f"{self.title}\n{self.frame.to_string(index=False)}"


def _open_store(workspace: str | os.PathLike[str] | Workspace | None) -> EventStore:
    from devora_lab.workspace import Workspace

    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    if not ws.events_dir.exists():
        raise WorkspaceError(f"no event log in {ws.root}",
                          fix="point `workspace` (or DEVORA_WORKSPACE) at a workspace with "
                              "events, or create one: devora-lab demo")
    return ws.event_log().store()
