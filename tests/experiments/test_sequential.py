"""The mSPRT (Johari, Pekelis & Walsh 2022): its closed form, its duality with the
confidence sequence, and the point of it: an A/A simulation with a look every day for 30
days, where repeated z-tests find "effects" in about a quarter of experiments and the
mSPRT stays under alpha, while still detecting a real 10% lift.

All simulations are vectorised over experiments and seeded; the file runs in about a second.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate
from scipy import stats as sps

from devora_lab.errors import ConfigError
from devora_lab.experiments import sequential as seq

EXPERIMENTS, LOOKS, DAILY, BASELINE = 2000, 30, 1000, 0.10
TAU2 = 0.01**2  # the mixing variance: one point of success rate, the effect we plan for


def _simulate(treatment_rate: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative successes per arm (experiments x looks) and users per arm per look."""
    rng = np.random.default_rng(seed)
    daily = rng.binomial(DAILY, [BASELINE, treatment_rate], size=(EXPERIMENTS, LOOKS, 2))
    cumulative = daily.cumsum(axis=1)
    n = DAILY * np.arange(1, LOOKS + 1, dtype=float)
    return cumulative[..., 0], cumulative[..., 1], np.broadcast_to(n, (EXPERIMENTS, LOOKS))


def _difference_and_variance(s_c: np.ndarray, s_t: np.ndarray,
                             n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p_c, p_t = s_c / n, s_t / n
    return p_t - p_c, p_c * (1 - p_c) / n + p_t * (1 - p_t) / n


def _naive_peeking(s_c: np.ndarray, s_t: np.ndarray, n: np.ndarray) -> np.ndarray:
    """A pooled two-proportion z-test at every look; 'significant' if any look has p < .05."""
    pooled = (s_c + s_t) / (2 * n)
    z = (s_t - s_c) / n / np.sqrt(pooled * (1 - pooled) * 2 / n)
    return np.asarray((np.abs(z) > sps.norm.ppf(0.975)).any(axis=1))


def test_aa_peeking_inflates_false_positives_but_msprt_does_not() -> None:
    s_c, s_t, n = _simulate(BASELINE, seed=20240601)
    naive = _naive_peeking(s_c, s_t, n).mean()
    d, v = _difference_and_variance(s_c, s_t, n)
    msprt = seq.significant(seq.msprt_pvalues(d, v, tau2=TAU2), alpha=0.05).mean()
    assert 0.20 <= naive <= 0.35, naive  # measured: 0.27 (30 looks at nominal 5%)
    assert msprt <= 0.05, msprt  # measured: 0.02
    final_look_only = (np.abs(d[:, -1] / np.sqrt(v[:, -1])) > 1.96).mean()
    assert 0.03 <= final_look_only <= 0.07  # a single look is fine: the problem is peeking


def test_msprt_detects_a_real_lift_and_covers_it() -> None:
    s_c, s_t, n = _simulate(0.11, seed=7)  # +1 point, +10% relative
    d, v = _difference_and_variance(s_c, s_t, n)
    p = seq.msprt_pvalues(d, v, tau2=TAU2)
    assert seq.significant(p).mean() >= 0.80  # measured: 0.87 (one test at day 30: 0.98)
    low, high = seq.msprt_confidence_sequence(d, v, tau2=TAU2)
    covered = ((low <= 0.01) & (high >= 0.01)).all(axis=1).mean()
    assert covered >= 0.95  # the whole sequence covers the true effect, at every look
    single = seq.msprt_proportions(s_c[0], n[0], s_t[0], n[0], tau2=TAU2)
    assert single.p_values == pytest.approx(tuple(p[0]))
    assert single.significant == bool(p[0, -1] < 0.05)


def test_msprt_means_aa_and_effect() -> None:
    rng = np.random.default_rng(3)
    shape = (500, LOOKS, 2)
    sums = rng.normal(0, 1, shape).cumsum(axis=1)  # daily means of 100 users, sd 10: N(0, 1)
    n = 100 * np.arange(1, LOOKS + 1, dtype=float)[None, :]
    means = sums / np.arange(1, LOOKS + 1)[None, :, None]
    v = 2 * 100.0 / n
    null = seq.msprt_pvalues(means[..., 1] - means[..., 0], v, tau2=1.0)
    assert seq.significant(null).mean() <= 0.05
    shifted = seq.msprt_pvalues(means[..., 1] + 1.5 - means[..., 0], v, tau2=1.0)
    assert seq.significant(shifted).mean() >= 0.8
    one = seq.msprt_means(n[0], means[0, :, 0], np.full(LOOKS, 100.0), n[0],
                          means[0, :, 1], np.full(LOOKS, 100.0), tau2=1.0)
    assert one.p_values == pytest.approx(tuple(null[0]))


def test_mixture_likelihood_ratio_matches_numerical_integration() -> None:
    # Lambda = integral of N(d; theta, V) / N(d; 0, V) over theta ~ N(0, tau2)
    def integrand(theta: float, d: float, v: float, tau2: float) -> float:
        ratio = sps.norm.pdf(d, theta, math.sqrt(v)) / sps.norm.pdf(d, 0, math.sqrt(v))
        return float(ratio * sps.norm.pdf(theta, 0, math.sqrt(tau2)))

    for d, v, tau2 in [(0.004, 1e-5, 1e-4), (-0.3, 0.05, 0.2), (2.0, 1.0, 4.0)]:
        sd = math.sqrt(tau2)
        lam = integrate.quad(integrand, -12 * sd, 12 * sd, args=(d, v, tau2), points=[d],
                             limit=200)[0]
        p = seq.msprt_pvalues([d], [v], tau2=tau2)[0]
        assert p == pytest.approx(min(1.0, 1 / lam), rel=1e-6)


@settings(max_examples=80)
@given(st.lists(st.tuples(st.floats(-1, 1), st.floats(1e-4, 1)), min_size=1, max_size=20),
       st.floats(1e-3, 10), st.floats(-0.5, 0.5))
def test_p_values_and_confidence_sequence_are_dual(looks: list[tuple[float, float]],
                                                   tau2: float, theta0: float) -> None:
    d, v = np.array(looks).T
    p = seq.msprt_pvalues(d, v, tau2=tau2, theta0=theta0)
    assert np.all((p >= 0) & (p <= 1)) and np.all(np.diff(p) <= 0)
    low, high = seq.msprt_confidence_sequence(d, v, tau2=tau2)
    assert np.all(np.diff(low) >= 0) and np.all(np.diff(high) <= 0)
    outside = (theta0 < low) | (theta0 > high)
    clear = ~np.isclose(p, 0.05, rtol=1e-9, atol=0)  # away from the boundary p == alpha
    assert np.array_equal(outside[clear], (p < 0.05)[clear])


def test_zero_variance_looks_carry_no_evidence() -> None:
    result = seq.msprt_proportions([0, 0, 40], [0, 100, 1000], [0, 0, 90], [0, 100, 1000],
                                   tau2=TAU2)
    assert result.p_values[:2] == (1.0, 1.0)
    assert result.ci_low[0] == -math.inf and result.ci_high[1] == math.inf
    assert result.significant and result.first_significant_look == 2


@pytest.mark.parametrize("call", [
    lambda: seq.msprt_pvalues([0.1], [0.01], tau2=0.0),
    lambda: seq.msprt_proportions([5, 4], [10, 20], [5, 5], [10, 20], tau2=TAU2),
    lambda: seq.msprt_proportions([5, 6], [20, 10], [5, 5], [10, 20], tau2=TAU2),
    lambda: seq.msprt_proportions([5], [10, 20], [5, 5], [10, 20], tau2=TAU2),
    lambda: seq.msprt_means([0], [1.0], [1.0], [1], [1.0], [1.0], tau2=1.0),
    lambda: seq.significant([0.5], alpha=1.5),
])
def test_bad_input_raises_config_error(call: object) -> None:
    with pytest.raises(ConfigError):
        call()  # type: ignore[operator]
