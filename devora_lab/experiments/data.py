"""What an experiment's analysis reads from the event log, aggregated in DuckDB.

The statistics need per-variant sufficient statistics (counts, sums, sums of squares),
the same cumulated per day for sequential p-values, the exposed units for the sample-ratio
check, and raw values only for the tests that need them (Mann-Whitney, bootstrap, p95),
sampled to a bounded size: an experiment over ten million calls is summarised without
moving ten million rows into Python. Calls are the ``llm.call`` events tagged with the
experiment; parameters are always bound, never formatted into SQL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

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


def _value(metric: str) -> str:
    try:
        return METRIC_SQL[metric]
    except KeyError:
        raise ConfigError(f"unknown metric {metric!r}",
                          fix=f"use one of {', '.join(METRIC_SQL)}") from None


def variant_summary(store: EventStore, experiment: str, metric: str) -> pd.DataFrame:
    """Per variant: calls, n (calls measuring the metric), mean, variance (sample), sum,
    and for success rate the successes; index ``variant``."""
    value = _value(metric)
    return store.df(f"""
        SELECT variant, count(*) AS calls, count(v) AS n, avg(v) AS mean,
               var_samp(v) AS variance, coalesce(sum(v), 0) AS total,
               quantile_cont(v, 0.95) AS p95
        FROM (SELECT variant, {value} AS v FROM events WHERE {_CALLS})
        GROUP BY variant ORDER BY variant""", [experiment]).set_index("variant")


def daily_cumulative(store: EventStore, experiment: str, metric: str) -> pd.DataFrame:
    """Per UTC day and variant, the running n, sum and sum of squares: one row per look
    for the sequential test (days without calls carry the previous totals forward)."""
    value = _value(metric)
    frame = store.df(f"""
        SELECT CAST(ts AT TIME ZONE 'UTC' AS DATE) AS day, variant, count(v) AS n,
               coalesce(sum(v), 0) AS total, coalesce(sum(v * v), 0) AS squares
        FROM (SELECT ts, variant, {value} AS v FROM events WHERE {_CALLS})
        GROUP BY 1, 2 ORDER BY 1, 2""", [experiment])
    if frame.empty:
        return frame
    wide = frame.pivot(index="day", columns="variant", values=["n", "total", "squares"])
    return wide.fillna(0.0).cumsum()


def exposures(store: EventStore, experiment: str) -> pd.Series:
    """Units first exposed to each variant (``experiment.exposure`` events): the counts
    the sample-ratio check compares with the traffic weights."""
    frame = store.df("""
        SELECT variant, count(*) AS units FROM events
        WHERE kind = 'experiment.exposure' AND experiment = ? AND variant IS NOT NULL
        GROUP BY variant ORDER BY variant""", [experiment])
    return frame.set_index("variant")["units"].astype("int64")


def samples(store: EventStore, experiment: str, metric: str, *,
            limit: int = 50_000, seed: int = 0) -> dict[str, NDArray[np.float64]]:
    """Raw values per variant, a uniform sample of at most ``limit`` each (reproducible
    for a ``seed``): enough for rank tests and bootstrap intervals, bounded in memory."""
    value = _value(metric)
    frame = store.df(f"""
        SELECT variant, v FROM (
            SELECT variant, {value} AS v,
                   row_number() OVER (PARTITION BY variant ORDER BY hash(event_id, ?)) AS r
            FROM events WHERE {_CALLS}) WHERE v IS NOT NULL AND r <= ?""",
                     [seed, experiment, limit])
    return {str(name): group["v"].to_numpy(dtype=np.float64)
            for name, group in frame.groupby("variant")}
