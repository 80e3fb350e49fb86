"""A summary of an event log: what is in it, where, and what it cost.

Used by ``devora-lab events stats`` and the demo; pure queries over the ``events`` view.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devora_lab.events.store import EventStore

__all__ = ["LogSummary", "ModelRow", "summarize"]


@dataclass(frozen=True, slots=True)
class ModelRow:
    """LLM calls of one requested model."""

    model: str
    calls: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    unpriced_calls: int
    p50_latency_ms: float | None
    p95_latency_ms: float | None


@dataclass(frozen=True, slots=True)
class LogSummary:
    """Counts, files and spend of one event log."""

    events: int
    by_kind: dict[str, int]
    first_ts: datetime | None
    last_ts: datetime | None
    days: int
    parquet_files: int
    parquet_bytes: int
    spool_segments: int
    corrupt_files: int
    models: list[ModelRow]

    @property
    def total_cost_usd(self) -> float:
        return sum(row.cost_usd or 0.0 for row in self.models)

    @property
    def unpriced_calls(self) -> int:
        return sum(row.unpriced_calls for row in self.models)


_MODEL_SQL = """
SELECT coalesce(request_model, '(none)') AS model,
       count(*) AS calls,
       count(*) FILTER (WHERE status = 'error') AS errors,
       coalesce(sum(input_tokens), 0) AS input_tokens,
       coalesce(sum(output_tokens), 0) AS output_tokens,
       sum(cost_usd) AS cost_usd,
       count(*) FILTER (WHERE cost_status = 'unpriced') AS unpriced_calls,
       quantile_cont(latency_ms, 0.5) AS p50,
       quantile_cont(latency_ms, 0.95) AS p95
FROM events WHERE kind = ?
GROUP BY ALL ORDER BY sum(cost_usd) DESC NULLS LAST, calls DESC
"""


def summarize(store: EventStore) -> LogSummary:
    """Summarise the log behind ``store`` (refreshed first)."""
    snapshot = store.refresh()
    by_kind = {
        str(kind): int(n)
        for kind, n in store.rows("SELECT kind, count(*) FROM events GROUP BY kind ORDER BY 2 DESC")
    }
    first, last, days = store.rows("SELECT min(ts), max(ts), count(DISTINCT date) FROM events")[0]
    models = [_model_row(row) for row in store.rows(_MODEL_SQL, ["llm.call"])]
    return LogSummary(
        events=sum(by_kind.values()),
        by_kind=by_kind,
        first_ts=first,
        last_ts=last,
        days=int(days or 0),
        parquet_files=len(snapshot.parquet),
        parquet_bytes=sum(f.entry.size for f in snapshot.parquet),
        spool_segments=len(snapshot.spool),
        corrupt_files=len(snapshot.corrupt),
        models=models,
    )


def _model_row(row: tuple[Any, ...]) -> ModelRow:
    model, calls, errors, tokens_in, tokens_out, cost, unpriced, p50, p95 = row
    return ModelRow(
        str(model),
        int(calls),
        int(errors),
        int(tokens_in),
        int(tokens_out),
        None if cost is None else float(cost),
        int(unpriced),
        None if p50 is None else float(p50),
        None if p95 is None else float(p95),
    )
