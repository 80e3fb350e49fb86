"""Daily cost forecasts: model choice, interval honesty, short histories, bad input, budgets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devora_lab.costs.forecast import (
    Forecast,
    backtest,
    ets,
    exhaustion,
    forecast,
    seasonal_naive,
)
from devora_lab.errors import ConfigError

_WEEKLY = np.array([2.0, 2.0, 2.0, 2.0, 2.0, -5.0, -5.0])  # busy weekdays, quiet weekends


def _simulated(days: int = 120, seed: int = 1, slope: float = 0.1, level: float = 20.0,
               noise: float = 1.0, start: str = "2025-01-06", tz: str | None = None) -> pd.Series:
    """Trend + weekly season + Gaussian noise: the structure ETS(A,Ad,A) is built for."""
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    values = level + slope * t + _WEEKLY[t % 7] + rng.normal(0.0, noise, days)
    index = pd.date_range(start, periods=days, freq="D", tz=tz)
    return pd.Series(np.clip(values, 0.0, None), index=index, name="cost_usd")


def _width(result: Forecast, level: str) -> float:
    return float((result.frame[f"hi{level}"] - result.frame[f"lo{level}"]).mean())


@pytest.fixture(scope="module")
def structured() -> pd.Series:
    return _simulated()


@pytest.fixture(scope="module")
def chosen(structured: pd.Series) -> Forecast:
    return forecast(structured, horizon=14)


# --- model choice --------------------------------------------------------------------------


def test_ets_beats_the_baseline_on_structured_data(chosen: Forecast) -> None:
    assert chosen.backtest is not None
    mase = chosen.backtest["mase"]
    assert mase["ets"] < mase["seasonal_naive"]
    assert chosen.model == "ets"
    assert any("chose ets" in note for note in chosen.notes)


def test_forecast_frame_shape_and_order(chosen: Forecast, structured: pd.Series) -> None:
    frame = chosen.frame
    assert list(frame.columns) == ["mean", "lo80", "hi80", "lo95", "hi95"]
    assert frame.index[0] == structured.index[-1] + pd.Timedelta(days=1)
    assert len(frame) == 14 and chosen.paths.shape == (1000, 14)
    assert chosen.history_days == 120
    assert (frame["lo95"] <= frame["lo80"]).all() and (frame["lo80"] <= frame["hi80"]).all()
    assert (frame["hi80"] <= frame["hi95"]).all() and (frame.to_numpy() >= 0).all()
    assert (frame["lo80"] <= frame["mean"]).all() and (frame["mean"] <= frame["hi80"]).all()


def test_forecast_is_reproducible_for_a_seed(structured: pd.Series) -> None:
    first, second = ets(structured, 7, seed=3), ets(structured, 7, seed=3)
    pd.testing.assert_frame_equal(first.frame, second.frame)
    np.testing.assert_array_equal(first.paths, second.paths)


def test_failed_ets_fit_falls_back_to_the_baseline(structured: pd.Series,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_: object) -> object:
        raise np.linalg.LinAlgError("singular")

    monkeypatch.setattr("devora_lab.costs.forecast._fit_ets", broken)
    result = forecast(structured, horizon=7)
    assert result.model == "seasonal_naive"
    assert result.backtest is not None and np.isnan(result.backtest.loc["ets", "mase"])
    assert any("ETS failed" in note for note in result.notes)


def test_flat_series_ties_go_to_the_baseline() -> None:
    flat = pd.Series(5.0, index=pd.date_range("2025-01-01", periods=40, freq="D"))
    result = forecast(flat, horizon=7)
    assert result.model == "seasonal_naive"
    np.testing.assert_allclose(result.frame.to_numpy(), 5.0)


# --- interval honesty ----------------------------------------------------------------------


def test_backtest_coverage_of_the_chosen_model_is_honest(chosen: Forecast) -> None:
    """80 % intervals cover 75-85 % of the actuals over a rolling-origin backtest.

    Pooled over three series of the same process (60 folds, 420 forecast days): one series
    alone ranged 0.73-0.85 across seeds, too noisy for a 75-85 % band.
    """
    tables = [backtest(_simulated(seed=seed), horizon=7, folds=20, models=(chosen.model,))
              for seed in range(3)]
    assert all(table.loc[chosen.model, "folds"] == 20 for table in tables)
    coverage = pd.concat(tables).mean(numeric_only=True)
    assert 0.75 <= coverage["coverage80"] <= 0.85
    assert 0.90 <= coverage["coverage95"] <= 0.99


def test_baseline_coverage_is_honest_on_a_seasonal_random_walk() -> None:
    """Seasonal naive is the right model for y[t] = y[t-7] + e: its intervals must hold."""
    rng = np.random.default_rng(5)
    weeks = 50.0 + _WEEKLY + np.cumsum(rng.normal(0.0, 1.0, (30, 7)), axis=0)
    series = pd.Series(weeks.ravel(), index=pd.date_range("2025-01-01", periods=210, freq="D"))
    table = backtest(series, horizon=7, folds=100, models=("seasonal_naive",))
    assert list(table.index) == ["seasonal_naive"]
    assert 0.75 <= table.loc["seasonal_naive", "coverage80"] <= 0.85
    assert 0.90 <= table.loc["seasonal_naive", "coverage95"] <= 0.99


# --- short histories -----------------------------------------------------------------------


def test_short_history_uses_the_baseline_and_says_so() -> None:
    result = forecast(_simulated(days=10), horizon=7)
    assert result.model == "seasonal_naive" and result.backtest is None
    assert any("Only 10 days of history" in note for note in result.notes)
    assert result.history_days == 10


def test_short_history_intervals_are_wider() -> None:
    """Ten days of a process give wider intervals than thirty days of the same process.

    Compared on average over 20 draws against the same baseline: with three weekly
    differences the estimated spread is itself very noisy, so a single short draw can be
    narrower by luck; the widening must show on average, and most at 95 %.
    """
    ratios = []
    for seed in range(20):
        process = _simulated(days=30, seed=seed, slope=0.0)
        short, long_ = forecast(process.iloc[-10:], horizon=7), seasonal_naive(process, 7)
        ratios.append([_width(short, level) / _width(long_, level) for level in ("80", "95")])
    mean80, mean95 = np.mean(ratios, axis=0)
    assert mean80 > 1.05 and mean95 > 1.3 and mean95 > mean80
    assert np.median(ratios, axis=0).min() > 1.0


def test_under_a_season_falls_back_to_naive() -> None:
    series = pd.Series([3.0, 5.0, 4.0], index=pd.date_range("2025-01-01", periods=3, freq="D"))
    result = seasonal_naive(series, horizon=5)
    np.testing.assert_allclose(result.frame["mean"], 4.0)
    assert any("naive forecast" in note for note in result.notes)
    assert (result.frame["hi95"] > result.frame["hi80"]).all()


def test_missing_days_are_zero_spend() -> None:
    index = pd.DatetimeIndex(["2025-01-01", "2025-01-02", "2025-01-04"])
    result = seasonal_naive(pd.Series([1.0, 2.0, 3.0], index=index), horizon=1)
    assert result.history_days == 4
    assert result.frame.index[0] == pd.Timestamp("2025-01-05")


def test_tz_aware_index_keeps_midnights_across_dst() -> None:
    series = _simulated(days=30, start="2025-03-01", tz="Europe/Berlin")
    result = seasonal_naive(series, horizon=7)
    index = pd.DatetimeIndex(result.frame.index)
    assert str(index.tz) == "Europe/Berlin"
    assert (index == index.normalize()).all()
    out = exhaustion(result, 0.0, 1e9, "2025-04-03")  # a naive date, read in the index's tz
    assert len(out.frame) == 4  # 31 March to 3 April


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "series",
    [
        pd.Series([1.0, -2.0, 3.0], index=pd.date_range("2025-01-01", periods=3, freq="D")),
        pd.Series([1.0, 2.0, 3.0], index=pd.date_range("2025-01-01", periods=3, freq="h")),
        pd.Series([1.0, 2.0, 3.0], index=pd.date_range("2025-01-01", periods=3, freq="W")),
        pd.Series([1.0, 2.0], index=pd.DatetimeIndex(["2025-01-01 12:00", "2025-01-02 12:00"])),
        pd.Series([1.0, 2.0], index=pd.DatetimeIndex(["2025-01-01", "2025-01-01"])),
        pd.Series([1.0, 2.0, 3.0]),
        pd.Series([], dtype="float64", index=pd.DatetimeIndex([])),
        pd.Series([1.0], index=pd.DatetimeIndex(["2025-01-01"])),
        pd.Series([1.0, np.inf], index=pd.date_range("2025-01-01", periods=2, freq="D")),
        pd.Series(["a", "b"], index=pd.date_range("2025-01-01", periods=2, freq="D")),
    ],
    ids=["negative", "hourly", "weekly", "not-midnight", "duplicate", "no-dates", "empty",
         "one-day", "infinite", "strings"],
)
def test_bad_input_raises_config_error(series: pd.Series) -> None:
    with pytest.raises(ConfigError) as caught:
        forecast(series)
    assert caught.value.fix


def test_bad_arguments_raise_config_error(structured: pd.Series) -> None:
    with pytest.raises(ConfigError):
        forecast(structured, horizon=0)
    with pytest.raises(ConfigError):
        forecast(structured, levels=(0.8, 1.2))
    with pytest.raises(ConfigError, match="too few to backtest"):
        backtest(structured.iloc[:20], horizon=7)


# --- budget exhaustion ---------------------------------------------------------------------


def test_constant_spend_exhausts_on_the_known_day() -> None:
    """10 a day against a limit of 55: day 5 ends at 50, day 6 at 60."""
    flat = pd.Series(10.0, index=pd.date_range("2025-01-01", periods=28, freq="D"))
    result = forecast(flat, horizon=10)
    out = exhaustion(result, spent_so_far=0.0, limit=55.0, period_end="2025-02-07")
    np.testing.assert_array_equal(out.frame["p_exhausted"], [0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    assert out.median_date == pd.Timestamp("2025-02-03")


def test_noisy_constant_spend_jumps_around_the_known_day() -> None:
    rng = np.random.default_rng(7)
    noisy = pd.Series(10.0 + rng.normal(0.0, 0.5, 60),
                      index=pd.date_range("2025-01-01", periods=60, freq="D"))
    result = forecast(noisy, horizon=20)
    out = exhaustion(result, spent_so_far=30.0, limit=130.0, period_end="2025-03-21")
    p = out.frame["p_exhausted"].to_numpy()
    assert len(p) == 20 and np.all(np.diff(p) >= 0)
    assert p[7] < 0.05 and p[11] > 0.95  # 100 more to spend: runs out on day 10
    assert out.median_date is not None
    assert pd.Timestamp("2025-03-10") <= out.median_date <= pd.Timestamp("2025-03-12")


def test_budget_that_lasts_has_no_median_date(structured: pd.Series) -> None:
    result = seasonal_naive(structured, horizon=7)
    out = exhaustion(result, spent_so_far=0.0, limit=1e9, period_end=result.frame.index[-1])
    assert out.median_date is None and (out.frame["p_exhausted"] == 0).all()


def test_exhaustion_rejects_a_period_past_the_horizon(structured: pd.Series) -> None:
    result = seasonal_naive(structured, horizon=7)
    with pytest.raises(ConfigError, match="past the forecast"):
        exhaustion(result, 0.0, 100.0, result.frame.index[-1] + pd.Timedelta(days=3))
    with pytest.raises(ConfigError):
        exhaustion(result, -1.0, 100.0, result.frame.index[-1])


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.floats(0.0, 1e4, allow_nan=False), min_size=2, max_size=40),
       spent=st.floats(0.0, 1e4), limit=st.floats(1.0, 1e5))
def test_baseline_bands_nest_and_exhaustion_never_decreases(values: list[float], spent: float,
                                                           limit: float) -> None:
    series = pd.Series(values, index=pd.date_range("2025-01-01", periods=len(values), freq="D"))
    result = seasonal_naive(series, horizon=9, n_paths=200)
    frame = result.frame
    assert (frame["lo95"] <= frame["lo80"]).all() and (frame["hi80"] <= frame["hi95"]).all()
    assert (frame["lo80"] <= frame["hi80"]).all() and (result.paths >= 0).all()
    out = exhaustion(result, spent, limit, frame.index[-1])
    assert np.all(np.diff(out.frame["p_exhausted"].to_numpy()) >= 0)
