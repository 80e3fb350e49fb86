"""Operational metrics of LLM calls, by any dimension and window, as DataFrames.

Every metric is computed by DuckDB over the ``llm.call`` events of the log, in one scan:
the SQL computes a few base aggregates (counts, sums, a list of latency quantiles) and the
metrics are derived from them, so asking for twenty metrics costs one pass over the data.
Dimensions and filters map to fixed SQL expressions (``devora_lab.events.dimensions``) and
values are bound as parameters, never formatted into the SQL.

Definitions worth knowing (the rest say what they are):

- ``error_rate``: errors over requests, where a request is a *logical* call after its
  retries and fallbacks; a call that failed twice and then succeeded is not an error.
- ``retries``: attempts beyond the first (``attempt - 1``), fallback attempts included;
  ``fallbacks``: calls answered (or failed last) by a model other than the one asked for.
- ``cache_hit_rate``: exact and semantic hits over lookups (hit + miss); calls that
  bypassed the cache (not cacheable, or no cache configured) are not lookups.
- ``requests_per_s`` and ``tokens_per_s``: over the window's length (a bucket's, in a
  trend); for an unbounded window, over the span from the first to the last call selected.
- latency and time-to-first-token quantiles are exact (``quantile_cont``) in ``metrics`` and
  ``trend``; in ``overview`` they are within ±0.5 % relative of the exact value (a
  log-bucketed histogram, ``devora_lab.monitoring.sketch``) unless ``exact_quantiles=True``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd

from devora_lab.errors import ConfigError
from devora_lab.events.dimensions import dimension_sql
from devora_lab.monitoring import sketch
from devora_lab.monitoring.windows import Window, parse_duration, parse_window

if TYPE_CHECKING:
    from devora_lab.events.store import EventStore

__all__ = ["METRICS", "OVERVIEW_METRICS", "Filters", "MetricDef", "Overview", "error_breakdown",
           "metrics", "overview", "resolve_window", "selection", "trend"]

Filters = Mapping[str, str | Sequence[str]]
_Frame = pd.DataFrame

#: Base aggregates: what the SQL computes; every metric is derived from these.
_BASE: Final[Mapping[str, str]] = {
    "requests": "count(*)",
    "errors": "count(*) FILTER (WHERE status = 'error')",
    "latency_sum": "sum(latency_ms)",
    "latency_n": "count(latency_ms)",
    "latency_q": "quantile_cont(latency_ms, [0.5, 0.95, 0.99])",
    "ttft_sum": "sum(ttft_ms)",
    "ttft_n": "count(ttft_ms)",
    "ttft_q": "quantile_cont(ttft_ms, [0.5, 0.95, 0.99])",
    "input_tokens": "coalesce(sum(input_tokens), 0)",
    "output_tokens": "coalesce(sum(output_tokens), 0)",
    "cached_input_tokens": "coalesce(sum(cached_input_tokens), 0)",
    "retries": "coalesce(sum(greatest(coalesce(attempt, 1) - 1, 0)), 0)",
    "retried": "count(*) FILTER (WHERE attempt > 1)",
    "fallbacks": "count(*) FILTER (WHERE fallback_index > 0)",
    "cache_lookups": "count(*) FILTER (WHERE cache_outcome IN ('hit', 'semantic_hit', 'miss'))",
    "cache_hits": "count(*) FILTER (WHERE cache_outcome IN ('hit', 'semantic_hit'))",
    "cost_usd": "coalesce(sum(cost_usd), 0)",
    "unpriced_calls": "count(*) FILTER (WHERE cost_status = 'unpriced')",
    "saved_cost_usd": "coalesce(sum(saved_cost_usd) FILTER (WHERE cache_outcome IN "
                      "('hit', 'semantic_hit')), 0)",
}

_Compute = Callable[[_Frame, "pd.Series[float]"], "pd.Series[Any]"]

#: Base aggregates that need every value (exact quantiles): they cannot be summed from parts.
_HOLISTIC: Final = frozenset({"latency_q", "ttft_q"})

#: Buckets are aligned to 2000-01-03 00:00 UTC (a Monday), as DuckDB's ``time_bucket`` aligns
#: them, but computed with integer arithmetic on epoch microseconds: ``time_bucket`` on a
#: TIMESTAMPTZ goes through time-zone code (about 0.25 s more CPU per 10M calls). ``%`` takes
#: the sign of the dividend in SQL, hence ``(x % w + w) % w`` for calls before 2000.
_ORIGIN_US: Final = 946_857_600_000_000
_BUCKET_SQL: Final = "make_timestamptz(epoch_us(ts) - ((epoch_us(ts) - ?) % ? + ?) % ?)"


def _bucket_params(step: timedelta) -> list[object]:
    micros = int(step.total_seconds() * 1_000_000)
    return [_ORIGIN_US, micros, micros, micros]


@dataclass(frozen=True, slots=True)
class MetricDef:
    """One metric: the base aggregates it needs, how it is derived, its unit and meaning."""

    name: str
    needs: tuple[str, ...]
    compute: _Compute
    unit: str
    description: str


def _ratio(num: str, den: str) -> _Compute:
    return lambda f, _span: f[num] / f[den].where(f[den] > 0)


def _per_second(*columns: str) -> _Compute:
    return lambda f, span: sum((f[c] for c in columns), start=pd.Series(0.0, index=f.index)) \
        / span.where(span > 0)


def _quantile(column: str, index: int) -> _Compute:
    def compute(frame: _Frame, _span: pd.Series[float]) -> pd.Series[Any]:
        def pick(q: object) -> float:
            if not isinstance(q, list | tuple | np.ndarray) or len(q) <= index:
                return np.nan  # no calls with a value in this group: NULL, not a list
            value = q[index]
            return np.nan if value is None else float(value)

        return frame[column].map(pick)
    return compute


def _column(name: str) -> _Compute:
    return lambda f, _span: f[name]


def _m(name: str, needs: tuple[str, ...], compute: _Compute, unit: str, text: str) -> MetricDef:
    return MetricDef(name, needs, compute, unit, text)


METRICS: Final[Mapping[str, MetricDef]] = {m.name: m for m in (
    _m("requests", ("requests",), _column("requests"), "calls", "Logical LLM calls."),
    _m("ok", ("requests", "errors"), lambda f, _s: f["requests"] - f["errors"], "calls",
       "Calls that returned an answer."),
    _m("errors", ("errors",), _column("errors"), "calls", "Calls that failed for good."),
    _m("error_rate", ("errors", "requests"), _ratio("errors", "requests"), "ratio",
       "Failed calls over calls."),
    _m("success_rate", ("errors", "requests"),
       lambda f, _s: 1 - f["errors"] / f["requests"].where(f["requests"] > 0), "ratio",
       "Answered calls over calls."),
    _m("latency_avg_ms", ("latency_sum", "latency_n"), _ratio("latency_sum", "latency_n"), "ms",
       "Mean call latency, retries and waits included."),
    _m("latency_p50_ms", ("latency_q",), _quantile("latency_q", 0), "ms", "Median latency."),
    _m("latency_p95_ms", ("latency_q",), _quantile("latency_q", 1), "ms", "95th pct latency."),
    _m("latency_p99_ms", ("latency_q",), _quantile("latency_q", 2), "ms", "99th pct latency."),
    _m("ttft_avg_ms", ("ttft_sum", "ttft_n"), _ratio("ttft_sum", "ttft_n"), "ms",
       "Mean time to first token (streamed calls)."),
    _m("ttft_p50_ms", ("ttft_q",), _quantile("ttft_q", 0), "ms", "Median time to first token."),
    _m("ttft_p95_ms", ("ttft_q",), _quantile("ttft_q", 1), "ms", "95th pct time to first token."),
    _m("ttft_p99_ms", ("ttft_q",), _quantile("ttft_q", 2), "ms", "99th pct time to first token."),
    _m("requests_per_s", ("requests",), _per_second("requests"), "1/s", "Calls per second."),
    _m("tokens_per_s", ("input_tokens", "output_tokens"),
       _per_second("input_tokens", "output_tokens"), "tokens/s", "Input+output tokens per s."),
    _m("output_tokens_per_s", ("output_tokens",), _per_second("output_tokens"), "tokens/s",
       "Output tokens per second."),
    _m("input_tokens", ("input_tokens",), _column("input_tokens"), "tokens", "Input tokens."),
    _m("output_tokens", ("output_tokens",), _column("output_tokens"), "tokens", "Output tokens."),
    _m("cached_input_tokens", ("cached_input_tokens",), _column("cached_input_tokens"), "tokens",
       "Input tokens read from the provider's prompt cache."),
    _m("retries", ("retries",), _column("retries"), "attempts", "Attempts beyond the first."),
    _m("retry_rate", ("retried", "requests"), _ratio("retried", "requests"), "ratio",
       "Calls that needed more than one attempt."),
    _m("fallbacks", ("fallbacks",), _column("fallbacks"), "calls",
       "Calls that moved to a fallback model."),
    _m("fallback_rate", ("fallbacks", "requests"), _ratio("fallbacks", "requests"), "ratio",
       "Calls that moved to a fallback model, over calls."),
    _m("cache_lookups", ("cache_lookups",), _column("cache_lookups"), "calls",
       "Calls looked up in the response cache."),
    _m("cache_hits", ("cache_hits",), _column("cache_hits"), "calls", "Exact + semantic hits."),
    _m("cache_hit_rate", ("cache_hits", "cache_lookups"), _ratio("cache_hits", "cache_lookups"),
       "ratio", "Hits over lookups."),
    _m("cost_usd", ("cost_usd",), _column("cost_usd"), "USD", "Recorded cost."),
    _m("cost_per_request_usd", ("cost_usd", "requests"), _ratio("cost_usd", "requests"), "USD",
       "Recorded cost over calls."),
    _m("unpriced_calls", ("unpriced_calls",), _column("unpriced_calls"), "calls",
       "Calls whose model had no price (not counted as $0)."),
    _m("saved_cost_usd", ("saved_cost_usd",), _column("saved_cost_usd"), "USD",
       "What cache hits would have cost."),
)}

#: The metric set of the overview dashboard, the alert defaults and the benchmark.
OVERVIEW_METRICS: Final[tuple[str, ...]] = (
    "requests", "errors", "error_rate", "latency_avg_ms", "latency_p50_ms", "latency_p95_ms",
    "latency_p99_ms", "ttft_p50_ms", "ttft_p95_ms", "requests_per_s", "tokens_per_s",
    "input_tokens", "output_tokens", "retries", "fallbacks", "cache_hit_rate", "cost_usd",
    "unpriced_calls")


def resolve_window(window: Window | str | None, *, since: datetime | None = None,
                   until: datetime | None = None, now: datetime | None = None,
                   tz: str = "UTC") -> Window:
    """A ``Window`` from a name (``"24h"``, ``"this_week"``), a Window, or since/until."""
    if window is not None and (since is not None or until is not None):
        raise ConfigError("give either a window or since/until, not both",
                          fix="drop the window, or since and until")
    if isinstance(window, Window):
        return window
    if window is not None:
        return parse_window(window, now=now, tz=tz)
    return Window(since, until)


def selection(window: Window, filters: Filters | None = None,
              kind: str = "llm.call") -> tuple[str, list[object]]:
    """A WHERE clause (without ``WHERE``) and its parameters: one event kind, the window and
    equality filters (a list of values means any of them)."""
    clauses = ["kind = ?"]
    params: list[object] = [kind]
    if window.since is not None:
        clauses.append("ts >= ?")
        params.append(window.since)
    if window.until is not None:
        clauses.append("ts < ?")
        params.append(window.until)
    for name, value in (filters or {}).items():
        values = list(value) if isinstance(value, Iterable) and not isinstance(value, str) \
            else [value]
        if not values or not all(isinstance(v, str) for v in values):
            raise ConfigError(f"filter {name}={value!r} needs one or more strings",
                              fix=f"filter like {{'{name}': 'value'}} or a list of values")
        clauses.append(f"{dimension_sql(name)} IN ({', '.join('?' * len(values))})")
        params.extend(values)
    return " AND ".join(clauses), params


def _definitions(names: Sequence[str]) -> list[MetricDef]:
    if isinstance(names, str):
        names = [names]
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise ConfigError(f"unknown metric(s) {', '.join(unknown) or '(none given)'}",
                          fix=f"use any of {', '.join(METRICS)}")
    return [METRICS[n] for n in names]


def _base_sql(defs: Sequence[MetricDef]) -> str:
    return _aggregates(dict.fromkeys(base for d in defs for base in d.needs))


def _aggregates(bases: Iterable[str]) -> str:
    return ", ".join(f"{_BASE[name]} AS \"{name}\"" for name in bases)


def _derive(frame: _Frame, defs: Sequence[MetricDef], keys: Sequence[str],
            span: pd.Series[float]) -> _Frame:
    out = frame[list(keys)].copy()
    for d in defs:
        out[d.name] = d.compute(frame, span).astype("float64" if d.unit != "calls" else "int64",
                                                    errors="ignore")
    return out


def _data_span(store: EventStore, where: str, params: list[object]) -> float:
    first, last = store.rows(f"SELECT min(ts), max(ts) FROM events WHERE {where}", params)[0]
    return 0.0 if first is None else (last - first).total_seconds()


def metrics(store: EventStore, names: Sequence[str] = OVERVIEW_METRICS, *,
            by: Sequence[str] = (), window: Window | str | None = None,
            since: datetime | None = None, until: datetime | None = None,
            filters: Filters | None = None, now: datetime | None = None,
            tz: str = "UTC") -> _Frame:
    """One row per group of ``by`` (one row in all when ``by`` is empty) with the metrics
    ``names``, over the calls in ``window`` that match ``filters``; busiest group first."""
    defs = _definitions(names)
    span_window = resolve_window(window, since=since, until=until, now=now, tz=tz)
    where, params = selection(span_window, filters)
    keys = [(name, dimension_sql(name)) for name in by]
    select = "".join(f"{sql} AS \"{name}\", " for name, sql in keys)
    group = f"GROUP BY {', '.join(str(i + 1) for i in range(len(keys)))}" if keys else ""
    order = "ORDER BY count(*) DESC" if keys else ""
    frame = store.df(f"SELECT {select}{_base_sql(defs)} FROM events WHERE {where} {group} "
                     f"{order}", params)
    if keys and frame.empty:
        return _derive(frame, defs, by, pd.Series(dtype="float64"))
    seconds = span_window.seconds
    if seconds is None:
        seconds = _data_span(store, where, params)
    span = pd.Series(float(seconds), index=frame.index)
    return _derive(frame, defs, by, span).reset_index(drop=True)


def trend(store: EventStore, names: Sequence[str] = ("requests", "error_rate"), *,
          bucket: str = "1h", by: Sequence[str] = (), window: Window | str | None = "24h",
          since: datetime | None = None, until: datetime | None = None,
          filters: Filters | None = None, now: datetime | None = None) -> _Frame:
    """The metrics per time bucket (``"5m"``, ``"1h"``, ``"1d"``; aligned to UTC, weeks to
    Monday), one row per bucket and group, in time order, in a ``bucket`` column (UTC).

    Buckets without calls inside a bounded window are present with zero counts (their
    ratios and quantiles are NaN), so a chart of a quiet night is not a straight line."""
    defs = _definitions(names)
    step = parse_duration(bucket)
    span_window = resolve_window(window, since=since, until=until, now=now)
    where, params = selection(span_window, filters)
    keys = [(name, dimension_sql(name)) for name in by]
    select = "".join(f", {sql} AS \"{name}\"" for name, sql in keys)
    frame = store.df(
        f"SELECT {_BUCKET_SQL} AS bucket{select}, {_base_sql(defs)} "
        f"FROM events WHERE {where} GROUP BY ALL ORDER BY 1", [*_bucket_params(step), *params])
    frame = _fill_buckets(frame, span_window, step, list(by), defs)
    span = pd.Series(step.total_seconds(), index=frame.index)
    return _derive(frame, defs, ["bucket", *by], span).reset_index(drop=True)


def _fill_buckets(frame: _Frame, window: Window, step: Any, by: list[str],
                  defs: Sequence[MetricDef]) -> _Frame:
    if window.since is None or window.until is None:
        return frame
    origin = pd.Timestamp(_ORIGIN_US, unit="us", tz="UTC")
    width = pd.Timedelta(step)
    first = origin + ((pd.Timestamp(window.since) - origin) // width) * width
    grid = pd.date_range(first, pd.Timestamp(window.until), freq=width, inclusive="left",
                         name="bucket")
    if frame.empty and by:
        return frame
    frame["bucket"] = pd.to_datetime(frame["bucket"], utc=True)
    if by:
        groups = frame[by].drop_duplicates()
        full = groups.merge(pd.DataFrame({"bucket": grid}), how="cross")
    else:
        full = pd.DataFrame({"bucket": grid})
    merged = full.merge(frame, on=["bucket", *by], how="left")
    counts = [c for c in merged.columns if c not in ("bucket", *by, "latency_q", "ttft_q")
              and not c.endswith("_sum")]  # sums stay NaN: a mean of nothing is unknown
    merged[counts] = merged[counts].fillna(0)
    return merged.sort_values(["bucket", *by], kind="stable")


def error_breakdown(store: EventStore, *, by: Sequence[str] = (),
                    window: Window | str | None = "24h", since: datetime | None = None,
                    until: datetime | None = None, filters: Filters | None = None,
                    now: datetime | None = None) -> _Frame:
    """Failed calls per error type (and group of ``by``): ``errors``, ``share`` of the
    group's errors and ``rate`` over the group's calls; most frequent first."""
    span_window = resolve_window(window, since=since, until=until, now=now)
    where, params = selection(span_window, filters)
    keys = [(name, dimension_sql(name)) for name in by]
    outer = "".join(f"{sql} AS \"{name}\", " for name, sql in keys)
    partition = ("PARTITION BY " + ", ".join(f'"{name}"' for name, _ in keys)) if keys else ""
    return store.df(f"""
        WITH grouped AS (
            SELECT {outer} coalesce(error_type, '(none)') AS error_type,
                   count(*) FILTER (WHERE status = 'error') AS errors, count(*) AS calls
            FROM events WHERE {where} GROUP BY ALL)
        SELECT * EXCLUDE (calls),
               errors / sum(errors) OVER ({partition}) AS share,
               errors / sum(calls) OVER ({partition}) AS rate
        FROM grouped QUALIFY errors > 0 ORDER BY errors DESC""", params).reset_index(drop=True)


@dataclass(frozen=True, slots=True)
class Overview:
    """What the overview dashboard shows, computed in one scan (plus one for errors)."""

    window: Window
    totals: _Frame
    by_model: _Frame
    by_provider: _Frame
    by_agent: _Frame
    trend: _Frame
    errors: _Frame


def overview(store: EventStore, *, window: Window | str | None = "24h",
             since: datetime | None = None, until: datetime | None = None,
             filters: Filters | None = None, bucket: str | None = None,
             names: Sequence[str] = OVERVIEW_METRICS, now: datetime | None = None,
             exact_quantiles: bool = False) -> Overview:
    """The overview metric set: totals, per model, provider and agent, a trend (bucket chosen
    from the window's length unless given) and error types (see ``_overview_parts``).

    The latency and time-to-first-token quantiles (p50, p95, p99) are within ±0.5 % relative
    of the exact ones (``sketch.ALPHA``; counted in log-spaced bins in the same scan as the
    sums, see ``devora_lab.monitoring.sketch`` for the bound); ``exact_quantiles=True``
    computes them exactly (``quantile_cont``, as ``metrics`` and ``trend`` do), at about
    three times the cost. Every other number is exact either way."""
    defs = _definitions(names)
    span_window = resolve_window(window, since=since, until=until, now=now)
    where, params = selection(span_window, filters)
    seconds = span_window.seconds
    if seconds is None:
        seconds = _data_span(store, where, params)
    step = parse_duration(bucket) if bucket else _auto_bucket(seconds)
    part = _overview_parts(store, defs, where, [*_bucket_params(step), *params],
                           exact_quantiles=exact_quantiles)
    derived = {name: _derive(part[name], defs, [] if name == "totals" else [name],
                             pd.Series(float(seconds), index=part[name].index))
               .reset_index(drop=True) for name in ("totals", "model", "provider", "agent")}
    bucket_window = span_window if span_window.seconds is not None else Window(None, None)
    buckets = _fill_buckets(part["bucket"], bucket_window, step, [], defs)
    trend_frame = _derive(buckets, defs, ["bucket"],
                          pd.Series(step.total_seconds(), index=buckets.index))
    return Overview(span_window, derived["totals"], derived["model"], derived["provider"],
                    derived["agent"], trend_frame.reset_index(drop=True),
                    error_breakdown(store, window=span_window, filters=filters))


_PARTS: Final = ("model", "provider", "agent", "bucket")
# GROUPING() sets a bit per column left out of the set: model=8, provider=4, agent=2,
# bucket=1, so a set's code says which one column it groups by.
_SET_CODES: Final = {"totals": 15, "model": 7, "provider": 11, "agent": 13, "bucket": 14}


#: The column each holistic base aggregate takes its quantiles of, and which quantiles.
_QUANTILES: Final = {"latency_q": "latency_ms", "ttft_q": "ttft_ms"}
_QS: Final = (0.5, 0.95, 0.99)


def _overview_parts(store: EventStore, defs: Sequence[MetricDef], where: str,
                    params: list[object], *, exact_quantiles: bool = False
                    ) -> dict[str, _Frame]:
    """The base aggregates in total and per model, provider, agent and bucket, in one scan.

    Sums and counts are taken per (model, provider, agent, bucket), a few thousand rows,
    and added up here for each part. The quantiles, which cannot be added up, are by
    default read from counts of log-spaced bins (``sketch``): ``count(*)`` per (fine group,
    bin) over the same scan, the fine group as a 64-bit ``hash`` of its four keys (integer
    keys hash several times faster than strings), added up here per part; within
    ``sketch.ALPHA`` relative. Should two fine groups share a hash, the exact path runs
    instead. With ``exact_quantiles`` they come from a grouping-sets aggregation of
    ``quantile_cont`` that computes nothing else. (One grouping-sets aggregation of
    everything cost about 1.6 times as much CPU: DuckDB evaluates every aggregate once per
    set.) Parts are sorted busiest first, buckets in time order."""
    needed = list(dict.fromkeys(base for d in defs for base in d.needs))
    sums = list(dict.fromkeys(["requests", *(b for b in needed if b not in _HOLISTIC)]))
    holistic = [b for b in needed if b in _HOLISTIC]
    sketched = bool(holistic) and not exact_quantiles
    keys = ", ".join(_PARTS)
    model = dimension_sql("model")
    fine_hash = f", hash({model}, provider, agent, {_BUCKET_SQL}) AS _h" if sketched else ""
    sql = f"""
        WITH selected AS (
            SELECT {model} AS model, provider, agent, {_BUCKET_SQL} AS bucket{fine_hash},
                   * EXCLUDE (provider, agent)
            FROM events WHERE {where})"""
    if sketched:
        bins = ", ".join(f"{sketch.bin_sql(_QUANTILES[b])} AS \"_bin_{b}\"" for b in holistic)
        sets = ", ".join(f"(_h, \"_bin_{b}\")" for b in holistic)
        sql += f"""
        SELECT -1 AS _set, hash({keys}) AS _h, * FROM (
            SELECT {keys}, {_aggregates(sums)} FROM selected GROUP BY ALL)
        UNION ALL BY NAME
        SELECT -2 AS _set, _h, {bins}, count(*) AS _n FROM selected
        GROUP BY GROUPING SETS ({sets})"""
        params = [*params[:4], *params]  # the bucket's parameters, for the hash
    else:
        sql += f"""
        SELECT -1 AS _set, {keys}, {_aggregates(sums)} FROM selected GROUP BY ALL"""
    if holistic and not sketched:
        sql += f"""
        UNION ALL BY NAME
        SELECT GROUPING({keys}) AS _set, {keys}, {_aggregates(holistic)} FROM selected
        GROUP BY GROUPING SETS ((), (model), (provider), (agent), (bucket))"""
    frame = store.df(sql, params)
    frame["bucket"] = pd.to_datetime(frame["bucket"], utc=True)
    fine = frame[frame["_set"] == -1]
    binned = frame[frame["_set"] == -2] if sketched else None
    if binned is not None and not fine["_h"].is_unique:  # a hash collision: be exact
        return _overview_parts(store, defs, where, params[4:], exact_quantiles=True)
    parts: dict[str, _Frame] = {}
    for name, code in _SET_CODES.items():
        if name == "totals":
            rows = pd.DataFrame({column: [fine[column].sum()] for column in sums})
        else:
            rows = fine.groupby(name, dropna=False, sort=False)[sums].sum().reset_index()
        if binned is not None:
            rows = _sketched(rows, fine, binned, None if name == "totals" else name, holistic)
        elif holistic:
            picked = frame.loc[frame["_set"] == code, [*_PARTS, *holistic]]
            if name != "totals":  # a part whose key is NULL throughout: float64 vs object
                picked = picked.astype({name: rows[name].dtype})
            rows = rows.assign(**{b: picked[b].to_numpy() for b in holistic}) \
                if name == "totals" else rows.merge(picked[[name, *holistic]], on=name,
                                                    how="left")
        rows = rows.sort_values("bucket" if name == "bucket" else "requests",
                                ascending=name == "bucket", kind="stable")
        parts[name] = rows.reset_index(drop=True)
    return parts


def _sketched(rows: _Frame, fine: _Frame, binned: _Frame, key: str | None,
              holistic: list[str]) -> _Frame:
    """``rows`` (one per value of ``key`` in ``fine``, or the one total row) with the
    holistic columns as lists of quantiles read from the bin counts of the fine groups
    (None where a group has no value)."""
    fine_of_bin = pd.Index(fine["_h"]).get_indexer(binned["_h"])
    if key is None:
        fine_group = np.zeros(len(fine), dtype=np.int64)
        row_group = np.zeros(len(rows), dtype=np.int64)
    else:  # a label per key value, NULL included; rows holds every value fine holds
        codes, _ = pd.factorize(pd.concat([rows[key], fine[key]], ignore_index=True),
                                use_na_sentinel=False)
        row_group, fine_group = codes[:len(rows)], codes[len(rows):]
    groups = fine_group[fine_of_bin] if len(fine) else np.zeros(0, dtype=np.int64)
    out = rows.copy()
    for b in holistic:
        column = binned[f"_bin_{b}"]
        present = column.notna().to_numpy()
        distinct, rank = np.unique(column[present].to_numpy(np.int64), return_inverse=True)
        values = sketch.ranked_quantiles(groups[present], len(rows), rank.ravel(),
                                         sketch.representatives(distinct),
                                         binned["_n"].to_numpy(np.int64)[present], _QS)
        out[b] = pd.Series([list(v) for v in values[row_group]], index=out.index,
                           dtype=object)  # all NaN where a group has no value
    return out


def _auto_bucket(seconds: float) -> Any:
    """About 24 to 100 points for a chart: 5 minutes up to 6 hours, hours up to 4 days, days."""
    if seconds <= 6 * 3600:
        return parse_duration("5m")
    if seconds <= 4 * 86_400:
        return parse_duration("1h")
    return parse_duration("1d")
