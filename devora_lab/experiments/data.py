"""What an experiment's analysis reads from the event log, aggregated in DuckDB.

The statistics need per-variant sufficient statistics (counts, sums, sums of squares),
the same cumulated per day for sequential p-values, the exposed units for the sample-ratio
check, and raw values only for the tests that need them (Mann-Whitney, bootstrap, p95),
sampled to a bounded size: an experiment over ten million calls is summarised without
moving ten million rows into Python. Calls are the ``llm.call`` events tagged with the
experiment; parameters are always bound, never formatted into SQL.

An analysis asks for several metrics, each more than once, so the work is shared:

* one scan summarises every metric computed from plain columns at once (success rate,
  latency, cost, output tokens; ``judge_score``, which parses JSON, on its own), and one
  more draws the samples of all of them;
* the sample keeps what it always was, the ``limit`` calls per variant with the smallest
  ``hash(event_id, seed)``, but no longer ranks every call: a bound on the hash, set from
  the variant's call count so that it passes a little more than ``limit`` calls, filters
  them in the scan, and only those are ranked (if the bound ever passes too few, the full
  ranking runs instead, so the result is always the exact one);
* results are remembered per store for as long as the log's files are unchanged (their
  paths, sizes and modification times; with ``auto_refresh`` off, until the store's next
  ``refresh()``), so asking again, or for another metric of the same scan, costs no query.
  Callers get copies;
* days are the view's ``date`` column, the UTC day of ``ts`` (the log's partition, and
  computed from ``ts`` for the spool), which costs nothing to read.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Final, TypeVar

import numpy as np
import pandas as pd

from devora_lab.errors import ConfigError

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from devora_lab.events.store import EventStore

__all__ = ["METRIC_SQL", "daily_cumulative", "exposures", "samples", "variant_summary"]

#: Metric name → SQL value per call (NULL where the call does not measure it).
METRIC_SQL: Final = {
    "success_rate": "CASE WHEN status = 'ok' THEN 1.0 ELSE 0.0 END",
    "latency_ms": "latency_ms",
    "p95_latency_ms": "latency_ms",
    "cost_usd": "cost_usd",
    "output_tokens": "CAST(output_tokens AS DOUBLE)",
    "judge_score": "TRY_CAST(json_extract_string(attributes, '$.judge_score') AS DOUBLE)",
}
_CALLS: Final = "kind = 'llm.call' AND experiment = ? AND variant IS NOT NULL"
#: The distinct values that read plain columns only: summarised and sampled in one scan.
_PLAIN: Final = tuple(dict.fromkeys(v for v in METRIC_SQL.values() if "attributes" not in v))
_SUMMARY: Final = ("calls", "n", "mean", "variance", "total", "p95")
_HASH_MAX: Final = 2**64 - 1  # hash() is a UBIGINT
_MEMO_ENTRIES: Final = 32  # results remembered per store and log state (oldest go first)

T = TypeVar("T")


def _value(metric: str) -> str:
    try:
        return METRIC_SQL[metric]
    except KeyError:
        raise ConfigError(f"unknown metric {metric!r}",
                          fix=f"use one of {', '.join(METRIC_SQL)}") from None


def _scan_group(value: str) -> tuple[str, ...]:
    """The values computed in the same scan as ``value``."""
    return _PLAIN if value in _PLAIN else (value,)


# -- results remembered per store while the log is unchanged ----------------------------------


class _Memo:
    """What was computed from one state of one store's log."""

    def __init__(self, state: object) -> None:
        self.state = state
        self.entries: dict[Hashable, Any] = {}


_memos: weakref.WeakKeyDictionary[EventStore, _Memo] = weakref.WeakKeyDictionary()
_memo_lock = threading.Lock()


def _log_state(store: EventStore) -> object:
    """What identifies the rows the store's ``events`` view will show.

    With ``auto_refresh`` (each query re-lists the log) that is the log's files: Parquet
    files are never changed once in place (compaction writes new ones), and spool segments
    only grow, so equal paths, sizes and times mean equal rows. It is taken before the
    query runs, so a result may hold rows written after its state was taken; but any such
    write changes the state for good, so the result is never found again then. Without
    ``auto_refresh`` the view changes only on ``refresh()``, which installs a new snapshot
    object.
    """
    if not store.auto_refresh:
        return store.snapshot
    layout = store.layout
    files = tuple((e.path, e.size, e.mtime_ns) for e in layout.list_parquet())
    spool = []
    for entry in layout.list_spool():
        try:
            stat = entry.path.stat()
        except FileNotFoundError:  # rolled meanwhile: its Parquet file is a new state
            spool.append((str(entry.path), -1, -1))
        else:
            spool.append((str(entry.path), stat.st_size, stat.st_mtime_ns))
    return files, tuple(spool)


def _same_state(old: object, new: object) -> bool:
    return old is new or (isinstance(old, tuple) and old == new)


def _memo(store: EventStore) -> _Memo:
    state = _log_state(store)
    with _memo_lock:
        memo = _memos.get(store)
        if memo is None or not _same_state(memo.state, state):
            memo = _memos[store] = _Memo(state)
        return memo


def _remembered(memo: _Memo, key: Hashable, compute: Callable[[], T]) -> T:
    if key in memo.entries:
        value: T = memo.entries[key]
        return value
    value = compute()
    with _memo_lock:
        while len(memo.entries) >= _MEMO_ENTRIES:
            del memo.entries[next(iter(memo.entries))]
        memo.entries[key] = value
    return value


# -- per-variant summaries --------------------------------------------------------------------


def _summaries(store: EventStore, memo: _Memo, experiment: str,
               values: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """Per value SQL, the summary frame of ``variant_summary``, from one scan."""

    def compute() -> dict[str, pd.DataFrame]:
        inner = ", ".join(f"{value} AS v{i}" for i, value in enumerate(values))
        aggregates = ", ".join(
            f"count(v{i}) AS n_{i}, avg(v{i}) AS mean_{i}, var_samp(v{i}) AS variance_{i}, "
            f"coalesce(sum(v{i}), 0) AS total_{i}, quantile_cont(v{i}, 0.95) AS p95_{i}"
            for i in range(len(values)))
        frame = store.df(f"""
            SELECT variant, count(*) AS calls, {aggregates}
            FROM (SELECT variant, {inner} FROM events WHERE {_CALLS})
            GROUP BY variant ORDER BY variant""", [experiment])
        with _memo_lock:
            memo.entries.setdefault(("calls", experiment), frame.set_index("variant")["calls"])
        out = {}
        for i, value in enumerate(values):
            names = {f"{column}_{i}": column for column in _SUMMARY[1:]}
            part = frame[["variant", "calls", *names]].rename(columns=names)
            out[value] = part.set_index("variant")
        return out

    return _remembered(memo, ("summary", experiment, values), compute)


def variant_summary(store: EventStore, experiment: str, metric: str) -> pd.DataFrame:
    """Per variant: calls, n (calls measuring the metric), mean, variance (sample), sum,
    and for success rate the successes; index ``variant``."""
    value = _value(metric)
    memo = _memo(store)
    return _summaries(store, memo, experiment, _scan_group(value))[value].copy()


# -- per day ----------------------------------------------------------------------------------


def daily_cumulative(store: EventStore, experiment: str, metric: str) -> pd.DataFrame:
    """Per UTC day and variant, the running n, sum and sum of squares: one row per look
    for the sequential test (days without calls carry the previous totals forward)."""
    value = _value(metric)

    def compute() -> pd.DataFrame:
        frame = store.df(f"""
            SELECT date AS day, variant, count(v) AS n,
                   coalesce(sum(v), 0) AS total, coalesce(sum(v * v), 0) AS squares
            FROM (SELECT date, variant, {value} AS v FROM events WHERE {_CALLS})
            GROUP BY 1, 2 ORDER BY 1, 2""", [experiment])
        if frame.empty:
            return frame
        wide = frame.pivot(index="day", columns="variant", values=["n", "total", "squares"])
        return wide.fillna(0.0).cumsum()

    result: pd.DataFrame = _remembered(_memo(store), ("daily", experiment, value), compute)
    return result.copy()


# -- exposures --------------------------------------------------------------------------------


def exposures(store: EventStore, experiment: str) -> pd.Series:
    """Units first exposed to each variant (``experiment.exposure`` events): the counts
    the sample-ratio check compares with the traffic weights."""

    def compute() -> pd.Series:
        frame = store.df("""
            SELECT variant, count(*) AS units FROM events
            WHERE kind = 'experiment.exposure' AND experiment = ? AND variant IS NOT NULL
            GROUP BY variant ORDER BY variant""", [experiment])
        return frame.set_index("variant")["units"].astype("int64")

    result: pd.Series = _remembered(_memo(store), ("exposures", experiment), compute)
    return result.copy()


# -- samples ----------------------------------------------------------------------------------


def _call_counts(store: EventStore, memo: _Memo, experiment: str) -> pd.Series:
    """Calls per variant (remembered from a summary when there was one)."""

    def compute() -> pd.Series:
        frame = store.df(f"SELECT variant, count(*) AS calls FROM events WHERE {_CALLS} "
                         "GROUP BY variant ORDER BY variant", [experiment])
        return frame.set_index("variant")["calls"]

    return _remembered(memo, ("calls", experiment), compute)


def _hash_bounds(counts: pd.Series, limit: int) -> dict[str, int]:
    """Per variant, a bound on ``hash(event_id, seed)`` that about ``limit`` plus 8
    standard deviations of its calls pass (the hash is uniform over 64 bits), so that
    fewer than ``limit`` pass with a chance below 1e-15; the maximum when all are needed."""
    wanted = max(limit, 0) + 8 * math.sqrt(max(limit, 0)) + 64
    return {str(variant): (_HASH_MAX if calls <= wanted
                           else min(_HASH_MAX, math.ceil(wanted / calls * 2**64)))
            for variant, calls in counts.items()}


def _sample_rows(store: EventStore, experiment: str, values: tuple[str, ...], limit: int,
                 seed: int, bounds: dict[str, int] | None) -> pd.DataFrame:
    """The ``limit`` calls per variant with the smallest hash, ranked among those under
    the bounds (all calls without bounds), in hash order, with every value in ``values``
    and how many calls each variant had under its bound."""
    inner = ", ".join(f"{value} AS v{i}" for i, value in enumerate(values))
    columns = ", ".join(f"v{i}" for i in range(len(values)))
    params: list[Any] = [seed, experiment]
    where = ""
    if bounds:
        cases = " ".join("WHEN ? THEN ?::UBIGINT" for _ in bounds)
        where = f"WHERE h <= CASE variant {cases} ELSE ?::UBIGINT END"
        for variant, bound in bounds.items():
            params += [variant, bound]
        params.append(_HASH_MAX)
    params.append(limit)
    return store.df(f"""
        SELECT variant, h, candidates, {columns} FROM (
            SELECT variant, h, {columns},
                   row_number() OVER (PARTITION BY variant ORDER BY h) AS r,
                   count(*) OVER (PARTITION BY variant) AS candidates
            FROM (SELECT variant, hash(event_id, ?) AS h, {inner} FROM events WHERE {_CALLS})
            {where})
        WHERE r <= ? ORDER BY variant, h""", params)


def _exact(rows: pd.DataFrame, bounds: dict[str, int], limit: int) -> bool:
    """Whether each bounded variant had at least ``limit`` calls under its bound, so that
    its first ``limit`` in hash order are those of all its calls."""
    if limit <= 0:
        return True
    candidates = rows.groupby("variant")["candidates"].first()
    return all(bound == _HASH_MAX or (variant in candidates.index
                                      and candidates[variant] >= limit)
               for variant, bound in bounds.items())


def samples(store: EventStore, experiment: str, metric: str, *,
            limit: int = 50_000, seed: int = 0) -> dict[str, NDArray[np.float64]]:
    """Raw values per variant, a uniform sample of at most ``limit`` each (reproducible
    for a ``seed``): enough for rank tests and bootstrap intervals, bounded in memory."""
    value = _value(metric)
    values = _scan_group(value)
    memo = _memo(store)

    def compute() -> pd.DataFrame:
        bounds = _hash_bounds(_call_counts(store, memo, experiment), limit)
        rows = _sample_rows(store, experiment, values, limit, seed, bounds)
        if not _exact(rows, bounds, limit):
            rows = _sample_rows(store, experiment, values, limit, seed, None)
        return rows

    rows = _remembered(memo, ("samples", experiment, values, limit, seed), compute)
    column = f"v{values.index(value)}"
    measured = rows[rows[column].notna()]
    return {str(name): group[column].to_numpy(dtype=np.float64)
            for name, group in measured.groupby("variant")}
