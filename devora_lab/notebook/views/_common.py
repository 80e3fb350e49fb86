"""What every topic view shares: the notebook's scope, a note, and ``render``.

A notebook's ``parameters`` cell names a workspace, a period and filters; ``open_scope``
turns them into one ``Scope`` that every cell passes on (``**scope.query`` fits the
``since=/until=/filters=`` keywords of ``Costs``), so no cell repeats the parsing.

A ``Note`` stands where a chart or a table would be when the workspace lacks what it
needs (no RAG index, no experiment, a day of history), so a notebook run against a partial
workspace reads "no RAG index yet: run ..." instead of ending in a traceback.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from devora_lab.monitoring.windows import Window, parse_window
from devora_lab.workspace import Workspace

if TYPE_CHECKING:
    import altair as alt

    from devora_lab.events.store import EventStore

__all__ = ["Note", "Scope", "clean", "open_scope", "render"]

#: Notebook filter parameters → the event-log dimension each one filters.
FILTER_DIMENSIONS: Mapping[str, str] = {"model": "model", "agent": "agent", "user": "user",
                                        "variant": "variant"}


@dataclass(frozen=True)
class Note:
    """A sentence shown in place of a chart or table, as Markdown in a notebook."""

    text: str

    def _repr_markdown_(self) -> str:
        return f"> **Note.** {self.text}"

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Scope:
    """The workspace, the window ``[since, until)`` and the equality filters of a notebook."""

    workspace: Workspace
    window: Window
    filters: dict[str, str] = field(default_factory=dict)

    @property
    def since(self) -> datetime | None:
        return self.window.since

    @property
    def until(self) -> datetime | None:
        return self.window.until

    @property
    def query(self) -> dict[str, Any]:
        """``since``, ``until`` and ``filters`` as keywords for ``Costs`` and the metrics."""
        return {"since": self.since, "until": self.until, "filters": dict(self.filters)}

    @property
    def days(self) -> float:
        """The window's length in days (30 for an unbounded one: a month of evidence)."""
        seconds = self.window.seconds
        return 30.0 if seconds is None else max(seconds / 86_400, 1.0)

    @contextmanager
    def store(self) -> Iterator[EventStore]:
        """A DuckDB reader over the log, closed when the block is done with it."""
        with self.workspace.event_log().store() as store:
            yield store

    def reader(self) -> EventStore:
        """A DuckDB reader a notebook keeps for all its cells (it re-lists the log's files
        on every query, so it sees what agents write meanwhile); close it at the end."""
        return self.workspace.event_log().store()

    def describe(self) -> str:
        """One line saying what the notebook looks at."""
        since = "the beginning" if self.since is None else f"{self.since:%Y-%m-%d %H:%M}"
        until = "now" if self.until is None else f"{self.until:%Y-%m-%d %H:%M} UTC"
        where = ", ".join(f"{k} = {v}" for k, v in self.filters.items()) or "no filters"
        return (f"Workspace {self.workspace.root}; window {self.window.label or 'custom'} "
                f"({since} to {until}); {where}.")


def open_scope(workspace: str | os.PathLike[str] | Workspace | None = None,
               period: str = "14d", *, model: str | None = None, agent: str | None = None,
               user: str | None = None, variant: str | None = None,
               now: datetime | None = None) -> Scope:
    """The scope of the ``parameters`` cell: ``workspace`` None means $DEVORA_WORKSPACE
    (else ./devora-workspace); ``period`` any name ``parse_window`` knows."""
    chosen = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    window = parse_window(period, now=now)
    given = {"model": model, "agent": agent, "user": user, "variant": variant}
    filters = {FILTER_DIMENSIONS[k]: v for k, v in given.items() if v is not None}
    return Scope(chosen, window, filters)


def clean(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy safe for a chart's inline JSON: infinities become missing, nullable integer
    and boolean columns plain floats/objects (vega-lite reads ``null`` as no value)."""
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if pd.api.types.is_extension_array_dtype(column.dtype) and \
                pd.api.types.is_numeric_dtype(column.dtype):
            out[name] = column.astype("float64")
        elif pd.api.types.is_float_dtype(column.dtype):
            out[name] = column.where(column.map(lambda v: not math.isinf(v)))
    return out


def render(item: alt.TopLevelMixin | Note | pd.DataFrame | Any) -> None:
    """Display a chart (through ``display.show``: Lab-native spec + offline SVG), a note
    (Markdown) or a table; a cell stays one line whether the data was there or not.
    ``None`` (nothing more to say) shows nothing."""
    import altair as alt
    from IPython.display import Markdown, display

    from devora_lab.notebook.display import show

    if item is None:
        return
    if isinstance(item, alt.TopLevelMixin):
        show(item)
    elif isinstance(item, Note):
        display(Markdown(item._repr_markdown_()))  # type: ignore[no-untyped-call]
    else:
        display(item)  # type: ignore[no-untyped-call]
