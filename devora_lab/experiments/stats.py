"""Fixed-horizon statistics for prompt and model A/B tests: pure functions over counts
(binary metrics: success, thumbs-up) and arrays (latency, cost, tokens, judge scores).

Two-variant functions take the control first and report ``treatment - control``; the
one-sided alternative ``"greater"`` means the treatment is higher. Results are frozen
dataclasses. Checked in the tests against R (``t.test``, ``prop.test``, ``fisher.test``)
and statsmodels. Monitoring over time (sample-ratio mismatch, always-valid mSPRT), the
Bayesian view and sample-size planning are in :mod:`devora_lab.experiments.sequential`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

from devora_lab.errors import ConfigError

__all__ = [
    "Alternative",
    "BinaryTest",
    "BootstrapInterval",
    "ChiSquareTest",
    "FisherTest",
    "Lift",
    "MannWhitney",
    "NonInferiority",
    "ProportionTest",
    "QuantileTest",
    "WelchTest",
    "adjust_pvalues",
    "bootstrap_difference",
    "chi_square_proportions",
    "compare_proportions",
    "fisher_exact_test",
    "mann_whitney",
    "mean_lift",
    "noninferiority_proportions",
    "proportion_lift",
    "quantile_difference_test",
    "two_proportion_ztest",
    "welch_ttest",
]

Alternative = Literal["two-sided", "greater", "less"]
FloatArray = npt.NDArray[np.float64]
#: A numpy reduction that accepts ``axis=-1``: ``np.mean``, ``np.median``, or
#: ``functools.partial(np.quantile, q=0.95)``. It is called on a (resamples, n) array at once.
Statistic = Callable[..., Any]

_CHUNK = 4_000_000  # resampled values held in memory at once (32 MB of float64)


# ---------------------------------------------------------------- input checks


def _check_counts(successes: int, n: int, name: str) -> None:
    if n < 1:
        raise ConfigError(f"{name} sample size must be positive, got {n}",
                          fix="pass the number of trials of each variant")
    if not 0 <= successes <= n:
        raise ConfigError(f"{name} successes must lie between 0 and {n}, got {successes}",
                          fix="pass success counts no larger than the number of trials")


def _check_level(value: float, name: str) -> None:
    if not 0 < value < 1:
        raise ConfigError(f"{name} must lie in (0, 1), got {value}",
                          fix=f"e.g. {name}=0.95" if name == "confidence" else "e.g. 0.05")


def _check_alternative(alternative: str) -> None:
    if alternative not in ("two-sided", "greater", "less"):
        raise ConfigError(f"unknown alternative {alternative!r}",
                          fix="use 'two-sided', 'greater' or 'less'")


def _sample(values: npt.ArrayLike, name: str, minimum: int = 2) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size < minimum:
        raise ConfigError(f"{name} must be a flat sequence of at least {minimum} values",
                          fix="pass one number per observation")
    if not np.all(np.isfinite(array)):
        raise ConfigError(f"{name} contains NaN or infinite values",
                          fix="drop missing observations before testing")
    return array


def _table(successes: Sequence[int], totals: Sequence[int]) -> npt.NDArray[np.int64]:
    """The k x 2 table (successes, failures) of k variants, after checking the counts."""
    if len(successes) != len(totals) or len(totals) < 2:
        raise ConfigError("successes and totals need one entry per variant, at least two",
                          fix="pass e.g. successes=[83, 90], totals=[86, 93]")
    for i, (s, n) in enumerate(zip(successes, totals, strict=True)):
        _check_counts(s, n, f"variant {i}")
    s_arr = np.asarray(successes, dtype=np.int64)
    return np.column_stack([s_arr, np.asarray(totals, dtype=np.int64) - s_arr])


def _z(confidence: float) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2))


def _p_value(dist: Any, stat: float, alternative: Alternative) -> float:
    """p-value of ``stat`` under a (frozen) scipy distribution symmetric about 0."""
    if alternative == "greater":
        return float(dist.sf(stat))
    if alternative == "less":
        return float(dist.cdf(stat))
    return float(min(1.0, 2 * dist.sf(abs(stat))))


# ---------------------------------------------------------------- binary metrics


@dataclass(frozen=True, slots=True)
class ProportionTest:
    """Two-proportion z-test: rates, their difference with its Wald interval, z and p."""

    control_rate: float
    treatment_rate: float
    difference: float
    ci_low: float
    ci_high: float
    z: float
    p_value: float
    confidence: float


def two_proportion_ztest(control_successes: int, control_n: int,
                         treatment_successes: int, treatment_n: int, *,
                         confidence: float = 0.95,
                         alternative: Alternative = "two-sided") -> ProportionTest:
    """z-test of equal success rates (the large-sample test behind most A/B dashboards).

    The test uses the pooled standard error, which is the right one under H0 (equal rates);
    the interval for the difference uses the unpooled (Wald) standard error, which is the
    right one where the rates differ. The two can disagree at the margin; that is expected.
    Without continuity correction, so z**2 equals ``prop.test(correct=FALSE)``'s X-squared.
    """
    _check_counts(control_successes, control_n, "control")
    _check_counts(treatment_successes, treatment_n, "treatment")
    _check_level(confidence, "confidence")
    _check_alternative(alternative)
    p_c, p_t = control_successes / control_n, treatment_successes / treatment_n
    pooled = (control_successes + treatment_successes) / (control_n + treatment_n)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / control_n + 1 / treatment_n))
    se = math.sqrt(p_c * (1 - p_c) / control_n + p_t * (1 - p_t) / treatment_n)
    difference = p_t - p_c
    z = 0.0 if se_pooled == 0 else difference / se_pooled  # pooled 0 or 1: nothing differs
    half = _z(confidence) * se
    return ProportionTest(p_c, p_t, difference, difference - half, difference + half, z,
                          _p_value(stats.norm, z, alternative), confidence)


@dataclass(frozen=True, slots=True)
class ChiSquareTest:
    """Pearson's chi-square test of equal rates across variants."""

    statistic: float
    df: int
    p_value: float
    corrected: bool
    min_expected: float


def chi_square_proportions(successes: Sequence[int], totals: Sequence[int], *,
                           correction: bool | None = None) -> ChiSquareTest:
    """Chi-square test that k variants share one success rate (the k x 2 table).

    ``correction=None`` does what R's ``prop.test`` does: Yates' continuity correction for
    two variants, none for more. Yates only exists for one degree of freedom, so ``True``
    with three or more variants is the same as ``False``. If no variant has a success (or
    none a failure) the rates are trivially equal: statistic 0, p-value 1.
    """
    table = _table(successes, totals)
    corrected = len(table) == 2 and correction is not False
    if table[:, 0].sum() == 0 or table[:, 1].sum() == 0:
        return ChiSquareTest(0.0, len(table) - 1, 1.0, corrected, 0.0)
    result = stats.chi2_contingency(table, correction=corrected)
    return ChiSquareTest(float(result.statistic), int(result.dof), float(result.pvalue),
                         corrected, float(result.expected_freq.min()))


@dataclass(frozen=True, slots=True)
class FisherTest:
    """Fisher's exact test of a 2 x 2 table; ``odds_ratio`` is the sample odds ratio of
    success, treatment over control (not R's conditional maximum-likelihood estimate)."""

    odds_ratio: float
    p_value: float
    alternative: Alternative


def fisher_exact_test(control_successes: int, control_n: int,
                      treatment_successes: int, treatment_n: int, *,
                      alternative: Alternative = "two-sided") -> FisherTest:
    """Fisher's exact test (conditional on the margins), for counts too small for the z-test.

    The table is ``[[treatment successes, failures], [control successes, failures]]``, so
    ``"greater"`` is H1: the treatment's odds of success are higher. Two-sided p-values sum
    the tables no more likely than the observed one, as R's ``fisher.test`` does.
    """
    _check_counts(control_successes, control_n, "control")
    _check_counts(treatment_successes, treatment_n, "treatment")
    _check_alternative(alternative)
    table = [[treatment_successes, treatment_n - treatment_successes],
             [control_successes, control_n - control_successes]]
    result = stats.fisher_exact(table, alternative=alternative)
    return FisherTest(float(result.statistic), float(result.pvalue), alternative)


@dataclass(frozen=True, slots=True)
class BinaryTest:
    """The p-value of equal rates from the test that suits the counts."""

    method: Literal["chi-square", "fisher"]
    p_value: float
    min_expected: float


def compare_proportions(successes: Sequence[int], totals: Sequence[int], *,
                        seed: int = 0) -> BinaryTest:
    """Chi-square test of equal rates, or Fisher's exact test when it is unreliable.

    Cochran's rule: the chi-square approximation needs every expected count to be at least
    5; below that the exact test is used. With three or more variants the exact p-value is
    estimated from 9,999 tables drawn with the observed margins (seeded).
    """
    table = _table(successes, totals)
    chi = chi_square_proportions(successes, totals)
    if chi.min_expected >= 5 or table[:, 0].sum() == 0 or table[:, 1].sum() == 0:
        return BinaryTest("chi-square", chi.p_value, chi.min_expected)
    if len(table) == 2:
        p = fisher_exact_test(int(table[0, 0]), int(table[0].sum()),
                              int(table[1, 0]), int(table[1].sum())).p_value
    else:
        method = stats.MonteCarloMethod(n_resamples=9_999, rng=np.random.default_rng(seed))
        p = float(stats.fisher_exact(table, method=method).pvalue)
    return BinaryTest("fisher", p, chi.min_expected)


# ---------------------------------------------------------------- continuous metrics


@dataclass(frozen=True, slots=True)
class WelchTest:
    """Welch's t-test: the difference of means, its interval, t, Welch-Satterthwaite df, p."""

    difference: float
    ci_low: float
    ci_high: float
    t: float
    df: float
    p_value: float
    confidence: float


def welch_ttest(control: npt.ArrayLike, treatment: npt.ArrayLike, *,
                confidence: float = 0.95, alternative: Alternative = "two-sided") -> WelchTest:
    """t-test of equal means without assuming equal variances (Welch 1947), as R's
    ``t.test`` default. Variants of a prompt routinely differ in spread (a longer answer
    varies more in latency), so the pooled-variance test would be wrong more often than not.
    The interval is always two-sided; ``alternative`` only changes the p-value.
    """
    c, t = _sample(control, "control"), _sample(treatment, "treatment")
    _check_level(confidence, "confidence")
    _check_alternative(alternative)
    v_c, v_t = c.var(ddof=1) / c.size, t.var(ddof=1) / t.size
    difference = float(t.mean() - c.mean())
    se = math.sqrt(v_c + v_t)
    if se == 0:  # both samples constant
        df = float(c.size + t.size - 2)
        stat = 0.0 if difference == 0 else math.copysign(math.inf, difference)
    else:
        r_c, r_t = v_c / se**2, v_t / se**2  # shares of the variance: no underflow in df
        df = float(1 / (r_c**2 / (c.size - 1) + r_t**2 / (t.size - 1)))
        stat = difference / se
    p = _p_value(stats.t(df), stat, alternative)
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return WelchTest(difference, difference - half, difference + half, stat, df, p, confidence)


@dataclass(frozen=True, slots=True)
class MannWhitney:
    """Mann-Whitney U of the treatment, its p-value, and ``probability_greater`` = U/(m n):
    the chance a random treatment value beats a random control value (ties count half)."""

    u: float
    p_value: float
    probability_greater: float


def mann_whitney(control: npt.ArrayLike, treatment: npt.ArrayLike, *,
                 alternative: Alternative = "two-sided") -> MannWhitney:
    """Rank test (Mann & Whitney 1947) that one variant tends to give larger values.

    Robust to the heavy tails of latency and cost, where one slow call can swamp a t-test;
    it tests stochastic ordering, not a difference of means or medians. scipy's exact
    distribution for small samples without ties, the normal approximation otherwise.
    """
    c, t = _sample(control, "control", 1), _sample(treatment, "treatment", 1)
    _check_alternative(alternative)
    result = stats.mannwhitneyu(t, c, alternative=alternative)
    u = float(result.statistic)
    return MannWhitney(u, float(result.pvalue), u / (c.size * t.size))


@dataclass(frozen=True, slots=True)
class BootstrapInterval:
    """A bootstrap confidence interval around the plug-in estimate."""

    estimate: float
    ci_low: float
    ci_high: float
    confidence: float
    method: Literal["percentile", "bca"]
    n_resamples: int


def _resampled(rng: np.random.Generator, x: FloatArray, statistic: Statistic,
               n_resamples: int) -> FloatArray:
    """The statistic of ``n_resamples`` resamples of x, in chunks that fit in memory."""
    out = np.empty(n_resamples)
    step = max(1, _CHUNK // x.size)
    for start in range(0, n_resamples, step):
        stop = min(start + step, n_resamples)
        out[start:stop] = statistic(x[rng.integers(0, x.size, (stop - start, x.size))], axis=-1)
    return out


def _quantile_resamples(rng: np.random.Generator, x: FloatArray, q: float,
                        n_resamples: int) -> FloatArray:
    """The q-quantile (numpy's linear method) of ``n_resamples`` bootstrap resamples of x,
    drawn without building them: a resample's j-th smallest value is the sorted data at
    the j-th smallest of n uniforms, which is Beta(j, n - j + 1) distributed; the next
    order statistic follows from the first as u + (1 - u) * Beta(1, n - j). Exact, and
    about 100 times faster than resampling 2 x 50,000 values 2,000 times."""
    xs = np.sort(x)
    n = xs.size
    h = (n - 1) * q
    k = math.floor(h)
    g = h - k
    u_low = rng.beta(k + 1, n - k, n_resamples)
    low = xs[np.minimum((n * u_low).astype(np.int64), n - 1)]
    if g == 0 or k + 1 >= n:
        return np.asarray(low, dtype=np.float64)
    u_high = u_low + (1 - u_low) * rng.beta(1, n - k - 1, n_resamples)
    high = xs[np.minimum((n * u_high).astype(np.int64), n - 1)]
    return np.asarray(low + g * (high - low), dtype=np.float64)


def _jackknife(x: FloatArray, statistic: Statistic) -> FloatArray:
    """The statistic of x with each value left out in turn (for the BCa acceleration)."""
    out = np.empty(x.size)
    cols = np.arange(x.size - 1)
    step = max(1, _CHUNK // x.size)
    for start in range(0, x.size, step):
        rows = np.arange(start, min(start + step, x.size))[:, None]
        out[start:start + rows.size] = statistic(x[cols + (cols >= rows)], axis=-1)
    return out


def _interval(boot: FloatArray, estimate: float, confidence: float, jackknives: list[FloatArray],
              method: Literal["percentile", "bca"]) -> tuple[float, float]:
    levels = np.array([0.5 - confidence / 2, 0.5 + confidence / 2])
    if method == "bca":  # Efron & Tibshirani (1993) ch. 14; acceleration per sample as scipy
        with np.errstate(divide="ignore", invalid="ignore"):
            z0 = stats.norm.ppf(np.mean(boot < estimate))
            u = [(j.size - 1) * (j.mean() - j) for j in jackknives]
            num = sum(float((ui**3).sum()) / ui.size**3 for ui in u)
            den = sum(float((ui**2).sum()) / ui.size**2 for ui in u) ** 1.5
            a = num / den / 6
            z = stats.norm.ppf(levels)
            adjusted = stats.norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z)))
        if np.all(np.isfinite(adjusted)):  # degenerate (constant) samples keep percentiles
            levels = adjusted
    low, high = np.quantile(boot, levels)
    return float(low), float(high)


def _check_bootstrap(confidence: float, n_resamples: int, method: str) -> None:
    _check_level(confidence, "confidence")
    if n_resamples < 100:
        raise ConfigError(f"n_resamples must be at least 100, got {n_resamples}",
                          fix="use 10_000 for 95% intervals")
    if method not in ("percentile", "bca"):
        raise ConfigError(f"unknown bootstrap method {method!r}", fix="use 'percentile' or 'bca'")


def bootstrap_difference(control: npt.ArrayLike, treatment: npt.ArrayLike,
                         statistic: Statistic = np.mean, *, confidence: float = 0.95,
                         n_resamples: int = 10_000,
                         method: Literal["percentile", "bca"] = "percentile",
                         seed: int = 0) -> BootstrapInterval:
    """Bootstrap interval for ``statistic(treatment) - statistic(control)``.

    Each variant is resampled on its own (the two-sample bootstrap), which keeps the group
    sizes fixed as the experiment did. For the BCa acceleration each sample is jackknifed
    separately and the terms summed, as in ``scipy.stats.bootstrap``.
    """
    c, t = _sample(control, "control"), _sample(treatment, "treatment")
    _check_bootstrap(confidence, n_resamples, method)
    rng = np.random.default_rng(seed)
    boot = _resampled(rng, t, statistic, n_resamples) - _resampled(rng, c, statistic,
                                                                   n_resamples)
    stat_c, stat_t = float(statistic(c, axis=-1)), float(statistic(t, axis=-1))
    jack = ([stat_t - _jackknife(c, statistic), _jackknife(t, statistic) - stat_c]
            if method == "bca" else [])
    low, high = _interval(boot, stat_t - stat_c, confidence, jack, method)
    return BootstrapInterval(stat_t - stat_c, low, high, confidence, method, n_resamples)


@dataclass(frozen=True, slots=True)
class QuantileTest:
    """Difference of the q-quantiles (e.g. p95 latency), its bootstrap interval and p."""

    quantile: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    confidence: float


def quantile_difference_test(control: npt.ArrayLike, treatment: npt.ArrayLike, *,
                             quantile: float = 0.95, confidence: float = 0.95,
                             n_resamples: int = 10_000, seed: int = 0) -> QuantileTest:
    """Is the treatment's p95 (or any quantile) different? Percentile bootstrap of the
    difference of quantiles (numpy's default linear interpolation, R's type 7).

    The p-value inverts the same bootstrap distribution: twice the smaller share of
    resampled differences on either side of 0, with the (count + 1) / (B + 1) correction so
    it is never 0. So p < 1 - confidence exactly when the interval excludes 0, and the null
    is "equal quantiles". A permutation test was not chosen: its null is "identical
    distributions", so a variant with the same p95 but a different spread could be
    reported as a p95 change.
    """
    c, t = _sample(control, "control"), _sample(treatment, "treatment")
    _check_bootstrap(confidence, n_resamples, "percentile")
    _check_level(quantile, "quantile")
    rng = np.random.default_rng(seed)
    boot = (_quantile_resamples(rng, t, quantile, n_resamples)
            - _quantile_resamples(rng, c, quantile, n_resamples))
    difference = float(np.quantile(t, quantile) - np.quantile(c, quantile))
    low, high = _interval(boot, difference, confidence, [], "percentile")
    tail = min(int((boot <= 0).sum()), int((boot >= 0).sum()))
    p = min(1.0, 2 * (tail + 1) / (n_resamples + 1))
    return QuantileTest(quantile, difference, low, high, p, confidence)


# ---------------------------------------------------------------- effect sizes


@dataclass(frozen=True, slots=True)
class Lift:
    """Absolute lift (treatment - control) and relative lift (treatment / control - 1),
    each with its confidence interval; relative values are NaN where undefined."""

    absolute: float
    absolute_low: float
    absolute_high: float
    relative: float
    relative_low: float
    relative_high: float
    confidence: float


def _lift(mean_c: float, var_c: float, mean_t: float, var_t: float, confidence: float) -> Lift:
    """Lift from two means and the variances of those means (normal approximation)."""
    z = _z(confidence)
    absolute = mean_t - mean_c
    half = z * math.sqrt(var_c + var_t)
    relative = low = high = math.nan
    if mean_c > 0:
        relative = mean_t / mean_c - 1
    if mean_c > 0 and mean_t > 0:  # delta method: Var(log m) ~ Var(m) / m**2
        log_ratio = math.log(mean_t / mean_c)
        se = math.sqrt(var_c / mean_c**2 + var_t / mean_t**2)
        low, high = math.expm1(log_ratio - z * se), math.expm1(log_ratio + z * se)
    return Lift(absolute, absolute - half, absolute + half, relative, low, high, confidence)


def proportion_lift(control_successes: int, control_n: int,
                    treatment_successes: int, treatment_n: int, *,
                    confidence: float = 0.95) -> Lift:
    """Absolute and relative lift of a success rate, with intervals.

    The absolute interval is the unpooled Wald interval. The relative interval is built
    on the log of the ratio of rates, whose variance by the delta method is
    ``(1 - p_c) / (n_c p_c) + (1 - p_t) / (n_t p_t)`` (the Katz log interval for a risk
    ratio), then mapped back with ``exp(.) - 1``: unlike an interval on the ratio itself
    it cannot go below -100% and is asymmetric, as the ratio's distribution is.
    """
    _check_counts(control_successes, control_n, "control")
    _check_counts(treatment_successes, treatment_n, "treatment")
    _check_level(confidence, "confidence")
    p_c, p_t = control_successes / control_n, treatment_successes / treatment_n
    return _lift(p_c, p_c * (1 - p_c) / control_n, p_t, p_t * (1 - p_t) / treatment_n,
                 confidence)


def mean_lift(control: npt.ArrayLike, treatment: npt.ArrayLike, *,
              confidence: float = 0.95) -> Lift:
    """Absolute and relative lift of a mean (cost, tokens), with normal-approximation
    intervals; the relative one by the delta method on the log ratio of means, as in
    :func:`proportion_lift`. For small samples prefer :func:`welch_ttest`'s interval."""
    c, t = _sample(control, "control"), _sample(treatment, "treatment")
    _check_level(confidence, "confidence")
    return _lift(float(c.mean()), float(c.var(ddof=1)) / c.size, float(t.mean()),
                 float(t.var(ddof=1)) / t.size, confidence)


# ---------------------------------------------------------------- multiple comparisons


def adjust_pvalues(p_values: Sequence[float],
                   method: Literal["holm", "bh"] = "holm") -> tuple[float, ...]:
    """Adjusted p-values for testing several variants or metrics at once.

    ``"holm"`` controls the family-wise error rate (Holm 1979; uniformly better than
    Bonferroni); ``"bh"`` the false discovery rate (Benjamini & Hochberg 1995), the usual
    choice for many secondary metrics. Equal to statsmodels' ``multipletests`` with
    ``"holm"`` and ``"fdr_bh"``; compare each adjusted value with alpha.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or p.size == 0 or np.any((p < 0) | (p > 1)) or np.any(np.isnan(p)):
        raise ConfigError("p_values must be a non-empty flat sequence of values in [0, 1]",
                          fix="pass one p-value per comparison")
    m = p.size
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "holm":
        adjusted = np.maximum.accumulate(ranked * (m - np.arange(m)))
    elif method == "bh":
        adjusted = np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1]
    else:
        raise ConfigError(f"unknown method {method!r}", fix="use 'holm' or 'bh'")
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return tuple(float(v) for v in out)


# ---------------------------------------------------------------- non-inferiority


@dataclass(frozen=True, slots=True)
class NonInferiority:
    """Candidate minus control success rate, its one-sided lower confidence bound, and
    the test of H0: difference <= -margin against H1: difference > -margin."""

    difference: float
    lower_bound: float
    margin: float
    z: float
    p_value: float
    alpha: float

    @property
    def non_inferior(self) -> bool:
        return self.p_value < self.alpha


def noninferiority_proportions(control_successes: int, control_n: int,
                               candidate_successes: int, candidate_n: int, *,
                               margin: float = 0.02, alpha: float = 0.05) -> NonInferiority:
    """One-sided Wald test that the candidate's success rate is at most ``margin`` below
    the control's (unpooled standard error, as for a difference of independent rates).

    Equivalent to checking that the lower ``1 - alpha`` confidence bound of the difference
    lies above ``-margin``. With rates at 0 or 1 the standard error is 0; then the
    observed difference decides alone, which only happens with tiny or perfect samples.
    """
    for name, value in (("control_n", control_n), ("candidate_n", candidate_n)):
        if value < 1:
            raise ConfigError(f"{name} must be positive, got {value}", fix="pass sample sizes")
    if not (0 <= control_successes <= control_n and 0 <= candidate_successes <= candidate_n):
        raise ConfigError("successes must lie between 0 and the sample size",
                          fix="pass success counts no larger than the number of trials")
    if not (0 < margin < 1 and 0 < alpha < 1):
        raise ConfigError("margin and alpha must lie in (0, 1)", fix="e.g. margin=0.02, alpha=0.05")
    p_control = control_successes / control_n
    p_candidate = candidate_successes / candidate_n
    difference = p_candidate - p_control
    se = math.sqrt(p_control * (1 - p_control) / control_n
                   + p_candidate * (1 - p_candidate) / candidate_n)
    at_edge = math.inf if difference > -margin else -math.inf
    z = at_edge if se == 0 else (difference + margin) / se
    p_value = float(stats.norm.sf(z))
    lower = difference - float(stats.norm.ppf(1 - alpha)) * se
    return NonInferiority(difference, lower, margin, z, p_value, alpha)
