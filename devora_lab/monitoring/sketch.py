"""Quantiles with a guaranteed relative error from log-bucketed counts (DDSketch).

The construction of Masson, Rim and Lee (DDSketch, VLDB 2019): a positive value ``x`` falls
in bin ``k = ceil(ln(x) / ln(gamma))`` with ``gamma = (1 + a) / (1 - a)``, i.e. in
``(gamma^(k-1), gamma^k]``, and is represented by ``2 * gamma^k / (gamma + 1)``, which is
within ``a`` relative of every value of the bin. Here ``a = ALPHA = 0.005`` (±0.5 %).

Values are binned in SQL (``bin_sql``, one integer code per value, so bins are counted by
a ``GROUP BY``); the codes are added up per group and the quantiles are read from the
counts (``quantiles``) with the definition of ``quantile_cont``: linear interpolation
between order statistics at position ``q * (n - 1)``, applied to the representatives.

The bound. The code is monotone in the value (zero, negative values mirrored, see
``bin_sql``), so the i-th smallest representative is the representative ``r(v_i)`` of the
i-th smallest value ``v_i``. With ``h = q * (n - 1)``, ``j = floor(h)``, ``f = h - j``, the
exact quantile is ``Q = (1 - f) v_j + f v_(j+1)`` and ours is
``Q' = (1 - f) r(v_j) + f r(v_(j+1))``, so
``|Q' - Q| <= a * ((1 - f) |v_j| + f |v_(j+1)|)``, which is ``a * |Q|`` when ``v_j`` and
``v_(j+1)`` have the same sign (latencies: never negative): the interpolation adds no error
of its own, and the bound is ``a`` relative (plus float rounding, about 1e-13). Zero is
its own bin, exactly 0; NULLs are not counted (as ``quantile_cont`` skips them); NaN sorts
last and ±inf are kept as themselves, as in DuckDB. Subnormal values (below 2.2e-308) lose
the bound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["ALPHA", "GAMMA", "bin_codes", "bin_sql", "quantiles", "ranked_quantiles",
           "representatives"]

#: The guaranteed relative error of a quantile (for values of one sign).
ALPHA: Final = 0.005
GAMMA: Final = (1 + ALPHA) / (1 - ALPHA)
_LN_GAMMA: Final = math.log(GAMMA)
#: Codes: 0 for zero, ``k + _OFFSET`` for x > 0 (k is about -75,000 to 71,000 for doubles),
#: ``-(k(|x|) + _OFFSET)`` for x < 0, ``±_INF`` for ±inf and ``_NAN`` for NaN.
_OFFSET: Final = 100_000
_INF: Final = 999_999
_NAN: Final = 1_000_000


def bin_sql(column: str) -> str:
    """A DuckDB expression: the integer bin code of ``column`` (NULL for NULL)."""
    k = f"ceil(ln(abs({column})) / {_LN_GAMMA!r})::INTEGER + {_OFFSET}"
    return (f"CASE WHEN {column} IS NULL THEN NULL WHEN isnan({column}) THEN {_NAN} "
            f"WHEN isinf({column}) THEN sign({column}) * {_INF} "
            f"WHEN {column} > 0 THEN {k} WHEN {column} < 0 THEN -({k}) ELSE 0 END")


def bin_codes(values: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """The codes of ``bin_sql`` computed in numpy (for tests and in-memory data)."""
    x = np.asarray(values, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.ceil(np.log(np.abs(x)) / _LN_GAMMA)
    finite = np.isfinite(x) & (x != 0)
    k = np.where(finite, k, 0).astype(np.int64) + _OFFSET
    codes = np.where(x > 0, k, -k)
    codes = np.where(x == 0, 0, codes)
    codes = np.where(np.isinf(x), np.sign(np.nan_to_num(x, nan=0.0)).astype(np.int64) * _INF,
                     codes)
    return np.where(np.isnan(x), _NAN, codes).astype(np.int64)


def representatives(codes: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The value each code stands for: ``2 gamma^k / (gamma + 1)``, signed; 0, ±inf, NaN."""
    c = np.asarray(codes, dtype=np.int64)
    k = np.minimum(np.abs(c) - _OFFSET, _OFFSET).astype(np.float64)
    with np.errstate(over="ignore"):  # 2 gamma^k / (gamma + 1) without overflowing gamma^k
        out = np.sign(c) * np.exp(k * _LN_GAMMA + math.log(2.0 / (GAMMA + 1.0)))
    out = np.where(c == 0, 0.0, out)
    out = np.where(np.abs(c) == _INF, np.copysign(np.inf, c), out)
    return np.where(c == _NAN, np.nan, out).astype(np.float64)


def quantiles(groups: npt.ArrayLike, codes: npt.ArrayLike, counts: npt.ArrayLike,
              qs: Sequence[float]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Quantiles ``qs`` per group from bin counts (rows of group, code, count, any order;
    a group's code may repeat). Returns the distinct groups (integer labels, ascending) and
    a (groups, len(qs)) array; ``quantile_cont``'s definition on the representatives."""
    labels, group = np.unique(np.asarray(groups, dtype=np.int64), return_inverse=True)
    present, rank = np.unique(np.asarray(codes, dtype=np.int64), return_inverse=True)
    return labels, ranked_quantiles(group.ravel(), len(labels), rank.ravel(),
                                    representatives(present), counts, qs)


def ranked_quantiles(group: npt.NDArray[np.int64], groups: int, rank: npt.NDArray[np.int64],
                     values: npt.NDArray[np.float64], counts: npt.ArrayLike,
                     qs: Sequence[float]) -> npt.NDArray[np.float64]:
    """``quantiles`` with the groups numbered 0..groups-1 and the bins by the rank of their
    code among ``values`` (the representatives of the distinct codes, ascending)."""
    n = np.asarray(counts, dtype=np.int64)
    bins = len(values)
    out = np.full((groups, len(qs)), np.nan)
    if groups == 0 or bins == 0:
        return out
    if groups * bins <= 4_000_000:  # a dense (group, bin) table: no sort
        table = np.bincount(group * bins + rank, weights=n, minlength=groups * bins)
        cum = table.reshape(groups, bins).cumsum(axis=1)
        total = cum[:, -1].astype(np.int64)

        def at(index: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
            found: npt.NDArray[np.float64] = values[np.minimum(
                (cum <= index[:, None]).sum(axis=1), bins - 1)]
            return found
    else:
        order = np.lexsort((rank, group))
        g, r, c = group[order], rank[order], np.cumsum(n[order])
        total = np.bincount(g, weights=n[order], minlength=groups).astype(np.int64)
        before = np.concatenate(([0], np.cumsum(total)))[:-1]

        def at(index: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
            found: npt.NDArray[np.float64] = values[r[np.minimum(
                np.searchsorted(c, before + index, side="right"), len(r) - 1)]]
            return found
    some = total > 0
    for i, q in enumerate(qs):
        h = q * (total - 1)
        j = np.floor(h).astype(np.int64)
        frac = h - j
        lo, hi = at(j), at(np.minimum(j + 1, total - 1))
        with np.errstate(invalid="ignore"):
            out[:, i] = np.where(some, np.where(frac > 0, lo + frac * (hi - lo), lo), np.nan)
    return out
