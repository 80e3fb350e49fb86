"""Fixed-horizon statistics: published values from R, statsmodels cross-checks, invariants.

The R values are those printed by R's own examples and documentation (``t.test`` and
``wilcox.test`` on ``sleep``, ``prop.test`` on ``smokers``, ``fisher.test`` on the tea
tasting, ``power.prop.test``). Our two-variant functions take the control first and report
treatment - control, so R's ``group 1 - group 2`` means control = group 2 here.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_effectsize

from devora_lab.errors import ConfigError
from devora_lab.experiments import sequential as seq
from devora_lab.experiments import stats

SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


# ---------------------------------------------------------------- published values


def test_welch_reproduces_r_t_test_on_sleep() -> None:
    # R: t.test(extra ~ group, data = sleep): t = -1.8608, df = 17.776, p-value = 0.07939,
    # 95 percent confidence interval: -3.3654832 0.2054832
    result = stats.welch_ttest(SLEEP_2, SLEEP_1)
    assert round(result.t, 4) == -1.8608
    assert round(result.df, 3) == 17.776
    assert round(result.p_value, 5) == 0.07939
    assert (round(result.ci_low, 4), round(result.ci_high, 4)) == (-3.3655, 0.2055)
    assert result.difference == pytest.approx(-1.58)


def test_mann_whitney_reproduces_r_wilcox_test_on_sleep() -> None:
    # R: wilcox.test(extra ~ group, data = sleep): W = 25.5, p-value = 0.06933 (ties: normal
    # approximation with continuity correction)
    result = stats.mann_whitney(SLEEP_2, SLEEP_1)
    assert result.u == 25.5
    assert round(result.p_value, 5) == 0.06933
    assert result.probability_greater == pytest.approx(25.5 / 100)


def test_chi_square_reproduces_r_prop_test_on_smokers() -> None:
    # R: prop.test(smokers, patients): X-squared = 12.6, df = 3, p-value = 0.005585
    result = stats.chi_square_proportions([83, 90, 129, 70], [86, 93, 136, 82])
    assert round(result.statistic, 1) == 12.6
    assert result.df == 3
    assert round(result.p_value, 6) == 0.005585
    assert not result.corrected  # R applies Yates only to two groups


def test_chi_square_uses_yates_for_two_groups_like_prop_test() -> None:
    # Yates, capped as in R: |O - E| - min(0.5, |O - E|), computed by hand
    s, n = [30, 45], [200, 210]
    table = np.array([[30, 170], [45, 165]], dtype=float)
    expected = table.sum(1, keepdims=True) * table.sum(0) / table.sum()
    by_hand = float((((np.abs(table - expected) - 0.5) ** 2) / expected).sum())
    corrected = stats.chi_square_proportions(s, n)
    assert corrected.corrected
    assert corrected.statistic == pytest.approx(by_hand)
    plain = stats.chi_square_proportions(s, n, correction=False)
    z = stats.two_proportion_ztest(30, 200, 45, 210).z
    assert plain.statistic == pytest.approx(z**2)  # prop.test(correct=FALSE) == z-test
    assert plain.p_value < corrected.p_value


def test_fisher_reproduces_r_tea_tasting() -> None:
    # R: fisher.test(TeaTasting) p-value = 0.4857; with alternative = "greater", 0.2429.
    # TeaTasting = [[3, 1], [1, 3]]: treatment = 3 of 4 right, control = 1 of 4.
    assert round(stats.fisher_exact_test(1, 4, 3, 4).p_value, 4) == 0.4857
    greater = stats.fisher_exact_test(1, 4, 3, 4, alternative="greater")
    assert round(greater.p_value, 4) == 0.2429
    assert greater.odds_ratio == 9.0  # the sample odds ratio (R reports the cond. MLE 6.41)
    assert round(stats.fisher_exact_test(1, 4, 3, 4, alternative="less").p_value, 4) == 0.9857


def test_two_proportion_z_on_the_issue_example() -> None:
    result = stats.two_proportion_ztest(17489, 145274, 17264, 145310)
    assert round(abs(result.z), 2) == 1.31
    assert round(result.p_value, 2) == 0.19
    assert result.ci_low < result.difference < 0 < result.ci_high  # unpooled Wald interval
    swapped = stats.two_proportion_ztest(17264, 145310, 17489, 145274)
    assert round(swapped.z, 2) == 1.31


def test_power_reproduces_r_power_prop_test_and_statsmodels() -> None:
    # R: power.prop.test(p1 = .50, p2 = .75, power = .90) => n = 76.7
    assert seq.sample_size_proportions(0.5, 0.25, power=0.9) == 77
    # means: statsmodels' NormalIndPower solves the same normal test
    for sd, mde, power in [(1.0, 0.2, 0.8), (120.0, 15.0, 0.9), (0.3, 0.01, 0.8)]:
        n = NormalIndPower().solve_power(effect_size=mde / sd, alpha=0.05, power=power)
        assert seq.sample_size_means(sd, mde, power=power) == math.ceil(n)
    # proportions: statsmodels uses Cohen's arcsine h; the two agree within 0.5% here
    h = proportion_effectsize(0.11, 0.10)
    n_h = NormalIndPower().solve_power(effect_size=h, alpha=0.05, power=0.8)
    n = seq.sample_size_proportions(0.10, 0.01)
    assert n == pytest.approx(n_h, rel=0.005)
    assert seq.sample_size_proportions(0.10, 0.10, relative=True) == n
    assert seq.sample_size_proportions(0.10, -0.01) < n  # rates nearer 0 vary less


def test_days_to_significance() -> None:
    assert seq.days_to_significance(14_751, 1_000) == pytest.approx(14.751)
    assert seq.days_to_significance(14_751, 1_000, users_so_far_per_variant=10_000) == (
        pytest.approx(4.751))
    assert seq.days_to_significance(100, 10, users_so_far_per_variant=500) == 0
    with pytest.raises(ConfigError):
        seq.days_to_significance(100, 0)


# ---------------------------------------------------------------- hand checks, cross-checks


def test_srm_by_hand() -> None:
    even = seq.sample_ratio_mismatch([5100, 4900])
    assert even.statistic == pytest.approx(4.0)  # (100**2 + 100**2) / 5000
    assert even.p_value == pytest.approx(2 * sps.norm.sf(2.0))  # chi2(1) tail at 4 = 0.0455
    assert not even.srm_failed
    broken = seq.sample_ratio_mismatch([5200, 4800])
    assert broken.statistic == pytest.approx(16.0)
    assert broken.p_value == pytest.approx(6.334e-5, rel=1e-3)
    assert broken.srm_failed
    weighted = seq.sample_ratio_mismatch([200, 800], [0.2, 0.8])
    assert weighted.expected == (200.0, 800.0) and weighted.p_value == 1.0
    three = seq.sample_ratio_mismatch([1000, 1000, 1180], [1, 1, 1])
    assert three.df == 2 and three.srm_failed


def test_adjust_pvalues_by_hand_and_against_statsmodels() -> None:
    p = [0.01, 0.04, 0.03, 0.2]
    assert stats.adjust_pvalues(p, "holm") == pytest.approx((0.04, 0.09, 0.09, 0.2))
    assert stats.adjust_pvalues(p, "bh") == pytest.approx((0.04, 0.16 / 3, 0.16 / 3, 0.2))
    rng = np.random.default_rng(3)
    for size in (1, 2, 7, 30):  # statsmodels' holm takes ~60 ms a call: keep this short
        raw = rng.uniform(0, 0.2, size)
        holm, bh = multipletests(raw, method="holm")[1], multipletests(raw, method="fdr_bh")[1]
        assert stats.adjust_pvalues(list(raw), "holm") == pytest.approx(tuple(holm))
        assert stats.adjust_pvalues(list(raw), "bh") == pytest.approx(tuple(bh))


def test_bayesian_two_arm_closed_form_matches_a_million_draws() -> None:
    exact = seq.bayesian_two_proportions(10, 100, 15, 100)
    mc = seq.bayesian_proportions([10, 15], [100, 100], draws=1_000_000, seed=7)
    assert mc.chance_to_be_best[1] == pytest.approx(exact.chance_to_win, abs=0.002)
    assert mc.expected_loss[0] == pytest.approx(exact.loss_control, rel=0.01)
    assert mc.expected_loss[1] == pytest.approx(exact.loss_treatment, rel=0.01)
    assert mc.posterior_means == pytest.approx((11 / 102, 16 / 102))
    # the large example: P(B > A) equals the normal approximation of the two posteriors
    big = seq.bayesian_two_proportions(17489, 145274, 17264, 145310)
    a, b, c, d = 17490, 127786, 17265, 128047
    mean = c / (c + d) - a / (a + b)
    sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)) + c * d / ((c + d) ** 2 * (c + d + 1)))
    assert big.chance_to_win == pytest.approx(sps.norm.sf(0, mean, sd), abs=1e-3)
    assert big.chance_to_win + seq.bayesian_two_proportions(
        17264, 145310, 17489, 145274).chance_to_win == pytest.approx(1.0)


def test_bayesian_k_variants_is_seeded_and_sums_to_one() -> None:
    first = seq.bayesian_proportions([50, 60, 58], [500, 500, 500], draws=20_000, seed=1)
    assert first == seq.bayesian_proportions([50, 60, 58], [500, 500, 500], draws=20_000, seed=1)
    assert sum(first.chance_to_be_best) == pytest.approx(1.0)
    assert first.chance_to_be_best.index(max(first.chance_to_be_best)) == 1
    assert min(first.expected_loss) == first.expected_loss[1]


def test_relative_lift_is_the_katz_log_interval() -> None:
    lift = stats.proportion_lift(17489, 145274, 17264, 145310)
    low, high = confint_proportions_2indep(17264, 145310, 17489, 145274, method="log",
                                           compare="ratio")
    assert (lift.relative_low, lift.relative_high) == pytest.approx((low - 1, high - 1))
    assert lift.relative == pytest.approx(17264 / 145310 / (17489 / 145274) - 1)
    test = stats.two_proportion_ztest(17489, 145274, 17264, 145310)
    assert (lift.absolute_low, lift.absolute_high) == pytest.approx((test.ci_low, test.ci_high))
    assert math.isnan(stats.proportion_lift(0, 10, 3, 10).relative)
    assert math.isnan(stats.proportion_lift(5, 10, 0, 10).relative_low)


def test_bootstrap_bca_agrees_with_scipy() -> None:
    rng = np.random.default_rng(1)
    control, treatment = rng.lognormal(0, 1, 300), rng.lognormal(0.1, 1, 400)
    ours = stats.bootstrap_difference(control, treatment, method="bca", seed=0)
    theirs = sps.bootstrap((treatment, control),
                           lambda t, c, axis: t.mean(axis) - c.mean(axis),
                           method="BCa", n_resamples=10_000, rng=0).confidence_interval
    width = theirs.high - theirs.low
    assert ours.ci_low == pytest.approx(theirs.low, abs=0.03 * width)
    assert ours.ci_high == pytest.approx(theirs.high, abs=0.03 * width)
    percentile = stats.bootstrap_difference(control, treatment, seed=0)
    assert percentile == stats.bootstrap_difference(control, treatment, seed=0)
    assert percentile.ci_low != ours.ci_low  # BCa moved the interval for the skew


def test_bootstrap_mean_difference_is_close_to_welch_on_normal_data() -> None:
    rng = np.random.default_rng(5)
    control, treatment = rng.normal(10, 2, 1000), rng.normal(10.3, 3, 1200)
    boot = stats.bootstrap_difference(control, treatment, seed=1)
    welch = stats.welch_ttest(control, treatment)
    assert boot.estimate == pytest.approx(welch.difference)
    assert boot.ci_low == pytest.approx(welch.ci_low, abs=0.03)
    assert boot.ci_high == pytest.approx(welch.ci_high, abs=0.03)
    median = stats.bootstrap_difference(control, treatment, np.median, method="bca")
    assert median.ci_low < median.estimate < median.ci_high


def test_quantile_test_finds_a_slower_tail_and_agrees_with_its_interval() -> None:
    rng = np.random.default_rng(11)
    control = rng.lognormal(6.0, 0.5, 3000)  # latency in ms
    slower_tail = np.concatenate([rng.lognormal(6.0, 0.5, 2700), rng.lognormal(7.0, 0.5, 300)])
    slow = stats.quantile_difference_test(control, slower_tail, n_resamples=2000)
    p95 = functools.partial(np.quantile, q=0.95)
    assert slow.difference == pytest.approx(p95(slower_tail) - p95(control))
    assert slow.p_value < 0.01 and slow.ci_low > 0
    same = stats.quantile_difference_test(control, rng.lognormal(6.0, 0.5, 3000),
                                          n_resamples=2000)
    assert same.p_value > 0.05 and same.ci_low < 0 < same.ci_high


def test_compare_proportions_picks_fisher_for_small_counts() -> None:
    small = stats.compare_proportions([1, 3], [4, 4])
    assert small.method == "fisher" and round(small.p_value, 4) == 0.4857
    large = stats.compare_proportions([83, 90, 129, 70], [86, 93, 136, 82])
    assert large.method == "chi-square" and round(large.p_value, 6) == 0.005585
    three = stats.compare_proportions([0, 1, 5], [6, 6, 6], seed=3)
    assert three.method == "fisher" and 0 < three.p_value < 0.05
    assert three == stats.compare_proportions([0, 1, 5], [6, 6, 6], seed=3)


def test_noninferiority_is_unchanged() -> None:
    result = stats.noninferiority_proportions(4500, 5000, 4450, 5000, margin=0.03)
    se = math.sqrt(0.9 * 0.1 / 5000 + 0.89 * 0.11 / 5000)
    assert result.z == pytest.approx((-0.01 + 0.03) / se)
    assert result.p_value == pytest.approx(sps.norm.sf(result.z))
    assert result.non_inferior


@pytest.mark.parametrize("call", [
    lambda: stats.two_proportion_ztest(5, 4, 1, 10),
    lambda: stats.two_proportion_ztest(1, 0, 1, 10),
    lambda: stats.two_proportion_ztest(1, 10, 1, 10, confidence=95),
    lambda: stats.chi_square_proportions([1], [10]),
    lambda: stats.welch_ttest([1.0], [1.0, 2.0]),
    lambda: stats.welch_ttest([1.0, math.nan], [1.0, 2.0]),
    lambda: stats.welch_ttest([1.0, 2.0], [1.0, 2.0], alternative="bigger"),  # type: ignore[arg-type]
    lambda: stats.bootstrap_difference([1.0, 2.0], [1.0, 2.0], n_resamples=10),
    lambda: stats.adjust_pvalues([0.1, 1.5]),
    lambda: seq.sample_ratio_mismatch([10, 10], [1.0]),
    lambda: seq.sample_size_proportions(0.95, 0.1),
    lambda: seq.sample_size_means(0.0, 1.0),
    lambda: seq.bayesian_two_proportions(1, 10, 2, 10, prior=(0.5, 0.5)),  # type: ignore[arg-type]
])
def test_bad_input_raises_config_error(call: object) -> None:
    with pytest.raises(ConfigError):
        call()  # type: ignore[operator]


# ---------------------------------------------------------------- invariants


counts = st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n)))
samples = st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=3, max_size=40)


@settings(max_examples=150)
@given(counts, counts)
def test_ztest_invariants(control: tuple[int, int], treatment: tuple[int, int]) -> None:
    forward = stats.two_proportion_ztest(*control, *treatment)
    backward = stats.two_proportion_ztest(*treatment, *control)
    assert 0 <= forward.p_value <= 1
    assert forward.p_value == pytest.approx(backward.p_value)
    assert forward.difference == pytest.approx(-backward.difference)
    assert forward.ci_low <= forward.difference <= forward.ci_high
    greater = stats.two_proportion_ztest(*control, *treatment, alternative="greater").p_value
    less = stats.two_proportion_ztest(*control, *treatment, alternative="less").p_value
    assert greater + less == pytest.approx(1.0)
    chi = stats.chi_square_proportions([control[0], treatment[0]], [control[1], treatment[1]])
    assert 0 <= chi.p_value <= 1
    assert 0 <= stats.fisher_exact_test(*control, *treatment).p_value <= 1 + 1e-12
    lift = stats.proportion_lift(*control, *treatment)
    if not math.isnan(lift.relative_low):
        assert lift.relative_low <= lift.relative <= lift.relative_high
        assert lift.relative_low > -1


@settings(max_examples=100)
@given(samples, samples)
def test_welch_and_rank_invariants(control: list[float], treatment: list[float]) -> None:
    forward = stats.welch_ttest(control, treatment)
    backward = stats.welch_ttest(treatment, control)
    assert 0 <= forward.p_value <= 1
    assert forward.p_value == pytest.approx(backward.p_value)
    assert forward.difference == pytest.approx(-backward.difference, abs=1e-9)
    assert forward.ci_low <= forward.difference <= forward.ci_high
    rank = stats.mann_whitney(control, treatment)
    assert 0 <= rank.p_value <= 1
    assert rank.p_value == pytest.approx(stats.mann_whitney(treatment, control).p_value)


@settings(max_examples=60)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=25))
def test_adjusted_pvalues_are_valid(raw: list[float]) -> None:
    holm, bh = stats.adjust_pvalues(raw, "holm"), stats.adjust_pvalues(raw, "bh")
    for p, h, b in zip(raw, holm, bh, strict=True):
        assert p <= b + 1e-12 and b <= h + 1e-12 and h <= 1
    permuted = raw[::-1]
    assert stats.adjust_pvalues(permuted, "holm") == pytest.approx(holm[::-1])


@settings(max_examples=40)
@given(st.lists(st.integers(1, 1000), min_size=2, max_size=5))
def test_chi_square_ignores_variant_order(totals: list[int]) -> None:
    successes = [n // 3 for n in totals]
    forward = stats.chi_square_proportions(successes, totals)
    backward = stats.chi_square_proportions(successes[::-1], totals[::-1])
    assert forward.p_value == pytest.approx(backward.p_value)
    assert 0 <= forward.p_value <= 1
