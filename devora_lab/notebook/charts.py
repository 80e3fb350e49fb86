"""Altair charts of the event log's metrics: pure functions from a small DataFrame to a chart.

Every builder takes data that DuckDB has already aggregated (``monitoring.metrics.trend``
and the queries in ``notebook.dashboard``: one row per time bucket and group, a few hundred
rows), never raw events, so a chart of two weeks of traffic stays a few kilobytes of spec.

Time is drawn in UTC whatever the viewer's time zone: buckets are passed to Vega as naive
UTC timestamps, which Vega shows as they are. Bars over time span their whole bucket
(``x``..``x2``), so they neither overlap nor leave gaps at any bucket width.

``overview_linked`` ties the overview charts together: a legend (or bar) click on a model
highlights it in every chart, and an interval brush dragged on the requests chart filters
the other charts to that time range. Display charts with ``notebook.display.show``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, cast

import pandas as pd

if TYPE_CHECKING:
    import altair as alt

    from devora_lab.monitoring.windows import Window

__all__ = ["SEVERITY_COLORS", "WIDTH", "Link", "alert_spans", "alert_timeline", "cache_chart",
           "cost_by_model_chart", "cost_chart", "errors_chart", "latency_chart",
           "model_latency_chart", "overview_linked", "provider_errors_chart",
           "requests_chart", "retries_chart"]

WIDTH: Final = 560
TIME_TITLE: Final = "time (UTC)"
SEVERITY_COLORS: Final = {"critical": "#d62728", "warning": "#ff7f0e", "info": "#1f77b4"}
_QUANTILES: Final = {"latency_p50_ms": "p50", "latency_p95_ms": "p95", "latency_p99_ms": "p99"}


@dataclass(frozen=True)
class Link:
    """The selections shared by linked charts: a model highlight and a time brush."""

    models: Any  # alt.Parameter: point selection on "model", bound to the legend
    brush: Any  # alt.Parameter: interval selection on the time axis

    @classmethod
    def create(cls) -> Link:
        import altair as alt

        return cls(alt.selection_point(fields=["model"], bind="legend", name="model_pick"),
                   alt.selection_interval(encodings=["x"], name="time_brush"))


# -- data preparation ----------------------------------------------------------------------

def _naive_utc(values: pd.Series[Any]) -> pd.Series[Any]:
    stamps = pd.to_datetime(values, utc=True)
    return stamps.dt.tz_convert("UTC").dt.tz_localize(None)


def _timed(frame: pd.DataFrame, column: str = "bucket") -> pd.DataFrame:
    """A copy with ``column`` as naive UTC and ``end`` one bucket later (for bars): the
    frame's own ``end`` column if it has one (sparse rows), else the smallest step."""
    out = frame.copy()
    if out.empty:
        out[column] = pd.Series(dtype="datetime64[ns]")
        out["end"] = pd.Series(dtype="datetime64[ns]")
        return out
    out[column] = _naive_utc(out[column])
    if "end" in out:
        out["end"] = _naive_utc(out["end"])
        return out
    steps = out[column].drop_duplicates().sort_values().diff().dropna()
    step = steps.min() if not steps.empty else pd.Timedelta(hours=1)
    out["end"] = out[column] + step
    return out


def _model_scale(frame: pd.DataFrame) -> Any:
    import altair as alt

    models = sorted(str(m) for m in frame["model"].dropna().unique()) \
        if "model" in frame else []
    return alt.Scale(domain=models, scheme="tableau10") if models else alt.Scale(
        scheme="tableau10")


def _time_x(field: str = "bucket") -> Any:
    import altair as alt

    return alt.X(f"{field}:T", title=TIME_TITLE, axis=alt.Axis(format="%b %d %H:%M",
                                                               labelAngle=0))


def _time_tip(field: str = "bucket", title: str = "from (UTC)") -> Any:
    import altair as alt

    return alt.Tooltip(f"{field}:T", title=title, format="%Y-%m-%d %H:%M")


def _stacked(chart: Any, value: str, group: str, title: str, axis: Any = None,
             within: tuple[str, ...] = ()) -> Any:
    """Bars spanning their bucket (x..x2) stacked by ``group``: stacked in Vega, since
    Vega-Lite does not stack bars that have an ``x2``."""
    import altair as alt

    return chart.transform_stack(
        stack=value, groupby=["bucket", *within], as_=["_y0", "_y1"],
        sort=[alt.SortField(group)],
    ).encode(x=_time_x(), x2="end:T",
             y=alt.Y("_y0:Q", title=title, axis=axis if axis is not None else alt.Undefined),
             y2="_y1:Q")


def _linked(chart: Any, link: Link | None, *, highlight: bool = True,
            filter_brush: bool = True) -> Any:
    import altair as alt

    if link is None:
        return chart
    if filter_brush:
        chart = chart.transform_filter(link.brush)
    if highlight:
        chart = chart.encode(opacity=alt.condition(link.models, alt.value(0.95),
                                                   alt.value(0.15)))
    return chart


# -- overview charts -------------------------------------------------------------------------

def requests_chart(trend: pd.DataFrame, *, link: Link | None = None) -> alt.Chart:
    """Calls per bucket, stacked by model. In a linked view it carries the brush and the
    legend-bound model selection, so it is the chart to drag and click on."""
    import altair as alt

    chart = _stacked(alt.Chart(_timed(trend), title="Requests").mark_bar(), "requests",
                     "model", "calls").encode(
        color=alt.Color("model:N", scale=_model_scale(trend), title="model"),
        tooltip=[_time_tip(), "model:N", alt.Tooltip("requests:Q", format=",")],
    ).properties(width=WIDTH, height=170)
    if link is None:
        return cast("alt.Chart", chart)
    return cast("alt.Chart", _linked(chart, link, filter_brush=False).add_params(
        link.brush, link.models))


def cost_chart(trend: pd.DataFrame, *, link: Link | None = None) -> alt.Chart:
    """Recorded cost per bucket, stacked by model (unpriced calls add nothing: see the
    unpriced_calls KPI)."""
    import altair as alt

    chart = _stacked(alt.Chart(_timed(trend), title="Cost").mark_bar(), "cost_usd", "model",
                     "USD", alt.Axis(format="$,.2f")).encode(
        color=alt.Color("model:N", scale=_model_scale(trend), legend=None if link else
                        alt.Legend(title="model")),
        tooltip=[_time_tip(), "model:N", alt.Tooltip("cost_usd:Q", title="cost",
                                                     format="$,.4f")],
    ).properties(width=WIDTH, height=150)
    return cast("alt.Chart", _linked(chart, link))


def cost_by_model_chart(trend: pd.DataFrame, *, link: Link | None = None) -> alt.Chart:
    """Total cost per model over the brushed time range (all of it when nothing is
    brushed): aggregated in Vega from the per-bucket rows, so it follows the brush."""
    import altair as alt

    chart = alt.Chart(_timed(trend), title="Cost by model").mark_bar().encode(
        y=alt.Y("model:N", sort="-x", title=None),
        x=alt.X("sum(cost_usd):Q", title="USD", axis=alt.Axis(format="$,.2~f")),
        color=alt.Color("model:N", scale=_model_scale(trend), title="model"),
        tooltip=["model:N", alt.Tooltip("sum(cost_usd):Q", title="cost", format="$,.2f"),
                 alt.Tooltip("sum(requests):Q", title="calls", format=",")],
    ).properties(width=160, height=170)
    return cast("alt.Chart", _linked(chart, link))


def model_latency_chart(trend: pd.DataFrame, *, link: Link | None = None) -> alt.Chart:
    """p95 latency per bucket, one line per model (quantiles do not add up across models,
    so the overall quantiles are ``latency_chart``'s)."""
    import altair as alt

    chart = alt.Chart(_timed(trend), title="p95 latency by model").mark_line(
        point=alt.OverlayMarkDef(size=14), interpolate="monotone").encode(
        x=_time_x(),
        y=alt.Y("latency_p95_ms:Q", title="ms"),
        color=alt.Color("model:N", scale=_model_scale(trend), legend=None if link else
                        alt.Legend(title="model")),
        tooltip=[_time_tip(), "model:N",
                 alt.Tooltip("latency_p95_ms:Q", title="p95 ms", format=",.0f")],
    ).properties(width=WIDTH, height=150)
    return cast("alt.Chart", _linked(chart, link))


def latency_chart(latency: pd.DataFrame) -> alt.Chart:
    """Overall p50, p95 and p99 latency per bucket (columns ``latency_p50_ms`` ...)."""
    import altair as alt

    present = [c for c in _QUANTILES if c in latency]
    frame = _timed(latency)[["bucket", *present]].rename(columns=_QUANTILES)
    chart: alt.Chart = alt.Chart(frame, title="Latency quantiles (all selected calls)") \
        .transform_fold(
        [_QUANTILES[c] for c in present], as_=["quantile", "ms"]).mark_line(
        point=alt.OverlayMarkDef(size=14), interpolate="monotone").encode(
        x=_time_x(),
        y=alt.Y("ms:Q", title="ms"),
        color=alt.Color("quantile:N", title="quantile",
                        scale=alt.Scale(domain=["p50", "p95", "p99"],
                                        range=["#4c78a8", "#f58518", "#e45756"])),
        tooltip=[_time_tip(), "quantile:N", alt.Tooltip("ms:Q", format=",.0f")],
    ).properties(width=WIDTH, height=180)
    return chart


def errors_chart(errors: pd.DataFrame, *, link: Link | None = None,
                 title: str = "Failed calls by error type") -> alt.Chart:
    """Errors per bucket, stacked by ``error_type`` (rows with zero errors may be left
    out: a missing bar is a zero)."""
    import altair as alt

    chart = _stacked(alt.Chart(_timed(errors), title=title).mark_bar(), "errors",
                     "error_type", "errors").encode(
        color=alt.Color("error_type:N", title="error type",
                        scale=alt.Scale(scheme="set2")),
        tooltip=[_time_tip(), "error_type:N", alt.Tooltip("errors:Q", format=",")],
    ).properties(width=WIDTH if link is None else 380, height=150)
    return cast("alt.Chart", _linked(chart, link, highlight=False))


def cache_chart(trend: pd.DataFrame, *, link: Link | None = None) -> alt.Chart:
    """Cache hit rate per bucket over the (selected) models: hits and lookups are summed in
    Vega before dividing, so the rate follows the model selection."""
    import altair as alt

    chart = alt.Chart(_timed(trend), title="Cache hit rate")
    if link is not None:
        chart = chart.transform_filter(link.brush).transform_filter(link.models)
    chart = chart.transform_aggregate(
        hits="sum(cache_hits)", lookups="sum(cache_lookups)", groupby=["bucket"],
    ).transform_calculate(
        hit_rate="datum.lookups > 0 ? datum.hits / datum.lookups : null",
    ).mark_line(
        point=alt.OverlayMarkDef(size=14, color="#54a24b"), color="#54a24b").encode(
        x=_time_x(),
        y=alt.Y("hit_rate:Q", title="hits / lookups", axis=alt.Axis(format="%")),
        tooltip=[_time_tip(), alt.Tooltip("hit_rate:Q", title="hit rate", format=".1%"),
                 alt.Tooltip("hits:Q", format=","), alt.Tooltip("lookups:Q", format=",")],
    ).properties(width=WIDTH if link is None else 200, height=150)
    return cast("alt.Chart", chart)


def overview_linked(trend: pd.DataFrame, errors: pd.DataFrame) -> alt.VConcatChart:
    """The overview's linked charts from the per-model trend (``bucket``, ``model``,
    ``requests``, ``cost_usd``, ``latency_p95_ms``, ``cache_hits``, ``cache_lookups``) and
    the error-type trend (``bucket``, ``error_type``, ``errors``)."""
    import altair as alt

    link = Link.create()
    top = alt.hconcat(requests_chart(trend, link=link), cost_by_model_chart(trend, link=link))
    bottom = alt.hconcat(errors_chart(errors, link=link), cache_chart(trend, link=link))
    return cast("alt.VConcatChart", alt.vconcat(
        top, cost_chart(trend, link=link), model_latency_chart(trend, link=link), bottom,
        title=alt.Title("Requests, cost and latency by model",
                        subtitle="Click a model in the legend to highlight it (shift-click "
                                 "for more); drag on Requests to zoom the others to a time "
                                 "range; double-click to clear."),
    ).resolve_scale(color="independent"))


# -- reliability charts ----------------------------------------------------------------------

def provider_errors_chart(errors: pd.DataFrame) -> alt.FacetChart:
    """Failed provider requests per bucket by error type, one row per provider (columns
    ``bucket``, ``provider``, ``error_type``, ``errors``)."""
    import altair as alt

    chart = _stacked(alt.Chart(_timed(errors)).mark_bar(), "errors", "error_type",
                    "failed requests", within=("provider",)).encode(
        color=alt.Color("error_type:N", title="error type", scale=alt.Scale(scheme="set2")),
        tooltip=[_time_tip(), "provider:N", "error_type:N",
                 alt.Tooltip("errors:Q", format=",")],
    ).properties(width=WIDTH, height=90).facet(
        row=alt.Row("provider:N", title=None, header=alt.Header(labelAngle=0,
                                                                labelAlign="left")),
        title="Failed provider requests by error type and provider",
    ).resolve_scale(y="independent")
    return cast("alt.FacetChart", chart)


def retries_chart(trend: pd.DataFrame) -> alt.Chart:
    """Retries (attempts beyond the first) and fallbacks per bucket, with their rates in
    the tooltip (columns from ``trend``: requests, retries, fallbacks, retry_rate,
    fallback_rate)."""
    import altair as alt

    frame = _timed(trend)
    chart: alt.Chart = alt.Chart(frame, title="Retries and fallbacks").transform_fold(
        ["retries", "fallbacks"], as_=["what", "count"]).mark_line(
        point=alt.OverlayMarkDef(size=14)).encode(
        x=_time_x(),
        y=alt.Y("count:Q", title="per bucket"),
        color=alt.Color("what:N", title=None,
                        scale=alt.Scale(domain=["retries", "fallbacks"],
                                        range=["#4c78a8", "#e45756"])),
        tooltip=[_time_tip(), "what:N", alt.Tooltip("count:Q", format=","),
                 alt.Tooltip("requests:Q", title="calls", format=","),
                 alt.Tooltip("retry_rate:Q", title="calls retried", format=".1%"),
                 alt.Tooltip("fallback_rate:Q", title="calls on a fallback", format=".1%")],
    ).properties(width=WIDTH, height=180)
    return chart


def alert_spans(history: pd.DataFrame, *, since: datetime | None = None,
                until: datetime | None = None) -> pd.DataFrame:
    """Firing periods from alert events (``ts``, ``kind``, ``name``, ``group``, ``state``,
    ``severity``, ``value``): a ``firing`` opens a span for its rule and group, repeats
    extend it, ``resolved`` closes it; one still open ends at ``until`` (``ongoing``), and a
    ``resolved`` whose ``firing`` fell before the window starts at ``since``."""
    columns = ["lane", "start", "end", "severity", "peak", "ongoing"]
    alerts = history[history["kind"] == "alert"].sort_values("ts", kind="stable") \
        if not history.empty else history
    spans: list[dict[str, Any]] = []
    open_spans: dict[tuple[str, str], dict[str, Any]] = {}
    for row in alerts.to_dict("records"):
        key = (str(row["name"]), "" if pd.isna(row["group"]) else str(row["group"]))
        span = open_spans.get(key)
        value = row["value"]
        if row["state"] == "firing":
            if span is None:
                span = open_spans[key] = {"lane": _lane(*key), "start": row["ts"], "end": None,
                                          "severity": row["severity"], "peak": value}
            elif pd.notna(value) and (pd.isna(span["peak"]) or value > span["peak"]):
                span["peak"] = value
        elif row["state"] == "resolved":
            closed = open_spans.pop(key, None) or {
                "lane": _lane(*key), "start": since, "severity": row["severity"], "peak": None}
            spans.append({**closed, "end": row["ts"], "ongoing": False})
    spans += [{**span, "end": until, "ongoing": True} for span in open_spans.values()]
    frame = pd.DataFrame(spans, columns=columns)
    return frame[frame["start"].notna() & frame["end"].notna()].reset_index(drop=True)


def _lane(name: str, group: str) -> str:
    return f"{name} [{group}]" if group else name


def alert_timeline(history: pd.DataFrame, window: Window | None = None) -> alt.LayerChart:
    """Alert rules over time: a bar while a rule fired, a mark at each alert event
    (triangle firing, circle resolved) and budget thresholds crossed on their own lanes."""
    import altair as alt

    since = window.since if window is not None else None
    until = window.until if window is not None else None
    if until is None and not history.empty:
        until = pd.to_datetime(history["ts"], utc=True).max().to_pydatetime()
    spans = alert_spans(history, since=since, until=until)
    for column in ("start", "end"):
        spans[column] = _naive_utc(spans[column]) if not spans.empty else spans[column]
    events = history.copy()
    if not events.empty:
        events["ts"] = _naive_utc(events["ts"])
        events["lane"] = [("budget: " if kind == "budget" else "") + _lane(
            str(name), "" if pd.isna(group) else str(group))
            for kind, name, group in zip(events["kind"], events["name"], events["group"],
                                         strict=True)]
    severity = alt.Color("severity:N", title="severity", scale=alt.Scale(
        domain=list(SEVERITY_COLORS), range=list(SEVERITY_COLORS.values())))
    domain = [pd.Timestamp(t).tz_convert("UTC").tz_localize(None).isoformat()
              for t in (since, until)] if since is not None and until is not None else None
    x = alt.X("start:T", title=TIME_TITLE, scale=alt.Scale(domain=domain) if domain else
              alt.Undefined, axis=alt.Axis(format="%b %d %H:%M", labelAngle=0))
    bars = alt.Chart(spans).mark_bar(height=14, opacity=0.55).encode(
        x=x, x2="end:T", y=alt.Y("lane:N", title=None), color=severity,
        tooltip=["lane:N", _time_tip("start", "firing since (UTC)"),
                 _time_tip("end", "until (UTC)"), "ongoing:N",
                 alt.Tooltip("peak:Q", title="peak value", format=".3~g")])
    marks = alt.Chart(events).mark_point(size=90, filled=True).encode(
        x=alt.X("ts:T"), y=alt.Y("lane:N"), color=severity,
        shape=alt.Shape("state:N", title="event", scale=alt.Scale(
            domain=["firing", "resolved", "crossed"],
            range=["triangle-up", "circle", "diamond"])),
        tooltip=[_time_tip("ts", "at (UTC)"), "lane:N", "state:N", "severity:N",
                 alt.Tooltip("value:Q", format=".4~g"),
                 alt.Tooltip("threshold:Q", format=".4~g"), "summary:N"])
    return alt.layer(bars, marks, title="Alert history").properties(width=WIDTH)
