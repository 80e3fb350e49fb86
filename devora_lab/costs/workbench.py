"""``Costs``: one object per workspace, one call per question about money.

``breakdown`` (where it went), ``reprice`` (under other prices or another model),
``forecast`` (the next days with 80 %/95 % intervals and, given a budget, the probability
that it runs out by each day of its period), ``recommend`` (how to spend less, with
evidence) and ``budget_status``. Each opens the event log for the call only, so a
notebook can keep one ``Costs`` while agents keep writing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING

import pandas as pd

from devora_lab.costs import breakdown as _breakdown
from devora_lab.costs.budgets import Budget, period_bounds
from devora_lab.errors import ConfigError
from devora_lab.workspace import Workspace

if TYPE_CHECKING:
    from devora_lab.costs.forecast import Exhaustion, Forecast
    from devora_lab.costs.recommend import Recommendation
    from devora_lab.llm.pricing import PriceBook

__all__ = ["BudgetForecast", "Costs"]

_TAG_DIMENSIONS = {"experiment": "experiment", "template_name": "template"}


@dataclass(frozen=True)
class BudgetForecast:
    """A forecast of daily spend and, for a budget, when it may run out."""

    forecast: Forecast
    history: pd.Series
    budget: Budget | None = None
    spent_so_far: float | None = None
    exhaustion: Exhaustion | None = None


def _budget_filters(budget: Budget) -> dict[str, str]:
    """Breakdown filters selecting the calls a budget with one fixed key covers."""
    key = budget.fixed_key()
    if key is None:
        raise ConfigError(f"budget {budget.name} covers each {budget.scope} separately",
                          fix="forecast one value: a budget with a fixed match, or filters=")
    if key == "global":
        return {}
    if key.startswith("tag:"):
        tag, _, value = key[4:].partition("=")
        if tag not in _TAG_DIMENSIONS:
            raise ConfigError(f"cannot forecast the tag {tag!r}",
                              fix=f"forecast budgets on {', '.join(_TAG_DIMENSIONS)} tags")
        return {_TAG_DIMENSIONS[tag]: value}
    scope, _, value = key.partition("=")
    return {{"model": "requested_model"}.get(scope, scope): value}


class Costs:
    """Cost questions over one workspace's event log (see the module docstring)."""

    def __init__(self, workspace: str | os.PathLike[str] | Workspace | None = None) -> None:
        self.workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)

    def _book(self, book: PriceBook | None) -> PriceBook:
        return book if book is not None else self.workspace.price_book()

    def breakdown(self, by: Sequence[str] = ("model",), *, since: datetime | None = None,
                  until: datetime | None = None,
                  filters: Mapping[str, str] | None = None) -> pd.DataFrame:
        with self.workspace.event_log().store() as store:
            return _breakdown.breakdown(store, by, since=since, until=until, filters=filters)

    def top_spenders(self, by: str = "user", n: int = 10, *, since: datetime | None = None,
                     until: datetime | None = None) -> pd.DataFrame:
        with self.workspace.event_log().store() as store:
            return _breakdown.top_spenders(store, by, n, since=since, until=until)

    def reprice(self, book: PriceBook | None = None, *, by: Sequence[str] = ("model",),
                as_model: str | None = None, since: datetime | None = None,
                until: datetime | None = None) -> pd.DataFrame:
        from devora_lab.costs.repricing import reprice

        with self.workspace.event_log().store() as store:
            return reprice(store, self._book(book), by=by, as_model=as_model, since=since,
                           until=until)

    def daily(self, metric: str = "cost", *, since: datetime | None = None,
              until: datetime | None = None, filters: Mapping[str, str] | None = None,
              tz: str = "UTC") -> pd.Series:
        with self.workspace.event_log().store() as store:
            return _breakdown.daily(store, metric, since=since, until=until, filters=filters,
                                    timezone=tz)

    def recommend(self, *, days: float = 30.0, margin: float = 0.02) -> list[Recommendation]:
        from devora_lab.costs.recommend import recommend

        with self.workspace.event_log().store() as store:
            return recommend(store, self._book(None), days=days, margin=margin)

    def budgets(self) -> list[Budget]:
        from devora_lab.costs.wiring import budget_registry

        return budget_registry(self.workspace).list()

    def budget_status(self) -> pd.DataFrame:
        from devora_lab.costs.wiring import budget_guard

        log = self.workspace.event_log()
        try:
            guard = budget_guard(self.workspace, log)
            return pd.DataFrame() if guard is None else guard.status()
        finally:
            log.close()

    def forecast(self, metric: str = "cost", *, horizon: int = 14, budget: str | None = None,
                 history_days: int = 120, filters: Mapping[str, str] | None = None,
                 now: datetime | None = None, seed: int = 0) -> BudgetForecast:
        """Forecast daily ``metric`` from complete days of history (today is partial and
        left out). With ``budget`` (a name), the series is the budget's scope, the horizon
        runs to the end of its period, and ``exhaustion`` says how likely it runs out."""
        from devora_lab.costs.forecast import exhaustion, forecast

        now = now or datetime.now(timezone.utc)
        chosen = self._budget(budget) if budget is not None else None
        tz = chosen.timezone if chosen is not None else "UTC"
        scope = dict(filters or {}) if chosen is None else _budget_filters(chosen)
        today = pd.Timestamp(now.astimezone(_zone(tz)).date()).tz_localize(tz).to_pydatetime()
        history = self.daily(metric, since=today - timedelta(days=history_days), until=today,
                             filters=scope, tz=tz)
        history = history.loc[history.ne(0).idxmax():] if history.any() else history
        if chosen is None:
            return BudgetForecast(forecast(history, horizon, seed=seed), history)
        start, end = period_bounds(chosen.period, now, chosen.timezone)
        days_left = max((end.date() - today.date()).days, 1)
        result = forecast(history, max(horizon, days_left), seed=seed)
        spent = float(self.daily("cost", since=start, until=now, filters=scope, tz=tz).sum())
        last_day = (end - timedelta(microseconds=1)).date()
        return BudgetForecast(result, history, chosen, spent,
                              exhaustion(result, spent, chosen.limit_usd, last_day))

    def _budget(self, name: str) -> Budget:
        for budget in self.budgets():
            if budget.name == name:
                return budget
        raise ConfigError(f"no budget named {name!r}",
                          fix="see `devora-lab budgets list`, or set one with budgets set")


def _zone(name: str) -> tzinfo:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)
