"""Charts and tables of the cache notebook: how often the response cache answers (over
time, by model and agent), what that saved in dollars and waiting, what other cache
policies would have saved on the same traffic (``cache.analysis.analyze_workspace``'s
counterfactual replay), and what provider prompt caching saves or could save.

Hit rates come from ``monitoring.metrics`` (a hit rate is hits over lookups; calls that
bypassed the cache are not lookups). Two small queries live here because no package
function returns them: the latency the hits saved per day, and the dollars provider
prompt caching saved on the cached input tokens the providers reported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import altair as alt
import pandas as pd

from devora_lab.monitoring.metrics import metrics, selection, trend
from devora_lab.notebook.views._common import Note, Scope, clean

if TYPE_CHECKING:
    from devora_lab.cache.analysis import CacheAnalysis
    from devora_lab.events.store import EventStore
    from devora_lab.llm.pricing import PriceBook

__all__ = ["HIT_METRICS", "hit_rate_bars", "hit_rate_by", "hit_rate_chart", "hit_rate_trend",
           "policy_chart", "policy_table", "prefix_table", "provider_cache_chart",
           "provider_cache_savings", "savings_by_day", "savings_chart"]

#: The metrics the hit-rate views ask ``monitoring.metrics`` for.
HIT_METRICS: Final = ("requests", "cache_lookups", "cache_hits", "cache_hit_rate",
                      "saved_cost_usd")
_MONEY: Final = "$,.2f"
_BAR: Final = "#4c78a8"


def _bucket(scope: Scope) -> str:
    seconds = scope.window.seconds
    return "1h" if seconds is not None and seconds <= 3 * 86_400 else "1d"


def hit_rate_trend(store: EventStore, scope: Scope, *, by: str | None = None,
                   bucket: str | None = None) -> pd.DataFrame:
    """Lookups, hits, hit rate and dollars saved per bucket (hours for up to three days,
    else days) and, with ``by``, per group: ``monitoring.metrics.trend``."""
    return trend(store, HIT_METRICS, bucket=bucket or _bucket(scope),
                   by=(by,) if by else (), window=scope.window, filters=scope.filters)


def hit_rate_chart(trend: pd.DataFrame, *, by: str | None = None) -> alt.Chart | Note:
    """Hit rate per bucket (a line per group of ``by``); click the legend to pick one."""
    data = trend[trend["cache_lookups"] > 0].copy()
    if data.empty:
        return Note("No cache lookups in this window: is a response cache configured "
                    "([cache] backend in devora.toml)?")
    data["bucket"] = pd.to_datetime(data["bucket"]).dt.tz_localize(None)
    tooltip = [alt.Tooltip("bucket:T", title="from"),
               alt.Tooltip("cache_hit_rate:Q", format=".1%", title="hit rate"),
               alt.Tooltip("cache_hits:Q", format=",", title="hits"),
               alt.Tooltip("cache_lookups:Q", format=",", title="lookups"),
               alt.Tooltip("saved_cost_usd:Q", format=_MONEY, title="saved")]
    chart = alt.Chart(clean(data), title="Response-cache hit rate").mark_line(point=True)
    encoding = {"x": alt.X("bucket:T", title=None),
                "y": alt.Y("cache_hit_rate:Q", title="hits / lookups",
                           axis=alt.Axis(format="%"))}
    if by:
        pick = alt.selection_point(fields=[by], bind="legend")
        picked: alt.Chart = chart.encode(**encoding, color=alt.Color(f"{by}:N"),
                            opacity=alt.condition(pick, alt.value(1.0), alt.value(0.15)),
                            tooltip=[alt.Tooltip(f"{by}:N"), *tooltip]
                            ).add_params(pick).properties(width=560)
        return picked
    plain: alt.Chart = chart.encode(**encoding, tooltip=tooltip).properties(width=560)
    return plain


def hit_rate_by(store: EventStore, scope: Scope, by: str) -> pd.DataFrame:
    """Hit rate and savings per group of ``by`` over the window (busiest first)."""
    return metrics(store, HIT_METRICS, by=(by,), window=scope.window, filters=scope.filters)


def hit_rate_bars(frame: pd.DataFrame, by: str) -> alt.Chart | Note:
    """Hit rate per group; the tooltip says how many lookups the rate rests on."""
    data = frame[frame["cache_lookups"] > 0].copy()
    if data.empty:
        return Note(f"No cache lookups to compare by {by} in this window.")
    data[by] = data[by].astype(str)
    chart_: alt.Chart = alt.Chart(clean(data), title=f"Hit rate by {by}").mark_bar().encode(
        y=alt.Y(f"{by}:N", sort="-x", title=None),
        x=alt.X("cache_hit_rate:Q", title="hits / lookups", axis=alt.Axis(format="%")),
        tooltip=[alt.Tooltip(f"{by}:N"),
                 alt.Tooltip("cache_hit_rate:Q", format=".1%", title="hit rate"),
                 alt.Tooltip("cache_hits:Q", format=",", title="hits"),
                 alt.Tooltip("cache_lookups:Q", format=",", title="lookups"),
                 alt.Tooltip("requests:Q", format=",", title="calls"),
                 alt.Tooltip("saved_cost_usd:Q", format=_MONEY, title="saved")],
    ).properties(width=480)
    return chart_


def savings_by_day(store: EventStore, scope: Scope) -> pd.DataFrame:
    """Per UTC day: cache hits, the dollars they saved and the seconds of waiting they
    saved (each hit records what the call it answered would have cost and taken)."""
    where, params = selection(scope.window, scope.filters)
    return store.df(f"""
        SELECT CAST(date_trunc('day', ts AT TIME ZONE 'UTC') AS DATE) AS day,
               count(*) AS hits, coalesce(sum(saved_cost_usd), 0) AS saved_cost_usd,
               coalesce(sum(saved_latency_ms), 0) / 1000.0 AS saved_seconds
        FROM events WHERE {where} AND cache_outcome IN ('hit', 'semantic_hit')
        GROUP BY 1 ORDER BY 1""", params)


def savings_chart(frame: pd.DataFrame) -> alt.HConcatChart | Note:
    """Dollars (left) and minutes of waiting (right) the cache hits saved, per day."""
    if frame.empty:
        return Note("No cache hits in this window, so nothing was saved.")
    data = frame.assign(day=pd.to_datetime(frame["day"]),
                        saved_minutes=frame["saved_seconds"] / 60)
    base = alt.Chart(clean(data)).mark_bar(color=_BAR).encode(
        x=alt.X("yearmonthdate(day):T", title="day (UTC)"),
        tooltip=[alt.Tooltip("yearmonthdate(day):T", title="day"),
                 alt.Tooltip("hits:Q", format=","),
                 alt.Tooltip("saved_cost_usd:Q", format=_MONEY, title="saved"),
                 alt.Tooltip("saved_minutes:Q", format=",.1f", title="minutes saved")])
    dollars = base.encode(y=alt.Y("saved_cost_usd:Q", title="USD saved",
                                  axis=alt.Axis(format="$,.2f"))).properties(
        width=300, title="Dollars saved by hits")
    minutes = base.encode(y=alt.Y("saved_minutes:Q", title="minutes of waiting saved")
                          ).properties(width=300, title="Waiting saved by hits")
    both: alt.HConcatChart = alt.hconcat(dollars, minutes, title="Savings from cache hits")
    return both


def policy_table(analysis: CacheAnalysis) -> pd.DataFrame:
    """The counterfactual replay, one row per policy, most dollars saved first."""
    return analysis.table.sort_values(["dollars_saved", "hit_rate_pct"], ascending=False,
                                      ignore_index=True)


def policy_chart(analysis: CacheAnalysis) -> alt.Chart | Note:
    """Dollars each policy would have saved on this traffic; the tooltip has hit rate,
    share of spend, latency and evictions. Policies that could not be replayed (no cache
    keys; no prompt text for semantic) are left out and named in the note column."""
    if analysis.requests == 0:
        return Note("No LLM calls in this window to replay.")
    table = policy_table(analysis)
    table = table[table["unavailable"].isna()]
    if table.empty:
        return Note("No policy could be replayed: " + "; ".join(
            sorted(set(analysis.table["unavailable"].dropna().astype(str)))))
    data = clean(table.drop(columns=["unavailable"]).assign(
        latency_saved_h=table["latency_saved_ms"] / 3_600_000))
    title = "What each cache policy would have saved"
    chart_: alt.Chart = alt.Chart(data, title=title).mark_bar().encode(
        y=alt.Y("policy:N", sort="-x", title=None, axis=alt.Axis(labelLimit=300)),
        x=alt.X("dollars_saved:Q", title="USD saved", axis=alt.Axis(format="$,.2f")),
        color=alt.Color("hit_rate_pct:Q", title="hit rate %",
                        scale=alt.Scale(scheme="blues")),
        tooltip=["policy:N", alt.Tooltip("dollars_saved:Q", format=_MONEY, title="saved"),
                 alt.Tooltip("spend_saved_pct:Q", format=".2f", title="% of spend"),
                 alt.Tooltip("hit_rate_pct:Q", format=".1f", title="hit rate %"),
                 alt.Tooltip("hits:Q", format=","), alt.Tooltip("lookups:Q", format=","),
                 alt.Tooltip("bypassed:Q", format=","),
                 alt.Tooltip("latency_saved_h:Q", format=",.1f", title="hours saved"),
                 alt.Tooltip("evictions:Q", format=",")],
    ).properties(width=420)
    return chart_


def prefix_table(analysis: CacheAnalysis) -> pd.DataFrame | Note:
    """Prompt-prefix reuse (512-token blocks an earlier request sent) and what a provider
    prompt cache would save per model; only logs with prefix block ids carry it."""
    reuse = analysis.prefix
    if reuse is None:
        return Note("No prompt-prefix block ids in this log (only imported traces such as "
                    "Mooncake's carry them), so prefix reuse cannot be measured here; see "
                    "the provider prompt caching below for what is recorded.")
    rows = [{"measure": "requests", "value": f"{reuse.requests:,}"},
            {"measure": "requests reusing a prefix",
             "value": f"{reuse.requests_with_hit:,}"},
            {"measure": "blocks reused (prefix)", "value": f"{reuse.block_share:.1%}"},
            {"measure": "blocks seen before (upper bound)",
             "value": f"{reuse.seen_block_share:.1%}"},
            {"measure": "input tokens reusable", "value": f"{reuse.token_share:.1%}"}]
    rows += [{"measure": f"saved on {model}",
              "value": "not priced" if saved is None else f"${saved:,.2f}"}
             for model, saved in analysis.prefix_savings.items()]
    return pd.DataFrame(rows)


def provider_cache_savings(store: EventStore, scope: Scope, book: PriceBook) -> pd.DataFrame:
    """Per model: input tokens, those the provider served from its prompt cache, and the
    dollars that saved against the full input price (cached-input rate from ``book``)."""
    where, params = selection(scope.window, scope.filters)
    frame = store.df(f"""
        SELECT coalesce(response_model, request_model) AS model,
               CAST(coalesce(sum(input_tokens), 0) AS BIGINT) AS input_tokens,
               CAST(coalesce(sum(cached_input_tokens), 0) AS BIGINT) AS cached_input_tokens
        FROM events WHERE {where} AND coalesce(cache_outcome, '') NOT IN ('hit', 'semantic_hit')
        GROUP BY 1 ORDER BY 2 DESC""", params)
    saved: list[float | None] = []
    for row in frame.itertuples():
        price = book.price(str(row.model))
        rate = None if price is None else price.input - (price.cached_input or price.input)
        tokens = float(row.cached_input_tokens)  # type: ignore[arg-type]
        saved.append(None if rate is None else tokens * rate / 1e6)
    frame["cached_share"] = frame["cached_input_tokens"] / frame["input_tokens"].where(
        frame["input_tokens"] > 0)
    frame["saved_usd"] = pd.Series(saved, index=frame.index, dtype="float64")
    return frame


def provider_cache_chart(frame: pd.DataFrame) -> alt.Chart | Note:
    """Share of input tokens the providers served from their prompt caches, per model."""
    data = frame[frame["input_tokens"] > 0]
    if data.empty:
        return Note("No LLM calls with input tokens in this window.")
    title = "Provider prompt caching"
    chart_: alt.Chart = alt.Chart(clean(data), title=title).mark_bar().encode(
        y=alt.Y("model:N", sort="-x", title=None),
        x=alt.X("cached_share:Q", title="cached share of input tokens",
                axis=alt.Axis(format="%")),
        tooltip=["model:N", alt.Tooltip("cached_share:Q", format=".1%", title="cached"),
                 alt.Tooltip("input_tokens:Q", format=","),
                 alt.Tooltip("cached_input_tokens:Q", format=",", title="cached tokens"),
                 alt.Tooltip("saved_usd:Q", format=_MONEY, title="saved")],
    ).properties(width=480)
    return chart_
