"""Charts and tables of the experiments notebook, over ``experiments.analysis.analyze``.

``load_experiment`` picks the experiment (named, else the first running one, else the most
recent), analyses it and keeps beside the ``Analysis`` the little the charts need that it
does not carry (exposed units, per-variant intervals, days of data). It never completes
anything: ``decide()`` (``devora-lab experiments analyze --decide``) does that, and
``decision_note`` says what it would do and why. Everything after loading is pure.

Loading lives in ``views._experiment_load`` and is re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import altair as alt
import numpy as np
import pandas as pd

from devora_lab.errors import ConfigError
from devora_lab.experiments import sequential as seq
from devora_lab.experiments.analysis import HIGHER_IS_BETTER
from devora_lab.notebook.views._common import Note, clean
from devora_lab.notebook.views._experiment_load import (
    Z95,
    ExperimentView,
    choose_experiment,
    load_experiment,
    variant_intervals,
)

__all__ = ["ExperimentView", "Note", "bayes_chart", "bayes_table", "choose_experiment",
           "comparison_table", "decision_note", "guardrail_table", "lift_chart",
           "load_experiment", "power_table", "sample_note", "sequential_chart", "srm_note",
           "srm_table", "summary_table", "variant_chart", "variant_intervals"]

_MIN_P: Final = 1e-12  # a p-value that underflowed to 0 still needs a place on a log axis


# ---------------------------------------------------------------------------- tables


def summary_table(view: ExperimentView | Note) -> pd.DataFrame | Note:
    """What the experiment is: hypothesis, state, metrics, sample plan, variants."""
    if isinstance(view, Note):
        return view
    e = view.experiment
    variants = ", ".join(f"{v.name} ({v.weight:g}"
                         + (f", {v.model}" if v.model else "")
                         + (f", template {v.template_version}" if v.template_version else "")
                         + ")" for v in e.variants)
    rows = [("experiment", e.name), ("hypothesis", e.hypothesis),
            ("state", e.state + ("" if view.registered else " (not in the registry)")),
            ("primary metric", e.primary_metric),
            ("guardrails", ", ".join(e.guardrails) or "none"),
            ("unit", e.unit), ("minimum sample per variant", f"{e.min_samples:,}"),
            ("alpha", f"{e.alpha:g}"), ("variants (weight)", variants),
            ("days with data", str(view.days))]
    return pd.DataFrame(rows, columns=["field", "value"]).set_index("field")


def srm_table(view: ExperimentView | Note) -> pd.DataFrame | Note:
    """Exposed units per variant against what the weights expect."""
    if isinstance(view, Note):
        return view
    e = view.experiment
    total_weight = sum(e.weights.values())
    observed = [int(view.exposures.get(name, 0)) for name in e.variant_names]
    total = sum(observed)
    rows = [{"variant": name, "weight": e.weights[name], "units": units,
             "expected": total * e.weights[name] / total_weight,
             "share": units / total if total else math.nan,
             "expected_share": e.weights[name] / total_weight}
            for name, units in zip(e.variant_names, observed, strict=True)]
    return pd.DataFrame(rows)


def srm_note(view: ExperimentView | Note) -> Note:
    """The sample-ratio check in one sentence (at p < 0.001, trust nothing else)."""
    if isinstance(view, Note):
        return view
    srm = view.analysis.srm
    if srm is None:
        return Note("No exposures logged, so the sample ratio cannot be checked.")
    if srm.srm_failed:
        return Note(f"Sample ratio MISMATCH: chi-square p = {srm.p_value:.2g} < "
                    f"{srm.threshold}. Assignment or logging is broken; the other numbers "
                    "are not to be trusted until that is explained.")
    return Note(f"Sample ratio as planned (chi-square p = {srm.p_value:.3g}; a mismatch "
                f"needs p < {srm.threshold}).")


def guardrail_table(view: ExperimentView | Note) -> pd.DataFrame | Note:
    """Each guardrail per treatment: the difference from control, its 95 % interval, the
    Holm-adjusted p-value and a verdict (worse only if significantly so)."""
    if isinstance(view, Note):
        return view
    comparisons = view.analysis.comparisons
    rows = comparisons[comparisons["metric"].isin(view.experiment.guardrails)].copy()
    for column in ("difference", "ci_low", "ci_high", "relative"):
        if column not in rows:
            rows[column] = math.nan
    rows["verdict"] = np.where(rows["p_value"].isna(), "no data",
                               np.where(rows["significantly_worse"], "WORSE", "ok"))
    return rows[["variant", "metric", "difference", "ci_low", "ci_high", "relative",
                 "p_adjusted", "verdict"]].reset_index(drop=True)


def bayes_table(view: ExperimentView | Note) -> pd.DataFrame | Note:
    """Posterior mean success rate, chance to be best and expected loss per variant."""
    if isinstance(view, Note):
        return view
    bayes = view.analysis.bayes
    if bayes is None:
        return Note("No Bayesian view: it covers success rate, and needs calls in every "
                    "variant.")
    return pd.DataFrame({"variant": list(view.experiment.variant_names),
                         "posterior_mean": bayes.posterior_means,
                         "chance_to_be_best": bayes.chance_to_be_best,
                         "expected_loss": bayes.expected_loss})


def _baseline(view: ExperimentView) -> tuple[str, float, float] | None:
    """The control's primary metric: (metric, value, standard deviation or NaN)."""
    e = view.experiment
    rows = view.intervals[(view.intervals["metric"] == e.primary_metric)
                          & (view.intervals["variant"] == e.control.name)]
    if rows.empty or not math.isfinite(float(rows.iloc[0]["value"])):
        return None
    row = rows.iloc[0]
    sd = (float(row["ci_high"] - row["value"]) / Z95 * math.sqrt(float(row["n"]))
          if math.isfinite(float(row["ci_high"])) else math.nan)
    return e.primary_metric, float(row["value"]), sd


def _needed(metric: str, baseline: float, sd: float, mde: float, alpha: float) -> int | None:
    try:
        if metric == "success_rate":
            return seq.sample_size_proportions(baseline, mde, alpha=alpha)
        return seq.sample_size_means(sd, mde, alpha=alpha) if math.isfinite(sd) else None
    except ConfigError:  # the effect would push the rate past 0 or 1
        return None


def power_table(view: ExperimentView | Note,
                effects: Sequence[float] = (0.1, 0.25, 0.5, 0.75)) -> pd.DataFrame | Note:
    """Units per variant for 80 % power at several effect sizes, and the days that takes at
    the traffic so far. For success rate an effect is a share of the distance to the
    nearer bound (0.5 at 98 % success: one point, halving the failures); for a mean, a
    share of the control's mean."""
    if isinstance(view, Note):
        return view
    base = _baseline(view)
    e = view.experiment
    if base is None:
        return Note("No power table: the control has no data on the primary metric yet.")
    metric, value, sd = base
    have = int(view.intervals.loc[view.intervals["metric"] == metric, "n"].min())
    per_day = have / max(view.days, 1)
    room = min(value, 1 - value) if metric == "success_rate" else abs(value)
    better = 1 if HIGHER_IS_BETTER.get(metric, True) else -1
    rows = []
    for effect in effects:
        mde = better * effect * room if metric == "success_rate" else effect * room
        needed = _needed(metric, value, sd, mde, e.alpha) if mde else None
        days = (seq.days_to_significance(needed, per_day, users_so_far_per_variant=have)
                if needed and per_day > 0 else math.nan)
        rows.append({"effect": effect, "detectable_difference": mde,
                     "needed_per_variant": needed, "have_per_variant": have,
                     "days_more": days})
    return pd.DataFrame(rows)


def comparison_table(view: ExperimentView | Note) -> pd.DataFrame | Note:
    """Every treatment against control on every metric: difference, 95 % interval,
    relative lift, the fixed-horizon p-value, its Holm adjustment and the test used."""
    if isinstance(view, Note):
        return view
    frame = view.analysis.comparisons
    columns = [c for c in ("variant", "metric", "difference", "ci_low", "ci_high", "relative",
                           "p_value", "p_adjusted", "test", "significantly_worse")
               if c in frame]
    return frame[columns].reset_index(drop=True)


def sample_note(view: ExperimentView | Note) -> Note:
    """The planned sample against what each variant has, and the days still needed."""
    if isinstance(view, Note):
        return view
    e, a = view.experiment, view.analysis
    primary = view.intervals[view.intervals["metric"] == e.primary_metric]
    have = ", ".join(f"{name} {n:,}" for name, n in zip(primary["variant"].astype(str),
                                                          primary["n"].astype(int), strict=True))
    if a.days_to_sample is None:
        more = "the traffic so far gives no estimate of when it will be reached"
    elif a.days_to_sample == 0:
        more = "it is reached"
    else:
        more = f"about {math.ceil(a.days_to_sample)} more days at the traffic so far"
    return Note(f"Planned: {e.min_samples:,} calls per variant before any decision; "
                f"have {have or 'none'}; {more}.")


def decision_note(view: ExperimentView | Note) -> Note:
    """What ``decide()`` would do now, and why: the winner if every condition holds, else
    each unmet condition (the decision's own wording)."""
    if isinstance(view, Note):
        return view
    a, e = view.analysis, view.experiment
    if e.decision is not None:
        return Note(f"Completed: winner {e.decision.winner or 'none'} ({e.decision.reason}; "
                    f"by {e.decision.decided_by}).")
    caveat = "" if view.registered else (" (not registered: weights, metrics and minimum "
                                         "sample are assumed)")
    if a.can_complete:
        return Note(f"`decide()` would complete {e.name} with winner **{a.winner}**: the "
                    "sequential test is significant, every variant has its minimum sample, "
                    f"the sample ratio is as planned and no guardrail is worse{caveat}.")
    reasons = "\n".join(f"> - {reason}" for reason in a.missing)
    return Note(f"No decision yet for {e.name}{caveat}; `decide()` would leave it "
                f"{e.state}:\n{reasons}")


# ---------------------------------------------------------------------------- charts


def variant_chart(view: ExperimentView | Note) -> alt.FacetChart | Note:
    """Each metric per variant, a point with its 95 % interval; one panel per metric with
    its own scale (success rates and latencies share no axis)."""
    if isinstance(view, Note):
        return view
    if view.intervals.empty:
        return Note("No calls tagged with this experiment yet.")
    base = alt.Chart(clean(view.intervals))
    y = alt.Y("variant:N", title=None)
    bars = base.mark_errorbar(ticks=True).encode(
        x=alt.X("ci_low:Q", title="value (95% interval)", scale=alt.Scale(zero=False)),
        x2="ci_high:Q", y=y)
    points = base.mark_point(filled=True, size=70).encode(
        x="value:Q", y=y, color=alt.Color("variant:N", legend=None),
        tooltip=["variant:N", "metric:N", alt.Tooltip("n:Q", format=","),
                 alt.Tooltip("value:Q", format=".4g"), alt.Tooltip("ci_low:Q", format=".4g"),
                 alt.Tooltip("ci_high:Q", format=".4g")])
    chart: alt.FacetChart = alt.layer(bars, points).properties(width=420).facet(
        row=alt.Row("metric:N", title=None), title="Metrics per variant"
    ).resolve_scale(x="independent")
    return chart


def lift_chart(view: ExperimentView | Note) -> alt.FacetChart | Note:
    """Treatment minus control per metric with the 95 % interval; the rule marks no
    difference. Red: significantly worse after the Holm adjustment."""
    if isinstance(view, Note):
        return view
    frame = view.analysis.comparisons
    if "difference" not in frame or frame["difference"].isna().all():
        return Note("No comparisons yet: each variant needs at least two measured calls.")
    data = clean(frame.dropna(subset=["difference"]).astype({"significantly_worse": str}))
    base = alt.Chart(data)
    y = alt.Y("variant:N", title=None)
    bars = base.mark_errorbar(ticks=True).encode(
        x=alt.X("ci_low:Q", title="treatment - control (95% interval)"), x2="ci_high:Q", y=y)
    points = base.mark_point(filled=True, size=70).encode(
        x="difference:Q", y=y,
        color=alt.Color("significantly_worse:N", title="significantly worse",
                        scale=alt.Scale(domain=["False", "True"], range=["#4c78a8", "#e45756"])),
        tooltip=["variant:N", "metric:N", alt.Tooltip("difference:Q", format=".4g"),
                 alt.Tooltip("relative:Q", format="+.2%"), alt.Tooltip("p_value:Q", format=".3g"),
                 alt.Tooltip("p_adjusted:Q", format=".3g", title="Holm p"), "test:N"])
    zero = base.mark_rule(strokeDash=[4, 3], color="black").encode(x=alt.datum(0))
    chart: alt.FacetChart = alt.layer(bars, points, zero).properties(width=420).facet(
        row=alt.Row("metric:N", title=None), title="Difference from control"
    ).resolve_scale(x="independent")
    return chart


def sequential_chart(view: ExperimentView | Note) -> alt.VConcatChart | Note:
    """Top: the always-valid (mSPRT) p-value at each daily look, against alpha. Bottom:
    the confidence sequence of the difference, which only narrows; it excludes 0 exactly
    when the p-value is below alpha."""
    if isinstance(view, Note):
        return view
    frame = view.analysis.sequential
    if frame.empty:
        return Note("No sequential looks yet: each variant needs more than one call on the "
                    "primary metric.")
    data = frame.copy()
    data["day"] = pd.to_datetime(data["day"]).astype("datetime64[ns]")
    data["p_value"] = data["p_value"].clip(lower=_MIN_P)
    data = clean(data)
    alpha = view.experiment.alpha
    x = alt.X("day:T", title="look (day)")
    color = alt.Color("variant:N")
    tip = ["variant:N", alt.Tooltip("day:T"), alt.Tooltip("p_value:Q", format=".3g"),
           alt.Tooltip("difference:Q", format=".4g"), alt.Tooltip("ci_low:Q", format=".4g"),
           alt.Tooltip("ci_high:Q", format=".4g")]
    p = alt.Chart(data).mark_line(point=True).encode(
        x=x, y=alt.Y("p_value:Q", title="always-valid p", scale=alt.Scale(type="log")),
        color=color, tooltip=tip)
    cut = alt.Chart(pd.DataFrame({"alpha": [alpha]})).mark_rule(
        color="#e45756", strokeDash=[4, 3]).encode(y="alpha:Q")
    band = alt.Chart(data).mark_area(opacity=0.25).encode(
        x=x, y=alt.Y("ci_low:Q", title=f"{view.experiment.primary_metric} difference"),
        y2="ci_high:Q", color=color)
    line = alt.Chart(data).mark_line(point=True).encode(x=x, y="difference:Q", color=color,
                                                        tooltip=tip)
    zero = alt.Chart(pd.DataFrame({"zero": [0.0]})).mark_rule(color="black").encode(y="zero:Q")
    top = alt.layer(p, cut).properties(width=520, height=180,
                                       title=f"Sequential p-value (alpha {alpha:g})")
    bottom = alt.layer(band, line, zero).properties(width=520, height=180,
                                                    title="Confidence sequence")
    both: alt.VConcatChart = alt.vconcat(top, bottom, title="Sequential test (mSPRT)")
    return both


def bayes_chart(view: ExperimentView | Note) -> alt.Chart | Note:
    """Chance each variant has the best success rate, with its expected loss as a label."""
    if isinstance(view, Note):
        return view
    table = bayes_table(view)
    if isinstance(table, Note):
        return table
    base = alt.Chart(table, title="Chance to be best (success rate)")
    bars: alt.Chart = base.mark_bar().encode(
        y=alt.Y("variant:N", title=None),
        x=alt.X("chance_to_be_best:Q", title="chance to be best",
                scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
        tooltip=["variant:N", alt.Tooltip("chance_to_be_best:Q", format=".1%"),
                 alt.Tooltip("expected_loss:Q", format=".3%", title="expected loss"),
                 alt.Tooltip("posterior_mean:Q", format=".3%", title="posterior mean")])
    return bars.properties(width=420)
