"""Benchmark of an experiment's analysis from the event log.

``experiments.analyze`` — ``analyze(store, experiment)`` end to end, for an A/B test with
primary metric ``success_rate`` and guardrails ``latency_ms``, ``p95_latency_ms`` and
``cost_usd``, over an event log of 10M ``llm.call`` events (1M in ``--quick``) spread over
30 days: 60 % of the calls belong to the experiment (two variants, 50/50), 10 % to another
experiment and 30 % to no experiment, plus one ``experiment.exposure`` event per unit of
both experiments. The data are synthetic (numpy + pyarrow, written with ``write_table`` in
1M-row chunks in time order, then ``compact()``; generated once per run), with a real
effect: the treatment succeeds more often, is a little slower and costs more.

The clock runs from opening a fresh ``EventLog(root).store()`` until ``analyze`` returns
(every query and every test: Holm-adjusted comparisons, the p95 bootstrap, the daily
mSPRT, the sample-ratio check), after one warm-up run; the first run in the process (the
files were just written, so they are in the OS page cache either way) is in the notes,
and so is how the time splits between reading the log (the ``data`` calls ``analyze``
makes, on a fresh store) and the p95 bootstrap (``stats.quantile_difference_test``, 10,000
resamples of two 50,000-value samples, drawn as order statistics), which does not depend
on the number of events.

The baseline is the same analysis done the obvious way in a notebook: ``pandas.read_parquet``
of the seven needed columns of the whole log, filter in pandas, ``groupby`` per variant and
per day, and scipy for the tests (``ttest_ind(equal_var=False)`` on all values, a two-sample
``scipy.stats.bootstrap`` of the p95 difference on a 50,000-value sample per variant with
the same 2,000 resamples, ``chisquare`` for the sample ratio). The per-day cumulative
sums go through the same mSPRT function as ours. Both are checked to agree on every number
that does not depend on sampling (calls, means, rates, p95 by variant, the proportion test,
the last always-valid p-value, the sample-ratio p-value).
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from benchmarks.harness import Context, benchmark, median, timed
from benchmarks.table import Row
from devora_lab.events import EventKind, EventLog
from devora_lab.experiments import data, stats
from devora_lab.experiments import sequential as seq
from devora_lab.experiments.analysis import Analysis, analyze
from devora_lab.experiments.model import Experiment, Variant

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

_GOAL_S: Final = 2.0
_GOAL_ROWS: Final = 10_000_000
_CHUNK_ROWS: Final = 1_000_000
_DAYS: Final = 30
_ORIGIN: Final = datetime(2026, 1, 1, tzinfo=timezone.utc)
_EXPERIMENT: Final = "reviewer-prompt"
_OTHER: Final = "router-model"
_VARIANTS: Final = ("control", "treatment")
_OTHER_VARIANTS: Final = ("gpt-4o", "claude-sonnet-4")
# share of all llm.call events: experiment control, treatment, the other experiment, none
_TRAFFIC: Final = (0.30, 0.30, 0.10, 0.30)
_CALLS_PER_UNIT: Final = 20  # exposure events: one per unit, about 20 calls per unit
_SUCCESS: Final = (0.900, 0.905, 0.90, 0.90)  # by traffic group
_LATENCY_MEDIAN: Final = (900.0, 910.0, 700.0, 800.0)
_OUTPUT_SCALE: Final = (1.00, 1.05, 1.0, 1.0)
_UNPRICED: Final = 0.01  # share of calls with NULL cost_usd (model not in the price book)
_JUDGED: Final = 0.10  # share of experiment calls with a judge_score attribute
_SAMPLE: Final = 50_000  # values per variant for the p95 bootstrap (as data.samples)
_RESAMPLES: Final = 2_000  # as analysis.py

GUARDRAILS: Final = ("latency_ms", "p95_latency_ms", "cost_usd")
_NEEDED: Final = ["kind", "ts", "experiment", "variant", "status", "latency_ms", "cost_usd"]


def _experiment(min_samples: int) -> Experiment:
    return Experiment(name=_EXPERIMENT, hypothesis="the new reviewer prompt succeeds more often",
                      variants=(Variant(_VARIANTS[0]), Variant(_VARIANTS[1])),
                      primary_metric="success_rate", guardrails=GUARDRAILS,
                      min_samples=min_samples, state="running")


# -- the synthetic log ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Dataset:
    root: Path
    calls: int
    exposures: int
    write_s: float
    compact_s: float
    files: int


def _dictionary(values: list[str | None], index: np.ndarray) -> pa.Array:
    """``values[index]`` as a dictionary array (None in ``values`` becomes NULL)."""
    import pyarrow as pa

    present = [v for v in values if v is not None]
    codes = np.array([present.index(v) if v is not None else -1 for v in values])[index]
    mask = codes < 0
    return pa.DictionaryArray.from_arrays(
        pa.array(codes.astype(np.int32), mask=mask if mask.any() else None), pa.array(present))


def _calls(rng: np.random.Generator, first_id: int, rows: int,
           span_us: tuple[int, int]) -> pa.Table:
    """``rows`` llm.call events in time order within ``span_us`` (µs since the epoch)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    group = rng.choice(len(_TRAFFIC), size=rows, p=np.array(_TRAFFIC))
    other = group == 2
    arm = np.where(other, rng.integers(0, 2, rows), group)  # variant index within its experiment
    success, latency, scale = (np.array(v)[group] for v in (_SUCCESS, _LATENCY_MEDIAN,
                                                              _OUTPUT_SCALE))
    input_tokens = rng.lognormal(7.0, 1.0, rows).astype(np.int64) + 1
    output_tokens = (rng.lognormal(5.5, 0.8, rows) * scale).astype(np.int64) + 1
    cost = input_tokens * 2.5e-6 + output_tokens * 10e-6
    judged = (group < 2) & (rng.random(rows) < _JUDGED)
    scores = pc.cast(pa.array(np.round(rng.beta(8, 2, int(judged.sum())), 3)), pa.string())
    attributes = np.full(rows, None, dtype=object)
    attributes[judged] = pc.binary_join_element_wise(
        '{"judge_score": ', scores, "}", "").to_numpy(zero_copy_only=False)
    ts = np.sort(rng.integers(span_us[0], span_us[1], rows))
    ids = pc.cast(pa.array(np.arange(first_id, first_id + rows)), pa.string())
    columns: dict[str, Any] = {
        "event_id": pc.binary_join_element_wise("ev-", ids, ""),
        "kind": _dictionary([EventKind.LLM_CALL.value], np.zeros(rows, dtype=np.int64)),
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "schema_version": pa.array(np.ones(rows, dtype=np.int32)),
        "experiment": _dictionary([_EXPERIMENT, _EXPERIMENT, _OTHER, None], group),
        "variant": _dictionary([*_VARIANTS, *_OTHER_VARIANTS, None],
                               np.where(group == 3, 4, np.where(other, 2 + arm, arm))),
        "operation": _dictionary(["chat"], np.zeros(rows, dtype=np.int64)),
        "request_model": _dictionary(["gpt-4o"], np.zeros(rows, dtype=np.int64)),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cost_usd": pa.array(cost, mask=rng.random(rows) < _UNPRICED),
        "latency_ms": latency * rng.lognormal(0.0, 0.5, rows),
        "status": _dictionary(["ok", "error"], (rng.random(rows) >= success).astype(np.int64)),
        "attributes": pa.array(attributes, pa.string()),
    }
    return pa.table(columns)


def _exposure_events(rng: np.random.Generator, first_id: int, units: int,
                     origin_us: int, span_us: int) -> pa.Table:
    """One experiment.exposure per unit, at its first call: most units arrive early."""
    import pyarrow as pa
    import pyarrow.compute as pc

    experiment = rng.random(units) < _TRAFFIC[2] / sum(_TRAFFIC[:3])  # True: the other one
    arm = rng.integers(0, 2, units)
    ts = np.sort(origin_us + (span_us * rng.random(units) ** 2).astype(np.int64))
    ids = pc.cast(pa.array(np.arange(first_id, first_id + units)), pa.string())
    return pa.table({
        "event_id": pc.binary_join_element_wise("ev-", ids, ""),
        "kind": _dictionary([EventKind.EXPERIMENT_EXPOSURE.value], np.zeros(units, np.int64)),
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "schema_version": pa.array(np.ones(units, dtype=np.int32)),
        "user_id": pc.binary_join_element_wise("user-", ids, ""),
        "experiment": _dictionary([_EXPERIMENT, _OTHER], experiment.astype(np.int64)),
        "variant": _dictionary([*_VARIANTS, *_OTHER_VARIANTS],
                               np.where(experiment, 2 + arm, arm)),
    })


def _build_dataset(root: Path, calls: int) -> _Dataset:
    log = EventLog(root)
    rng = np.random.default_rng(calls)
    origin_us, span_us = int(_ORIGIN.timestamp() * 1_000_000), _DAYS * 86_400_000_000
    units = calls * sum(_TRAFFIC[:3]) // _CALLS_PER_UNIT
    writer = log.writer()
    start = time.perf_counter()
    for first in range(0, calls, _CHUNK_ROWS):
        size = min(_CHUNK_ROWS, calls - first)
        span = (origin_us + span_us * first // calls, origin_us + span_us * (first + size) // calls)
        writer.write_table(_calls(rng, first, size, span))
    writer.write_table(_exposure_events(rng, calls, int(units), origin_us, span_us))
    writer.close()
    write_s = time.perf_counter() - start
    compact_s, report = timed(log.compact)
    if report.events != calls + units:
        raise AssertionError(f"dataset: wrote {calls + units} events, compaction sees "
                             f"{report.events}")
    return _Dataset(root, calls, int(units), write_s, compact_s, report.files_after)


def _dataset(ctx: Context, calls: int) -> _Dataset:
    key = f"experiments.dataset.{calls}"
    if key not in ctx.cache:
        ctx.cache[key] = _build_dataset(ctx.scratch(f"experiments-{calls}") / "events", calls)
    dataset: _Dataset = ctx.cache[key]
    return dataset


# -- ours -------------------------------------------------------------------------------------


def _ours(root: Path, experiment: Experiment) -> Analysis:
    with EventLog(root).store() as store:
        return analyze(store, experiment)


# -- the pandas + scipy baseline --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Naive:
    read_s: float
    bootstrap_s: float
    variants: pd.DataFrame  # index (variant, metric): n, value
    success_p: float
    welch_p: dict[str, float]
    p95_p: float
    last_sequential_p: float
    srm_p: float


def _pandas_analysis(root: Path, experiment: Experiment) -> _Naive:
    """The analysis as a notebook would write it with pandas and scipy (see the docstring)."""
    import pandas as pd
    from scipy import stats as scipy_stats

    start = time.perf_counter()
    frame = pd.read_parquet(root, columns=_NEEDED)
    read_s = time.perf_counter() - start
    mine = frame[frame["experiment"] == experiment.name]
    calls = mine[(mine["kind"] == EventKind.LLM_CALL.value) & mine["variant"].notna()]
    calls = calls.assign(success=(calls["status"] == "ok").astype(np.float64))
    names = list(experiment.variant_names)
    by_variant = calls.groupby("variant", observed=True)
    rows: list[dict[str, Any]] = []
    for metric, column in (("success_rate", "success"), ("latency_ms", "latency_ms"),
                           ("p95_latency_ms", "latency_ms"), ("cost_usd", "cost_usd")):
        grouped = by_variant[column]
        value = grouped.quantile(0.95) if metric == "p95_latency_ms" else grouped.mean()
        for name in names:
            rows.append({"variant": name, "metric": metric,
                         "n": int(grouped.count()[name]), "value": float(value[name])})
    variants = pd.DataFrame(rows).set_index(["variant", "metric"])

    control, treatment = (calls[calls["variant"] == name] for name in names)
    ok = [int(part["success"].sum()) for part in (control, treatment)]
    total = [len(control), len(treatment)]
    _, success_p, _, _ = scipy_stats.chi2_contingency(
        [[ok[0], total[0] - ok[0]], [ok[1], total[1] - ok[1]]])  # Yates, as R's prop.test
    welch_p = {metric: float(scipy_stats.ttest_ind(control[metric].dropna(),
                                             treatment[metric].dropna(),
                                             equal_var=False).pvalue)
               for metric in ("latency_ms", "cost_usd")}
    bootstrap_s, p95 = timed(lambda: scipy_stats.bootstrap(
        (control["latency_ms"].sample(_SAMPLE, random_state=0).to_numpy(),
         treatment["latency_ms"].sample(_SAMPLE, random_state=0).to_numpy()),
        lambda c, t, axis: np.quantile(t, 0.95, axis=axis) - np.quantile(c, 0.95, axis=axis),
        n_resamples=_RESAMPLES, method="percentile", vectorized=True, random_state=0))
    distribution = p95.bootstrap_distribution
    p95_p = min(1.0, 2 * (min(int((distribution <= 0).sum()), int((distribution >= 0).sum()))
                          + 1) / (_RESAMPLES + 1))

    day = calls["ts"].dt.floor("D")
    daily = calls.groupby([day, "variant"], observed=True)["success"].agg(["count", "sum"])
    wide = daily.unstack("variant").fillna(0.0).cumsum()
    n_c, n_t = wide["count"][names[0]].to_numpy(), wide["count"][names[1]].to_numpy()
    s_c, s_t = wide["sum"][names[0]].to_numpy(), wide["sum"][names[1]].to_numpy()
    ready = (n_c > 1) & (n_t > 1)
    pooled = float((s_c[-1] + s_t[-1]) / (n_c[-1] + n_t[-1]))
    alpha, planned = experiment.alpha, experiment.min_samples
    rho2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / planned
    test = seq.msprt_proportions(s_c[ready], n_c[ready], s_t[ready], n_t[ready],
                                 tau2=max(rho2 * pooled * (1 - pooled), 1e-12), alpha=alpha)

    exposed = mine[mine["kind"] == EventKind.EXPERIMENT_EXPOSURE.value]
    units = exposed.groupby("variant", observed=True).size()
    srm = scipy_stats.chisquare([int(units.get(name, 0)) for name in names])
    return _Naive(read_s, bootstrap_s, variants, float(success_p), welch_p, p95_p,
                  float(test.p_values[-1]), float(srm.pvalue))


def _check_agreement(ours: Analysis, theirs: _Naive) -> None:
    """Fail unless both computed the same numbers wherever sampling plays no part."""
    mine = ours.variants.set_index(["variant", "metric"]).loc[theirs.variants.index]
    comparisons = ours.comparisons.set_index("metric")
    assert ours.srm is not None
    checks = {
        "n": bool((mine["n"].to_numpy() == theirs.variants["n"].to_numpy()).all()),
        "values": bool(np.allclose(mine["value"], theirs.variants["value"], rtol=1e-9, atol=0)),
        "success p": math.isclose(comparisons["p_value"].astype(float).to_dict()["success_rate"],
                                  theirs.success_p, rel_tol=1e-6),
        "sequential p": math.isclose(float(ours.sequential["p_value"].iloc[-1]),
                                     theirs.last_sequential_p, rel_tol=1e-6, abs_tol=1e-12),
        "srm p": math.isclose(ours.srm.p_value, theirs.srm_p, rel_tol=1e-6, abs_tol=1e-12),
    }
    if not all(checks.values()):
        raise AssertionError(f"ours and pandas disagree: {checks}\n{mine}\n{theirs.variants}")


# -- where our time goes ----------------------------------------------------------------------


def _breakdown(root: Path, experiment: Experiment) -> tuple[float, float]:
    """Seconds of the ``data`` calls ``analyze`` makes, in its order, on a fresh store; and
    seconds of the p95 bootstrap ``analyze`` runs on the samples."""
    metrics = (experiment.primary_metric, *experiment.guardrails)
    control, treatment = experiment.variant_names[:2]

    def read() -> dict[str, Any]:
        with EventLog(root).store() as store:
            for metric in metrics:
                data.variant_summary(store, experiment.name, metric)
            values = {metric: data.samples(store, experiment.name, metric)
                      for metric in metrics if metric != "success_rate"}
            data.daily_cumulative(store, experiment.name, experiment.primary_metric)
            data.exposures(store, experiment.name)
            return values["p95_latency_ms"]

    read_s, _, values = _clock(read)
    boot_s, _, _ = _clock(lambda: stats.quantile_difference_test(  # as analyze() calls it
        values[control], values[treatment]))
    return read_s, boot_s


# -- the row ----------------------------------------------------------------------------------


def _clock(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall-clock and process-CPU seconds of ``fn()``, and its result."""
    gc.collect()
    cpu, start = time.process_time(), time.perf_counter()
    result = fn()
    return time.perf_counter() - start, time.process_time() - cpu, result


def _summary(result: Analysis) -> str:
    rows = result.comparisons.set_index("metric")
    difference, p = (rows[column].astype(float).to_dict() for column in ("difference", "p_value"))
    parts = [f"{metric} {difference[metric]:+.3g} (p {p[metric]:.2g})"
             for metric in ("success_rate", *GUARDRAILS)]
    return "treatment - control: " + ", ".join(parts)


def _analyze_row(ctx: Context, calls: int, rounds: int, baseline_rounds: int) -> Row:
    dataset = _dataset(ctx, calls)
    experiment = _experiment(min_samples=calls // 10)
    cold, cold_cpu, result = _clock(lambda: _ours(dataset.root, experiment))
    times: list[float] = []
    cpus: list[float] = []
    naive: list[tuple[float, _Naive]] = []
    for round_ in range(rounds):  # ours and pandas in turn, so a busy moment hits both
        seconds, cpu, result = _clock(lambda: _ours(dataset.root, experiment))
        times.append(seconds)
        cpus.append(cpu)
        if round_ < baseline_rounds:
            naive_s, _, theirs = _clock(lambda: _pandas_analysis(dataset.root, experiment))
            naive.append((naive_s, theirs))
    _check_agreement(result, naive[-1][1])
    read_s, boot_s = _breakdown(dataset.root, experiment)
    read = median([run.read_s for _, run in naive])
    naive_boot = median([run.bootstrap_s for _, run in naive])
    naive_total = median([seconds for seconds, _ in naive])
    return Row(
        benchmark=f"experiments.analyze: A/B, success rate + 3 guardrails, {calls:,} llm.call "
                  "events",
        ours=median(times),
        unit="s",
        baseline_name="pandas read_parquet + groupby + scipy tests (scipy.stats.bootstrap for "
                      "the p95), read time included",
        baseline=naive_total,
        goal=_GOAL_S if calls == _GOAL_ROWS else None,
        notes=(
            f"ours: median of {rounds} runs of a fresh EventLog.store() + analyze() after a "
            f"warm-up run, {median(cpus):.2f} s of process CPU each; the first run in the "
            f"process: {cold:.2f} s ({cold_cpu:.2f} s CPU)",
            f"where ours goes: reading the log (the data.* calls analyze makes, fresh store) "
            f"{read_s:.2f} s; the p95 bootstrap (stats.quantile_difference_test, "
            f"10,000 resamples of 2 x {_SAMPLE:,} values, the same at any log size) "
            f"{boot_s:.2f} s (each timed on its own, once)",
            f"pandas: median of {len(naive)}, read_parquet {read:.2f} s + scipy bootstrap of "
            f"the p95 {naive_boot:.2f} s + the rest {naive_total - read - naive_boot:.2f} s; "
            "both agree on calls, means, rates and p95 by variant (to 1e-9), the proportion "
            "test, the last always-valid p-value and the sample-ratio p-value",
            f"result: {_summary(result)}; {len(result.sequential)} daily looks; "
            f"missing: {'; '.join(result.missing) or 'nothing, completes'}",
            f"data: {calls:,} llm.call events over {_DAYS} days (60 % in the experiment, 10 % in "
            f"another, 30 % in none) + {dataset.exposures:,} exposures, written in "
            f"{dataset.write_s:.1f} s, compact() {dataset.compact_s:.1f} s, {dataset.files} "
            "files",
        ),
    )


@benchmark("experiments.analyze")
def bench_analyze(ctx: Context) -> list[Row]:
    """analyze() of an A/B test over 10M llm.call events vs pandas + scipy."""
    return [_analyze_row(ctx, ctx.size(_GOAL_ROWS, 1_000_000), rounds=ctx.size(5, 3),
                         baseline_rounds=ctx.size(2, 1))]
