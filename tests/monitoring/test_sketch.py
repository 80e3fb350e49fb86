"""The overview's quantile sketch: its bound against numpy's exact quantiles.

The bound (``devora_lab.monitoring.sketch``): the sketch interpolates between the
representatives of the same order statistics that ``quantile_cont`` interpolates between,
so for values of one sign the quantile is within ``ALPHA`` relative of the exact one, with
no slack for the interpolation; for mixed signs, within ``ALPHA * ((1-f)|v_j| + f|v_j+1|)``.
Float rounding adds about 1e-13 relative, hence ``ALPHA * (1 + 1e-9)`` below.
"""

from __future__ import annotations

import math
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devora_lab.events import Event, EventKind, EventLog
from devora_lab.monitoring.metrics import overview
from devora_lab.monitoring.sketch import (
    ALPHA,
    GAMMA,
    bin_codes,
    bin_sql,
    quantiles,
    representatives,
)
from devora_lab.monitoring.windows import Window

REL = ALPHA * (1 + 1e-9)
QS = (0.5, 0.95, 0.99)
T0 = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)


def _within(ours: float, exact: float, bound: float) -> bool:
    return abs(ours - exact) <= bound + 1e-300


def _samples(draw: st.DrawFn) -> np.ndarray:
    """Lognormal values (any spread), some repeated (ties), some rounded (more ties)."""
    n = draw(st.integers(1, 300))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    values = rng.lognormal(draw(st.floats(-3, 10)), draw(st.floats(0.01, 3)), n)
    if draw(st.booleans()):
        values = np.round(values, draw(st.integers(0, 2)))
    if draw(st.booleans()):  # heavy ties: draw from a few values
        values = rng.choice(values[: max(1, n // 10)], n)
    if draw(st.booleans()):
        values[rng.random(n) < 0.1] = 0.0
    return values


samples = st.composite(_samples)


@settings(max_examples=300, deadline=None)
@given(samples(), st.integers(1, 12))
def test_sketch_quantiles_are_within_alpha_of_numpy(values: np.ndarray, groups: int) -> None:
    """Per group (tiny groups of one or two values included), every quantile."""
    rng = np.random.default_rng(len(values))
    group = rng.integers(0, groups, len(values))
    codes = bin_codes(values)
    # bins counted per (group, code), as the SQL does, in any order
    pairs, counts = np.unique(np.stack([group, codes]), axis=1, return_counts=True)
    shuffle = rng.permutation(len(counts))
    labels, ours = quantiles(pairs[0][shuffle], pairs[1][shuffle], counts[shuffle], QS)
    assert list(labels) == sorted(set(group.tolist()))
    for row, label in enumerate(labels):
        mine = values[group == label]
        for col, q in enumerate(QS):
            exact = float(np.quantile(mine, q))
            assert _within(ours[row, col], exact, REL * abs(exact)), (label, q, mine)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False), min_size=1,
                max_size=50), st.sampled_from((*QS, 0.0, 0.25, 1.0)))
def test_mixed_signs_keep_the_general_bound(values: list[float], q: float) -> None:
    x = np.sort(np.array(values))
    _, ours = quantiles(np.zeros(len(x)), bin_codes(x), np.ones(len(x)), [q])
    h = q * (len(x) - 1)
    j = math.floor(h)
    f = h - j
    bound = REL * ((1 - f) * abs(x[j]) + f * abs(x[min(j + 1, len(x) - 1)]))
    assert _within(float(ours[0, 0]), float(np.quantile(x, q)), bound + 1e-9 * bound)


@given(st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False))
def test_every_value_is_within_alpha_of_its_representative(value: float) -> None:
    rep = float(representatives(bin_codes([value]))[0])
    assert _within(rep, value, REL * abs(value))
    assert math.copysign(1, rep) == math.copysign(1, value) or value == 0


def test_special_values() -> None:
    codes = bin_codes([0.0, -0.0, math.inf, -math.inf, math.nan, 1.0, GAMMA, GAMMA * 1.0001])
    reps = representatives(codes)
    assert list(reps[:4]) == [0.0, 0.0, math.inf, -math.inf] and math.isnan(reps[4])
    assert codes[5] < codes[6] < codes[7]  # 1 = gamma^0 ends bin 0, gamma ends bin 1
    ordered = [-math.inf, -5.0, -1e-3, 0.0, 1e-3, 5.0, 1e300, math.inf, math.nan]
    assert list(np.argsort(bin_codes(ordered), kind="stable")) == list(range(len(ordered)))
    _, ours = quantiles([0, 0, 1], bin_codes([1.0, math.nan, 2.0]), [1, 1, 1], [0.5, 1.0])
    assert math.isnan(ours[0, 1]) and ours[1, 0] == pytest.approx(2.0, rel=REL)
    labels, empty = quantiles([], [], [], QS)
    assert labels.size == 0 and empty.shape == (0, 3)


def test_sql_bins_equal_numpy_bins() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.lognormal(0, 8, 5_000), -rng.lognormal(0, 8, 100),
                             [0.0, -0.0, 1.0, GAMMA, GAMMA**-3, 1e-300, 1e300, math.inf,
                              -math.inf, math.nan]])
    con = duckdb.connect()
    con.execute("CREATE TABLE t (i INTEGER, x DOUBLE)")
    con.executemany("INSERT INTO t VALUES (?, ?)", [*enumerate(values.tolist()), (-1, None)])
    rows = dict(con.execute(f"SELECT i, {bin_sql('x')} FROM t").fetchall())
    assert rows.pop(-1) is None
    sql = np.array([rows[i] for i in range(len(values))])
    ours = bin_codes(values)
    # ln and the division may round differently: a value on a bin's edge may land either side
    assert (np.abs(sql - ours) <= 1).all() and (sql == ours).mean() > 0.999


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(samples())
def test_overview_quantiles_are_within_alpha(tmp_path: Path, values: np.ndarray) -> None:
    """End to end: totals and per agent (groups of one call included), latency and TTFT
    (TTFT NULL for some calls), against numpy; exactly equal with exact_quantiles=True."""
    root = Path(tempfile.mkdtemp(dir=tmp_path)) / "events"
    agents = ["a", "b", "c", "solo"]
    rows = [(agents[min(i % 7, 3)] if i else "solo2", float(v),
             float(v) / 3 if i % 4 else None) for i, v in enumerate(values)]
    log = EventLog(root)
    for i, (agent, latency, ttft) in enumerate(rows):
        log.write(Event(kind=EventKind.LLM_CALL, ts=T0 + i * timedelta(seconds=1), agent=agent,
                        latency_ms=latency, ttft_ms=ttft))
    log.close()
    window = Window(T0, T0 + timedelta(days=1))
    names = ["requests", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "ttft_p50_ms",
             "ttft_p95_ms", "ttft_p99_ms"]
    with log.store() as store:
        sketched = overview(store, window=window, names=names)
        exact = overview(store, window=window, names=names, exact_quantiles=True)
    by_agent = {a: [r for r in rows if r[0] == a] for a in {r[0] for r in rows}}
    checks = [(sketched.totals.iloc[0], exact.totals.iloc[0], rows)]
    for agent, mine in by_agent.items():
        checks.append((sketched.by_agent.set_index("agent").loc[agent],
                       exact.by_agent.set_index("agent").loc[agent], mine))
    for ours, precise, mine in checks:
        for column, index in (("latency", 1), ("ttft", 2)):
            sample = np.array([r[index] for r in mine if r[index] is not None])
            for q in (50, 95, 99):
                name = f"{column}_p{q}_ms"
                if sample.size == 0:
                    assert math.isnan(ours[name]) and math.isnan(precise[name])
                    continue
                truth = float(np.quantile(sample, q / 100))
                assert precise[name] == pytest.approx(truth, rel=1e-12, abs=1e-12), name
                assert _within(float(ours[name]), truth, REL * abs(truth) + 1e-12), name


def test_many_groups_take_the_sorted_path() -> None:
    """Over 4M (group, bin) cells the quantiles come from a sort, not a dense table."""
    rng = np.random.default_rng(11)
    values = rng.lognormal(5, 4, 30_000)
    group = rng.integers(0, 3_000, len(values))
    codes = bin_codes(values)
    assert len(set(group.tolist())) * len(set(codes.tolist())) > 4_000_000
    labels, ours = quantiles(group, codes, np.ones(len(values), dtype=np.int64), QS)
    for row in range(0, len(labels), 97):
        mine = values[group == labels[row]]
        for col, q in enumerate(QS):
            exact = float(np.quantile(mine, q))
            assert _within(ours[row, col], exact, REL * exact)
