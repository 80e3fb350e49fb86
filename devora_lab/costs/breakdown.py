"""Where the money went: cost, tokens and calls by any dimension and period.

Pure SQL over the ``events`` view (DuckDB), values always bound as parameters; the
dimension names a user may pass map to fixed SQL expressions, so nothing a user types is
formatted into SQL. Costs are those recorded on the events (``llm.call`` and
``embedding``); ``unpriced_calls`` counts events whose model had no price, so a total is
never silently low (see ``repricing`` to price them with another book).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import pandas as pd

from devora_lab.errors import ConfigError
from devora_lab.events.dimensions import DIMENSIONS, dimension_sql

if TYPE_CHECKING:
    from devora_lab.events.store import EventStore

__all__ = ["DIMENSIONS", "METRICS", "breakdown", "cost_kinds", "daily", "period_filter",
           "top_spenders"]

_KINDS: Final = ("llm.call", "embedding")
#: What ``daily`` can total per day.
METRICS: Final[Mapping[str, str]] = {
    "cost": "coalesce(sum(cost_usd), 0)",
    "tokens": "coalesce(sum(input_tokens), 0) + coalesce(sum(output_tokens), 0)",
    "calls": "count(*) FILTER (WHERE kind = 'llm.call')",
}


def cost_kinds() -> tuple[str, ...]:
    """The event kinds that carry a cost: one per LLM call, one per embedding batch."""
    return _KINDS


def period_filter(since: datetime | None, until: datetime | None,
                  filters: Mapping[str, str] | None = None) -> tuple[str, list[object]]:
    """A WHERE clause (without ``WHERE``) and its parameters: cost-carrying kinds, the
    half-open period ``[since, until)`` and equality filters on dimensions."""
    clauses = ["kind IN (?, ?)", "(CAST(? AS TIMESTAMPTZ) IS NULL OR ts >= ?)",
               "(CAST(? AS TIMESTAMPTZ) IS NULL OR ts < ?)"]
    params: list[object] = [*_KINDS, since, since, until, until]
    for name, value in (filters or {}).items():
        clauses.append(f"{dimension_sql(name)} = ?")
        params.append(value)
    return " AND ".join(clauses), params


def breakdown(store: EventStore, by: Sequence[str] = ("model",), *,
              since: datetime | None = None, until: datetime | None = None,
              filters: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Cost, tokens and calls per group of ``by`` dimensions, biggest cost first.

    Columns: the dimensions, ``calls``, ``ok_calls``, ``errors``, ``input_tokens``,
    ``output_tokens``, ``cached_input_tokens``, ``cost_usd``, ``unpriced_calls``,
    ``cost_per_success_usd`` (cost over successful calls: failures cost too) and
    ``share`` of the period's total cost. ``by=()`` gives one total row.
    """
    keys = [(name, dimension_sql(name)) for name in by]
    select = "".join(f"{sql} AS \"{name}\", " for name, sql in keys)
    group = f"GROUP BY {', '.join(str(i + 1) for i in range(len(keys)))}" if keys else ""
    where, params = period_filter(since, until, filters)
    frame = store.df(f"""
        SELECT {select}
               count(*) AS calls,
               count(*) FILTER (WHERE status = 'ok') AS ok_calls,
               count(*) FILTER (WHERE status = 'error') AS errors,
               CAST(coalesce(sum(input_tokens), 0) AS BIGINT) AS input_tokens,
               CAST(coalesce(sum(output_tokens), 0) AS BIGINT) AS output_tokens,
               CAST(coalesce(sum(cached_input_tokens), 0) AS BIGINT) AS cached_input_tokens,
               coalesce(sum(cost_usd), 0) AS cost_usd,
               count(*) FILTER (WHERE cost_status = 'unpriced') AS unpriced_calls
        FROM events WHERE {where} {group}
        ORDER BY cost_usd DESC, calls DESC""", params)
    ok = frame["ok_calls"].where(frame["ok_calls"] > 0)
    frame["cost_per_success_usd"] = frame["cost_usd"] / ok
    total = float(frame["cost_usd"].sum())
    frame["share"] = frame["cost_usd"] / total if total > 0 else 0.0
    return frame


def top_spenders(store: EventStore, by: str = "user", n: int = 10, *,
                 since: datetime | None = None,
                 until: datetime | None = None) -> pd.DataFrame:
    """The ``n`` groups of ``by`` that spent most, with their share of the total."""
    if n < 1:
        raise ConfigError(f"n must be positive, got {n}", fix="ask for at least one row")
    frame = breakdown(store, (by,), since=since, until=until)
    frame = frame[frame[by].notna()]
    return frame.head(n)[[by, "calls", "cost_usd", "share", "cost_per_success_usd"]].reset_index(
        drop=True)


def daily(store: EventStore, metric: str = "cost", *, since: datetime | None = None,
          until: datetime | None = None, filters: Mapping[str, str] | None = None,
          timezone: str = "UTC") -> pd.Series:
    """One value per calendar day in ``timezone`` (cost in dollars, tokens or calls),
    days without traffic as 0, from the first day with data (or ``since``) to the last
    (or the day before ``until``): the series the forecasts are fitted on."""
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}", fix=f"use one of {', '.join(METRICS)}")
    where, params = period_filter(since, until, filters)
    frame = store.df(f"""
        SELECT CAST(timezone(?, ts) AS DATE) AS day, CAST({METRICS[metric]} AS DOUBLE) AS value
        FROM events WHERE {where} GROUP BY 1 ORDER BY 1""", [timezone, *params])
    if frame.empty:
        return pd.Series(dtype="float64", name=metric,
                         index=pd.DatetimeIndex([], freq="D", name="day"))
    values = frame.set_index(pd.DatetimeIndex(frame["day"], name="day"))["value"]
    first = values.index[0] if since is None else pd.Timestamp(
        since.astimezone(_zone(timezone)).date())
    last = values.index[-1] if until is None else pd.Timestamp(
        (until.astimezone(_zone(timezone)) - pd.Timedelta(microseconds=1)).date())
    days = pd.date_range(min(first, values.index[0]), max(last, values.index[-1]), freq="D",
                         name="day")
    return values.reindex(days, fill_value=0.0).rename(metric)


def _zone(name: str) -> Any:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {name!r}",
                          fix="use an IANA name such as UTC or Europe/Berlin") from None
