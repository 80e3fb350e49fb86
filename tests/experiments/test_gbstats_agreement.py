"""Agreement with GrowthBook's stats engine, ``gbstats`` 0.8.0, on the same data.

gbstats pins numpy<2 and pandas<2, so it lives in its own venv (``.venv-gbstats``, built by
``make test``/``make unit`` from ``requirements-gbstats.lock``) and is run there by
``scripts/gbstats_probe.py``, once per module, on the summary statistics (n, sum, sum of
squares) of the cases below. Without that venv the module is skipped, with the reason.

What gbstats computes, and what of ours it is compared with:

- Frequentist ``TwoSidedTTest``: the difference (absolute) or ``t/c - 1`` (relative) with
  the *unpooled* variance ``var_c/n_c + var_t/n_t`` (proportions: ``p(1-p)``, as our Wald
  interval; means: the sample variance, as our Welch test), a t distribution with the
  Welch-Satterthwaite df, and a symmetric interval.

  * Means: the same method as our :func:`welch_ttest`: difference, interval, t, df and
    p-value agree to rounding (1e-9).
  * Proportions, absolute: the standard error is our :func:`proportion_lift` Wald one to
    rounding; the interval differs from ours only by the quantile (gbstats: t with ~2n df,
    ours: z), which is checked exactly by rescaling. Our :func:`two_proportion_ztest`
    p-value genuinely differs: it uses the *pooled* variance (the right one under H0), so it
    is not compared with gbstats' p-value; instead the algebraic identity linking the pooled
    variance to gbstats' unpooled one is checked, and gbstats' p-value is rebuilt from our
    unpooled estimate and standard error.
  * Relative lift: both use the delta method, but on different scales. gbstats'
    interval is symmetric on the ratio, ``r - 1 +- t r s``; ours (Katz) is symmetric on
    ``log r``, ``r exp(+- z s) - 1``, with the same ``s**2 = var_c/(n_c m_c**2) +
    var_t/(n_t m_t**2)``. So the endpoints genuinely differ (by ``r (exp(x) - 1 - x)``,
    ``x = z s``: about 0.0035 of lift at 10,000 per arm, 0.05 at 1,000); the point estimate
    is compared to rounding, and gbstats' interval is rebuilt exactly from ``s`` recovered
    from our log interval.

- Bayesian ``EffectBayesianABTest`` (default: flat improper prior on the effect): the
  posterior of the effect is the normal ``N(estimate, frequentist variance)``, so chance to
  win is ``Phi(estimate / se)``, the credible interval is ``estimate +- z se`` and the risks
  are the normal's partial expectations.

  * Proportions: ours (:func:`bayesian_two_proportions`) is the exact Beta(1, 1)-posterior
    probability, so agreement is approximate; tolerances below are derived from the size
    of the normal approximation's error. The credible interval equals our Wald interval to
    rounding. gbstats' relative chance to win uses a second, different normal
    approximation (on ``t/c - 1``), which is an O(1/sqrt(n)) approximation of the same event.
  * Means: we have no Bayesian means function; with a flat prior the posterior chance to
    win is ``Phi(t)`` of our Welch t, and the interval our :func:`mean_lift` one.
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats as sps

from devora_lab.experiments.sequential import bayesian_proportions, bayesian_two_proportions
from devora_lab.experiments.stats import (
    mean_lift,
    proportion_lift,
    two_proportion_ztest,
    welch_ttest,
)

_REPO = Path(__file__).resolve().parents[2]
_GBSTATS_PYTHON = _REPO / ".venv-gbstats" / "bin" / "python"
_PROBE = _REPO / "scripts" / "gbstats_probe.py"
_Z95 = float(sps.norm.ppf(0.975))
_ROUNDING = 1e-9  # relative: the same formula evaluated by two programs

pytestmark = pytest.mark.skipif(
    not _GBSTATS_PYTHON.exists(),
    reason=f"{_GBSTATS_PYTHON.relative_to(_REPO)} is missing: `make unit` (or "
    "`make .venv-gbstats/.installed-stamp`) builds it from requirements-gbstats.lock",
)


@dataclass(frozen=True)
class Proportions:
    id: str
    control_successes: int
    control_n: int
    treatment_successes: int
    treatment_n: int

    @property
    def n_min(self) -> int:
        return min(self.control_n, self.treatment_n)

    def probe_case(self) -> dict[str, Any]:
        return {"id": self.id, "kind": "proportion",
                "control": {"n": self.control_n, "sum": self.control_successes,
                            "sum_squares": self.control_successes},
                "treatment": {"n": self.treatment_n, "sum": self.treatment_successes,
                              "sum_squares": self.treatment_successes}}


@dataclass(frozen=True)
class Means:
    """Two arms given by n, mean and sd; the data are a seeded right-skewed (lognormal)
    sample rescaled to exactly that mean and sd, so both programs see the same numbers."""

    id: str
    control: tuple[int, float, float]  # n, mean, sd
    treatment: tuple[int, float, float]

    def samples(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        rng = np.random.default_rng(sum(map(ord, self.id)))
        out = []
        for n, mean, sd in (self.control, self.treatment):
            raw = rng.lognormal(0.0, 0.5, n)
            out.append(mean + sd * (raw - raw.mean()) / raw.std(ddof=1))
        return out[0], out[1]

    def probe_case(self) -> dict[str, Any]:
        c, t = self.samples()
        return {"id": self.id, "kind": "mean",
                "control": {"n": c.size, "sum": float(c.sum()),
                            "sum_squares": float((c**2).sum())},
                "treatment": {"n": t.size, "sum": float(t.sum()),
                              "sum_squares": float((t**2).sum())}}


PROPORTIONS = [
    Proportions("ctr-10k", 1000, 10_000, 1100, 10_000),  # +10% relative, p-value 0.02
    Proportions("conversion-145k", 17_489, 145_274, 17_264, 145_310),  # a loser, p 0.19
    Proportions("thumbs-up-50k", 4980, 50_000, 5150, 50_000),  # borderline, p 0.07
    Proportions("pilot-1k", 83, 1000, 97, 1000),  # small sample, p 0.27
]
MEANS = [
    Means("latency-ms", (4000, 1250.0, 480.0), (4100, 1212.0, 455.0)),
    Means("cost-usd", (2500, 0.0132, 0.0061), (2500, 0.0127, 0.0058)),
    Means("latency-pilot", (40, 1310.0, 520.0), (45, 1105.0, 390.0)),  # df ~ 72: t != z
]
_PROPORTION_IDS = [case.id for case in PROPORTIONS]
_MEAN_IDS = [case.id for case in MEANS]


@pytest.fixture(scope="module")
def gbstats() -> dict[str, dict[str, Any]]:
    """gbstats' results per case id (one probe run for the whole module)."""
    cases = [p.probe_case() for p in PROPORTIONS] + [m.probe_case() for m in MEANS]
    done = subprocess.run([str(_GBSTATS_PYTHON), str(_PROBE)], input=json.dumps(cases),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["gbstats"] == "0.8.0", "the tolerances below were derived for 0.8.0"
    results = {case["id"]: case for case in document["cases"]}
    for case in results.values():
        for engine in ("frequentist", "bayesian"):
            for difference_type in ("absolute", "relative"):
                assert case[engine][difference_type]["error_message"] is None, case
    return results


def _t_quantile(df: float) -> float:
    return float(sps.t.ppf(0.975, df))


def _log_se(low: float, high: float) -> float:
    """s of our relative interval ``r exp(+- z s) - 1``, recovered from its endpoints."""
    return math.log((1 + high) / (1 + low)) / (2 * _Z95)


# ---------------------------------------------------------------- proportions, frequentist


@pytest.mark.parametrize("case", PROPORTIONS, ids=_PROPORTION_IDS)
def test_absolute_difference_matches_our_wald_interval(
        case: Proportions, gbstats: dict[str, dict[str, Any]]) -> None:
    """Same estimate and standard error; the interval only swaps z for gbstats' t quantile."""
    ours = proportion_lift(case.control_successes, case.control_n,
                           case.treatment_successes, case.treatment_n)
    theirs = gbstats[case.id]["frequentist"]["absolute"]
    se = (ours.absolute_high - ours.absolute_low) / (2 * _Z95)
    assert theirs["expected"] == pytest.approx(ours.absolute, rel=_ROUNDING)
    assert theirs["stddev"] == pytest.approx(se, rel=_ROUNDING)
    t_half = _t_quantile(theirs["dof"]) * se
    assert theirs["ci"] == pytest.approx([ours.absolute - t_half, ours.absolute + t_half],
                                         rel=_ROUNDING)
    # and as raw numbers: t_{0.975, df} - z ~ z (1 + z**2) / (4 df) (Cornish-Fisher) is
    # 1.2e-4 at 20,000 df, so the endpoints differ by about 1e-4 standard errors
    bound = 1.01 * _Z95 * (1 + _Z95**2) / (4 * theirs["dof"]) * se
    assert abs(theirs["ci"][0] - ours.absolute_low) <= bound
    assert abs(theirs["ci"][1] - ours.absolute_high) <= bound


@pytest.mark.parametrize("case", PROPORTIONS, ids=_PROPORTION_IDS)
def test_p_value_is_the_unpooled_t_test_of_our_estimate(
        case: Proportions, gbstats: dict[str, dict[str, Any]]) -> None:
    """gbstats' p-value is the unpooled (Welch) one; our z-test pools. Rebuild gbstats' from
    our estimate and Wald error, check the identity between the pooled and unpooled
    variances, and compare our Welch test on the 0/1 data."""
    c_s, c_n, t_s, t_n = (case.control_successes, case.control_n,
                          case.treatment_successes, case.treatment_n)
    lift = proportion_lift(c_s, c_n, t_s, t_n)
    theirs = gbstats[case.id]["frequentist"]["absolute"]
    se = (lift.absolute_high - lift.absolute_low) / (2 * _Z95)
    rebuilt = 2 * float(sps.t.sf(abs(lift.absolute) / se, theirs["dof"]))
    assert theirs["p_value"] == pytest.approx(rebuilt, rel=_ROUNDING)

    # pooled variance = unpooled + d**2/N + (v_c - v_t)(1/n_t - 1/n_c), v = p(1-p), an
    # identity (write p(1-p) of the pooled rate as within- plus between-arm variance)
    z = two_proportion_ztest(c_s, c_n, t_s, t_n)
    d = z.difference
    v_c, v_t = z.control_rate * (1 - z.control_rate), z.treatment_rate * (1 - z.treatment_rate)
    pooled_var = (d / z.z) ** 2
    expected = theirs["stddev"] ** 2 + d**2 / (c_n + t_n) + (v_c - v_t) * (1 / t_n - 1 / c_n)
    assert pooled_var == pytest.approx(expected, rel=1e-9)

    # our Welch test on the 0/1 outcomes: sample variance with n - 1, gbstats p(1-p) with n,
    # so t differs by a relative O(1/n) and the p-value by less than 1/n
    welch = welch_ttest(np.repeat([0.0, 1.0], [c_n - c_s, c_s]),
                        np.repeat([0.0, 1.0], [t_n - t_s, t_s]))
    assert welch.difference == pytest.approx(theirs["expected"], rel=_ROUNDING)
    assert welch.df == pytest.approx(theirs["dof"], rel=2 / case.n_min)
    assert abs(welch.p_value - theirs["p_value"]) <= 1 / case.n_min


@pytest.mark.parametrize("case", PROPORTIONS, ids=_PROPORTION_IDS)
def test_relative_lift_same_delta_method_on_another_scale(
        case: Proportions, gbstats: dict[str, dict[str, Any]]) -> None:
    ours = proportion_lift(case.control_successes, case.control_n,
                           case.treatment_successes, case.treatment_n)
    frequentist = gbstats[case.id]["frequentist"]["relative"]
    bayesian = gbstats[case.id]["bayesian"]["relative"]
    ratio, s = 1 + ours.relative, _log_se(ours.relative_low, ours.relative_high)
    assert frequentist["expected"] == pytest.approx(ours.relative, rel=_ROUNDING)
    assert frequentist["stddev"] == pytest.approx(ratio * s, rel=_ROUNDING)
    t_half = _t_quantile(frequentist["dof"]) * ratio * s
    assert frequentist["ci"] == pytest.approx([ours.relative - t_half, ours.relative + t_half],
                                              rel=_ROUNDING)
    z_half = _Z95 * ratio * s
    assert bayesian["ci"] == pytest.approx([ours.relative - z_half, ours.relative + z_half],
                                           rel=_ROUNDING)
    # the log interval sits above the linear one by r (exp(+-x) - 1 -+ x) ~ r x**2 / 2
    x = _Z95 * s
    assert ours.relative_low - bayesian["ci"][0] == pytest.approx(
        ratio * (math.exp(-x) - 1 + x), rel=1e-6)
    assert ours.relative_high - bayesian["ci"][1] == pytest.approx(
        ratio * (math.exp(x) - 1 - x), rel=1e-6)


# ---------------------------------------------------------------- proportions, Bayesian


@pytest.mark.parametrize("case", PROPORTIONS, ids=_PROPORTION_IDS)
def test_chance_to_win_agrees_with_the_exact_beta_posterior(
        case: Proportions, gbstats: dict[str, dict[str, Any]]) -> None:
    """gbstats: Phi(d / se) from plug-in moments; ours: exact P(p_t > p_c) under Beta(1, 1)
    priors. The gap is O(1/n): the prior moves each posterior mean by O(1/n) (one pseudo
    success and failure), shifting z by O(1/n) when d is a few se; and the leading
    O(1/sqrt(n)) skewness term of the normal approximation nearly cancels between the two
    arms, whose rates are close (the difference of their third cumulants is O(d / n**2),
    i.e. O(1/n) after scaling by se**3). Observed: 6.7e-4 at n = 1000, 1.4e-5 at 10,000,
    3e-6 at 145,000; the tolerance 2/n leaves 3x to 14x headroom. The risks (expected
    losses) move with the posterior mean at a rate of at most 1 (their derivatives in it are
    probabilities), and the prior moves the mean of the difference by ~2|d|/n (exactly
    -2d/(n+2) with equal arms), plus O(se/n) from the spread: tolerance 3 (|d| + se) / n
    (observed <= 1.4 (|d| + se) / n)."""
    c_s, c_n, t_s, t_n = (case.control_successes, case.control_n,
                          case.treatment_successes, case.treatment_n)
    theirs = gbstats[case.id]["bayesian"]["absolute"]
    exact = bayesian_two_proportions(c_s, c_n, t_s, t_n)
    lift = proportion_lift(c_s, c_n, t_s, t_n)
    se = (lift.absolute_high - lift.absolute_low) / (2 * _Z95)
    tol = 2 / case.n_min
    assert abs(exact.chance_to_win - theirs["chance_to_win"]) <= tol
    assert theirs["chance_to_win"] == pytest.approx(
        float(sps.norm.cdf(lift.absolute / se)), rel=_ROUNDING)
    assert theirs["risk_type"] == "absolute"
    risk_control, risk_treatment = theirs["risk"]  # loss of keeping control, of shipping
    risk_tol = 3 * (abs(lift.absolute) + se) / case.n_min
    assert abs(exact.loss_control - risk_control) <= risk_tol
    assert abs(exact.loss_treatment - risk_treatment) <= risk_tol
    # with a flat prior the credible interval is our Wald interval
    assert theirs["ci"] == pytest.approx([lift.absolute_low, lift.absolute_high],
                                         rel=_ROUNDING)
    assert theirs["expected"] == pytest.approx(lift.absolute, rel=_ROUNDING)

    # the Monte Carlo version (100,000 seeded draws): its own error adds
    # 4 sqrt(p (1-p) / draws) <= 0.0063 for the chance, ~4 se / sqrt(draws) for the loss
    draws = 100_000
    sampled = bayesian_proportions([c_s, t_s], [c_n, t_n], draws=draws, seed=0)
    p = theirs["chance_to_win"]
    assert abs(sampled.chance_to_be_best[1] - p) <= tol + 4 * math.sqrt(p * (1 - p) / draws)
    mc = 4 * se / math.sqrt(draws)  # the sd of a loss draw is below the posterior's, se
    assert abs(sampled.expected_loss[0] - risk_control) <= risk_tol + mc
    assert abs(sampled.expected_loss[1] - risk_treatment) <= risk_tol + mc


@pytest.mark.parametrize("case", PROPORTIONS, ids=_PROPORTION_IDS)
def test_relative_chance_to_win_is_a_coarser_approximation(
        case: Proportions, gbstats: dict[str, dict[str, Any]]) -> None:
    """gbstats' relative chance to win is Phi((r - 1) / (r s)) (normal on the ratio), the
    same event as the absolute one (t > c) under another normal approximation. Its z is
    d / sqrt(v_t/n_t + r**2 v_c/n_c) instead of d / se, smaller by a relative ~(r - 1)/2,
    which is O(1/sqrt(n)) for effects of a few se: 0.018 off the exact value at n = 1000.
    So it is not held to the 2/n of the absolute one: it is rebuilt exactly from our
    relative interval, and the exact value is only required to lie within the gap between
    gbstats' two approximations plus that 2/n (observed: the gap is all of the difference)."""
    c_s, c_n, t_s, t_n = (case.control_successes, case.control_n,
                          case.treatment_successes, case.treatment_n)
    lift = proportion_lift(c_s, c_n, t_s, t_n)
    relative = gbstats[case.id]["bayesian"]["relative"]
    absolute = gbstats[case.id]["bayesian"]["absolute"]
    ratio, s = 1 + lift.relative, _log_se(lift.relative_low, lift.relative_high)
    assert relative["chance_to_win"] == pytest.approx(
        float(sps.norm.cdf(lift.relative / (ratio * s))), rel=_ROUNDING)
    exact = bayesian_two_proportions(c_s, c_n, t_s, t_n).chance_to_win
    gap = abs(absolute["chance_to_win"] - relative["chance_to_win"])
    assert abs(exact - relative["chance_to_win"]) <= gap + 2 / case.n_min


# ---------------------------------------------------------------- means


@pytest.mark.parametrize("case", MEANS, ids=_MEAN_IDS)
def test_means_frequentist_is_our_welch_test(
        case: Means, gbstats: dict[str, dict[str, Any]]) -> None:
    """The same method (Welch's t-test, sample variances, Welch-Satterthwaite df); only the
    route differs (gbstats from sums and sums of squares), so everything agrees to rounding.
    The relative interval: gbstats' linear delta method rebuilt from our log one."""
    control, treatment = case.samples()
    welch = welch_ttest(control, treatment)
    lift = mean_lift(control, treatment)
    absolute = gbstats[case.id]["frequentist"]["absolute"]
    assert absolute["expected"] == pytest.approx(welch.difference, rel=_ROUNDING)
    assert absolute["ci"] == pytest.approx([welch.ci_low, welch.ci_high], rel=_ROUNDING)
    assert absolute["p_value"] == pytest.approx(welch.p_value, rel=_ROUNDING)
    assert absolute["dof"] == pytest.approx(welch.df, rel=_ROUNDING)
    assert absolute["expected"] / absolute["stddev"] == pytest.approx(welch.t, rel=_ROUNDING)

    relative = gbstats[case.id]["frequentist"]["relative"]
    ratio, s = 1 + lift.relative, _log_se(lift.relative_low, lift.relative_high)
    assert relative["expected"] == pytest.approx(lift.relative, rel=_ROUNDING)
    t_half = _t_quantile(relative["dof"]) * ratio * s
    assert relative["ci"] == pytest.approx([lift.relative - t_half, lift.relative + t_half],
                                           rel=_ROUNDING)


@pytest.mark.parametrize("case", MEANS, ids=_MEAN_IDS)
def test_means_bayesian_with_a_flat_prior(
        case: Means, gbstats: dict[str, dict[str, Any]]) -> None:
    """With a flat prior the posterior of the difference is N(d, se**2): chance to win is
    Phi(t) of our Welch t, the credible interval our :func:`mean_lift` normal interval.
    Our one-sided Welch p-value uses the t distribution instead, so 1 - p("greater") is
    a little nearer 1/2 than Phi(t); the gap, F_t - Phi, is at most ~phi(t)(t**3 + t)/(4 df)."""
    control, treatment = case.samples()
    welch = welch_ttest(control, treatment)
    lift = mean_lift(control, treatment)
    theirs = gbstats[case.id]["bayesian"]["absolute"]
    assert theirs["chance_to_win"] == pytest.approx(float(sps.norm.cdf(welch.t)),
                                                    rel=_ROUNDING)
    assert theirs["ci"] == pytest.approx([lift.absolute_low, lift.absolute_high],
                                         rel=_ROUNDING)
    one_sided = 1 - welch_ttest(control, treatment, alternative="greater").p_value
    gap = float(sps.norm.pdf(welch.t)) * (abs(welch.t) ** 3 + abs(welch.t)) / (4 * welch.df)
    assert abs(theirs["chance_to_win"] - 0.5) >= abs(one_sided - 0.5)
    assert abs(theirs["chance_to_win"] - one_sided) <= 1.5 * gap + 1e-12
