"""Write weeks of realistic agent traffic into an event log, for the demo and for tests.

``generate_workload`` simulates a team of ~25 people using three agents, one UTC day at a
time (``calls.simulate_day`` models the calls, ``rows.day_table`` turns them into events of
every kind the log knows) and writes each day with ``EventWriter.write_table``: one
Parquet file per day, straight from Arrow, so two weeks take seconds instead of the
minutes that ~100,000 ``Event`` objects through the spool would.

Per call the history holds: an ``llm.call`` (tokens, cost from the price book, latency,
status, experiment variant); a ``cache`` lookup sharing its ``request_id``; for calls that
needed retries or a fallback, one ``llm.attempt`` per provider request (also sharing the
``request_id``); for architect tasks an ``embedding`` of the query and a ``retrieval``
before the call. Around them: ``experiment.exposure`` at each user's first review,
``budget`` warnings when a user's daily spend crosses 80 % and 100 % of a limit, a nightly
re-index ``embedding`` batch, and ``alert`` events (firing and resolved) computed from the
provider error rate per 15 minutes, which an overload injected on one weekday trips.

Everything is derived from ``seed`` (and ``end``): the same arguments write the same rows,
ids included. Writing the same history twice into one log therefore duplicates it; use a
fresh folder.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import numpy as np

from devora_lab.events import EventKind, EventLog
from devora_lab.llm.pricing import PriceBook
from devora_lab.sim.calls import US, DayPlan, Team, simulate_day
from devora_lab.sim.rows import DayState, day_table

__all__ = ["WorkloadSummary", "generate_workload"]


@dataclass(frozen=True)
class WorkloadSummary:
    """What ``generate_workload`` wrote: events per kind, spend and the time range."""

    counts: dict[str, int]
    total_cost_usd: float
    unpriced_calls: int
    start: datetime
    end: datetime
    seed: int
    spike_day: date | None = None
    days: int = 0

    @property
    def events(self) -> int:
        return sum(self.counts.values())

    def __str__(self) -> str:
        kinds = ", ".join(f"{kind} {count:,}" for kind, count in sorted(self.counts.items()))
        return (f"{self.events:,} events from {self.start:%Y-%m-%d %H:%M} to "
                f"{self.end:%Y-%m-%d %H:%M} UTC ({kinds}); ${self.total_cost_usd:,.2f} spent, "
                f"{self.unpriced_calls:,} unpriced calls")


def generate_workload(log: EventLog, *, days: int = 14, calls_per_day: int = 3000,
                      seed: int = 0, end: datetime | None = None,
                      progress: bool = True) -> WorkloadSummary:
    """Simulate ``days`` days of a team's agent traffic ending at ``end`` and write it.

    ``calls_per_day`` is the mean number of LLM calls on a full-weight weekday at the
    start (weekends are quieter and traffic grows ~1 % a day). ``end`` defaults to the
    start of the current UTC hour. A ``rich`` progress bar counts days when ``progress``.
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if calls_per_day < 0 or seed < 0:
        raise ValueError("calls_per_day and seed must not be negative")
    if end is None:
        end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    if end.tzinfo is None:
        raise ValueError("end must be timezone-aware, e.g. datetime(..., tzinfo=timezone.utc)")
    end = end.astimezone(timezone.utc)
    start = end - timedelta(days=days)
    chunks = _utc_days(start, end)
    spike = _spike_day(chunks)
    book = PriceBook.default()
    team = Team(seed, book)
    tag = hashlib.sha256(f"devora-sim:{seed}".encode()).hexdigest()[:8]
    midpoint = _us(start) + (_us(end) - _us(start)) // 2
    writer = log.writer()
    counts: Counter[str] = Counter()
    spent = 0.0
    unpriced = 0
    state = DayState()
    with _progress(progress, len(chunks)) as advance:
        for chunk_start, chunk_end in chunks:
            day = chunk_start.date()
            spike_us = None
            if spike == day:
                midnight = _us(datetime(day.year, day.month, day.day, tzinfo=timezone.utc))
                spike_us = (midnight + 13 * 3600 * US, midnight + 15 * 3600 * US + 30 * 60 * US)
            plan = DayPlan(_us(chunk_start), _us(chunk_end), day.toordinal(), calls_per_day,
                           _us(start), midpoint, spike_us)
            rng = np.random.default_rng([seed, plan.ordinal])
            calls = simulate_day(team, plan, rng)
            table = day_table(calls, plan, team, rng, state, tag=tag, seed=seed)
            writer.write_table(table)
            kinds = table.column("kind").to_pylist()
            counts.update(kinds)
            priced = np.isin(np.asarray(kinds), [EventKind.LLM_CALL.value,
                                                 EventKind.EMBEDDING.value])
            cost = table.column("cost_usd").to_numpy(zero_copy_only=False)
            spent += float(np.nansum(np.where(priced, cost, 0.0)))
            unpriced += int(np.sum(np.isnan(calls.cost)))
            advance(day)
    return WorkloadSummary(dict(counts), spent, unpriced, start, end, seed, spike,
                           len(chunks))


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _us(moment: datetime) -> int:
    """Unix microseconds, exactly (a float timestamp can be a microsecond off)."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _utc_days(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` cut at UTC midnights, so each piece lands in one day's file."""
    chunks = []
    cursor = start
    while cursor < end:
        midnight = datetime(cursor.year, cursor.month, cursor.day, tzinfo=timezone.utc)
        nxt = min(midnight + timedelta(days=1), end)
        chunks.append((cursor, nxt))
        cursor = nxt
    return chunks


def _spike_day(chunks: Sequence[tuple[datetime, datetime]]) -> date | None:
    """The weekday that gets the injected overload: the second-to-last full weekday."""
    full = [s.date() for s, e in chunks if e - s == timedelta(days=1) and s.weekday() < 5]
    return full[-2] if len(full) >= 2 else (full[-1] if full else None)


@contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Callable[[date], None]]:
    """A rich progress bar over days (or a no-op), yielding "one more day done"."""
    if not enabled:
        yield lambda day: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("writing workload", total=total)

        def advance(day: date) -> None:
            bar.update(task, advance=1, description=f"writing workload {day}")

        yield advance
