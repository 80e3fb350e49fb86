"""Re-price history: what the recorded tokens cost under another price book or model.

Events keep their tokens and the price-book version they were priced with, so a corrected
price fixes history (``reprice(store, PriceBook.load("fixed.json"))``), an unpriced model
gets a price after the fact, and "what would this traffic have cost on model X" is one
call (``as_model="gpt-4o-mini"``). Prices apply by the day of each call (a book's price
history), and long-context rates by the request: the query splits each group into
requests above and below the model's long-context threshold, because tokens are summed
before pricing and a sum would cross the threshold that no single request crossed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING

import pandas as pd

from devora_lab.costs.breakdown import DIMENSIONS, period_filter

if TYPE_CHECKING:
    from devora_lab.events.store import EventStore
    from devora_lab.llm.pricing import ModelPrice, PriceBook

__all__ = ["reprice"]

_NOT_HIT = "coalesce(cache_outcome NOT IN ('hit', 'semantic_hit'), true)"
_TOKENS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_creation_input_tokens")


def _thresholds(book: PriceBook, models: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for model in models:
        price = book.price(model)
        if price is not None and price.long_context_threshold is not None:
            found[model] = price.long_context_threshold
    return found


def _long_case(thresholds: Mapping[str, int]) -> tuple[str, list[object]]:
    if not thresholds:
        return "false", []
    whens = " ".join("WHEN coalesce(response_model, request_model) = ? THEN input_tokens > ?"
                     for _ in thresholds)
    params: list[object] = [value for item in thresholds.items() for value in item]
    return f"coalesce(CASE {whens} END, false)", params


def _grouped(store: EventStore, by: Sequence[str], long_sql: str, long_params: list[object],
             since: datetime | None, until: datetime | None,
             filters: Mapping[str, str] | None) -> pd.DataFrame:
    where, params = period_filter(since, until, filters)
    dims = "".join(f"{DIMENSIONS[name]} AS \"{name}\", " for name in by)
    # a cache hit keeps its tokens on the event but cost nothing: it bills no tokens
    sums = ", ".join(f"coalesce(sum({column}) FILTER (WHERE {_NOT_HIT}), 0) AS {column}"
                     for column in _TOKENS)
    count = len(by) + 3
    return store.df(f"""
        SELECT {dims} coalesce(response_model, request_model) AS priced_model,
               CAST(ts AT TIME ZONE 'UTC' AS DATE) AS day, {long_sql} AS long_context,
               count(*) AS calls, {sums}, coalesce(sum(cost_usd), 0) AS recorded_cost_usd,
               count(*) FILTER (WHERE cost_status = 'unpriced') AS unpriced_calls
        FROM events WHERE {where}
        GROUP BY {', '.join(str(i + 1) for i in range(count))}""", [*long_params, *params])


def _cost(price: ModelPrice | None, row: pd.Series, long_context: bool) -> float | None:
    if price is None:
        return None
    fixed = dataclasses.replace(price, long_context_threshold=0 if long_context else None)
    tokens = [int(row[column]) for column in _TOKENS]
    if tokens[2] + tokens[3] > tokens[0]:  # a provider reported parts beyond the whole
        tokens[2] = max(0, tokens[0] - tokens[3])
    return fixed.cost(*tokens)


def reprice(store: EventStore, book: PriceBook, *, by: Sequence[str] = ("model",),
            as_model: str | None = None, since: datetime | None = None,
            until: datetime | None = None,
            filters: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Recorded cost against the cost under ``book`` (and ``as_model``), per group.

    Columns: the ``by`` dimensions, ``calls``, ``recorded_cost_usd``, ``repriced_cost_usd``,
    ``difference_usd`` (repriced - recorded), ``unpriced_calls`` (recorded without a
    price) and ``still_unpriced_calls`` (no price in ``book`` either: excluded from the
    repriced sum, and counted so the total is never silently low).
    """
    for name in by:
        if name not in DIMENSIONS:
            from devora_lab.errors import ConfigError

            raise ConfigError(f"unknown dimension {name!r}",
                              fix=f"use one of {', '.join(DIMENSIONS)}")
    models = store.df("SELECT DISTINCT coalesce(response_model, request_model) AS m FROM events "
                      "WHERE kind IN ('llm.call', 'embedding') AND m IS NOT NULL")["m"].tolist()
    if as_model:  # the target model's threshold applies to every request
        threshold = _thresholds(book, [as_model]).get(as_model)
        long_params: list[object] = [] if threshold is None else [threshold]
        long_sql = "false" if threshold is None else "coalesce(input_tokens > ?, false)"
    else:
        long_sql, long_params = _long_case(_thresholds(book, models))
    frame = _grouped(store, by, long_sql, long_params, since, until, filters)
    repriced: list[float | None] = []
    for _, row in frame.iterrows():
        model = as_model or row["priced_model"]
        day = row["day"] if isinstance(row["day"], date) else None
        price = book.price(model, day) if isinstance(model, str) else None
        repriced.append(_cost(price, row, bool(row["long_context"])))
    frame["repriced_cost_usd"] = pd.Series(repriced, index=frame.index, dtype="float64")
    frame["still_unpriced_calls"] = frame["calls"].where(frame["repriced_cost_usd"].isna(), 0)
    keys = list(by)
    summed = frame.groupby(keys, dropna=False, sort=False) if keys else frame.assign(_all=0
                                                                                    ).groupby("_all")
    result = summed.agg(calls=("calls", "sum"), recorded_cost_usd=("recorded_cost_usd", "sum"),
                        repriced_cost_usd=("repriced_cost_usd", lambda s: s.sum(min_count=0)),
                        unpriced_calls=("unpriced_calls", "sum"),
                        still_unpriced_calls=("still_unpriced_calls", "sum")).reset_index()
    if not keys:
        result = result.drop(columns="_all")
    result["difference_usd"] = result["repriced_cost_usd"] - result["recorded_cost_usd"]
    return result.sort_values("recorded_cost_usd", ascending=False, ignore_index=True)
