"""Running an experiment over time: how long it needs, whether its split is healthy, when it
may stop, and which variant to ship.

- Planning: sample size per variant for a two-sided test of proportions or means, and the
  days that takes at the current traffic.
- Health: the sample-ratio-mismatch check, to run at every look.
- Stopping: the mixture sequential probability ratio test (mSPRT) of Johari, Pekelis &
  Walsh, "Always Valid Inference: Continuous Monitoring of A/B Tests" (Operations Research
  70(3), 2022; arXiv 1512.04922). Its p-values and confidence sequences stay valid however
  often the results are looked at, which repeated fixed-horizon tests are not: peeking at a
  z-test every day for a month gives about 25-30% false positives instead of 5%.
- Deciding: the Bayesian view of binary metrics (Beta posteriors, chance to be best and
  expected loss), as GrowthBook presents it.

Conventions as in :mod:`devora_lab.experiments.stats`: control first, ``treatment - control``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special, stats

from devora_lab.errors import ConfigError
from devora_lab.experiments.stats import FloatArray, _check_counts, _check_level, _table

__all__ = [
    "BayesianComparison",
    "SampleRatioCheck",
    "SequentialTest",
    "TwoArmBayes",
    "bayesian_proportions",
    "bayesian_two_proportions",
    "days_to_significance",
    "msprt_confidence_sequence",
    "msprt_means",
    "msprt_proportions",
    "msprt_pvalues",
    "sample_ratio_mismatch",
    "sample_size_means",
    "sample_size_proportions",
    "significant",
]


# ---------------------------------------------------------------- planning


def _check_power(alpha: float, power: float, mde: float) -> tuple[float, float]:
    _check_level(alpha, "alpha")
    _check_level(power, "power")
    if mde == 0 or not math.isfinite(mde):
        raise ConfigError("the minimum detectable effect must be a non-zero number",
                          fix="e.g. mde=0.01 (one point) or relative=True with mde=0.05")
    return float(stats.norm.ppf(1 - alpha / 2)), float(stats.norm.ppf(power))


def sample_size_proportions(baseline: float, mde: float, *, alpha: float = 0.05,
                            power: float = 0.8, relative: bool = False) -> int:
    """Users per variant for a two-sided two-proportion z-test to detect ``mde``.

    ``mde`` is absolute (0.01 = one point) or, with ``relative=True``, a share of the
    baseline (0.05 = +5%). The classic formula (Fleiss, Levin & Paik 2003, ch. 4, without
    continuity correction; R's ``power.prop.test``): the null spread uses the mean rate,
    the alternative's spread the two rates, and the far tail's tiny share of power is
    ignored. Rounded up.
    """
    z_a, z_b = _check_power(alpha, power, mde)
    p1 = baseline
    p2 = baseline * (1 + mde) if relative else baseline + mde
    if not (0 < p1 < 1 and 0 < p2 < 1):
        raise ConfigError(f"rates must lie in (0, 1): baseline {p1}, with the effect {p2}",
                          fix="check baseline, mde and relative")
    mean = (p1 + p2) / 2
    root_n = (z_a * math.sqrt(2 * mean * (1 - mean))
              + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) / abs(p2 - p1)
    return math.ceil(root_n**2)


def sample_size_means(sd: float, mde: float, *, alpha: float = 0.05,
                      power: float = 0.8) -> int:
    """Observations per variant for a two-sided two-sample z-test of means to detect an
    absolute difference ``mde`` given the metric's standard deviation ``sd`` (the same in
    both variants): ``2 sd**2 (z_{1-alpha/2} + z_power)**2 / mde**2``, rounded up."""
    z_a, z_b = _check_power(alpha, power, mde)
    if not sd > 0:
        raise ConfigError(f"sd must be positive, got {sd}",
                          fix="estimate it from a past week of the metric")
    return math.ceil(2 * (sd * (z_a + z_b) / mde) ** 2)


def days_to_significance(required_per_variant: int, daily_users_per_variant: float, *,
                         users_so_far_per_variant: int = 0) -> float:
    """Days more the experiment needs at today's traffic to reach its planned sample size
    (from :func:`sample_size_proportions` or :func:`sample_size_means`); 0 once reached.

    An estimate: it assumes the traffic stays as it is and the effect is the one planned
    for. Round up for whole days, and prefer whole weeks so weekdays weigh equally.
    """
    if not daily_users_per_variant > 0:
        raise ConfigError("daily_users_per_variant must be positive",
                          fix="pass the users each variant gets per day")
    if required_per_variant < 1 or users_so_far_per_variant < 0:
        raise ConfigError("sample sizes must be positive (users so far non-negative)",
                          fix="pass the planned users per variant")
    return max(0, required_per_variant - users_so_far_per_variant) / daily_users_per_variant


# ---------------------------------------------------------------- health


@dataclass(frozen=True, slots=True)
class SampleRatioCheck:
    """Chi-square goodness of fit of the variants' sizes to their intended split."""

    statistic: float
    df: int
    p_value: float
    expected: tuple[float, ...]
    threshold: float

    @property
    def srm_failed(self) -> bool:
        """A mismatch this unlikely means the assignment or logging is broken: the
        experiment's other numbers should not be trusted until it is explained."""
        return self.p_value < self.threshold


def sample_ratio_mismatch(observed: Sequence[int], weights: Sequence[float] | None = None, *,
                          threshold: float = 0.001) -> SampleRatioCheck:
    """Do the observed variant sizes match the configured traffic split? (equal if None)

    The threshold is 0.001, not 0.05, as in Fabijan et al., "Diagnosing Sample Ratio
    Mismatch in Online Controlled Experiments" (KDD 2019) and GrowthBook: the check runs on
    every experiment at every look, and a false alarm throws away an experiment.
    """
    counts = np.asarray(observed, dtype=np.float64)
    w = np.ones(counts.size) if weights is None else np.asarray(weights, dtype=np.float64)
    if counts.ndim != 1 or counts.size < 2 or w.shape != counts.shape:
        raise ConfigError("pass one count (and one weight) per variant, at least two",
                          fix="e.g. observed=[5021, 4979], weights=[0.5, 0.5]")
    if np.any(counts < 0) or counts.sum() == 0 or np.any(w <= 0):
        raise ConfigError("counts must be non-negative with a positive total, weights positive",
                          fix="pass the number of units assigned to each variant")
    _check_level(threshold, "threshold")
    expected = counts.sum() * w / w.sum()
    result = stats.chisquare(counts, expected)
    return SampleRatioCheck(float(result.statistic), counts.size - 1, float(result.pvalue),
                            tuple(float(e) for e in expected), threshold)


# ---------------------------------------------------------------- always-valid stopping


def _check_tau2(tau2: float) -> None:
    if not (tau2 > 0 and math.isfinite(tau2)):
        raise ConfigError(f"tau2 must be a positive number, got {tau2}",
                          fix="use the square of the smallest effect worth detecting")


def msprt_pvalues(difference: npt.ArrayLike, variance: npt.ArrayLike, *, tau2: float,
                  theta0: float = 0.0) -> FloatArray:
    """Always-valid p-values of H0: effect = theta0, looks along the last axis.

    ``difference`` is the estimate at each look (treatment - control on the cumulative
    data) and ``variance`` its variance, e.g. ``s_c**2/n_c + s_t**2/n_t``. With a normal
    mixing distribution N(theta0, tau2) over the effect, the mixture likelihood ratio of the
    (asymptotically) normal estimate has the closed form (Johari et al. 2022, section 4)::

        Lambda_n = sqrt(V / (V + tau2)) * exp(tau2 (d - theta0)**2 / (2 V (V + tau2)))

    and the always-valid p-value is the running minimum of ``min(1, 1 / Lambda_n)``. By
    Ville's inequality P(any p_n <= alpha) <= alpha under H0, at any number of looks.
    A look with zero variance (no data yet, or all-0 rates) carries no evidence (Lambda=1).
    Vectorised: any leading axes are independent experiments.

    ``tau2`` sets where the test is most powerful: effects near ``sqrt(tau2)`` are detected
    fastest. The paper fits it to the effects seen in past experiments; without such a
    history, use the square of the smallest effect worth shipping (e.g. ``0.01**2`` for one
    point of success rate). Too large a tau2 wastes power on small effects, too small
    delays everything; the error guarantee holds for any fixed tau2 chosen before the data.
    """
    _check_tau2(tau2)
    d = np.asarray(difference, dtype=np.float64)
    v = np.asarray(variance, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_lr = (0.5 * np.log(v / (v + tau2))
                  + tau2 * (d - theta0) ** 2 / (2 * v * (v + tau2)))
    log_lr = np.where(v > 0, log_lr, 0.0)
    return np.minimum.accumulate(np.minimum(1.0, np.exp(-log_lr)), axis=-1)


def msprt_confidence_sequence(difference: npt.ArrayLike, variance: npt.ArrayLike, *,
                              tau2: float, alpha: float = 0.05) -> tuple[FloatArray, FloatArray]:
    """(low, high) of the always-valid 1 - alpha confidence sequence for the effect.

    The values theta0 the mSPRT would not reject: Lambda_n(theta0) < 1/alpha solves to
    ``d +- sqrt(V (V + tau2) / tau2 * (log((V + tau2) / V) - 2 log alpha))``. Intervals are
    intersected across looks (running max of low, min of high), so the sequence only
    narrows and 0 leaves it exactly when the always-valid p-value falls below alpha.
    """
    _check_tau2(tau2)
    _check_level(alpha, "alpha")
    d = np.asarray(difference, dtype=np.float64)
    v = np.asarray(variance, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        half = np.sqrt(v * (v + tau2) / tau2 * (np.log((v + tau2) / v) - 2 * math.log(alpha)))
    half = np.where(v > 0, half, np.inf)
    return (np.maximum.accumulate(d - half, axis=-1),
            np.minimum.accumulate(d + half, axis=-1))


def significant(p_values: npt.ArrayLike, *, alpha: float = 0.05) -> npt.NDArray[np.bool_]:
    """The decision: reject H0 (stop, the variants differ) where the always-valid p-value
    at the latest look is below alpha; one answer per experiment over the leading axes."""
    _check_level(alpha, "alpha")
    return np.asarray(np.asarray(p_values, dtype=np.float64)[..., -1] < alpha)


@dataclass(frozen=True, slots=True)
class SequentialTest:
    """mSPRT results per look: the estimate, always-valid p-value and confidence sequence."""

    difference: tuple[float, ...]
    p_values: tuple[float, ...]
    ci_low: tuple[float, ...]
    ci_high: tuple[float, ...]
    alpha: float
    tau2: float

    @property
    def significant(self) -> bool:
        """Whether H0 is rejected by the latest look (and so may be stopped on)."""
        return self.p_values[-1] < self.alpha

    @property
    def first_significant_look(self) -> int | None:
        """Index of the first look with p < alpha, or None."""
        return next((i for i, p in enumerate(self.p_values) if p < self.alpha), None)


def _looks(*arrays: npt.ArrayLike) -> list[FloatArray]:
    out = [np.asarray(a, dtype=np.float64) for a in arrays]
    if out[0].ndim != 1 or out[0].size == 0 or any(a.shape != out[0].shape for a in out):
        raise ConfigError("pass one value per look, the same number of looks for each input",
                          fix="pass cumulative totals at each look, oldest first")
    if not all(np.all(np.isfinite(a)) for a in out):
        raise ConfigError("looks contain NaN or infinite values", fix="drop incomplete looks")
    return out


def _sequential(d: FloatArray, v: FloatArray, tau2: float, alpha: float) -> SequentialTest:
    p = msprt_pvalues(d, v, tau2=tau2)
    low, high = msprt_confidence_sequence(d, v, tau2=tau2, alpha=alpha)
    return SequentialTest(tuple(d.tolist()), tuple(p.tolist()), tuple(low.tolist()),
                          tuple(high.tolist()), alpha, tau2)


def msprt_proportions(control_successes: npt.ArrayLike, control_n: npt.ArrayLike,
                      treatment_successes: npt.ArrayLike, treatment_n: npt.ArrayLike, *,
                      tau2: float, alpha: float = 0.05) -> SequentialTest:
    """mSPRT of equal success rates over cumulative counts at each look.

    Uses the plug-in variance ``p_c(1-p_c)/n_c + p_t(1-p_t)/n_t`` of the difference, as
    the paper does for binary data; the guarantee is then asymptotic (large n per look).
    """
    _check_level(alpha, "alpha")
    s_c, n_c, s_t, n_t = _looks(control_successes, control_n, treatment_successes,
                                treatment_n)
    if any(np.any(np.diff(a) < 0) for a in (s_c, n_c, s_t, n_t)):
        raise ConfigError("counts must not decrease from look to look",
                          fix="pass cumulative counts, not per-day counts")
    if np.any((s_c < 0) | (s_c > n_c) | (s_t < 0) | (s_t > n_t)):
        raise ConfigError("successes must lie between 0 and the sample size at every look",
                          fix="pass cumulative successes and trials")
    with np.errstate(divide="ignore", invalid="ignore"):
        p_c, p_t = s_c / n_c, s_t / n_t
        v = np.nan_to_num(p_c * (1 - p_c) / n_c + p_t * (1 - p_t) / n_t)
    return _sequential(np.nan_to_num(p_t - p_c), v, tau2, alpha)


def msprt_means(control_n: npt.ArrayLike, control_mean: npt.ArrayLike,
                control_var: npt.ArrayLike, treatment_n: npt.ArrayLike,
                treatment_mean: npt.ArrayLike, treatment_var: npt.ArrayLike, *,
                tau2: float, alpha: float = 0.05) -> SequentialTest:
    """mSPRT of equal means (latency, cost, scores) from cumulative per-look summaries:
    the count, mean and sample variance of each variant so far. The variance of the
    difference is ``var_c/n_c + var_t/n_t`` (the data's variance is estimated, so, as for
    proportions, the guarantee is asymptotic)."""
    _check_level(alpha, "alpha")
    n_c, m_c, s2_c, n_t, m_t, s2_t = _looks(control_n, control_mean, control_var,
                                            treatment_n, treatment_mean, treatment_var)
    if np.any(n_c < 1) or np.any(n_t < 1) or np.any(s2_c < 0) or np.any(s2_t < 0):
        raise ConfigError("each look needs at least one observation per variant and "
                          "non-negative variances", fix="start the looks after the first data")
    return _sequential(m_t - m_c, s2_c / n_c + s2_t / n_t, tau2, alpha)


# ---------------------------------------------------------------- Bayesian view


@dataclass(frozen=True, slots=True)
class BayesianComparison:
    """Per variant: posterior mean rate, chance to be best, and expected loss of shipping
    it (the success rate given up, on average, if another variant is in fact better)."""

    posterior_means: tuple[float, ...]
    chance_to_be_best: tuple[float, ...]
    expected_loss: tuple[float, ...]
    draws: int


def _posterior(successes: Sequence[int], totals: Sequence[int],
               prior: tuple[float, float]) -> tuple[FloatArray, FloatArray]:
    if not (prior[0] > 0 and prior[1] > 0):
        raise ConfigError(f"prior parameters must be positive, got {prior}",
                          fix="use the uniform prior (1, 1)")
    table = _table(successes, totals).astype(np.float64)
    return table[:, 0] + prior[0], table[:, 1] + prior[1]


def bayesian_proportions(successes: Sequence[int], totals: Sequence[int], *,
                         prior: tuple[float, float] = (1.0, 1.0), draws: int = 100_000,
                         seed: int = 0) -> BayesianComparison:
    """Beta-binomial comparison of k variants by Monte Carlo, as GrowthBook's Bayesian engine.

    Each rate gets the posterior Beta(prior_a + successes, prior_b + failures) (Beta(1, 1):
    uniform). From ``draws`` joint draws (seeded): the chance each variant has the highest
    rate, and its expected loss ``E[max_j p_j - p_i]``. Ship when a variant's expected loss
    is below the smallest difference you care about. Monte Carlo error of the chances is
    about ``sqrt(p(1-p)/draws)``: 0.0016 at the default.
    """
    a, b = _posterior(successes, totals, prior)
    if draws < 1_000:
        raise ConfigError(f"draws must be at least 1000, got {draws}", fix="use 100_000")
    rng = np.random.default_rng(seed)
    wins, loss = np.zeros(a.size), np.zeros(a.size)
    step = max(1, 2_000_000 // a.size)
    for start in range(0, draws, step):
        rates = rng.beta(a, b, size=(min(step, draws - start), a.size))
        best = rates.max(axis=1, keepdims=True)
        wins += np.bincount(rates.argmax(axis=1), minlength=a.size)
        loss += (best - rates).sum(axis=0)
    return BayesianComparison(tuple((a / (a + b)).tolist()), tuple((wins / draws).tolist()),
                              tuple((loss / draws).tolist()), draws)


@dataclass(frozen=True, slots=True)
class TwoArmBayes:
    """Exact two-variant Bayesian summary: P(treatment rate > control rate) and the
    expected loss of shipping each (GrowthBook's "risk")."""

    chance_to_win: float
    loss_control: float
    loss_treatment: float


def _prob_greater(a: float, b: float, c: float, d: float) -> float:
    """P(Y > X) for X ~ Beta(a, b), Y ~ Beta(c, d), a and c whole numbers (Evan Miller,
    "Formulas for Bayesian A/B Testing", 2015), summed in log space over the smaller one."""
    if a < c:
        return 1.0 - _prob_greater(c, d, a, b)
    i = np.arange(round(c), dtype=np.float64)
    log_terms = (special.betaln(a + i, b + d) - np.log(d + i) - special.betaln(1 + i, d)
                 - special.betaln(a, b))
    return float(np.clip(np.exp(special.logsumexp(log_terms)), 0.0, 1.0))


def bayesian_two_proportions(control_successes: int, control_n: int,
                             treatment_successes: int, treatment_n: int, *,
                             prior: tuple[int, int] = (1, 1)) -> TwoArmBayes:
    """Closed form of :func:`bayesian_proportions` for two variants (no Monte Carlo error).

    With X ~ Beta(a, b) the control, Y ~ Beta(c, d) the treatment and X' ~ Beta(a + 1, b)
    (since E[X 1{X > Y}] = a/(a+b) P(X' > Y)), the loss of shipping the treatment is
    ``a/(a+b) P(X' > Y) - c/(c+d) P(X > Y')`` (Stucchio 2015). Needs whole-number prior
    parameters, so that the sums are finite.
    """
    _check_counts(control_successes, control_n, "control")
    _check_counts(treatment_successes, treatment_n, "treatment")
    if not all(isinstance(x, int) and x > 0 for x in prior):
        raise ConfigError(f"the closed form needs whole positive prior parameters, got {prior}",
                          fix="use prior=(1, 1) or bayesian_proportions for others")
    a, b = control_successes + prior[0], control_n - control_successes + prior[1]
    c, d = treatment_successes + prior[0], treatment_n - treatment_successes + prior[1]
    win = _prob_greater(a, b, c, d)
    loss_t = a / (a + b) * _prob_greater(c, d, a + 1, b) - c / (c + d) * (
        1 - _prob_greater(a, b, c + 1, d))
    loss_c = c / (c + d) * _prob_greater(a, b, c + 1, d) - a / (a + b) * (
        1 - _prob_greater(c, d, a + 1, b))
    return TwoArmBayes(win, max(0.0, loss_c), max(0.0, loss_t))
