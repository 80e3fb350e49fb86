"""Daily spend forecasts with honest intervals: damped-trend ETS against a seasonal-naive baseline.

Pure functions over pandas objects: the caller aggregates the event log to one value per
day (cost, tokens or calls) and passes that series; nothing here reads files or the log.

Two models: seasonal naive ("same weekday last week") is hard to beat on short, noisy
usage and cannot overfit; ETS with a damped trend and a weekly season follows growth
without extrapolating it forever. :func:`forecast` backtests both on the series itself and
keeps the lower MASE, so the fancier model is used only where it has earned it.

Sample paths: budgets are about *cumulative* spend, and the sum of daily quantiles is not
the quantile of the sum, so every :class:`Forecast` carries simulated daily paths from
which :func:`exhaustion` reads when a budget runs out. Spend cannot be negative: paths and
intervals are clipped at zero.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats
from statsmodels.tsa.exponential_smoothing.ets import ETSModel

from devora_lab.errors import ConfigError

try:  # optional: only speed depends on it (see _fit_ets)
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped, unused-ignore]
except ImportError:  # pragma: no cover
    threadpool_limits = None

__all__ = ["Exhaustion", "Forecast", "ModelName", "backtest", "ets", "exhaustion", "forecast",
           "seasonal_naive"]

Floats = NDArray[np.float64]
ModelName = Literal["ets", "seasonal_naive"]

SEASON = 7  # usage follows the working week
SHORT_HISTORY_DAYS = 14  # two full weeks: the least from which a weekly pattern can be fitted
MIN_ETS_DAYS = 10  # five parameters without a season: fewer days leave almost no residuals
N_PATHS = 1000
DEFAULT_LEVELS: tuple[float, ...] = (0.8, 0.95)
_AGGREGATE_FIX = "Aggregate to one row per calendar day first, e.g. series.resample('D').sum()."


class _FitError(ArithmeticError):
    """ETS produced non-finite numbers or has more parameters than days."""


# A failed fit: statsmodels and numpy raise ValueError (LinAlgError included) or
# arithmetic errors; anything else is a bug and propagates.
_FIT_ERRORS = (ValueError, ArithmeticError)


@dataclass(frozen=True)
class Forecast:
    """A daily forecast: ``frame`` (future days x ``mean, lo80, hi80, lo95, hi95``, one
    lo/hi pair per level), ``paths`` (n_paths x horizon simulated days, for questions
    about sums), the ``backtest`` the model was chosen from (None if the history was too
    short) and ``notes`` saying what was decided and why."""

    frame: pd.DataFrame
    model: ModelName
    backtest: pd.DataFrame | None
    paths: Floats
    notes: list[str]
    history_days: int


@dataclass(frozen=True)
class Exhaustion:
    """Per future day, ``p_exhausted`` (share of paths that have spent the budget; never
    decreasing) and ``spend_p50`` (median cumulative spend, including what was spent);
    ``median_date`` is the first day at least half the paths have, else None."""

    frame: pd.DataFrame
    median_date: pd.Timestamp | None


@dataclass(frozen=True)
class _Draw:
    """One model's output as plain arrays; bands map a level to (lower, upper)."""

    mean: Floats
    bands: dict[float, tuple[Floats, Floats]]
    paths: Floats

    def frame(self, history: pd.Series) -> pd.DataFrame:
        """Indexed by the next calendar days (date_range keeps tz-aware midnights on DST)."""
        data = {"mean": self.mean}
        for level, (lower, upper) in sorted(self.bands.items()):
            data[f"lo{_pct(level)}"], data[f"hi{_pct(level)}"] = lower, upper
        index = pd.date_range(history.index[-1], periods=self.mean.size + 1, freq="D",
                              name=history.index.name)[1:]
        return pd.DataFrame(data, index=index)


_Predictor = Callable[[Floats, int, tuple[float, ...], np.random.Generator, int], _Draw]


def _prepare(series: pd.Series, min_days: int = 2) -> pd.Series:
    """Validate a daily series and fill the days it skips with zero: a day without rows in
    the log is a day without spend. Negative values or sub-daily timestamps mean a wrong
    column or a missing aggregation, refused rather than guessed around."""
    if not isinstance(series, pd.Series):
        raise ConfigError(f"Expected a pandas Series of daily values, got {type(series).__name__}.",
                          fix="Pass a Series indexed by day.")
    if series.empty:
        raise ConfigError("The series is empty: there is no history to forecast from.",
                          fix=f"Pass at least {min_days} days of history.")
    _check_index(series.index)
    filled = _check_values(series).sort_index().asfreq("D").fillna(0.0)
    if len(filled) < min_days:
        raise ConfigError(f"Only {len(filled)} day(s) of history; at least {min_days} are needed.",
                          fix="Wait for more history or forecast a longer-lived series.")
    return filled


def _check_index(index: pd.Index) -> None:
    """Refuse anything but one timestamp per calendar day (at midnight, tz-aware or naive)."""
    if not isinstance(index, pd.DatetimeIndex):
        raise ConfigError(f"The series needs a DatetimeIndex, got {type(index).__name__}.",
                          fix=_AGGREGATE_FIX)
    problems = [(index.hasnans, "The index contains NaT."),
                (index.freq is not None and index.freqstr != "D",
                 f"The index has frequency {index.freqstr!r}, not daily."),
                (not (index == index.normalize()).all(), "Some timestamps are not at midnight."),
                (index.has_duplicates, "Some days appear more than once.")]
    for found, message in problems:
        if found:
            raise ConfigError(message, fix=_AGGREGATE_FIX)


def _check_values(series: pd.Series) -> pd.Series:
    """Numbers only, finite, never negative; NaN counts as a day without spend."""
    if not pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series):
        raise ConfigError(f"The values must be numbers, got dtype {series.dtype}.",
                          fix="Pass the cost, token or call counts as floats or integers.")
    values = series.astype("float64")
    if np.isinf(values.to_numpy()).any():
        raise ConfigError("The series contains infinite values.", fix="Check the aggregation.")
    negative = values[values < 0]
    if not negative.empty:
        raise ConfigError(
            f"{len(negative)} negative value(s), the first on {negative.index[0]} "
            f"({negative.iloc[0]}); daily cost, tokens and calls cannot be negative.",
            fix="Check the column; refunds or credits belong in a separate series.")
    return values


def _inputs(series: pd.Series, horizon: int, levels: Sequence[float], n_paths: int,
            min_days: int = 2) -> tuple[pd.Series, Floats, tuple[float, ...]]:
    """Everything a public function checks: the filled history, its values, sorted levels."""
    levels_ = _check_args(horizon, levels, n_paths)
    history = _prepare(series, min_days)
    return history, history.to_numpy(dtype=np.float64), levels_


def _check_args(horizon: int, levels: Sequence[float], n_paths: int) -> tuple[float, ...]:
    """Refuse knobs that would give a meaningless forecast rather than a wrong-looking one."""
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ConfigError(f"horizon must be a whole number of days >= 1, got {horizon!r}.",
                          fix="Pass e.g. horizon=14.")
    if not levels or any(not 0.0 < level < 1.0 for level in levels):
        raise ConfigError(f"levels must lie strictly between 0 and 1, got {levels!r}.",
                          fix="Pass e.g. levels=(0.8, 0.95).")
    if n_paths < 2:
        raise ConfigError(f"n_paths must be at least 2, got {n_paths}.", fix="Use n_paths=1000.")
    return tuple(sorted(set(levels)))


def _naive_lag(days: int, season: int) -> int:
    """The season once there is one seasonal difference to learn from, else 1 (naive)."""
    return season if days > season else 1


def _rms(values: Floats) -> float:
    return float(np.sqrt(np.mean(np.square(values))))


def _naive_offsets(resid: Floats, level: float, short: bool) -> tuple[float, float]:
    """Error quantiles one season ahead, from the method's own past errors.

    From two weeks on: empirical quantiles (they keep the skew of spend and any drift the
    baseline misses) by the order-statistic rule p(r+1), "weibull": a new error falls
    between the j-th and k-th of r sorted ones with probability (k-j)/(r+1); numpy's
    default pulls the tails in (80 % intervals covered 0.76 on a seasonal random walk).
    Below two weeks a few differences show no tail at all, so: their RMS times a Student-t
    quantile with one degree of freedom per difference, the textbook widening for a scale
    estimated from r points; so too for a level whose tail the errors seen cannot reach.
    With 10 days (three weekly differences) that is 1.3x (80 %) and 1.6x (95 %) a normal
    interval; with 2 days (one difference) 2.4x and 6.5x.
    """
    tail = (1.0 - level) / 2.0
    # with fewer than 1/tail - 1 errors the tail quantile lies beyond the most extreme one
    # seen (95 % needs 39): the empirical band would stop at the sample's range
    if short or (resid.size + 1) * tail < 1.0:
        half = float(stats.t.ppf(1.0 - tail, df=resid.size)) * _rms(resid)
        return -half, half
    lower, upper = np.quantile(resid, [tail, 1.0 - tail], method="weibull")
    return float(lower), float(upper)


def _seasonal_walk(mean: Floats, errors: Floats, lag: int) -> Floats:
    """Paths of y[t] = y[t - lag] + e[t], the model seasonal naive is optimal for: each
    season ahead adds one more error, the sqrt(k + 1) widening of the intervals."""
    paths = errors.copy()
    for step in range(lag, paths.shape[1]):
        paths[:, step] += paths[:, step - lag]
    return np.asarray(paths + mean, dtype=np.float64)


def _naive_draw(y: Floats, horizon: int, levels: tuple[float, ...], rng: np.random.Generator,
                n_paths: int, season: int = SEASON) -> _Draw:
    """Seasonal naive (naive before a full season) with residual-based intervals and paths.

    Intervals: one-season-ahead error quantiles times sqrt(k + 1) for a day k whole seasons
    ahead (FPP3, section 5.5) rather than sqrt(h / season + 1): week k + 1 reuses values
    whose error compounded k + 1 times. Paths: a bootstrap of the residuals (scaled t draws
    for short histories) through the same seasonal random walk.
    """
    lag = _naive_lag(y.size, season)
    resid = y[lag:] - y[:-lag]
    steps = np.arange(horizon)
    mean = y[y.size - lag + steps % lag]
    widen = np.sqrt(steps // lag + 1.0)
    short = y.size < SHORT_HISTORY_DAYS
    bands: dict[float, tuple[Floats, Floats]] = {}
    for level in levels:
        lower, upper = _naive_offsets(resid, level, short)
        bands[level] = (_clip(mean + lower * widen), _clip(mean + upper * widen))
    shape = (n_paths, horizon)
    errors = _rms(resid) * rng.standard_t(resid.size, shape) if short else rng.choice(resid, shape)
    return _Draw(mean, bands, _clip(_seasonal_walk(mean, errors, lag)))


def _clip(values: Floats) -> Floats:
    return np.clip(values, 0.0, None)


def _fit_ets(y: Floats) -> Any:
    """ETS(A,Ad,A) with a weekly season from two full weeks on, ETS(A,Ad,N) before.

    Additive error since spend can be zero (multiplicative needs y > 0); damped trend since
    growth flattens and an undamped trend compounds over the horizon. One BLAS thread:
    L-BFGS on 13 parameters gains nothing from threads, whose spin-waiting made each fit
    over ten times slower on a busy machine.
    """
    seasonal = y.size >= SHORT_HISTORY_DAYS
    model = ETSModel(y, error="add", trend="add", damped_trend=True,
                     seasonal="add" if seasonal else None,
                     seasonal_periods=SEASON if seasonal else None)
    one_thread = threadpool_limits(1) if threadpool_limits else contextlib.nullcontext()
    with one_thread, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter; bad fits fail the checks below
        return model.fit(disp=False)


def _ets_sigma(result: Any, days: int) -> float:
    """Error scale for the simulation, widened for what the in-sample fit cannot see.

    statsmodels' scale, the in-sample mean squared one-step error, divides by n although
    k parameters (13 with a season: smoothing, damping, initial level, trend, 7 seasonals)
    were fitted to the same data, and treats them as exact. We use scale * (n+k)/(n-k): the
    unbiased SSE/(n-k) times 1 + k/n, the average leverage term of a regression prediction
    interval. In backtests on trend + season + noise, 80 % coverage went from 0.65 to 0.81.
    """
    k = len(result.params)
    if days <= k:
        raise _FitError(f"{days} days cannot support {k} ETS parameters")
    return float(np.sqrt(result.scale * (days + k) / (days - k)))


def _ets_draw(y: Floats, horizon: int, levels: tuple[float, ...], rng: np.random.Generator,
              n_paths: int) -> _Draw:
    """ETS forecast; the fitted model run forward from the end of the data with Gaussian
    errors of the widened scale gives the paths, whose quantiles are the bands."""
    result = _fit_ets(y)
    errors = rng.standard_normal((horizon, n_paths)) * _ets_sigma(result, y.size)
    simulated = result.simulate(horizon, anchor="end", repetitions=n_paths, random_errors=errors)
    paths = _clip(np.asarray(simulated, dtype=np.float64).reshape(horizon, n_paths).T)
    mean = _clip(np.asarray(result.forecast(horizon), dtype=np.float64))
    if not (np.isfinite(mean).all() and np.isfinite(paths).all()):
        raise _FitError("ETS produced non-finite forecasts")
    bands: dict[float, tuple[Floats, Floats]] = {}
    for level in levels:
        tail = (1.0 - level) / 2.0
        bands[level] = (np.quantile(paths, tail, axis=0), np.quantile(paths, 1.0 - tail, axis=0))
    return _Draw(mean, bands, paths)


_PREDICTORS: dict[ModelName, _Predictor] = {"ets": _ets_draw, "seasonal_naive": _naive_draw}


def _origins(days: int, horizon: int, folds: int) -> NDArray[np.int64]:
    """Forecast origins spread evenly over the history, each training on all days before it
    (at least two weeks, as the forecast itself): spread rather than bunched at the end, so
    the score reflects the whole history and not the last fortnight."""
    first, last = SHORT_HISTORY_DAYS, days - horizon
    if folds < 1:
        raise ConfigError(f"folds must be at least 1, got {folds}.", fix="Use e.g. folds=10.")
    if last < first:
        raise ConfigError(
            f"{days} days are too few to backtest a {horizon}-day horizon: each fold needs "
            f"{first} days of training plus the horizon.",
            fix="Use a shorter horizon or wait for more history.")
    count = min(folds, last - first + 1)
    return np.unique(np.linspace(first, last, count).round().astype(np.int64))


def _mase(mae: float, train: Floats) -> float:
    """MAE over the in-sample seasonal-naive MAE (Hyndman & Koehler 2006); a flat history
    (scale 0) scores 0 for a perfect forecast and inf for any other."""
    lag = _naive_lag(train.size, SEASON)
    scale = float(np.mean(np.abs(train[lag:] - train[:-lag])))
    if scale > 0.0:
        return mae / scale
    return 0.0 if mae == 0.0 else float("inf")


def _score(name: ModelName, y: Floats, origins: NDArray[np.int64], horizon: int,
           levels: tuple[float, ...], seed: int, n_paths: int) -> dict[str, Any]:
    """One model over all folds: mean MASE, MAE, coverage. NaN if any fold's fit failed:
    scoring it on the other folds only would compare it with the baseline unfairly."""
    rng = np.random.default_rng(seed)
    mase, mae, hits = [], [], dict.fromkeys(levels, 0)
    for origin in origins:
        train, actual = y[:origin], y[origin:origin + horizon]
        try:
            draw = _PREDICTORS[name](train, horizon, levels, rng, n_paths)
        except _FIT_ERRORS:
            return _row(name, float("nan"), float("nan"), dict.fromkeys(levels, np.nan), 0)
        fold_mae = float(np.mean(np.abs(actual - draw.mean)))
        mae.append(fold_mae)
        mase.append(_mase(fold_mae, train))
        for level, (lower, upper) in draw.bands.items():
            hits[level] += int(np.sum((lower <= actual) & (actual <= upper)))
    total = len(origins) * horizon
    coverage = {level: hits[level] / total for level in levels}
    return _row(name, float(np.mean(mase)), float(np.mean(mae)), coverage, len(origins))


def _row(name: ModelName, mase: float, mae: float, coverage: dict[float, float],
         folds: int) -> dict[str, Any]:
    cover = {f"coverage{_pct(level)}": value for level, value in coverage.items()}
    return {"model": name, "mase": mase, "mae": mae, **cover, "folds": folds}


def _pct(level: float) -> str:
    return f"{level * 100:g}"


def _backtest_values(y: Floats, horizon: int, folds: int, levels: tuple[float, ...], seed: int,
                     n_paths: int, models: Sequence[ModelName] = tuple(_PREDICTORS)
                     ) -> pd.DataFrame:
    origins = _origins(y.size, horizon, folds)
    rows = [_score(name, y, origins, horizon, levels, seed, n_paths) for name in models]
    return pd.DataFrame(rows).set_index("model")


def backtest(series: pd.Series, horizon: int = 7, folds: int = 10, *,
             levels: Sequence[float] = DEFAULT_LEVELS, seed: int = 0, n_paths: int = N_PATHS,
             models: Sequence[ModelName] = ("ets", "seasonal_naive")) -> pd.DataFrame:
    """Rolling-origin evaluation of ETS and seasonal naive on the series itself.

    One row per model (index ``model``): ``mase`` (mean over folds of the MAE divided by
    the in-sample seasonal-naive MAE of the fold's training window, Hyndman & Koehler
    2006), ``mae``, ``coverage<level>`` (share of actual days inside the interval: about
    0.8 for an honest 80 % interval) and ``folds``. A model whose fit fails scores NaN.
    """
    if not models or set(models) - set(_PREDICTORS):
        raise ConfigError(f"Unknown or no models: {models!r}.", fix=f"Use {list(_PREDICTORS)}.")
    _, y, levels_ = _inputs(series, horizon, levels, n_paths)
    return _backtest_values(y, horizon, folds, levels_, seed, n_paths, models)


def _result(history: pd.Series, draw: _Draw, model: ModelName, table: pd.DataFrame | None,
            notes: list[str]) -> Forecast:
    return Forecast(draw.frame(history), model, table, draw.paths, notes, len(history))


def _short_note(days: int, season: int = SEASON) -> str:
    """Say by how much the t-quantile widens the interval (see _naive_offsets)."""
    df = days - _naive_lag(days, season)
    widen80, widen95 = (float(stats.t.ppf(q, df) / stats.norm.ppf(q)) for q in (0.9, 0.975))
    return (f"Only {days} days of history (fewer than {SHORT_HISTORY_DAYS}): too short to fit "
            "a weekly pattern or to backtest, so the seasonal-naive baseline is used, with "
            f"intervals {widen80:.1f}x (80 %) and {widen95:.1f}x (95 %) as wide as normal ones "
            "because their spread comes from very few day-to-day differences.")


def seasonal_naive(series: pd.Series, horizon: int = 14, season: int = SEASON, *,
                   levels: Sequence[float] = DEFAULT_LEVELS, seed: int = 0,
                   n_paths: int = N_PATHS) -> Forecast:
    """The baseline: each future day repeats the same weekday last week.

    With no more than ``season`` days it repeats the last day instead (naive). Intervals
    and paths come from the method's own past errors; see :func:`_naive_draw`.
    """
    if season < 1:
        raise ConfigError(f"season must be at least 1, got {season}.", fix="Use season=7.")
    history, y, levels_ = _inputs(series, horizon, levels, n_paths)
    draw = _naive_draw(y, horizon, levels_, np.random.default_rng(seed), n_paths, season)
    notes = [_short_note(y.size, season)] if y.size < SHORT_HISTORY_DAYS else []
    if _naive_lag(y.size, season) == 1:
        notes.append(f"No more than {season} days: naive forecast (repeat the last day).")
    return _result(history, draw, "seasonal_naive", None, notes)


def ets(series: pd.Series, horizon: int = 14, *, levels: Sequence[float] = DEFAULT_LEVELS,
        seed: int = 0, n_paths: int = N_PATHS) -> Forecast:
    """Damped-trend ETS (weekly season from 14 days on), intervals from sample paths.

    Needs at least 10 days. A failed fit raises statsmodels' or numpy's ValueError /
    ArithmeticError; :func:`forecast` catches those and falls back to the baseline.
    """
    history, y, levels_ = _inputs(series, horizon, levels, n_paths, MIN_ETS_DAYS)
    draw = _ets_draw(y, horizon, levels_, np.random.default_rng(seed), n_paths)
    return _result(history, draw, "ets", None, [])


def _auto_backtest(y: Floats, horizon: int, folds: int, levels: tuple[float, ...], seed: int,
                   n_paths: int, notes: list[str]) -> pd.DataFrame | None:
    """Backtest for the model choice, or None (with a note) if the history is too short.
    Over the forecast's horizon, shortened to fit the history but never below a week."""
    if y.size < SHORT_HISTORY_DAYS:
        notes.append(_short_note(y.size))
        return None
    bt_horizon = min(horizon, y.size - SHORT_HISTORY_DAYS)
    if bt_horizon < min(horizon, SEASON):
        notes.append(f"{y.size} days are too few to backtest ETS against the baseline "
                     f"(needs {SHORT_HISTORY_DAYS + min(horizon, SEASON)}): used the baseline.")
        return None
    if bt_horizon < horizon:
        notes.append(f"Backtested over {bt_horizon} days ahead, not {horizon}: the history "
                     "is too short for the full horizon.")
    return _backtest_values(y, bt_horizon, folds, levels, seed, n_paths)


def _choose(table: pd.DataFrame | None) -> tuple[ModelName, str | None]:
    """Lower backtest MASE wins; ties, failed fits and no backtest go to the baseline."""
    if table is None:
        return "seasonal_naive", None
    scores = table["mase"]
    ets_mase, naive_mase = float(scores.loc["ets"]), float(scores.loc["seasonal_naive"])
    if not np.isfinite(ets_mase):
        return "seasonal_naive", "ETS failed in the backtest: used the seasonal-naive baseline."
    verdict: ModelName = "ets" if ets_mase < naive_mase else "seasonal_naive"
    return verdict, (f"Backtest MASE: ETS {ets_mase:.3f}, seasonal naive {naive_mase:.3f}; "
                     f"chose {verdict}.")


def forecast(series: pd.Series, horizon: int = 14, levels: Sequence[float] = DEFAULT_LEVELS,
             seed: int = 0, *, folds: int = 8, n_paths: int = N_PATHS) -> Forecast:
    """Forecast the next ``horizon`` days with whichever model backtests better.

    Both models are scored by a rolling-origin backtest (``folds`` origins) and the lower
    MASE wins; with fewer than 14 days the widened baseline is used without a backtest.
    Needs at least 2 days. Results are reproducible for a given ``seed``.
    """
    history, y, levels_ = _inputs(series, horizon, levels, n_paths)
    notes: list[str] = []
    table = _auto_backtest(y, horizon, folds, levels_, seed, n_paths, notes)
    model, why = _choose(table)
    if why:
        notes.append(why)
    rng = np.random.default_rng(seed)
    if model == "ets":
        try:
            return _result(history, _ets_draw(y, horizon, levels_, rng, n_paths), model, table,
                           notes)
        except _FIT_ERRORS as error:
            notes.append(f"ETS failed on the full history ({error}): used the baseline.")
    draw = _naive_draw(y, horizon, levels_, rng, n_paths)
    return _result(history, draw, "seasonal_naive", table, notes)


def _days_until(index: pd.DatetimeIndex, period_end: date | str) -> int:
    """How many forecast days fall on or before ``period_end`` (compared in the index's tz)."""
    end = pd.Timestamp(period_end)
    if pd.isna(end):
        raise ConfigError("period_end is not a date.", fix="Pass e.g. '2025-06-30'.")
    if index.tz is not None:
        end = end.tz_localize(index.tz) if end.tz is None else end.tz_convert(index.tz)
    elif end.tz is not None:
        end = end.tz_localize(None)
    if end.normalize() > index[-1]:
        raise ConfigError(f"period_end {end.date()} is past the forecast's last day "
                          f"{index[-1].date()}.",
                          fix="Forecast with a horizon that reaches the end of the period.")
    days = int((index <= end).sum())
    if days == 0:
        raise ConfigError(f"period_end {end.date()} is before the first forecast day.",
                          fix="Pass the end of the current budget period.")
    return days


def exhaustion(forecast: Forecast, spent_so_far: float, limit: float,
               period_end: date | str) -> Exhaustion:
    """Probability, per day up to ``period_end``, that cumulative spend reaches ``limit``.

    Read off the sample paths: a path exhausts the budget once its running total plus
    ``spent_so_far`` reaches ``limit``; paths are never negative, so the probability never
    decreases. ``period_end`` must lie within the forecast's horizon.
    """
    if not (np.isfinite(spent_so_far) and np.isfinite(limit)) or spent_so_far < 0 or limit <= 0:
        raise ConfigError(f"Need spent_so_far >= 0 and limit > 0, got {spent_so_far}, {limit}.",
                          fix="Pass amounts in the same unit as the forecast.")
    index = pd.DatetimeIndex(forecast.frame.index)
    days = _days_until(index, period_end)
    cumulative = spent_so_far + np.cumsum(forecast.paths[:, :days], axis=1)
    p_exhausted = np.mean(cumulative >= limit, axis=0)
    frame = pd.DataFrame({"p_exhausted": p_exhausted,
                          "spend_p50": np.median(cumulative, axis=0)}, index=index[:days])
    reached = np.flatnonzero(p_exhausted >= 0.5)
    median = pd.Timestamp(index[reached[0]]) if reached.size else None
    return Exhaustion(frame, median)
