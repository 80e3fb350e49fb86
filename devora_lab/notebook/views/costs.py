"""Charts and tables of the costs notebook, over what ``devora_lab.costs.workbench.Costs``
returns: where the money went, what it would cost on other models, what the next days
will cost (with intervals), whether a budget runs out, and how to spend less.

Chart builders are pure (a DataFrame or a result object in, an altair chart out); the few
functions taking a ``Costs`` only loop over its calls (re-price as each model, forecast
each budget) and turn a refusal (too little history, no budget) into a ``Note``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import altair as alt
import pandas as pd

from devora_lab.errors import ConfigError
from devora_lab.notebook.views._common import Note, clean

if TYPE_CHECKING:
    from devora_lab.costs.forecast import Exhaustion
    from devora_lab.costs.recommend import Recommendation
    from devora_lab.costs.workbench import BudgetForecast, Costs

__all__ = ["breakdown_chart", "budget_forecasts", "budget_status_chart", "daily_chart",
           "evidence_table", "exhaustion_chart", "exhaustion_table", "forecast_chart",
           "forecast_note", "forecast_or_note",
           "recommendations_chart", "recommendations_table", "render_recommendations",
           "reprice_as_models", "reprice_chart", "top_groups"]

_OTHER: Final = "(other)"
_NONE: Final = "(none)"
_MONEY: Final = "$,.2f"
_BAR: Final = "#4c78a8"
_WARN: Final = "#e45756"


def _label(value: object) -> str:
    """A group as text; a missing one (None, NaN, NA) as ``(none)``."""
    missing = value is None or (isinstance(value, float) and math.isnan(value)) \
        or value is pd.NA or value is pd.NaT
    return _NONE if missing else str(value)


def top_groups(frame: pd.DataFrame, by: str, n: int = 12) -> pd.DataFrame:
    """The ``n`` costliest groups of a breakdown and the rest summed as ``(other)``, with
    the group as text (a missing one as ``(none)``): a chart of 300 users stays legible."""
    data = frame.copy()
    data[by] = data[by].map(_label)
    data = data.sort_values("cost_usd", ascending=False, ignore_index=True)
    if len(data) <= n:
        return data
    head, rest = data.head(n), data.iloc[n:]
    sums = rest.select_dtypes("number").sum()
    other = {**{c: sums.get(c) for c in data.columns}, by: _OTHER}
    total = float(data["cost_usd"].sum())
    other["share"] = float(rest["cost_usd"].sum()) / total if total > 0 else 0.0
    ok = float(rest["ok_calls"].sum()) if "ok_calls" in rest else 0.0
    other["cost_per_success_usd"] = float(rest["cost_usd"].sum()) / ok if ok else None
    return pd.concat([head, pd.DataFrame([other])], ignore_index=True)


def breakdown_chart(frame: pd.DataFrame, by: str, *, top: int = 12,
                    title: str | None = None) -> alt.Chart | Note:
    """Cost per group of ``Costs.breakdown(by=[by])`` as bars, costliest first. A red bar
    has unpriced calls: its cost is a floor, not the whole (they are never counted as $0)."""
    if frame.empty:
        return Note(f"No calls in this window to break down by {by}.")
    data = clean(top_groups(frame, by, top))
    tooltip = [alt.Tooltip(f"{by}:N"), alt.Tooltip("cost_usd:Q", format=_MONEY, title="cost"),
               alt.Tooltip("share:Q", format=".1%"), alt.Tooltip("calls:Q", format=","),
               alt.Tooltip("errors:Q", format=","),
               alt.Tooltip("input_tokens:Q", format=",", title="input tokens"),
               alt.Tooltip("output_tokens:Q", format=",", title="output tokens"),
               alt.Tooltip("cost_per_success_usd:Q", format="$,.4f", title="per success"),
               alt.Tooltip("unpriced_calls:Q", format=",", title="unpriced calls")]
    chart: alt.Chart = alt.Chart(data, title=title or f"Cost by {by}").mark_bar().encode(
        y=alt.Y(f"{by}:N", sort="-x", title=None),
        x=alt.X("cost_usd:Q", title="cost (USD)", axis=alt.Axis(format="$,.0f")),
        color=alt.condition(alt.datum.unpriced_calls > 0, alt.value(_WARN), alt.value(_BAR)),
        tooltip=tooltip,
    ).properties(width=520)
    return chart


def daily_chart(frame: pd.DataFrame, by: str, *, top: int = 8,
                title: str | None = None) -> alt.Chart | Note:
    """Daily cost stacked by ``by`` from ``Costs.breakdown(by=["day", by])``; click a
    legend entry to pick one group out (the others fade)."""
    if frame.empty:
        return Note("No calls in this window, so no daily cost.")
    data = frame.copy()
    data[by] = data[by].map(_label)
    totals = data.groupby(by)["cost_usd"].sum()
    keep = set(totals.sort_values(ascending=False).head(top).index)
    data[by] = data[by].where(data[by].isin(keep), _OTHER)
    data = data.groupby(["day", by], as_index=False)[["cost_usd", "calls"]].sum()
    data["day"] = pd.to_datetime(data["day"])
    pick = alt.selection_point(fields=[by], bind="legend")
    chart: alt.Chart = alt.Chart(clean(data), title=title or f"Daily cost by {by}").mark_bar(
    ).encode(
        x=alt.X("yearmonthdate(day):T", title="day (UTC)"),
        y=alt.Y("sum(cost_usd):Q", title="cost (USD)", axis=alt.Axis(format="$,.0f")),
        color=alt.Color(f"{by}:N", title=by),
        opacity=alt.condition(pick, alt.value(1.0), alt.value(0.2)),
        tooltip=[alt.Tooltip("yearmonthdate(day):T", title="day"), alt.Tooltip(f"{by}:N"),
                 alt.Tooltip("sum(cost_usd):Q", format=_MONEY, title="cost"),
                 alt.Tooltip("sum(calls):Q", format=",", title="calls")],
    ).add_params(pick).properties(width=560)
    return chart


# ---------------------------------------------------------------------------- re-pricing


def reprice_as_models(costs: Costs, models: Iterable[str], *, since: datetime | None = None,
                      until: datetime | None = None, **_: Any) -> pd.DataFrame:
    """The whole period's traffic re-priced as each of ``models`` (``Costs.reprice(
    as_model=...)``, one total each), beside what was recorded: "what if it all ran on X".
    Only chat models with a price are candidates (an embedding model or an unpriced one
    answers nothing here), each once under its price-book name (``gpt-4o-2024-08-06`` is
    ``gpt-4o``). Extra keywords (``filters``, from ``**scope.query``) are ignored:
    re-pricing covers all calls of the period."""
    book = costs.workspace.price_book()
    candidates: dict[str, None] = {}
    for name in models:
        price = book.price(name)
        if price is not None and price.output > 0:
            candidates[price.model] = None
    rows = []
    for model in candidates:
        total = costs.reprice(by=(), as_model=model, since=since, until=until)
        if total.empty:
            continue
        row = total.iloc[0]
        priced = int(row["still_unpriced_calls"]) < int(row["calls"])  # else no price at all
        rows.append({"as_model": model, "calls": int(row["calls"]),
                     "recorded_cost_usd": float(row["recorded_cost_usd"]),
                     "repriced_cost_usd": row["repriced_cost_usd"] if priced else None,
                     "difference_usd": row["difference_usd"] if priced else None,
                     "still_unpriced_calls": int(row["still_unpriced_calls"])})
    columns = ["as_model", "calls", "recorded_cost_usd", "repriced_cost_usd", "difference_usd",
               "still_unpriced_calls"]
    return pd.DataFrame(rows, columns=columns).sort_values("repriced_cost_usd",
                                                           ignore_index=True)


def reprice_chart(frame: pd.DataFrame, *, title: str = "The period re-priced as one model"
                  ) -> alt.LayerChart | Note:
    """Bars: the cost had every call gone to that model; the rule: what was recorded.
    A model with no price shows no bar (its calls stay unpriced, never $0)."""
    if frame.empty:
        return Note("Nothing to re-price: no calls to a priced chat model in this window.")
    data = clean(frame.dropna(subset=["repriced_cost_usd"]))
    recorded = float(frame["recorded_cost_usd"].max()) if not frame.empty else 0.0
    bars = alt.Chart(data).mark_bar().encode(
        y=alt.Y("as_model:N", sort="x", title="all calls as"),
        x=alt.X("repriced_cost_usd:Q", title="cost (USD)", axis=alt.Axis(format="$,.0f")),
        color=alt.condition(alt.datum.difference_usd > 0, alt.value(_WARN), alt.value(_BAR)),
        tooltip=[alt.Tooltip("as_model:N", title="model"),
                 alt.Tooltip("repriced_cost_usd:Q", format=_MONEY, title="re-priced"),
                 alt.Tooltip("recorded_cost_usd:Q", format=_MONEY, title="recorded"),
                 alt.Tooltip("difference_usd:Q", format="+$,.2f", title="difference"),
                 alt.Tooltip("calls:Q", format=",")])
    rule = alt.Chart(pd.DataFrame({"recorded": [recorded]})).mark_rule(
        strokeDash=[4, 3], color="black").encode(
        x="recorded:Q", tooltip=[alt.Tooltip("recorded:Q", format=_MONEY, title="recorded")])
    return alt.layer(bars, rule, title=title).properties(width=520)


# ---------------------------------------------------------------------------- forecasts


def forecast_or_note(costs: Costs, **options: Any) -> BudgetForecast | Note:
    """``Costs.forecast(**options)``, or a note saying why there is none (an empty log,
    a day of history, an unknown budget)."""
    try:
        return costs.forecast(**options)
    except ConfigError as error:
        fix = f" ({error.fix})" if error.fix else ""
        return Note(f"No forecast: {error.message}{fix}")


def _forecast_frames(result: BudgetForecast) -> tuple[pd.DataFrame, pd.DataFrame]:
    history = result.history.rename("value").rename_axis("day").reset_index()
    history["day"] = pd.to_datetime(history["day"]).dt.tz_localize(None)
    future = result.forecast.frame.rename_axis("day").reset_index()
    future["day"] = pd.to_datetime(future["day"]).dt.tz_localize(None)
    return history, future


def forecast_chart(result: BudgetForecast | Note, *, title: str | None = None
                   ) -> alt.LayerChart | Note:
    """History (dots and line) and the forecast mean with its 80 % (dark) and 95 % (light)
    bands; the bands are the spread of simulated paths, so a day's actual value should
    fall in the 80 % band about four days in five."""
    if isinstance(result, Note):
        return result
    history, future = _forecast_frames(result)
    metric = str(result.history.name or "value")
    name = title or (f"Daily {metric}: forecast of budget {result.budget.name}"
                     if result.budget else f"Daily {metric}: history and forecast")
    axis = alt.Axis(format="$,.0f") if metric == "cost" else alt.Axis(format=",")
    x = alt.X("day:T", title="day")
    band95 = alt.Chart(future).mark_area(opacity=0.18, color=_BAR).encode(
        x=x, y=alt.Y("lo95:Q", title=f"{metric} per day", axis=axis), y2="hi95:Q")
    band80 = alt.Chart(future).mark_area(opacity=0.35, color=_BAR).encode(x=x, y="lo80:Q",
                                                                          y2="hi80:Q")
    fmt = _MONEY if metric == "cost" else ","
    mean = alt.Chart(future).mark_line(color=_BAR, strokeDash=[5, 3], point=True).encode(
        x=x, y="mean:Q",
        tooltip=[alt.Tooltip("day:T"), alt.Tooltip("mean:Q", format=fmt, title="forecast"),
                 alt.Tooltip("lo80:Q", format=fmt, title="80% low"),
                 alt.Tooltip("hi80:Q", format=fmt, title="80% high"),
                 alt.Tooltip("lo95:Q", format=fmt, title="95% low"),
                 alt.Tooltip("hi95:Q", format=fmt, title="95% high")])
    past = alt.Chart(history).mark_line(color="black", point=True).encode(
        x=x, y="value:Q", tooltip=[alt.Tooltip("day:T"),
                                   alt.Tooltip("value:Q", format=fmt, title=metric)])
    return alt.layer(band95, band80, mean, past, title=name).properties(width=560)


def forecast_note(result: BudgetForecast | Note) -> Note | None:
    """Which model the forecast used and why (the backtest's verdict), in words; None
    when there is no forecast (``forecast_chart`` already shows why)."""
    if isinstance(result, Note):
        return None
    fc = result.forecast
    name = {"ets": "damped-trend ETS", "seasonal_naive": "seasonal naive"}[fc.model]
    notes = " ".join(fc.notes) or "No notes."
    total = float(fc.frame["mean"].sum())
    return Note(f"Model: {name}, fitted on {fc.history_days} complete days. {notes} "
                f"Forecast total over {len(fc.frame)} days: {total:,.2f}.")


def exhaustion_table(forecasts: dict[str, BudgetForecast | Note]) -> pd.DataFrame | None:
    """Per budget: limit, spent so far, the chance it runs out by the end of its period,
    and the first day on which at least half the simulated paths have run it out; None
    without budgets (``exhaustion_chart`` says so)."""
    if not forecasts:
        return None
    rows: list[dict[str, Any]] = []
    for name, result in forecasts.items():
        if isinstance(result, Note) or result.exhaustion is None or result.budget is None:
            reason = result.text if isinstance(result, Note) else "no exhaustion estimate"
            rows.append({"budget": name, "note": reason})
            continue
        frame = result.exhaustion.frame
        median = result.exhaustion.median_date
        rows.append({"budget": name, "period": result.budget.period,
                     "limit_usd": result.budget.limit_usd, "spent_usd": result.spent_so_far,
                     "p_exhausted_by_period_end": float(frame["p_exhausted"].iloc[-1])
                     if not frame.empty else None,
                     "median_exhaustion_day": None if median is None else median.date(),
                     "note": ""})
    return pd.DataFrame(rows, columns=["budget", "period", "limit_usd", "spent_usd",
                                       "p_exhausted_by_period_end", "median_exhaustion_day",
                                       "note"])


def budget_forecasts(costs: Costs, *, horizon: int = 14,
                     now: datetime | None = None) -> dict[str, BudgetForecast | Note]:
    """A forecast per budget that covers one series (global, or one user/model/agent);
    a budget per each user (``match="*"``) has no single series and gets a note."""
    found: dict[str, BudgetForecast | Note] = {}
    for budget in costs.budgets():
        if budget.fixed_key() is None:
            found[budget.name] = Note(f"Budget {budget.name} applies to each {budget.scope} "
                                      "separately: there is no single series to forecast.")
            continue
        found[budget.name] = forecast_or_note(costs, budget=budget.name, horizon=horizon,
                                              now=now)
    return found


def _exhaustion_rows(name: str, result: BudgetForecast) -> pd.DataFrame:
    exhaustion: Exhaustion | None = result.exhaustion
    if exhaustion is None or result.budget is None:
        return pd.DataFrame()
    frame = exhaustion.frame.rename_axis("day").reset_index()
    frame["day"] = pd.to_datetime(frame["day"]).dt.tz_localize(None)
    frame["budget"] = name
    frame["limit_usd"] = result.budget.limit_usd
    frame["spent_so_far"] = result.spent_so_far
    return frame


def exhaustion_chart(forecasts: dict[str, BudgetForecast | Note]) -> alt.LayerChart | Note:
    """Per budget and remaining day of its period, the probability that spend has reached
    the limit (the share of simulated paths that have); the dashed rule is 50 %."""
    frames = [_exhaustion_rows(name, result) for name, result in forecasts.items()
              if not isinstance(result, Note)]
    frames = [frame for frame in frames if not frame.empty]
    if not frames:
        return Note("No budget with a single series to forecast: set one with "
                    "`devora-lab budgets set NAME --limit 100 --period monthly`.")
    data = clean(pd.concat(frames, ignore_index=True))
    lines = alt.Chart(data).mark_line(point=True, interpolate="step-after").encode(
        x=alt.X("day:T", title="day"),
        y=alt.Y("p_exhausted:Q", title="P(limit reached by then)",
                scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
        color=alt.Color("budget:N"),
        tooltip=[alt.Tooltip("budget:N"), alt.Tooltip("day:T"),
                 alt.Tooltip("p_exhausted:Q", format=".1%", title="P(exhausted)"),
                 alt.Tooltip("spend_p50:Q", format=_MONEY, title="median spend by then"),
                 alt.Tooltip("limit_usd:Q", format=_MONEY, title="limit"),
                 alt.Tooltip("spent_so_far:Q", format=_MONEY, title="spent so far")])
    half = alt.Chart(pd.DataFrame({"p": [0.5]})).mark_rule(strokeDash=[4, 3]).encode(y="p:Q")
    return alt.layer(lines, half, title="Chance each budget runs out").properties(width=560)


def budget_status_chart(status: pd.DataFrame, *, top: int = 20) -> alt.LayerChart | Note:
    """Share of each budget's limit spent this period (``Costs.budget_status()``), with
    rules at 80 % and 100 %."""
    if status.empty:
        return Note("No budgets in this workspace: `devora-lab budgets set` adds one.")
    data = status.copy()
    data["label"] = data["budget"].astype(str) + " · " + data["key"].astype(str)
    data = clean(data.sort_values("share_used", ascending=False).head(top)[
        ["label", "budget", "key", "period", "limit_usd", "spent_usd", "remaining_usd",
         "share_used", "hard"]].astype({"hard": str}))
    bars = alt.Chart(data).mark_bar().encode(
        y=alt.Y("label:N", sort="-x", title=None),
        x=alt.X("share_used:Q", title="share of limit spent", axis=alt.Axis(format="%")),
        color=alt.condition(alt.datum.share_used >= 0.8, alt.value(_WARN), alt.value(_BAR)),
        tooltip=["budget:N", "key:N", "period:N", "hard:N",
                 alt.Tooltip("spent_usd:Q", format=_MONEY, title="spent"),
                 alt.Tooltip("limit_usd:Q", format=_MONEY, title="limit"),
                 alt.Tooltip("remaining_usd:Q", format=_MONEY, title="remaining"),
                 alt.Tooltip("share_used:Q", format=".1%", title="used")])
    rules = alt.Chart(pd.DataFrame({"x": [0.8, 1.0]})).mark_rule(strokeDash=[4, 3]).encode(
        x="x:Q")
    return alt.layer(bars, rules, title="Budgets this period").properties(width=520)


# ---------------------------------------------------------------------------- recommendations


def recommendations_table(recommendations: Sequence[Recommendation]) -> pd.DataFrame:
    """One row per recommendation, biggest monthly saving first."""
    rows = [{"kind": r.kind, "title": r.title, "monthly_saving_usd": r.monthly_saving_usd,
             "rationale": r.rationale} for r in recommendations]
    return pd.DataFrame(rows, columns=["kind", "title", "monthly_saving_usd", "rationale"])


def recommendations_chart(recommendations: Sequence[Recommendation]) -> alt.Chart | Note:
    """Estimated monthly saving per recommendation (review-only ones claim none)."""
    if not recommendations:
        return Note("No recommendations: no rule found evidence in this period.")
    data = recommendations_table(recommendations)
    chart: alt.Chart = alt.Chart(data, title="Estimated saving per month").mark_bar().encode(
        y=alt.Y("title:N", sort="-x", title=None, axis=alt.Axis(labelLimit=420)),
        x=alt.X("monthly_saving_usd:Q", title="USD per month", axis=alt.Axis(format="$,.0f")),
        color=alt.Color("kind:N"),
        tooltip=["kind:N", "title:N",
                 alt.Tooltip("monthly_saving_usd:Q", format=_MONEY, title="saving / month"),
                 "rationale:N"]).properties(width=420)
    return chart


def _evidence_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "; ".join(_evidence_value(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_evidence_value(v)}" for k, v in value.items())
    return str(value)


def evidence_table(recommendation: Recommendation) -> pd.DataFrame:
    """What a recommendation rests on, one row per fact (lists of records one row each)."""
    rows: list[dict[str, str]] = []
    for key, value in recommendation.evidence.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            rows += [{"evidence": f"{key}[{i}]", "value": _evidence_value(v)}
                     for i, v in enumerate(value)]
        else:
            rows.append({"evidence": key, "value": _evidence_value(value)})
    return pd.DataFrame(rows, columns=["evidence", "value"])


def render_recommendations(recommendations: Sequence[Recommendation]) -> None:
    """Each recommendation as a heading, its rationale and its evidence table."""
    from IPython.display import Markdown, display

    if not recommendations:
        display(Markdown(Note("No recommendations for this period.")._repr_markdown_()))  # type: ignore[no-untyped-call]
    for r in recommendations:
        saving = f"saves about ${r.monthly_saving_usd:,.2f}/month" if r.monthly_saving_usd \
            else "no saving claimed"
        display(Markdown(f"#### {r.title}\n*{r.kind}, {saving}.* {r.rationale}"))  # type: ignore[no-untyped-call]
        display(evidence_table(r))  # type: ignore[no-untyped-call]
