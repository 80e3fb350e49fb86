"""Operational metrics on constructed logs, checked against numbers computed by hand.

The main log holds ten ``llm.call`` events, one every five minutes from 10:01 (UTC) on
Monday 2 March 2026, whose columns were chosen so every metric has a small known answer,
plus events of other kinds that must never count. Quantiles are linear interpolation
between order statistics (``quantile_cont``): for values v1..vn, position q * (n - 1).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devora_lab.errors import ConfigError
from devora_lab.events import Event, EventKind, EventLog
from devora_lab.events.dimensions import DIMENSIONS
from devora_lab.events.store import EventStore
from devora_lab.monitoring.metrics import (
    METRICS,
    OVERVIEW_METRICS,
    error_breakdown,
    metrics,
    overview,
    resolve_window,
    selection,
    trend,
)
from devora_lab.monitoring.sketch import ALPHA
from devora_lab.monitoring.windows import Window, parse_duration

if TYPE_CHECKING:
    from conftest import MakeLLMCall

T0 = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)  # a Monday
HOUR = Window(T0, T0 + timedelta(hours=1))
MINUTE = timedelta(minutes=1)

_ERRORS = {3: "RateLimitError", 7: "Timeout", 8: "RateLimitError"}
_ATTEMPTS = {1: 2, 3: 3, 5: 2, 2: None}  # attempt None reads as the first attempt
_CACHE = ("hit", "miss", "semantic_hit", "bypass", "bypass", "miss", "hit", None, "store",
          "miss")
_SAVED = {0: 0.5, 2: 0.25, 6: 0.125, 1: 8.0}  # the miss's saved cost must not count


def _model(i: int) -> str:
    return "gpt-4o" if i < 5 else "claude-sonnet-4" if i < 9 else "house-model"


def _call(i: int) -> Event:
    """Call ``i`` of the main log (see the module docstring and the expected values below)."""
    model = _model(i)
    fields: dict[str, Any] = {
        "kind": EventKind.LLM_CALL,
        "ts": T0 + MINUTE + i * 5 * MINUTE,
        "request_model": "gpt-4o" if i == 5 else model,  # 5 fell back to claude
        "response_model": None if i == 4 else model,  # 4 got no response model: request's
        "provider": {"gpt-4o": "openai", "claude-sonnet-4": "anthropic"}.get(model, "local"),
        "agent": "planner" if i % 2 == 0 else "coder",
        "user_id": "u1" if i < 3 else "u2" if i < 7 else "u3",
        "template_name": "review",
        "template_version": "1" if i < 5 else "2",
        "experiment": "exp",
        "variant": "a" if i % 2 == 0 else "b",
        "latency_ms": 100.0 * (i + 1),
        "ttft_ms": 10.0 * (i + 1) if i % 2 == 0 else None,  # streamed: the even ones
        "streamed": i % 2 == 0,
        "status": "error" if i in _ERRORS else "ok",
        "error_type": _ERRORS.get(i),
        "attempt": _ATTEMPTS.get(i, 1),
        "fallback_index": {5: 1, 9: 2}.get(i, 0),
        "cache_outcome": _CACHE[i],
        "saved_cost_usd": _SAVED.get(i),
        "input_tokens": 100 * (i + 1),
        "output_tokens": 10 * (i + 1),
        "cached_input_tokens": 64 if i in (0, 6) else 0,
        "cost_usd": None if i == 9 else (i + 1) / 8,
        "cost_status": "unpriced" if i == 9 else "priced",
    }
    return Event(**{name: value for name, value in fields.items() if value is not None})


def _noise() -> list[Event]:
    """Events of other kinds inside the window, with every column a call could count by."""
    common: dict[str, Any] = {"ts": T0 + 30 * MINUTE, "status": "error", "error_type": "Boom",
                              "latency_ms": 1e6, "request_model": "gpt-4o",
                              "provider": "openai", "agent": "planner", "cost_usd": 100.0,
                              "input_tokens": 10**6, "cache_outcome": "hit", "attempt": 9}
    return [Event(kind=kind, **common) for kind in
            (EventKind.LLM_ATTEMPT, EventKind.CACHE, EventKind.EMBEDDING, EventKind.BUDGET)]


def _open(root: Path, events: list[Event]) -> EventLog:
    log = EventLog(root)
    for event in events:
        log.write(event)
    log.close()
    return log


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    with _open(tmp_path / "events", [*(_call(i) for i in range(10)), *_noise()]).store() as s:
        yield s


@pytest.fixture
def empty(tmp_path: Path) -> Iterator[EventStore]:
    with EventLog(tmp_path / "empty").store() as s:
        yield s


def _row(frame: pd.DataFrame, key: str | None = None, value: str | None = None) -> pd.Series:
    if key is None:
        assert len(frame) == 1
        return frame.iloc[0]
    rows = frame[frame[key] == value]
    assert len(rows) == 1, f"{key}={value}: {len(rows)} rows"
    return rows.iloc[0]


def _check(row: pd.Series, expected: dict[str, float]) -> None:
    for name, value in expected.items():
        got = float(row[name])
        if math.isnan(value):
            assert math.isnan(got), f"{name}: {got}, expected NaN"
        else:
            assert got == pytest.approx(value, rel=1e-12, abs=1e-12), f"{name}: {got} != {value}"


# The ten calls: latency 100..1000 ms; ttft 10, 30, 50, 70, 90 (even calls); errors 3, 7, 8;
# attempts 2, 3, 2 for calls 1, 3, 5 (4 retries, 3 calls retried); fallbacks 5 and 9;
# cache lookups 0 1 2 5 6 9 (bypass, store and NULL are none), hits 0 2 6; tokens
# 100*(i+1) in, 10*(i+1) out; cost (i+1)/8 but call 9 unpriced; first call 10:01, last 10:46.
ALL = {
    "requests": 10, "ok": 7, "errors": 3, "error_rate": 0.3, "success_rate": 0.7,
    "latency_avg_ms": 550.0,
    "latency_p50_ms": 550.0,  # position 4.5: (500 + 600) / 2
    "latency_p95_ms": 955.0,  # position 8.55: 900 + 0.55 * 100
    "latency_p99_ms": 991.0,  # position 8.91
    "ttft_avg_ms": 50.0, "ttft_p50_ms": 50.0,
    "ttft_p95_ms": 86.0,  # of 10 30 50 70 90, position 3.8: 70 + 0.8 * 20
    "ttft_p99_ms": 89.2,  # position 3.96
    "input_tokens": 5500, "output_tokens": 550, "cached_input_tokens": 128,
    "retries": 4, "retry_rate": 0.3, "fallbacks": 2, "fallback_rate": 0.2,
    "cache_lookups": 6, "cache_hits": 3, "cache_hit_rate": 0.5,  # 3/8 if bypass counted
    "cost_usd": 45 / 8, "cost_per_request_usd": 45 / 80, "unpriced_calls": 1,
    "saved_cost_usd": 0.875,
}


def test_every_metric_over_the_whole_log(store: EventStore) -> None:
    row = _row(metrics(store, list(METRICS)))
    _check(row, ALL)
    span = 45 * 60.0  # an open window: from the first call (10:01) to the last (10:46)
    _check(row, {"requests_per_s": 10 / span, "tokens_per_s": 6050 / span,
                 "output_tokens_per_s": 550 / span})


def test_rates_over_a_bounded_window_divide_by_its_length(store: EventStore) -> None:
    row = _row(metrics(store, list(METRICS), window=HOUR))
    _check(row, ALL)
    _check(row, {"requests_per_s": 10 / 3600, "tokens_per_s": 6050 / 3600,
                 "output_tokens_per_s": 550 / 3600})


def test_integer_metrics_are_integers(store: EventStore) -> None:
    frame = metrics(store, ["requests", "errors", "ok", "fallbacks", "unpriced_calls"])
    assert all(dtype == np.int64 for dtype in frame.dtypes)


def test_a_window_selects_its_calls(store: EventStore) -> None:
    # [10:30, 11:00): calls 6..9 (10:31 10:36 10:41 10:46)
    expected = {"requests": 4, "errors": 2, "error_rate": 0.5,
                "latency_p50_ms": 850.0, "latency_p95_ms": 985.0,  # 900 + 0.85 * 100
                "ttft_p50_ms": 80.0,  # calls 6 and 8: 70, 90
                "retries": 0, "fallbacks": 1, "cache_hit_rate": 0.5,  # lookups 6 9, hit 6
                "cost_usd": (7 + 8 + 9) / 8, "unpriced_calls": 1,
                "requests_per_s": 4 / 1800, "tokens_per_s": 110 * (7 + 8 + 9 + 10) / 1800}
    half = Window(T0 + 30 * MINUTE, T0 + 60 * MINUTE)
    for frame in (metrics(store, window=half),
                  metrics(store, since=half.since, until=half.until),
                  metrics(store, window="30m", now=T0 + 60 * MINUTE)):
        _check(_row(frame), expected)


def test_a_window_is_half_open(store: EventStore) -> None:
    at_first_call = T0 + MINUTE
    assert _row(metrics(store, ["requests"], since=at_first_call))["requests"] == 10
    assert _row(metrics(store, ["requests"], until=at_first_call))["requests"] == 0


def test_a_calendar_window_in_a_time_zone(store: EventStore) -> None:
    now = T0 + timedelta(hours=1)  # 11:00 UTC is 12:00 in Berlin: today began at 23:00 UTC
    row = _row(metrics(store, ["requests", "requests_per_s"], window="today", now=now,
                       tz="Europe/Berlin"))
    _check(row, {"requests": 10, "requests_per_s": 10 / (12 * 3600)})
    assert _row(metrics(store, ["requests"], window="yesterday", now=now))["requests"] == 0


def test_by_model_uses_the_requested_model_when_none_answered(store: EventStore) -> None:
    frame = metrics(store, list(METRICS), by=["model"], window=HOUR)
    assert list(frame.columns[:2]) == ["model", "requests"]
    assert list(frame["model"]) == ["gpt-4o", "claude-sonnet-4", "house-model"]  # busiest first
    _check(_row(frame, "model", "gpt-4o"), {  # calls 0..4 (4 without a response model)
        "requests": 5, "errors": 1, "error_rate": 0.2, "latency_avg_ms": 300.0,
        "latency_p50_ms": 300.0, "latency_p95_ms": 480.0,  # position 3.8: 400 + 0.8 * 100
        "ttft_p50_ms": 30.0,  # 10 30 50
        "retries": 3, "fallbacks": 0, "cache_hit_rate": 2 / 3,  # lookups 0 1 2, hits 0 2
        "cost_usd": 15 / 8, "unpriced_calls": 0, "requests_per_s": 5 / 3600,
        "tokens_per_s": 110 * 15 / 3600})
    _check(_row(frame, "model", "claude-sonnet-4"), {  # calls 5..8
        "requests": 4, "errors": 2, "error_rate": 0.5, "latency_p50_ms": 750.0,
        "latency_p99_ms": 897.0,  # position 2.97: 800 + 0.97 * 100
        "ttft_p50_ms": 80.0, "retries": 1, "fallbacks": 1, "cache_hit_rate": 0.5,
        "cost_usd": 30 / 8, "unpriced_calls": 0})
    _check(_row(frame, "model", "house-model"), {
        "requests": 1, "errors": 0, "latency_p95_ms": 1000.0, "ttft_p50_ms": math.nan,
        "cache_hit_rate": 0.0, "cost_usd": 0.0, "unpriced_calls": 1})
    requested = metrics(store, ["requests"], by=["requested_model"])
    assert _row(requested, "requested_model", "gpt-4o")["requests"] == 6


def test_by_template_version_variant_and_two_dimensions(store: EventStore) -> None:
    versions = metrics(store, ["requests", "errors", "latency_avg_ms"], by=["template_version"])
    _check(_row(versions, "template_version", "review@1"),
           {"requests": 5, "errors": 1, "latency_avg_ms": 300.0})
    _check(_row(versions, "template_version", "review@2"),
           {"requests": 5, "errors": 2, "latency_avg_ms": 800.0})
    variants = metrics(store, ["requests", "error_rate"], by=["variant"])
    _check(_row(variants, "variant", "exp:a"), {"requests": 5, "error_rate": 0.2})  # 8
    _check(_row(variants, "variant", "exp:b"), {"requests": 5, "error_rate": 0.4})  # 3, 7
    both = metrics(store, ["requests", "errors"], by=["provider", "agent"]).set_index(
        ["provider", "agent"])
    assert both["requests"].to_dict() == {
        ("openai", "planner"): 3, ("openai", "coder"): 2, ("anthropic", "planner"): 2,
        ("anthropic", "coder"): 2, ("local", "coder"): 1}
    assert both.loc[("anthropic", "coder"), "errors"] == 1  # call 7
    users = metrics(store, ["requests"], by=["user"]).set_index("user")["requests"].to_dict()
    assert users == {"u1": 3, "u2": 4, "u3": 3}


def test_filters_one_value_and_a_list(store: EventStore) -> None:
    coder = _row(metrics(store, ["requests", "errors", "latency_p50_ms"],
                         filters={"agent": "coder"}))  # calls 1 3 5 7 9
    _check(coder, {"requests": 5, "errors": 2, "latency_p50_ms": 600.0})
    late = _row(metrics(store, ["requests", "errors", "cost_usd"],
                        filters={"model": ["claude-sonnet-4", "house-model"]}))  # calls 5..9
    _check(late, {"requests": 5, "errors": 2, "cost_usd": 30 / 8})
    both = metrics(store, ["requests"], by=["agent"],
                   filters={"user": ("u1", "u3"), "variant": "exp:a"})  # calls 0 2 8
    assert both.set_index("agent")["requests"].to_dict() == {"planner": 3}
    assert _row(metrics(store, ["requests"], filters={"agent": "nobody"}))["requests"] == 0


@pytest.mark.parametrize("bad", [{"agent": []}, {"agent": 3}, {"agent": ["coder", None]}])
def test_filters_need_strings(store: EventStore, bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="filter agent"):
        metrics(store, filters=bad)


def test_unknown_names_are_config_errors_naming_the_valid_ones(store: EventStore) -> None:
    with pytest.raises(ConfigError, match="latency_p95") as metric:
        metrics(store, ["requests", "latency_p95"])
    assert metric.value.fix is not None
    assert all(name in metric.value.fix for name in METRICS)
    with pytest.raises(ConfigError, match="none given"):
        metrics(store, [])
    for call in (lambda: metrics(store, by=["modle"]),
                 lambda: metrics(store, filters={"modle": "x"}),
                 lambda: trend(store, by=["modle"]),
                 lambda: error_breakdown(store, by=["modle"])):
        with pytest.raises(ConfigError, match="modle") as dimension:
            call()
        assert dimension.value.fix is not None
        assert all(name in dimension.value.fix for name in DIMENSIONS)
    with pytest.raises(ConfigError, match="window"):
        metrics(store, window="fortnight")
    with pytest.raises(ConfigError, match="duration"):
        trend(store, bucket="0m")


@pytest.mark.parametrize("window", ["24h", HOUR])
def test_a_window_and_since_or_until_conflict(store: EventStore, window: str | Window) -> None:
    for bounds in ({"since": T0}, {"until": T0}, {"since": T0, "until": T0 + MINUTE}):
        with pytest.raises(ConfigError, match="either a window or since/until"):
            metrics(store, window=window, **bounds)
        with pytest.raises(ConfigError, match="either a window or since/until"):
            resolve_window(window, **bounds)


def test_selection_binds_values_as_parameters() -> None:
    where, params = selection(HOUR, {"agent": ["a'; DROP TABLE x; --", "b"]})
    assert "DROP" not in where
    assert params == ["llm.call", HOUR.since, HOUR.until, "a'; DROP TABLE x; --", "b"]


# -- trend ------------------------------------------------------------------------------------


def test_trend_buckets_are_aligned_and_empty_ones_filled(store: EventStore) -> None:
    window = Window(T0 - 50 * MINUTE, T0 + 100 * MINUTE)  # 09:10 to 11:40
    frame = trend(store, ["requests", "errors", "error_rate", "latency_p50_ms",
                          "latency_avg_ms", "cost_usd", "requests_per_s"],
                  bucket="30m", window=window)
    hours = [bucket.strftime("%H:%M") for bucket in frame["bucket"]]
    assert hours == ["09:00", "09:30", "10:00", "10:30", "11:00", "11:30"]
    assert str(frame["bucket"].dt.tz) == "UTC"
    assert list(frame["requests"]) == [0, 0, 6, 4, 0, 0]  # calls 0..5 and 6..9
    assert list(frame["errors"]) == [0, 0, 1, 2, 0, 0]
    assert list(frame["cost_usd"]) == [0, 0, 21 / 8, 24 / 8, 0, 0]
    ten, half_past = frame.iloc[2], frame.iloc[3]
    _check(ten, {"error_rate": 1 / 6, "latency_p50_ms": 350.0, "latency_avg_ms": 350.0,
                 "requests_per_s": 6 / 1800})
    _check(half_past, {"error_rate": 0.5, "latency_p50_ms": 850.0})
    quiet = frame.iloc[[0, 1, 4, 5]]
    assert quiet[["error_rate", "latency_p50_ms", "latency_avg_ms"]].isna().all().all()
    assert (quiet["requests_per_s"] == 0).all()


def test_trend_daily_and_weekly_buckets(store: EventStore) -> None:
    days = trend(store, ["requests"], bucket="1d", window=Window(T0 - timedelta(days=2), T0
                                                                 + timedelta(days=1)))
    assert [b.strftime("%m-%d %H:%M") for b in days["bucket"]] == [
        "02-28 00:00", "03-01 00:00", "03-02 00:00", "03-03 00:00"]
    assert list(days["requests"]) == [0, 0, 10, 0]
    weeks = trend(store, ["requests"], bucket="1w", window="30d", now=T0 + timedelta(days=3))
    assert all(bucket.weekday() == 0 and bucket.hour == 0 for bucket in weeks["bucket"])
    assert weeks["requests"].sum() == 10


def test_trend_over_an_open_window_has_only_busy_buckets(store: EventStore) -> None:
    frame = trend(store, ["requests"], bucket="15m", window=None)
    assert [b.strftime("%H:%M") for b in frame["bucket"]] == ["10:00", "10:15", "10:30",
                                                               "10:45"]
    assert list(frame["requests"]) == [3, 3, 3, 1]


def test_trend_by_a_dimension_fills_every_group(store: EventStore) -> None:
    frame = trend(store, ["requests", "error_rate"], bucket="30m", by=["agent"],
                  window=Window(T0, T0 + 90 * MINUTE))
    assert list(frame.columns) == ["bucket", "agent", "requests", "error_rate"]
    got = {(b.strftime("%H:%M"), agent): n
           for b, agent, n in frame[["bucket", "agent", "requests"]].itertuples(index=False)}
    assert got == {("10:00", "planner"): 3, ("10:00", "coder"): 3,  # 0 2 4 / 1 3 5
                   ("10:30", "planner"): 2, ("10:30", "coder"): 2,  # 6 8 / 7 9
                   ("11:00", "planner"): 0, ("11:00", "coder"): 0}
    rates = frame.set_index([frame["bucket"].dt.strftime("%H:%M"), "agent"])["error_rate"]
    assert rates[("10:00", "coder")] == pytest.approx(1 / 3)  # call 3
    assert rates[("10:30", "planner")] == pytest.approx(0.5)  # call 8
    assert math.isnan(rates[("11:00", "coder")])
    assert frame["bucket"].is_monotonic_increasing


# -- error breakdown --------------------------------------------------------------------------


def test_error_breakdown_share_and_rate(store: EventStore) -> None:
    frame = error_breakdown(store, window=HOUR)
    assert list(frame.columns) == ["error_type", "errors", "share", "rate"]
    assert list(frame["error_type"]) == ["RateLimitError", "Timeout"]  # most frequent first
    assert list(frame["errors"]) == [2, 1]
    assert list(frame["share"]) == pytest.approx([2 / 3, 1 / 3])
    assert list(frame["rate"]) == pytest.approx([0.2, 0.1])


def test_error_breakdown_per_group(store: EventStore) -> None:
    frame = error_breakdown(store, by=["model"], window=None).set_index(["model", "error_type"])
    assert frame["errors"].to_dict() == {("claude-sonnet-4", "RateLimitError"): 1,
                                         ("claude-sonnet-4", "Timeout"): 1,
                                         ("gpt-4o", "RateLimitError"): 1}
    assert frame["share"].to_dict() == pytest.approx({("claude-sonnet-4", "RateLimitError"): 0.5,
                                                      ("claude-sonnet-4", "Timeout"): 0.5,
                                                      ("gpt-4o", "RateLimitError"): 1.0})
    assert frame["rate"].to_dict() == pytest.approx({("claude-sonnet-4", "RateLimitError"): 0.25,
                                                     ("claude-sonnet-4", "Timeout"): 0.25,
                                                     ("gpt-4o", "RateLimitError"): 0.2})
    coder = error_breakdown(store, window=None, filters={"agent": "coder"})  # 3 and 7 of 5
    assert coder.set_index("error_type")["rate"].to_dict() == pytest.approx(
        {"RateLimitError": 0.2, "Timeout": 0.2})


# -- overview: the one-scan query must equal the separate calls ---------------------------------


#: The overview's sketched quantiles: within ALPHA relative of the exact ones (the bound of
#: ``devora_lab.monitoring.sketch``: no interpolation slack for values of one sign), plus
#: float rounding.
_SKETCH_REL = ALPHA * (1 + 1e-9)
_QUANTILE_COLUMNS = [m for m in METRICS if {"latency_q", "ttft_q"} & set(METRICS[m].needs)]


def _same(ours: pd.DataFrame, theirs: pd.DataFrame, keys: list[str], *,
          exact_quantiles: bool = True) -> None:
    if keys:
        ours, theirs = (f.sort_values(keys, kind="stable").reset_index(drop=True)
                        for f in (ours, theirs))
    if not exact_quantiles:
        sketched = [c for c in _QUANTILE_COLUMNS if c in theirs.columns]
        for column in sketched:
            mine, exact = (f[column].to_numpy(np.float64) for f in (ours, theirs))
            assert np.array_equal(np.isnan(mine), np.isnan(exact)), column
            both = ~np.isnan(exact)
            assert (np.abs(mine[both] - exact[both])
                    <= _SKETCH_REL * np.abs(exact[both]) + 1e-12).all(), column
        ours, theirs = ours.drop(columns=sketched), theirs.drop(columns=sketched)
    pd.testing.assert_frame_equal(ours, theirs, check_exact=False, rtol=1e-12, atol=1e-12)


def _check_overview(store: EventStore, **window: Any) -> None:
    for exact in (False, True):
        _check_overview_once(store, exact, **window)


def _check_overview_once(store: EventStore, exact: bool, **window: Any) -> None:
    view = overview(store, exact_quantiles=exact, **window)
    _same(view.totals, metrics(store, **window), [], exact_quantiles=exact)
    for part, name in ((view.by_model, "model"), (view.by_provider, "provider"),
                       (view.by_agent, "agent")):
        _same(part, metrics(store, by=[name], **window), [name], exact_quantiles=exact)
        assert part["requests"].is_monotonic_decreasing
    seconds = view.window.seconds
    if seconds is None:  # over the calls' span
        first, last = store.rows("SELECT min(ts), max(ts) FROM events WHERE kind = 'llm.call'")[0]
        seconds = 0.0 if first is None else (last - first).total_seconds()
    bucket = "5m" if seconds <= 6 * 3600 else "1h" if seconds <= 4 * 86_400 else "1d"
    _same(view.trend, trend(store, OVERVIEW_METRICS, bucket=bucket, **window), [],
          exact_quantiles=exact)
    _same(view.errors, error_breakdown(store, **window), [])


def test_overview_equals_the_separate_calls(store: EventStore) -> None:
    _check_overview(store, window=HOUR)
    _check_overview(store, window=None)
    _check_overview(store, window="today", now=T0 + 2 * MINUTE)
    view = overview(store, window=HOUR, bucket="15m", filters={"agent": "coder"})
    assert list(view.trend["requests"]) == [1, 2, 1, 1]  # 1 / 3 5 / 7 / 9
    assert view.totals.loc[0, "requests"] == 5
    assert view.window == HOUR


def test_overview_on_a_varied_log(tmp_path: Path, make_llm_call: MakeLLMCall) -> None:
    """200 calls over four days with NULLs in several dimensions: every part must agree."""
    rng = np.random.default_rng(7)
    events = []
    for i in range(200):
        overrides: dict[str, Any] = {
            "ts": T0 + timedelta(minutes=int(rng.integers(0, 4 * 24 * 60))),
            "latency_ms": float(rng.lognormal(6, 0.7)),
            "ttft_ms": float(rng.lognormal(5, 0.5)) if i % 3 else None,
            "attempt": int(rng.integers(1, 4)), "fallback_index": int(rng.integers(0, 2)),
            "cache_outcome": rng.choice(["hit", "miss", "bypass", "semantic_hit"]).item(),
            "agent": None if i % 11 == 0 else ("coder" if i % 2 else "planner"),
            "provider": None if i % 17 == 0 else make_llm_call(i).provider}
        if i % 13 == 0:
            overrides.update(response_model=None, cost_usd=None, cost_status="unpriced")
        events.append(make_llm_call(i, **overrides))
    with _open(tmp_path / "events", events).store() as varied:
        _check_overview(varied, window=Window(T0, T0 + timedelta(days=5)))
        _check_overview(varied, window=Window(T0, T0 + timedelta(days=2)))
        _check_overview(varied, window=None)


# -- nothing to count -------------------------------------------------------------------------


def test_an_empty_log(empty: EventStore) -> None:
    row = _row(metrics(empty, list(METRICS)))
    _check(row, {"requests": 0, "errors": 0, "error_rate": math.nan, "latency_p50_ms": math.nan,
                 "latency_avg_ms": math.nan, "cost_usd": 0.0, "cache_hit_rate": math.nan,
                 "requests_per_s": math.nan, "input_tokens": 0, "unpriced_calls": 0})
    assert metrics(empty, by=["model"]).empty
    assert list(metrics(empty, ["requests"], by=["model"]).columns) == ["model", "requests"]
    assert list(trend(empty, bucket="1h", window=HOUR)["requests"]) == [0]
    assert trend(empty, by=["model"], window=HOUR).empty
    assert trend(empty, window=None).empty
    assert error_breakdown(empty, window=None).empty
    view = overview(empty, window=None)
    assert view.totals.loc[0, "requests"] == 0
    assert view.by_model.empty and view.trend.empty and view.errors.empty
    _check_overview(empty, window=HOUR)


def test_a_window_without_calls(store: EventStore) -> None:
    later = Window(T0 + timedelta(hours=2), T0 + timedelta(hours=3))
    row = _row(metrics(store, list(METRICS), window=later))
    _check(row, {"requests": 0, "error_rate": math.nan, "latency_p95_ms": math.nan,
                 "requests_per_s": 0.0, "tokens_per_s": 0.0, "cost_usd": 0.0})
    assert metrics(store, by=["agent"], window=later).empty
    assert list(trend(store, ["requests"], bucket="30m", window=later)["requests"]) == [0, 0]
    assert error_breakdown(store, window=later).empty
    view = overview(store, window=later)
    assert view.totals.loc[0, "requests"] == 0
    assert (view.trend["requests"] == 0).all() and len(view.trend) == 12


def test_only_other_kinds_count_for_nothing(tmp_path: Path) -> None:
    with _open(tmp_path / "events", _noise()).store() as noise:
        row = _row(metrics(noise, list(METRICS), window=HOUR))
        _check(row, {"requests": 0, "errors": 0, "cost_usd": 0.0, "retries": 0,
                     "cache_lookups": 0, "input_tokens": 0})
        assert error_breakdown(noise, window=HOUR).empty


def test_a_single_call_over_an_open_window_has_no_rate(tmp_path: Path) -> None:
    with _open(tmp_path / "events", [_call(0)]).store() as one:
        row = _row(metrics(one, ["requests", "requests_per_s", "latency_p99_ms"]))
        _check(row, {"requests": 1, "requests_per_s": math.nan, "latency_p99_ms": 100.0})


# -- quantiles against numpy on any sample ----------------------------------------------------


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.floats(0.0, 1e5, allow_nan=False).map(lambda x: round(x, 3)), min_size=1,
                max_size=30))
def test_latency_quantiles_match_numpy_linear(tmp_path: Path, latencies: list[float]) -> None:
    root = Path(tempfile.mkdtemp(dir=tmp_path)) / "events"  # a fresh log per example
    events = [Event(kind=EventKind.LLM_CALL, ts=T0 + i * MINUTE, latency_ms=value)
              for i, value in enumerate(latencies)]
    with _open(root, events).store() as sample:
        row = _row(metrics(sample, ["latency_avg_ms", "latency_p50_ms", "latency_p95_ms",
                                    "latency_p99_ms"]))
    values = np.array(latencies)
    expected = {"latency_avg_ms": values.mean(),
                **{f"latency_p{q}_ms": np.quantile(values, q / 100) for q in (50, 95, 99)}}
    for name, value in expected.items():
        assert float(row[name]) == pytest.approx(float(value), rel=1e-9, abs=1e-9), name


@pytest.mark.parametrize("bucket", ["1s", "7m", "1h", "1.5h", "1d", "1w"])
def test_buckets_align_as_duckdb_time_bucket(tmp_path: Path, bucket: str) -> None:
    """Buckets are computed with integer arithmetic; before 2000 (the origin) and before
    1970 (negative epoch) too, they must start where DuckDB's time_bucket starts them."""
    moments = [datetime(1969, 7, 20, 20, 17, 40, 123456, tzinfo=timezone.utc),
               datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
               datetime(2000, 1, 3, tzinfo=timezone.utc), T0 + 7 * MINUTE]
    events = [Event(kind=EventKind.LLM_CALL, ts=moment, latency_ms=1.0) for moment in moments]
    with _open(tmp_path / "events", events).store() as log:
        ours = list(trend(log, ["requests"], bucket=bucket, window=None)["bucket"])
        step = parse_duration(bucket)
        theirs = [row[0] for row in log.rows(
            "SELECT DISTINCT time_bucket(to_microseconds(?), ts) FROM events ORDER BY 1",
            [int(step.total_seconds() * 1_000_000)])]
    assert [pd.Timestamp(b) for b in ours] == [pd.Timestamp(b) for b in theirs]
