"""The dashboard's filters: what a reader picks (``Selection``), which values the log offers
(``filter_options``), and the ipywidgets that pick them (``DashboardWidget``).

The logic (a selection's query arguments, the options, what a dropdown change turns into)
is plain Python tested without a frontend; only ``DashboardWidget`` touches ipywidgets,
which are imported when it is built, so the package imports without them.

A widget re-renders into an ``ipywidgets.Output`` on every change, which only a live
frontend (JupyterLab) shows. Headless runs (papermill, nbval, the HTML reports) see the
static view that ``Dashboard.render()`` displays as ordinary outputs instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from devora_lab.events.dimensions import dimension_sql
from devora_lab.monitoring.windows import Window, parse_window

if TYPE_CHECKING:
    from devora_lab.events.store import EventStore

__all__ = ["ALL", "FILTER_DIMENSIONS", "PERIODS", "DashboardWidget", "Selection",
           "dropdown_options", "filter_options", "period_options"]

#: The dimensions a reader filters by (names of ``devora_lab.events.dimensions``).
FILTER_DIMENSIONS: Final = ("model", "agent", "user", "variant")
#: The periods offered in the dropdown (any ``parse_window`` name works in code).
PERIODS: Final = ("24h", "7d", "14d", "30d", "today", "this_week", "this_month",
                  "last_month", "all")
#: The dropdown label that means "no filter".
ALL: Final = "(all)"


@dataclass(frozen=True, slots=True)
class Selection:
    """The period and the filters (``None``: all values) a dashboard shows."""

    period: str = "14d"
    model: str | None = None
    agent: str | None = None
    user: str | None = None
    variant: str | None = None

    def __post_init__(self) -> None:
        parse_window(self.period)  # a ConfigError with the valid names, early

    def filters(self) -> dict[str, str]:
        """The equality filters for ``monitoring.metrics`` and ``costs.breakdown``."""
        return {name: value for name in FILTER_DIMENSIONS
                if (value := getattr(self, name)) is not None}

    def window(self, now: datetime | None = None) -> Window:
        """The period as a ``Window`` ending at ``now``."""
        return parse_window(self.period, now=now)

    def with_values(self, **values: str | None) -> Selection:
        """A copy with some fields changed; the dropdown label ``ALL`` means ``None``."""
        known = {f.name for f in fields(self)}
        changes: dict[str, Any] = {k: (None if v == ALL else v) for k, v in values.items()
                                   if k in known}
        return replace(self, **changes)

    def __str__(self) -> str:
        parts = [f"period {self.period}"]
        parts += [f"{name} {value}" if value is not None else f"all {name}s"
                  for name in FILTER_DIMENSIONS for value in [getattr(self, name)]]
        return " · ".join(parts)


def filter_options(store: EventStore) -> dict[str, list[str]]:
    """The distinct values of each filter dimension among the log's LLM calls, sorted.

    Taken over the whole log rather than the period, so changing the period keeps the
    dropdowns as they are. One query, a union of one ``DISTINCT`` per dimension."""
    union = " UNION ALL ".join(
        f"SELECT DISTINCT '{name}' AS dimension, CAST({dimension_sql(name)} AS VARCHAR) "
        f"AS value FROM events WHERE kind = 'llm.call'" for name in FILTER_DIMENSIONS)
    rows = store.rows(f"SELECT dimension, value FROM ({union}) WHERE value IS NOT NULL "
                      "ORDER BY dimension, value")
    options: dict[str, list[str]] = {name: [] for name in FILTER_DIMENSIONS}
    for dimension, value in rows:
        options[dimension].append(value)
    return options


def period_options(current: str) -> list[str]:
    """The period dropdown's choices: ``PERIODS``, plus ``current`` if it is another one."""
    return list(PERIODS) if current in PERIODS else [current, *PERIODS]


def dropdown_options(values: Sequence[str], current: str | None) -> list[str]:
    """A filter dropdown's choices: ``ALL`` first, the log's values, and the current value
    even when the log does not hold it (a parameter may name a model not seen yet)."""
    choices = [ALL, *values]
    if current is not None and current not in values:
        choices.append(current)
    return choices


class DashboardWidget:
    """Dropdowns for the period and each filter, and an ``Output`` that ``draw`` fills with
    the view for the new selection after every change.

    ``draw(selection)`` displays the view (the dashboard passes its static ``render``);
    it runs inside the ``Output``, so whatever it ``show``s appears there."""

    def __init__(self, selection: Selection, options: Mapping[str, Sequence[str]],
                 draw: Callable[[Selection], None]) -> None:
        import ipywidgets as w  # type: ignore[import-untyped]

        self.selection = selection
        self._draw = draw
        self.dropdowns: dict[str, Any] = {  # ipywidgets.Dropdown
            "period": w.Dropdown(options=period_options(selection.period),
                                 value=selection.period, description="period")}
        for name in FILTER_DIMENSIONS:
            current = getattr(selection, name)
            self.dropdowns[name] = w.Dropdown(
                options=dropdown_options(options.get(name, ()), current),
                value=ALL if current is None else current, description=name)
        for dropdown in self.dropdowns.values():
            dropdown.layout = w.Layout(width="240px")
            dropdown.observe(self._changed, names="value")
        self.status = w.HTML(self._status())
        self.output = w.Output()
        self.box = w.VBox([w.HBox(list(self.dropdowns.values()),
                                  layout=w.Layout(flex_flow="row wrap")),
                           self.status, self.output])

    def _status(self) -> str:
        return (f"<b>Explorer</b>: {self.selection} — pick a period or a filter and the "
                "dashboard for it is drawn below.")

    def _changed(self, change: Mapping[str, Any]) -> None:
        values = {name: dropdown.value for name, dropdown in self.dropdowns.items()}
        self.select(self.selection.with_values(**values))

    def select(self, selection: Selection) -> None:
        """Show ``selection``: redraw the output (what a dropdown change does)."""
        self.selection = selection
        self.status.value = self._status()
        self.output.clear_output(wait=True)
        with self.output:
            self._draw(selection)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.box)  # type: ignore[no-untyped-call]
