"""The one results table every benchmark module adds rows to, for the terminal and Markdown.

A row holds our number, a named baseline measured in the same run, and an optional goal.
The ratio always reads the same way, whatever the unit: **ratio > 1 means ours is better**
(baseline ÷ ours for times and sizes, ours ÷ baseline for rates).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

__all__ = ["RATIO_RULE", "Row", "format_value", "markdown", "print_table"]

RATIO_RULE = "ratio > 1 means ours is better (baseline ÷ ours for times, ours ÷ baseline for rates)"
HEADERS = ("benchmark", "ours", "baseline", "ratio", "goal", "met?")


@dataclass(frozen=True, slots=True)
class Row:
    """One measured benchmark: our value, a named baseline and a goal, all in ``unit``."""

    benchmark: str
    ours: float
    unit: str
    higher_is_better: bool = False
    baseline_name: str | None = None
    baseline: float | None = None
    goal: float | None = None
    notes: tuple[str, ...] = ()

    @property
    def ratio(self) -> float | None:
        """How many times better ours is than the baseline (> 1: ours is better)."""
        if self.baseline is None or self.ours <= 0 or self.baseline <= 0:
            return None
        return self.ours / self.baseline if self.higher_is_better else self.baseline / self.ours

    @property
    def met(self) -> bool | None:
        """Whether the goal was met; None when the row has no goal."""
        if self.goal is None:
            return None
        return self.ours >= self.goal if self.higher_is_better else self.ours <= self.goal

    def cells(self) -> tuple[str, str, str, str, str, str]:
        baseline = "—"
        if self.baseline is not None:
            baseline = f"{format_value(self.baseline, self.unit)} — {self.baseline_name}"
        ratio = "—" if self.ratio is None else f"{self.ratio:.2f}x"
        goal = "—"
        if self.goal is not None:
            goal = f"{'≥' if self.higher_is_better else '≤'} {format_value(self.goal, self.unit)}"
        met = {None: "—", True: "yes", False: "NO"}[self.met]
        return (self.benchmark, format_value(self.ours, self.unit), baseline, ratio, goal, met)


def format_value(value: float, unit: str) -> str:
    """A number with its unit, rounded for reading: ``4.87 µs/event``, ``212k events/s``."""
    magnitude = abs(value)
    if magnitude >= 10_000:
        text = f"{value / 1000:,.0f}k"
    elif magnitude >= 100:
        text = f"{value:,.0f}"
    elif magnitude >= 10:
        text = f"{value:.1f}"
    elif magnitude >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}"


def _numbered(rows: Sequence[Row]) -> tuple[list[tuple[str, ...]], list[str]]:
    """Each row's cells with a ``[n]`` mark on its name, and the notes as ``[n] note``."""
    cells: list[tuple[str, ...]] = []
    notes: list[str] = []
    for number, row in enumerate(rows, start=1):
        name, *rest = row.cells()
        cells.append((f"{name} [{number}]" if row.notes else name, *rest))
        notes += [f"[{number}] {note}" for note in row.notes]
    return cells, notes


def print_table(rows: Sequence[Row], title: str, console: Console | None = None) -> None:
    """Print the table (and every row's notes under it) to the terminal."""
    console = console or Console()
    table = Table(title=title, caption=RATIO_RULE, show_lines=True)
    for header in HEADERS:
        table.add_column(header, overflow="fold", justify="left" if header != "ratio" else "right")
    cells, notes = _numbered(rows)
    for row, row_cells in zip(rows, cells, strict=True):
        table.add_row(*row_cells, style="red" if row.met is False else None)
    console.print(table)
    for note in notes:
        console.print(f"  {note}", highlight=False)


def markdown(rows: Sequence[Row], preamble: Sequence[str] = ()) -> str:
    """The same table as GitHub Markdown, with the preamble above it and the notes below."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    cells, notes = _numbered(rows)
    out = [*preamble, "", line(HEADERS), line(["---"] * len(HEADERS))]
    out += [line(row_cells) for row_cells in cells]
    out += ["", f"_{RATIO_RULE}._", ""]
    if notes:
        out += ["Notes:", "", *(f"- {note}" for note in notes), ""]
    return "\n".join(out)
