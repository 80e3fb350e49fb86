"""An experiment's analysis from the event log, and the rule that may complete it.

For the primary metric and each guardrail, every treatment is compared with the control
(the first variant): a fixed-horizon test with effect sizes and 95 % intervals (two
proportions for success rate, Welch for means, a bootstrap of the p95 for tail latency),
Holm-adjusted across all comparisons; and, for the primary metric, the mSPRT's
always-valid p-value at every daily look, the only one that may be watched continuously
and stopped on. Alongside: the sample-ratio check of exposed units against the weights,
the Bayesian chance to be best and expected loss for success rate, and how many more
days the planned sample needs at the current traffic.

``decide`` completes an experiment with a winner only when all of these hold, and
otherwise says which do not: the sequential test is significant; every variant has
``min_samples`` calls; the sample ratio matches; no guardrail is significantly worse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import numpy as np
import pandas as pd

from devora_lab.experiments import data, stats
from devora_lab.experiments import sequential as seq
from devora_lab.experiments.model import Decision, Experiment

if TYPE_CHECKING:
    from devora_lab.events.store import EventStore
    from devora_lab.experiments.registry import ExperimentRegistry

__all__ = ["HIGHER_IS_BETTER", "Analysis", "analyze", "decide"]

#: Whether a larger value of the metric is better (for the direction of "worse").
HIGHER_IS_BETTER: Final = {"success_rate": True, "judge_score": True, "latency_ms": False,
                           "p95_latency_ms": False, "cost_usd": False, "output_tokens": False}


@dataclass(frozen=True)
class Analysis:
    """Everything the decision rests on; ``missing`` names the unmet conditions."""

    experiment: Experiment
    variants: pd.DataFrame          # per variant and metric: n, value
    comparisons: pd.DataFrame       # per treatment and metric: lift, CI, p, adjusted p
    sequential: pd.DataFrame        # per day and treatment: difference, CS, p (primary)
    srm: seq.SampleRatioCheck | None
    bayes: seq.BayesianComparison | None
    days_to_sample: float | None
    missing: list[str] = field(default_factory=list)
    winner: str | None = None

    @property
    def can_complete(self) -> bool:
        return not self.missing


def _column(frame: pd.DataFrame, name: str) -> dict[str, float]:
    """One column as plain floats by index label (the summaries are small)."""
    return {str(label): float(value) for label, value in frame[name].items()}


def _variant_rows(store: EventStore, experiment: Experiment) -> pd.DataFrame:
    rows = []
    for metric in (experiment.primary_metric, *experiment.guardrails):
        summary = data.variant_summary(store, experiment.name, metric)
        for variant in experiment.variant_names:
            if variant in summary.index:
                column = "p95" if metric == "p95_latency_ms" else "mean"
                rows.append({"variant": variant, "metric": metric,
                             "n": int(_column(summary, "n")[variant]),
                             "value": _column(summary, column)[variant]})
            else:
                rows.append({"variant": variant, "metric": metric, "n": 0, "value": math.nan})
    return pd.DataFrame(rows, columns=["variant", "metric", "n", "value"])


def _compare(store: EventStore, experiment: Experiment, metric: str, control: str,
             treatment: str) -> dict[str, object]:
    base = {"variant": treatment, "metric": metric}
    if metric == "success_rate":
        summary = data.variant_summary(store, experiment.name, metric)
        if control not in summary.index or treatment not in summary.index:
            return {**base, "p_value": math.nan}
        totals, counts = _column(summary, "total"), _column(summary, "n")
        cs, cn = round(totals[control]), round(counts[control])
        ts, tn = round(totals[treatment]), round(counts[treatment])
        test = stats.compare_proportions([cs, ts], [cn, tn])
        lift = stats.proportion_lift(cs, cn, ts, tn)
        return {**base, "difference": lift.absolute, "ci_low": lift.absolute_low,
                "ci_high": lift.absolute_high, "relative": lift.relative,
                "p_value": test.p_value, "test": test.method}
    values = data.samples(store, experiment.name, metric)
    if len(values.get(control, ())) < 2 or len(values.get(treatment, ())) < 2:
        return {**base, "p_value": math.nan}
    if metric == "p95_latency_ms":
        q = stats.quantile_difference_test(values[control], values[treatment])
        return {**base, "difference": q.difference, "ci_low": q.ci_low, "ci_high": q.ci_high,
                "relative": q.difference / float(np.quantile(values[control], 0.95)),
                "p_value": q.p_value, "test": "bootstrap p95"}
    welch = stats.welch_ttest(values[control], values[treatment])
    lift = stats.mean_lift(values[control], values[treatment])
    return {**base, "difference": welch.difference, "ci_low": welch.ci_low,
            "ci_high": welch.ci_high, "relative": lift.relative, "p_value": welch.p_value,
            "test": "welch"}


def _comparisons(store: EventStore, experiment: Experiment) -> pd.DataFrame:
    control = experiment.control.name
    rows = [_compare(store, experiment, metric, control, variant.name)
            for metric in (experiment.primary_metric, *experiment.guardrails)
            for variant in experiment.variants[1:]]
    frame = pd.DataFrame(rows)
    known = frame["p_value"].notna()
    frame["p_adjusted"] = math.nan
    if known.any():
        frame.loc[known, "p_adjusted"] = stats.adjust_pvalues(
            frame.loc[known, "p_value"].tolist(), "holm")
    direction = frame["metric"].map(HIGHER_IS_BETTER).astype(bool)
    difference = frame.get("difference", pd.Series(math.nan, index=frame.index))
    worse = np.where(direction, difference < 0, difference > 0)
    frame["significantly_worse"] = worse & (frame["p_adjusted"] < experiment.alpha)
    return frame


def _sequential(store: EventStore, experiment: Experiment) -> pd.DataFrame:
    metric = experiment.primary_metric
    looks = data.daily_cumulative(store, experiment.name, metric)
    control = experiment.control.name
    frames = []
    for variant in experiment.variants[1:]:
        name = variant.name
        if looks.empty or control not in looks["n"] or name not in looks["n"]:
            continue
        ready = (looks["n"][control] > 1) & (looks["n"][name] > 1)
        part = looks[ready]
        if part.empty:
            continue
        test = _msprt(metric, part, control, name, experiment.alpha, experiment.min_samples)
        frames.append(pd.DataFrame({"day": part.index, "variant": name,
                                    "difference": test.difference, "ci_low": test.ci_low,
                                    "ci_high": test.ci_high, "p_value": test.p_values}))
    columns = ["day", "variant", "difference", "ci_low", "ci_high", "p_value"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def _mixing_variance(variance: float, alpha: float, planned: int) -> float:
    """The mSPRT's mixing variance tau^2, tuned to be most powerful near the planned
    sample: tau^2 = rho^2 * sigma^2 with rho^2 = (-2 ln a + ln(-2 ln a + 1)) / n*, where
    sigma^2 is the per-call variance and n* the minimum sample per variant (the rule
    GrowthBook uses for its sequential tests, after Howard et al., "Time-uniform,
    nonparametric, nonasymptotic confidence sequences", 2021, eq. 14). A fixed tau in
    the metric's units would be blind to effects far from it at the sample sizes run."""
    rho2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / planned
    return max(rho2 * variance, 1e-12)


def _msprt(metric: str, looks: pd.DataFrame, control: str, treatment: str,
           alpha: float, planned: int) -> seq.SequentialTest:
    n_c, n_t = looks["n"][control].to_numpy(), looks["n"][treatment].to_numpy()
    sum_c, sum_t = looks["total"][control].to_numpy(), looks["total"][treatment].to_numpy()
    mean_c, mean_t = sum_c / n_c, sum_t / n_t
    if metric == "success_rate":
        pooled = float((sum_c[-1] + sum_t[-1]) / (n_c[-1] + n_t[-1]))
        tau2 = _mixing_variance(pooled * (1 - pooled), alpha, planned)
        return seq.msprt_proportions(sum_c, n_c, sum_t, n_t, tau2=tau2, alpha=alpha)
    sq_c, sq_t = looks["squares"][control].to_numpy(), looks["squares"][treatment].to_numpy()
    var_c = np.maximum(sq_c - n_c * mean_c**2, 0) / (n_c - 1)
    var_t = np.maximum(sq_t - n_t * mean_t**2, 0) / (n_t - 1)
    tau2 = _mixing_variance(float(var_c[-1] + var_t[-1]) / 2, alpha, planned)
    return seq.msprt_means(n_c, mean_c, var_c, n_t, mean_t, var_t, tau2=tau2, alpha=alpha)


def _srm(store: EventStore, experiment: Experiment) -> seq.SampleRatioCheck | None:
    units = data.exposures(store, experiment.name)
    observed = [int(units.get(name, 0)) for name in experiment.variant_names]
    if sum(observed) == 0:
        return None
    weights = experiment.weights
    return seq.sample_ratio_mismatch(observed, [weights[name] for name in experiment.variant_names])


def _bayes(variants: pd.DataFrame, experiment: Experiment) -> seq.BayesianComparison | None:
    rates = variants[variants["metric"] == "success_rate"]
    if rates.empty or (rates["n"] == 0).any():
        return None
    successes = [round(v * n) for v, n in zip(rates["value"], rates["n"], strict=True)]
    return seq.bayesian_proportions(successes, rates["n"].astype(int).tolist())


def _days_to_sample(store: EventStore, experiment: Experiment,
                    variants: pd.DataFrame) -> float | None:
    primary = variants[variants["metric"] == experiment.primary_metric]
    looks = data.daily_cumulative(store, experiment.name, experiment.primary_metric)
    if primary.empty or looks.empty:
        return None
    days = max(len(looks.index), 1)
    per_day = float(primary["n"].min()) / days
    if per_day <= 0:
        return None
    return seq.days_to_significance(experiment.min_samples, per_day,
                                    users_so_far_per_variant=int(primary["n"].min()))


def analyze(store: EventStore, experiment: Experiment) -> Analysis:
    """The full analysis of ``experiment`` over the log (see the module docstring)."""
    variants = _variant_rows(store, experiment)
    comparisons = _comparisons(store, experiment)
    sequential = _sequential(store, experiment)
    srm = _srm(store, experiment)
    missing, winner = _conditions(experiment, variants, comparisons, sequential, srm)
    return Analysis(experiment, variants, comparisons, sequential, srm,
                    _bayes(variants, experiment), _days_to_sample(store, experiment, variants),
                    missing, winner)


def _conditions(experiment: Experiment, variants: pd.DataFrame, comparisons: pd.DataFrame,
                sequential: pd.DataFrame,
                srm: seq.SampleRatioCheck | None) -> tuple[list[str], str | None]:
    missing: list[str] = []
    winner = None
    latest = sequential.groupby("variant").tail(1) if not sequential.empty else sequential
    hits = latest[latest["p_value"] < experiment.alpha] if not latest.empty else latest
    if hits.empty:
        best = float(latest["p_value"].min()) if not latest.empty else math.nan
        missing.append(f"the sequential test on {experiment.primary_metric} is not "
                       f"significant (always-valid p = {best:.3g}, needs < {experiment.alpha})")
    else:
        better = HIGHER_IS_BETTER[experiment.primary_metric]
        ranked = hits.sort_values("difference", ascending=not better)
        best_row = ranked.iloc[0]
        improves = (best_row["difference"] > 0) == better
        winner = str(best_row["variant"]) if improves else experiment.control.name
    primary = variants[variants["metric"] == experiment.primary_metric]
    short = primary[primary["n"] < experiment.min_samples]
    if not short.empty:
        missing.append("minimum sample not reached: " + ", ".join(
            f"{row.variant} {row.n}/{experiment.min_samples}" for row in short.itertuples()))
    if srm is None:
        missing.append("no exposures logged, so the sample ratio cannot be checked")
    elif srm.srm_failed:
        missing.append(f"sample ratio mismatch (p = {srm.p_value:.2g} < {srm.threshold}): "
                       "assignment or logging is broken; fix it before any decision")
    worse = comparisons[comparisons["significantly_worse"]
                        & comparisons["metric"].isin(experiment.guardrails)]
    for row in worse.itertuples():
        missing.append(f"guardrail {row.metric} is significantly worse in {row.variant} "
                       f"(Holm-adjusted p = {row.p_adjusted:.3g})")
    return missing, (winner if not missing else None)


def decide(registry: ExperimentRegistry, store: EventStore, name: str) -> Analysis:
    """Analyse ``name`` and complete it with the winner if, and only if, it validly can."""
    experiment = registry.get(name)
    result = analyze(store, experiment)
    if experiment.state == "running" and result.can_complete:
        reason = (f"{result.winner} wins on {experiment.primary_metric}: sequential test "
                  f"significant, minimum sample reached, sample ratio as planned, no "
                  "guardrail worse")
        registry.complete(name, Decision(winner=result.winner, reason=reason,
                                         decided_by="auto"))
    return result
