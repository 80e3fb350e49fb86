"""Benchmark of the monitoring metrics: the overview dashboard over a month of calls.

``monitoring.overview`` — ``overview(store, window=<the 30 days>)`` end to end: the
overview metric set (``OVERVIEW_METRICS``: calls, errors, error rate, mean and p50/p95/p99
latency, p50/p95 time to first token, calls and tokens per second, tokens, retries,
fallbacks, cache hit rate, cost, unpriced calls) in total, per model, per provider, per
agent and per day, plus the error types, over an event log of 10M ``llm.call`` events
(1M in ``--quick``) spread over 30 days. The data are synthetic (numpy + pyarrow, written
with ``write_table`` in 1M-row chunks in time order, then ``compact()``; generated once
per run) with realistic columns: 6 models of 5 providers (one model unpriced), 5 agents,
lognormal latencies per model, a time to first token for streamed calls, about 2 % errors
of four types, retries and fallbacks to another model, and cache hits, misses and
bypasses.

The clock runs from opening a fresh ``EventLog(root).store()`` until ``overview`` returns,
after one warm-up run; the first run in the process (the files were just written, so they
are in the OS page cache either way) is in the notes. Two more rows time
``metrics(store, by=["model"])`` and ``trend(store, OVERVIEW_METRICS, bucket="1h")`` over
the same window alone, the same way.

The baseline is the same numbers computed the obvious way in a notebook:
``pandas.read_parquet`` of the 16 needed columns of the whole log, then ``groupby`` with
sums, means and ``quantile`` per part (the read counts once for the overview and once for
each single-part row, as each would read the log). Both are checked to agree on every
number: counts exactly, sums, means and rates to 1e-9, and quantiles to 1e-9 where ours are
exact (``metrics``, ``trend``) and within ``sketch.ALPHA`` (0.5 %) relative in the overview,
whose quantiles come from a log-bucketed histogram (``devora_lab.monitoring.sketch``); the
notes time ``overview(..., exact_quantiles=True)`` too (one run after the others, and
checked against pandas to 1e-9).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from benchmarks.bench_experiments import _dictionary
from benchmarks.harness import Context, benchmark, median, timed
from benchmarks.table import Row
from devora_lab.events import EventKind, EventLog
from devora_lab.monitoring.metrics import (
    METRICS,
    OVERVIEW_METRICS,
    Overview,
    metrics,
    overview,
    trend,
)
from devora_lab.monitoring.sketch import ALPHA
from devora_lab.monitoring.windows import Window

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

_GOAL_S: Final = 1.5
_GOAL_ROWS: Final = 10_000_000
_CHUNK_ROWS: Final = 1_000_000
_DAYS: Final = 30
_ORIGIN: Final = datetime(2026, 1, 1, tzinfo=timezone.utc)
_WINDOW: Final = Window(_ORIGIN, _ORIGIN + timedelta(days=_DAYS), "30 days")

# provider, model, $ per input token, $ per output token (None: unpriced), median latency
# and time to first token in ms, share of the calls
_MODELS: Final = (
    ("openai", "gpt-4o", 2.5e-6, 10e-6, 1400.0, 450.0, 0.30),
    ("openai", "gpt-4o-mini", 0.15e-6, 0.6e-6, 800.0, 300.0, 0.25),
    ("anthropic", "claude-sonnet-4", 3e-6, 15e-6, 1800.0, 600.0, 0.20),
    ("anthropic", "claude-3-5-haiku", 0.8e-6, 4e-6, 700.0, 250.0, 0.12),
    ("openrouter", "llama-3.1-70b", 0.5e-6, 0.8e-6, 1100.0, 350.0, 0.10),
    ("local", "house-model", None, None, 600.0, 200.0, 0.03),
)
_PRICED: Final = 5  # the first five models have prices; each falls back to the next one
_AGENTS: Final = ("planner", "researcher", "writer", "critic", "router")
_AGENT_SHARE: Final = (0.30, 0.25, 0.20, 0.15, 0.10)
_ERRORS: Final = ("RateLimitError", "Timeout", "ServerError", "ContextLengthError")
_ERROR_SHARE: Final = (0.50, 0.25, 0.15, 0.10)
_ERROR_ATTEMPTS: Final = (3, 2, 3, 1)  # retried until the budget ran out, or not retryable
_ERROR_RATE: Final = 0.02
_FALLBACK_RATE: Final = 0.03
_CACHE: Final = ("hit", "semantic_hit", "miss", "bypass")
_CACHE_SHARE: Final = (0.08, 0.02, 0.45, 0.45)
_STREAMED: Final = 0.6
_COLUMNS: Final = ["kind", "ts", "request_model", "response_model", "provider", "agent",
                   "status", "error_type", "latency_ms", "ttft_ms", "input_tokens",
                   "output_tokens", "attempt", "fallback_index", "cache_outcome", "cost_usd",
                   "cost_status"]


# -- the synthetic log ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Dataset:
    root: Path
    calls: int
    write_s: float
    compact_s: float
    files: int


def _calls(rng: np.random.Generator, first_id: int, rows: int,
           span_us: tuple[int, int]) -> pa.Table:
    """``rows`` llm.call events in time order within ``span_us`` (µs since the epoch)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    share = np.array([m[6] for m in _MODELS])
    asked = rng.choice(len(_MODELS), size=rows, p=share / share.sum())
    failed = rng.random(rows) < _ERROR_RATE
    error = rng.choice(len(_ERRORS), size=rows, p=np.array(_ERROR_SHARE))
    fell_back = (asked < _PRICED) & (rng.random(rows) < _FALLBACK_RATE)
    answered = np.where(fell_back, (asked + 1) % _PRICED, asked)
    fallback_index = np.where(fell_back, np.where(rng.random(rows) < 0.15, 2, 1), 0)
    cache = rng.choice(len(_CACHE), size=rows, p=np.array(_CACHE_SHARE))
    cache = np.where(failed & (cache < 2), 2, cache)  # a failed call was no hit
    hit = cache < 2
    attempt = np.where(failed, np.array(_ERROR_ATTEMPTS)[error],
                       rng.choice(3, size=rows, p=[0.93, 0.06, 0.01]) + 1) + fallback_index

    latency_median, ttft_median = (np.array([m[k] for m in _MODELS])[answered] for k in (4, 5))
    latency = latency_median * rng.lognormal(0.0, 0.5, rows) * attempt
    latency = np.where(failed & (error == 1), 30_000.0, latency)  # timeouts wait for the limit
    latency = np.where(hit, rng.lognormal(np.log(4.0), 0.5, rows), latency)
    streamed = (rng.random(rows) < _STREAMED) & ~hit & ~failed
    ttft = np.minimum(ttft_median * rng.lognormal(0.0, 0.4, rows), latency)

    input_tokens = rng.lognormal(7.0, 1.0, rows).astype(np.int64) + 1
    output_tokens = np.where(failed, 0, rng.lognormal(5.5, 0.8, rows).astype(np.int64) + 1)
    per_input, per_output = (np.array([np.nan if m[k] is None else m[k] for m in _MODELS])
                             [answered] for k in (2, 3))
    cost = np.where(hit, 0.0, input_tokens * per_input + output_tokens * per_output)
    unpriced = np.isnan(cost)

    models = [m[1] for m in _MODELS]
    ts = np.sort(rng.integers(span_us[0], span_us[1], rows))
    ids = pc.cast(pa.array(np.arange(first_id, first_id + rows)), pa.string())
    columns: dict[str, Any] = {
        "event_id": pc.binary_join_element_wise("ev-", ids, ""),
        "kind": _dictionary([EventKind.LLM_CALL.value], np.zeros(rows, dtype=np.int64)),
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "schema_version": pa.array(np.ones(rows, dtype=np.int32)),
        "user_id": _dictionary([f"user-{i}" for i in range(2_000)],
                               rng.integers(0, 2_000, rows)),
        "agent": _dictionary(list(_AGENTS), rng.choice(len(_AGENTS), size=rows,
                                                        p=np.array(_AGENT_SHARE))),
        "operation": _dictionary(["chat"], np.zeros(rows, dtype=np.int64)),
        "provider": _dictionary([m[0] for m in _MODELS], answered),
        "request_model": _dictionary(models, asked),
        # nothing answered a failed call: "by model" then counts the model asked for
        "response_model": _dictionary([*models, None], np.where(failed, len(models), answered)),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "streamed": pa.array(streamed),
        "cost_usd": pa.array(cost, mask=unpriced),
        "cost_status": _dictionary(["priced", "unpriced"], unpriced.astype(np.int64)),
        "latency_ms": latency,
        "ttft_ms": pa.array(ttft, mask=~streamed),
        "status": _dictionary(["ok", "error"], failed.astype(np.int64)),
        "error_type": _dictionary([*_ERRORS, None], np.where(failed, error, len(_ERRORS))),
        "attempt": pa.array(attempt.astype(np.int32)),
        "fallback_index": pa.array(fallback_index.astype(np.int32)),
        "cache_outcome": _dictionary(list(_CACHE), cache),
    }
    return pa.table(columns)


def _build_dataset(root: Path, calls: int) -> _Dataset:
    log = EventLog(root)
    rng = np.random.default_rng(calls + 1)
    origin_us, span_us = int(_ORIGIN.timestamp() * 1_000_000), _DAYS * 86_400_000_000
    writer = log.writer()
    start = time.perf_counter()
    for first in range(0, calls, _CHUNK_ROWS):
        size = min(_CHUNK_ROWS, calls - first)
        span = (origin_us + span_us * first // calls, origin_us + span_us * (first + size) // calls)
        writer.write_table(_calls(rng, first, size, span))
    writer.close()
    write_s = time.perf_counter() - start
    compact_s, report = timed(log.compact)
    if report.events != calls:
        raise AssertionError(f"dataset: wrote {calls} events, compaction sees {report.events}")
    return _Dataset(root, calls, write_s, compact_s, report.files_after)


def _dataset(ctx: Context, calls: int) -> _Dataset:
    key = f"monitoring.dataset.{calls}"
    if key not in ctx.cache:
        ctx.cache[key] = _build_dataset(ctx.scratch(f"monitoring-{calls}") / "events", calls)
    dataset: _Dataset = ctx.cache[key]
    return dataset


# -- ours -------------------------------------------------------------------------------------


def _ours_overview(root: Path) -> Overview:
    with EventLog(root).store() as store:
        return overview(store, window=_WINDOW)


_NO_QUANTILES: Final = tuple(name for name in OVERVIEW_METRICS  # leave out p50, p95, ...
                             if not {"latency_q", "ttft_q"} & set(METRICS[name].needs))


def _ours_exact(root: Path) -> Overview:
    with EventLog(root).store() as store:
        return overview(store, window=_WINDOW, exact_quantiles=True)


def _ours_without_quantiles(root: Path) -> Overview:
    with EventLog(root).store() as store:
        return overview(store, window=_WINDOW, names=_NO_QUANTILES)


def _ours_by_model(root: Path) -> pd.DataFrame:
    with EventLog(root).store() as store:
        return metrics(store, by=["model"], window=_WINDOW)


def _ours_trend(root: Path) -> pd.DataFrame:
    with EventLog(root).store() as store:
        return trend(store, OVERVIEW_METRICS, bucket="1h", window=_WINDOW)


# -- the pandas baseline ----------------------------------------------------------------------


def _pandas_read(root: Path) -> pd.DataFrame:
    """The needed columns of the log's llm.call events in the window, with helper columns."""
    import pandas as pd

    frame = pd.read_parquet(root, columns=_COLUMNS)
    since, until = (pd.Timestamp(moment) for moment in (_WINDOW.since, _WINDOW.until))
    frame = frame[(frame["kind"] == EventKind.LLM_CALL.value) & (frame["ts"] >= since)
                  & (frame["ts"] < until)]
    model = frame["response_model"].astype(object).where(frame["response_model"].notna(),
                                                         frame["request_model"].astype(object))
    return frame.assign(
        model=model,
        error=frame["status"] == "error",
        retries=(frame["attempt"].fillna(1) - 1).clip(lower=0),
        fallback=frame["fallback_index"] > 0,
        lookup=frame["cache_outcome"].isin(["hit", "semantic_hit", "miss"]),
        hit=frame["cache_outcome"].isin(["hit", "semantic_hit"]),
        unpriced=frame["cost_status"] == "unpriced",
        tokens=frame["input_tokens"] + frame["output_tokens"])


def _pandas_metrics(frame: pd.DataFrame, key: pd.Series | str, seconds: float) -> pd.DataFrame:
    """The overview metric set per value of ``key``, with groupby."""
    grouped = frame.groupby(key, observed=True, sort=False)
    out = grouped.agg(requests=("error", "size"), errors=("error", "sum"),
                      latency_avg_ms=("latency_ms", "mean"), input_tokens=("input_tokens", "sum"),
                      output_tokens=("output_tokens", "sum"), tokens=("tokens", "sum"),
                      retries=("retries", "sum"), fallbacks=("fallback", "sum"),
                      lookups=("lookup", "sum"), hits=("hit", "sum"), cost_usd=("cost_usd", "sum"),
                      unpriced_calls=("unpriced", "sum"))
    latency = grouped["latency_ms"].quantile([0.5, 0.95, 0.99]).unstack()
    ttft = grouped["ttft_ms"].quantile([0.5, 0.95]).unstack()
    out["error_rate"] = out["errors"] / out["requests"]
    for q, column in ((0.5, "latency_p50_ms"), (0.95, "latency_p95_ms"),
                      (0.99, "latency_p99_ms")):
        out[column] = latency[q]
    out["ttft_p50_ms"], out["ttft_p95_ms"] = ttft[0.5], ttft[0.95]
    out["requests_per_s"] = out["requests"] / seconds
    out["tokens_per_s"] = out["tokens"] / seconds
    out["cache_hit_rate"] = out["hits"] / out["lookups"]
    return out[list(OVERVIEW_METRICS)].sort_values("requests", ascending=False)


def _pandas_errors(frame: pd.DataFrame) -> pd.DataFrame:
    errors = frame.loc[frame["error"], "error_type"].astype(object).fillna("(none)") \
        .value_counts().rename("errors").to_frame()
    errors["share"] = errors["errors"] / errors["errors"].sum()
    errors["rate"] = errors["errors"] / len(frame)
    return errors


@dataclass(frozen=True, slots=True)
class _Naive:
    seconds: dict[str, float]  # read, totals, model, provider, agent, trend, errors, trend_1h
    parts: dict[str, pd.DataFrame]


def _pandas_overview(root: Path) -> _Naive:
    """The overview, metrics by model and the hourly trend as a notebook would compute them."""
    seconds: dict[str, float] = {}
    parts: dict[str, pd.DataFrame] = {}

    def part(name: str, fn: Callable[[], pd.DataFrame]) -> None:
        seconds[name], parts[name] = timed(fn)

    span = float(_WINDOW.seconds or 0)
    seconds["read"], frame = timed(lambda: _pandas_read(root))
    part("totals", lambda: _pandas_metrics(frame, frame["kind"].astype(object), span))
    for name in ("model", "provider", "agent"):
        part(name, lambda name=name: _pandas_metrics(frame, frame[name].astype(object), span))
    part("trend", lambda: _pandas_metrics(frame, frame["ts"].dt.floor("1D").rename("bucket"),
                                          86_400.0).sort_index())
    part("errors", lambda: _pandas_errors(frame))
    part("trend_1h", lambda: _pandas_metrics(frame, frame["ts"].dt.floor("1h").rename("bucket"),
                                             3_600.0).sort_index())
    return _Naive(seconds, parts)


# -- agreement --------------------------------------------------------------------------------


_QUANTILE_COLUMNS: Final = tuple(name for name in OVERVIEW_METRICS
                                 if {"latency_q", "ttft_q"} & set(METRICS[name].needs))


def _agree(name: str, ours: pd.DataFrame, theirs: pd.DataFrame, *,
           sketched: bool = False) -> None:
    """Fail unless both frames hold the same metrics for the same groups (the quantiles
    within ALPHA relative where ``sketched``)."""
    if len(ours) != len(theirs):
        raise AssertionError(f"{name}: {len(ours)} rows, pandas {len(theirs)}")
    for column in theirs.columns:
        mine = ours[column].to_numpy(dtype=np.float64)
        other = theirs[column].to_numpy(dtype=np.float64)
        exact = column in ("requests", "errors", "fallbacks", "unpriced_calls", "retries",
                           "input_tokens", "output_tokens")
        rtol = ALPHA * (1 + 1e-9) if sketched and column in _QUANTILE_COLUMNS else 1e-9
        same = np.array_equal(mine, other) if exact else np.allclose(
            mine, other, rtol=rtol, atol=0, equal_nan=True)
        if not same:
            raise AssertionError(f"{name}.{column}: ours and pandas disagree\n{ours[column]}\n"
                                 f"{theirs[column]}")


def _check_agreement(view: Overview, by_model: pd.DataFrame, hourly: pd.DataFrame,
                     theirs: _Naive, *, sketched: bool = True) -> None:
    parts = theirs.parts
    _agree("totals", view.totals, parts["totals"], sketched=sketched)
    for name, mine in (("model", view.by_model), ("provider", view.by_provider),
                       ("agent", view.by_agent)):
        _agree(name, mine.set_index(name).loc[parts[name].index], parts[name],
               sketched=sketched)
    _agree("by_model", by_model.set_index("model").loc[parts["model"].index], parts["model"])
    for name, mine in (("trend", view.trend), ("trend_1h", hourly)):
        busy = mine[mine["requests"] > 0].set_index("bucket")  # pandas has no empty buckets
        _agree(name, busy, parts[name], sketched=sketched and name == "trend")
        if not (busy.index == parts[name].index).all():
            raise AssertionError(f"{name}: the buckets differ")
    _agree("errors", view.errors.set_index("error_type").loc[parts["errors"].index],
           parts["errors"])


def _worst_error(ours: pd.DataFrame, theirs: pd.DataFrame) -> float:
    """The largest relative error of ours' quantile columns against pandas' exact ones."""
    ours = ours.loc[theirs.index] if ours.index.name else ours
    errors = [np.nanmax(np.abs(ours[c].to_numpy(np.float64) / theirs[c].to_numpy(np.float64)
                               - 1), initial=0.0) for c in _QUANTILE_COLUMNS]
    return float(max(errors))


# -- the rows ---------------------------------------------------------------------------------


def _clock(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall-clock and process-CPU seconds of ``fn()``, and its result."""
    gc.collect()
    cpu, start = time.process_time(), time.perf_counter()
    result = fn()
    return time.perf_counter() - start, time.process_time() - cpu, result


@dataclass(frozen=True, slots=True)
class _Timing:
    cold: float
    times: list[float]
    cpus: list[float]
    result: Any

    def note(self, what: str) -> str:
        return (f"ours: median of {len(self.times)} runs of a fresh EventLog.store() + {what} "
                f"after a warm-up run, {median(self.cpus):.2f} s of process CPU each; the first "
                f"run in the process: {self.cold:.2f} s")


def _time(fn: Callable[[], Any], rounds: int, between: Callable[[int], None]) -> _Timing:
    cold, _, result = _clock(fn)
    times: list[float] = []
    cpus: list[float] = []
    for round_ in range(rounds):
        seconds, cpu, result = _clock(fn)
        times.append(seconds)
        cpus.append(cpu)
        between(round_)
    return _Timing(cold, times, cpus, result)


def _rows(ctx: Context, calls: int, rounds: int, baseline_rounds: int) -> list[Row]:
    dataset = _dataset(ctx, calls)
    naive: list[_Naive] = []

    def baseline(round_: int) -> None:  # ours and pandas in turn, so a busy moment hits both
        if round_ < baseline_rounds:
            naive.append(_pandas_overview(dataset.root))
            gc.collect()

    view_t = _time(lambda: _ours_overview(dataset.root), rounds, baseline)
    model_t = _time(lambda: _ours_by_model(dataset.root), rounds, lambda _: None)
    trend_t = _time(lambda: _ours_trend(dataset.root), rounds, lambda _: None)
    _check_agreement(view_t.result, model_t.result, trend_t.result, naive[-1])
    plain_s, plain_cpu, _ = _clock(lambda: _ours_without_quantiles(dataset.root))
    exact_s, exact_cpu, exact_view = _clock(lambda: _ours_exact(dataset.root))
    _check_agreement(exact_view, model_t.result, trend_t.result, naive[-1], sketched=False)
    worst = max(_worst_error(mine, naive[-1].parts[name]) for name, mine in (
        ("totals", view_t.result.totals), *((n, getattr(view_t.result, f"by_{n}").set_index(n))
                                            for n in ("model", "provider", "agent")),
        ("trend", view_t.result.trend[view_t.result.trend["requests"] > 0]
         .set_index("bucket"))))

    def spent(*names: str) -> float:
        return median([sum(run.seconds[name] for name in names) for run in naive])

    overview_parts = ("read", "totals", "model", "provider", "agent", "trend", "errors")
    view: Overview = view_t.result
    totals = view.totals.iloc[0]
    data_note = (f"data: {calls:,} llm.call events over {_DAYS} days (6 models, 5 providers, "
                 f"5 agents; {totals['error_rate']:.1%} errors, {int(totals['fallbacks']):,} "
                 f"fallbacks, cache hit rate {totals['cache_hit_rate']:.1%}, "
                 f"{int(totals['unpriced_calls']):,} unpriced), written in "
                 f"{dataset.write_s:.1f} s, "
                 f"compact() {dataset.compact_s:.1f} s, {dataset.files} files")
    agree = ("both agree on every number of every part (counts exact; sums, means and rates "
             f"to 1e-9; the overview's quantiles within {ALPHA:.1%} relative, worst seen "
             f"{worst:.3%}; with exact_quantiles=True to 1e-9)")
    baseline_name = "pandas read_parquet + groupby + quantile, read time included"
    size = f"{calls:,} llm.call events"
    return [
        Row(benchmark=f"monitoring.overview: {len(OVERVIEW_METRICS)} metrics in total, by "
                      f"model, provider, agent and day, + error types, {size}",
            ours=median(view_t.times), unit="s", baseline_name=baseline_name,
            baseline=spent(*overview_parts),
            goal=_GOAL_S if calls == _GOAL_ROWS else None,
            notes=(view_t.note("overview()"),
                   f"quantiles within {ALPHA:.1%} relative (log-bucketed histogram, counted in "
                   f"the same scan); overview(exact_quantiles=True): {exact_s:.2f} s "
                   f"({exact_cpu:.2f} s CPU, one run); without its "
                   f"{len(OVERVIEW_METRICS) - len(_NO_QUANTILES)} quantile metrics (latency "
                   f"p50/p95/p99, TTFT p50/p95): {plain_s:.2f} s ({plain_cpu:.2f} s CPU, "
                   "one run)",
                   f"pandas: median of {len(naive)}, read_parquet of {len(_COLUMNS)} columns "
                   f"{spent('read'):.2f} s + totals {spent('totals'):.2f} s + by model, "
                   f"provider, agent {spent('model', 'provider', 'agent'):.2f} s + by day "
                   f"{spent('trend'):.2f} s + error types {spent('errors'):.2f} s; {agree}",
                   data_note)),
        Row(benchmark=f"monitoring.metrics: the overview metrics by model, {size}",
            ours=median(model_t.times), unit="s", baseline_name=baseline_name,
            baseline=spent("read", "model"), notes=(model_t.note('metrics(by=["model"])'),)),
        Row(benchmark=f"monitoring.trend: the overview metrics per hour (720 buckets), {size}",
            ours=median(trend_t.times), unit="s", baseline_name=baseline_name,
            baseline=spent("read", "trend_1h"),
            notes=(trend_t.note('trend(bucket="1h")'),)),
    ]


@benchmark("monitoring.overview")
def bench_overview(ctx: Context) -> list[Row]:
    """The full overview metric set over 10M events (goal ≤ 1.5 s) vs pandas."""
    return _rows(ctx, ctx.size(_GOAL_ROWS, 1_000_000), rounds=ctx.size(5, 3),
                 baseline_rounds=ctx.size(2, 1))
