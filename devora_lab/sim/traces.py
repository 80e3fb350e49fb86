"""Sampling token lengths and arrival times from figures fitted to public LLM traces.

The figures come from ``fitted_traces.json`` (written by ``scripts/fit_traces.py`` from the
Azure 2023 code trace and the Mooncake trace; see its ``source`` section for citations and
licences). Token lengths are drawn from the *empirical* quantiles, not from the lognormal
fit: real prompt lengths are clipped at context limits and heavy-tailed in ways a lognormal
misses (its KS distance is in the JSON). Input and output lengths are drawn jointly through
a Gaussian copula, so their rank correlation matches the trace.

Arrivals are a Cox process: a Poisson process whose intensity follows a daily profile
(hour of day, day of week, trend) and is multiplied per window by a gamma factor whose
variance is the trace's intensity variance, so bursts are as bursty as in production.

>>> import numpy as np
>>> model = TraceModel.from_fitted("azure_code")
>>> inputs, outputs = model.sample_tokens(np.random.default_rng(0), 1000)
>>> len(inputs), int(inputs.min()) >= 1
(1000, True)
"""

from __future__ import annotations

import importlib.resources
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "DailyProfile",
    "EmpiricalDistribution",
    "TraceModel",
    "fitted_traces",
    "normal_cdf",
]

_FITTED: Final = "fitted_traces.json"
_US_PER_S: Final = 1_000_000
_DAY_S: Final = 86_400

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@cache
def _load_fitted() -> str:
    return importlib.resources.files(__package__ or "devora_lab.sim").joinpath(
        _FITTED).read_text(encoding="utf-8")


def fitted_traces() -> dict[str, Any]:
    """The shipped fitted figures as a fresh dict (``source`` and ``traces`` sections)."""
    data: dict[str, Any] = json.loads(_load_fitted())
    return data


_erf = np.vectorize(math.erf, otypes=[np.float64])


def normal_cdf(z: FloatArray) -> FloatArray:
    """Standard normal CDF, elementwise (exact, via ``math.erf``; no scipy needed)."""
    return np.asarray(0.5 * (1.0 + _erf(np.asarray(z, dtype=np.float64) / math.sqrt(2.0))),
                      dtype=np.float64)


@dataclass(frozen=True)
class EmpiricalDistribution:
    """A positive distribution given by quantiles; sampled by inverse-CDF interpolation.

    Interpolation is linear in ``log(value)`` between knots (values ``<= 0`` linearly), so
    each shipped quantile is reproduced exactly and heavy tails stay heavy between knots.
    """

    levels: FloatArray  # cumulative probabilities, 0..1, increasing, first 0 and last 1
    values: FloatArray  # the quantiles at those levels, non-decreasing

    def __post_init__(self) -> None:
        if self.levels.shape != self.values.shape or self.levels.size < 2:
            raise ValueError("levels and values must be equally long, at least 2")
        if self.levels[0] != 0.0 or self.levels[-1] != 1.0 or np.any(np.diff(self.levels) <= 0):
            raise ValueError("levels must increase from 0 to 1")
        if np.any(np.diff(self.values) < 0):
            raise ValueError("quantile values must not decrease")

    @classmethod
    def from_quantiles(cls, quantiles: Mapping[str, Sequence[float]]) -> EmpiricalDistribution:
        """From a ``{"levels_pct": [...], "values": [...]}`` section of the fitted JSON."""
        levels = np.asarray(quantiles["levels_pct"], dtype=np.float64) / 100.0
        return cls(levels, np.asarray(quantiles["values"], dtype=np.float64))

    def ppf(self, u: FloatArray) -> FloatArray:
        """The quantile function at probabilities ``u`` (0..1)."""
        if np.all(self.values > 0):
            return np.asarray(np.exp(np.interp(u, self.levels, np.log(self.values))),
                              dtype=np.float64)
        return np.asarray(np.interp(u, self.levels, self.values), dtype=np.float64)

    def sample(self, rng: np.random.Generator, n: int) -> FloatArray:
        """``n`` independent draws."""
        return self.ppf(rng.random(n))

    def quantile(self, q: float) -> float:
        """One quantile, e.g. ``quantile(0.5)`` for the median."""
        return float(self.ppf(np.asarray([q], dtype=np.float64))[0])


def _default_hourly() -> tuple[float, ...]:
    # A team spread over Europe and the US east coast: a morning and an afternoon peak
    # (10:00 and 15:00 UTC), a lunch dip, quiet nights.
    hours = np.arange(24) + 0.5
    shape = (0.06 + np.exp(-0.5 * ((hours - 10.0) / 2.2) ** 2)
             + 1.15 * np.exp(-0.5 * ((hours - 15.0) / 2.6) ** 2))
    return tuple(float(x) for x in shape / shape.mean())


@dataclass(frozen=True)
class DailyProfile:
    """Relative arrival intensity by hour of day (UTC), day of week and a growth trend.

    ``hourly`` is normalised to mean 1, so a day whose ``weekday`` weight is 1 receives
    ``per_day`` arrivals on average (times the trend). ``weekday`` starts on Monday.
    ``trend_per_day`` is compound daily growth from ``trend_origin`` (the start of the
    sampled range when ``None``).
    """

    hourly: tuple[float, ...] = field(default_factory=_default_hourly)
    weekday: tuple[float, ...] = (1.0, 1.06, 1.04, 1.0, 0.86, 0.24, 0.18)
    trend_per_day: float = 0.012
    trend_origin: datetime | None = None

    def __post_init__(self) -> None:
        if len(self.hourly) != 24 or len(self.weekday) != 7:
            raise ValueError("a daily profile needs 24 hourly and 7 weekday weights")
        if min(self.hourly) < 0 or min(self.weekday) < 0:
            raise ValueError("profile weights must not be negative")
        mean = sum(self.hourly) / 24
        if mean <= 0:
            raise ValueError("hourly weights must not all be zero")
        object.__setattr__(self, "hourly", tuple(h / mean for h in self.hourly))

    def intensity(self, epoch_s: FloatArray, origin_s: float) -> FloatArray:
        """Relative intensity (mean 1 on a weight-1 day) at Unix times ``epoch_s``."""
        if self.trend_origin is not None:
            origin_s = _epoch_s(self.trend_origin)
        hour = ((epoch_s % _DAY_S) // 3600).astype(np.int64)
        # 1970-01-01 was a Thursday (weekday 3).
        weekday = ((epoch_s // _DAY_S).astype(np.int64) + 3) % 7
        growth = (1.0 + self.trend_per_day) ** ((epoch_s - origin_s) / _DAY_S)
        hourly = np.asarray(self.hourly)[hour]
        daily = np.asarray(self.weekday)[weekday]
        return np.asarray(hourly * daily * growth, dtype=np.float64)


def _epoch_s(moment: datetime) -> float:
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no time zone; pass an aware datetime")
    return moment.astimezone(timezone.utc).timestamp()


@dataclass(frozen=True)
class TraceModel:
    """Joint token lengths and bursty arrivals of one fitted trace.

    ``copula_r`` is the Gaussian-copula correlation that reproduces the trace's Spearman
    rank correlation between input and output length; ``intensity_cv2`` the squared
    coefficient of variation of the arrival intensity over ``window_s``-second windows.
    """

    name: str
    input_tokens: EmpiricalDistribution
    output_tokens: EmpiricalDistribution
    copula_r: float
    spearman: float
    rate_per_s: float
    intensity_cv2: float
    window_s: int = 60

    @classmethod
    def from_fitted(cls, trace: str = "azure_code", fitted: Mapping[str, Any] | None = None,
                    *, window_s: int = 60) -> TraceModel:
        """The model of ``trace`` ("azure_code" or "mooncake") from the shipped figures."""
        traces = (fitted if fitted is not None else fitted_traces())["traces"]
        if trace not in traces:
            raise KeyError(f"no fitted trace {trace!r}; known: {', '.join(sorted(traces))}")
        figures = traces[trace]
        arrivals = figures["arrivals"]
        return cls(
            name=trace,
            input_tokens=EmpiricalDistribution.from_quantiles(figures["input_tokens"]["quantiles"]),
            output_tokens=EmpiricalDistribution.from_quantiles(
                figures["output_tokens"]["quantiles"]),
            copula_r=float(figures["correlation"]["gaussian_copula_r"]),
            spearman=float(figures["correlation"]["spearman"]),
            rate_per_s=float(arrivals["rate_per_s"]),
            intensity_cv2=float(arrivals["windows_s"][str(window_s)]["intensity_cv2"]),
            window_s=window_s,
        )

    def sample_uniforms(self, rng: np.random.Generator, n: int) -> tuple[FloatArray, FloatArray]:
        """``n`` pairs of correlated uniforms from the Gaussian copula."""
        z = rng.standard_normal((2, n))
        r = self.copula_r
        z_out = r * z[0] + math.sqrt(max(1.0 - r * r, 0.0)) * z[1]
        return normal_cdf(z[0]), normal_cdf(z_out)

    def sample_tokens(self, rng: np.random.Generator, n: int, *, input_scale: float = 1.0,
                      output_scale: float = 1.0) -> tuple[IntArray, IntArray]:
        """``n`` (input, output) token counts, jointly, each at least 1.

        The scales stretch the trace to another workload (an agent writing whole components
        produces longer outputs than code completion) while keeping shape and correlation.
        """
        u_in, u_out = self.sample_uniforms(rng, n)
        inputs = np.maximum(np.rint(self.input_tokens.ppf(u_in) * input_scale), 1)
        outputs = np.maximum(np.rint(self.output_tokens.ppf(u_out) * output_scale), 1)
        return inputs.astype(np.int64), outputs.astype(np.int64)

    def sample_arrivals(self, rng: np.random.Generator, start: datetime, end: datetime,
                        daily_profile: DailyProfile | None = None, *,
                        per_day: float | None = None, burstiness: float = 1.0) -> IntArray:
        """Sorted arrival times in ``[start, end)`` as Unix microseconds (int64).

        ``per_day`` is the mean number of arrivals on a day of profile weight 1 (default:
        the trace's own rate around the clock). ``burstiness`` scales the fitted intensity
        variance: 0 gives a plain inhomogeneous Poisson process, 1 the trace's burstiness.
        """
        profile = daily_profile if daily_profile is not None else DailyProfile()
        start_s, end_s = _epoch_s(start), _epoch_s(end)
        if end_s <= start_s:
            return np.empty(0, dtype=np.int64)
        rate_per_s = (per_day / _DAY_S) if per_day is not None else self.rate_per_s
        edges = np.arange(start_s, end_s, self.window_s, dtype=np.float64)
        widths = np.minimum(edges + self.window_s, end_s) - edges
        expected = rate_per_s * widths * profile.intensity(edges + widths / 2, start_s)
        cv2 = max(self.intensity_cv2 * burstiness, 0.0)
        if cv2 > 0:
            expected = expected * rng.gamma(1.0 / cv2, cv2, size=expected.size)
        counts = rng.poisson(expected)
        offsets = rng.random(int(counts.sum()))
        times = np.repeat(edges, counts) + offsets * np.repeat(widths, counts)
        micros = np.floor(times * _US_PER_S).astype(np.int64)
        return np.sort(micros)
