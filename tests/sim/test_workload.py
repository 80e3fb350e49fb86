"""The synthetic workload: the fitted trace model, and two weeks of agent traffic it writes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devora_lab.events import EventLog
from devora_lab.events.store import EventStore
from devora_lab.llm.pricing import PriceBook
from devora_lab.sim.calls import USERS, variant_for
from devora_lab.sim.traces import (
    DailyProfile,
    EmpiricalDistribution,
    TraceModel,
    fitted_traces,
    normal_cdf,
)
from devora_lab.sim.workload import WorkloadSummary, generate_workload

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = next((p for p in (REPO / "shared" / "data", REPO.parent / "shared" / "data")
                    if p.is_dir()), REPO / "shared" / "data")
END = datetime(2025, 1, 15, tzinfo=timezone.utc)  # a Wednesday midnight
BOOK = PriceBook.default()


def _spearman(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    def ranks(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
        return (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]

    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


# -- the fitted figures and the trace model ----------------------------------------------


def test_shipped_figures_cite_their_sources() -> None:
    fitted = fitted_traces()
    datasets = fitted["source"]["datasets"]
    assert datasets["azure_code"]["licence"] == "CC-BY-4.0"
    assert "Splitwise" in datasets["azure_code"]["citation"]
    assert datasets["azure_code"]["rows"] == 8819
    assert datasets["mooncake"]["licence"] == "Apache-2.0"
    assert "Mooncake" in datasets["mooncake"]["citation"]
    assert datasets["mooncake"]["rows"] == 3993
    assert fitted["source"]["fitted_on"]
    for trace in ("azure_code", "mooncake"):
        for side in ("input_tokens", "output_tokens"):
            dist = fitted["traces"][trace][side]
            assert 0 < dist["lognormal"]["ks_distance"] < 1
            assert {1.0, 5.0, 50.0, 95.0, 99.0, 99.9} <= set(dist["quantiles"]["levels_pct"])
    reuse = fitted["traces"]["mooncake"]["prefix_reuse"]
    assert 0 < reuse["reused_block_share"] < 1
    assert fitted["traces"]["azure_code"]["arrivals"]["rate_per_s"] > 0


def test_empirical_distribution_reproduces_its_knots() -> None:
    quantiles = fitted_traces()["traces"]["azure_code"]["input_tokens"]["quantiles"]
    dist = EmpiricalDistribution.from_quantiles(quantiles)
    np.testing.assert_allclose(dist.ppf(dist.levels), dist.values, rtol=1e-9)
    with pytest.raises(ValueError, match="increase from 0 to 1"):
        EmpiricalDistribution(np.array([0.1, 1.0]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="must not decrease"):
        EmpiricalDistribution(np.array([0.0, 1.0]), np.array([2.0, 1.0]))


def test_normal_cdf() -> None:
    np.testing.assert_allclose(normal_cdf(np.array([-1.959964, 0.0, 1.0])),
                               [0.025, 0.5, 0.841344746], atol=1e-7)


@pytest.mark.parametrize("trace", ["azure_code", "mooncake"])
def test_sampler_reproduces_the_shipped_quantiles_and_correlation(trace: str) -> None:
    figures = fitted_traces()["traces"][trace]
    model = TraceModel.from_fitted(trace)
    inputs, outputs = model.sample_tokens(np.random.default_rng(42), 200_000)
    assert inputs.min() >= 1 and outputs.min() >= 1
    for side, sample in (("input_tokens", inputs), ("output_tokens", outputs)):
        quantiles = figures[side]["quantiles"]
        for level, value in zip(quantiles["levels_pct"], quantiles["values"], strict=True):
            if 5.0 <= level <= 95.0:
                got = float(np.quantile(sample, level / 100))
                assert got == pytest.approx(value, rel=0.04, abs=1.5), (side, level)
    shipped = figures["correlation"]["spearman"]
    sampled = _spearman(inputs, outputs)
    assert np.sign(sampled) == np.sign(shipped)
    assert sampled == pytest.approx(shipped, abs=0.02)


def test_scales_stretch_tokens() -> None:
    model = TraceModel.from_fitted("azure_code")
    base_in, base_out = model.sample_tokens(np.random.default_rng(1), 10_000)
    big_in, big_out = model.sample_tokens(np.random.default_rng(1), 10_000, input_scale=2.0,
                                          output_scale=10.0)
    assert np.median(big_in) == pytest.approx(2 * np.median(base_in), rel=0.01)
    assert np.median(big_out) == pytest.approx(10 * np.median(base_out), rel=0.05)


def test_daily_profile() -> None:
    profile = DailyProfile()
    assert sum(profile.hourly) / 24 == pytest.approx(1.0)
    monday_noon = END.replace(day=13, hour=12).timestamp()
    sunday_noon = END.replace(day=12, hour=12).timestamp()
    monday_3am = END.replace(day=13, hour=3).timestamp()
    values = profile.intensity(np.array([monday_noon, sunday_noon, monday_3am]), monday_noon)
    assert values[0] > 3 * values[1] and values[0] > 5 * values[2]
    with pytest.raises(ValueError, match="24 hourly and 7 weekday"):
        DailyProfile(hourly=(1.0,) * 23)


def test_arrivals_follow_the_profile_and_are_bursty() -> None:
    model = TraceModel.from_fitted("azure_code")
    start = END - timedelta(days=7)
    flat = DailyProfile(hourly=(1.0,) * 24, weekday=(1.0,) * 7, trend_per_day=0.0)
    poisson = model.sample_arrivals(np.random.default_rng(3), start, END, flat, per_day=5000,
                                    burstiness=0.0)
    bursty = model.sample_arrivals(np.random.default_rng(3), start, END, flat, per_day=5000)
    assert poisson.size == pytest.approx(35_000, rel=0.03)
    assert np.all(np.diff(bursty) >= 0)
    assert bursty[0] >= start.timestamp() * 1e6 and bursty[-1] < END.timestamp() * 1e6

    def dispersion(times: np.ndarray[Any, Any]) -> float:
        counts = np.bincount(((times - times[0]) // 60_000_000).astype(np.int64))
        return float(counts.var() / counts.mean())

    assert dispersion(poisson) < 1.3  # Poisson: index of dispersion ~1
    assert dispersion(bursty) > 2.5  # gamma-mixed: 1 + mean * cv2 with the trace's cv2 ~1
    with pytest.raises(ValueError, match="no time zone"):
        model.sample_arrivals(np.random.default_rng(0), start.replace(tzinfo=None), END)


# -- two weeks of traffic ----------------------------------------------------------------


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WorkloadSummary,
                                                                        EventStore]]:
    log = EventLog(tmp_path_factory.mktemp("workload") / "events")
    summary = generate_workload(log, days=14, calls_per_day=3000, seed=0, end=END,
                                progress=False)
    store = log.store()
    yield summary, store
    store.close()
    log.close()


def test_summary_matches_the_log(history: tuple[WorkloadSummary, EventStore]) -> None:
    summary, store = history
    counts = dict(store.rows("SELECT kind, count(*) FROM events GROUP BY kind"))
    assert counts == summary.counts
    assert summary.events == store.count()
    spent = store.scalar("SELECT sum(cost_usd) FROM events WHERE kind IN ('llm.call', 'embedding')")
    assert summary.total_cost_usd == pytest.approx(spent, rel=1e-9)
    assert summary.start == END - timedelta(days=14) and summary.end == END
    assert summary.days == 14 and summary.spike_day is not None
    first, last = store.rows("SELECT min(ts), max(ts) FROM events WHERE kind = 'llm.call'")[0]
    assert summary.start <= first and last <= summary.end + timedelta(minutes=5)
    assert "llm.call" in str(summary)


def test_counts_per_kind_are_plausible(history: tuple[WorkloadSummary, EventStore]) -> None:
    counts = history[0].counts
    calls = counts["llm.call"]
    # 10 weekdays at ~3000 (growing ~1 %/day) and 4 weekend days at ~20 %: ~35,000.
    assert 28_000 < calls < 45_000
    assert counts["cache"] == calls
    assert 0.01 * calls < counts["llm.attempt"] < 0.15 * calls
    assert 0.10 * calls < counts["retrieval"] < 0.30 * calls
    assert counts["embedding"] == counts["retrieval"] + 14  # plus one nightly re-index a day
    assert 10 <= counts["experiment.exposure"] <= len(USERS)
    assert 1 <= counts["budget"] < 100
    assert 2 <= counts["alert"] < 20


def test_transient_faults_retries_and_fallbacks(history: tuple[WorkloadSummary, EventStore]
                                                ) -> None:
    summary, store = history
    rows = store.rows(
        "SELECT CAST(ts AS DATE) = ?, avg((attempt > 1)::INT), sum((fallback_index = 1)::INT) "
        "FROM events WHERE kind = 'llm.call' AND cache_outcome = 'miss' GROUP BY 1",
        [summary.spike_day])
    by_spike = {spike: (retried, fallbacks) for spike, retried, fallbacks in rows}
    assert 0.02 <= by_spike[False][0] <= 0.04  # ~2-4 % of calls hit a transient fault
    assert by_spike[True][0] > by_spike[False][0] * 1.5  # the injected overload
    assert 0 < by_spike[False][1] < 0.02 * 35_000
    errors = dict(store.rows("SELECT http_status, count(*) FROM events "
                             "WHERE kind = 'llm.attempt' AND status = 'error' GROUP BY 1"))
    assert {429, 500, 529, None} <= set(errors)
    timeouts = store.scalar("SELECT count(*) FROM events WHERE kind = 'llm.attempt' "
                            "AND error_type = 'APITimeoutError' AND http_status IS NULL")
    assert timeouts > 0
    moved = store.scalar("SELECT count(*) FROM events WHERE kind = 'llm.call' "
                         "AND fallback_index = 1 AND response_model = request_model")
    assert moved == 0


def test_alerts_fire_on_the_injected_spike(history: tuple[WorkloadSummary, EventStore]) -> None:
    summary, store = history
    alerts = store.rows("SELECT CAST(ts AS DATE), json_extract_string(attributes, '$.state'), "
                        "value, threshold FROM events WHERE kind = 'alert' ORDER BY ts")
    firing = [a for a in alerts if a[1] == "firing"]
    assert firing and firing[0][0] == summary.spike_day
    assert all(value > threshold for _, _, value, threshold in firing)
    assert [a[1] for a in alerts] == ["firing", "resolved"] * (len(alerts) // 2)


def test_model_mix_and_latency(history: tuple[WorkloadSummary, EventStore]) -> None:
    store = history[1]
    share = dict(store.rows("SELECT request_model, count(*) / sum(count(*)) OVER () "
                            "FROM events WHERE kind = 'llm.call' GROUP BY 1"))
    assert set(share) == {"gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet-20241022",
                          "claude-3-haiku-20240307", "local-llama"}
    assert 0.01 < share["local-llama"] < 0.06
    bad = store.scalar(
        "SELECT count(*) FROM events WHERE kind = 'llm.call' AND status = 'ok' AND "
        "(ttft_ms IS NULL OR latency_ms < ttft_ms OR latency_ms <= 0 OR "
        "abs(epoch_us(ts) - epoch_us(started_at)) / 1000.0 - latency_ms > 1)")
    assert bad == 0
    medians = dict(store.rows("SELECT request_model, median(latency_ms) FROM events WHERE "
                              "kind = 'llm.call' AND cache_outcome = 'miss' GROUP BY 1"))
    assert medians["claude-3-haiku-20240307"] < medians["claude-3-5-sonnet-20241022"]
    assert 300 < medians["gpt-4o-mini"] < 10_000


def test_weekly_and_daily_rhythm(history: tuple[WorkloadSummary, EventStore]) -> None:
    store = history[1]
    days = store.rows("SELECT CAST(ts AS DATE) d, isodow(d) > 5, count(*) FROM events "
                      "WHERE kind = 'llm.call' GROUP BY 1 ORDER BY 1")
    weekday = [n for _, weekend, n in days if not weekend]
    weekend = [n for _, weekend, n in days if weekend]
    assert np.mean(weekday) > 2.5 * np.mean(weekend)
    assert np.mean(weekday[-5:]) > np.mean(weekday[:5])  # mild upward trend
    hours = dict(store.rows("SELECT hour(ts), count(*) FROM events WHERE kind = 'llm.call' "
                            "GROUP BY 1"))
    assert hours[14] > 5 * hours[2]


def test_every_priced_call_costs_what_the_price_book_says(
        history: tuple[WorkloadSummary, EventStore]) -> None:
    store = history[1]
    rows = store.rows(
        "SELECT response_model, input_tokens, output_tokens, cached_input_tokens, "
        "cache_creation_input_tokens, cost_status, price_book_version, cache_outcome, cost_usd, "
        "saved_cost_usd FROM events WHERE kind = 'llm.call' AND response_model IS NOT NULL")
    checked = 0
    for model, inputs, outputs, cached, written, status, version, outcome, cost, saved in rows:
        if BOOK.price(model) is None:
            continue
        expected = BOOK.cost(model, inputs, outputs, cached, written)
        assert status == "priced" and version == BOOK.version
        if outcome == "hit":  # served from the cache: nothing billed, the saving recorded
            assert cost == 0.0
            assert saved == pytest.approx(expected, rel=1e-12)
        else:
            assert cost == pytest.approx(expected, rel=1e-12)
            checked += 1
    assert checked > 25_000
    cached = store.scalar("SELECT count(*) FROM events WHERE kind = 'llm.call' "
                          "AND cached_input_tokens > 0 AND cached_input_tokens <= input_tokens")
    creation = store.scalar("SELECT count(*) FROM events WHERE kind = 'llm.call' "
                            "AND cache_creation_input_tokens > 0")
    assert cached > 1000 and creation > 100
    failed = store.rows("SELECT DISTINCT cost_usd FROM events WHERE kind = 'llm.call' "
                        "AND status = 'error' AND request_model <> 'local-llama'")
    assert failed == [(0.0,)]


def test_unknown_model_is_unpriced_never_free(history: tuple[WorkloadSummary, EventStore]
                                              ) -> None:
    summary, store = history
    rows = store.rows("SELECT cost_status, count(*), count(cost_usd) FROM events WHERE "
                      "kind IN ('llm.call', 'llm.attempt') AND response_model = 'local-llama' "
                      "GROUP BY 1")
    assert len(rows) == 1
    status, count, priced = rows[0]
    assert status == "unpriced" and count > 100 and priced == 0
    zero = store.scalar("SELECT count(*) FROM events WHERE request_model = 'local-llama' "
                        "AND coalesce(response_model, 'local-llama') = 'local-llama' "
                        "AND cost_usd IS NOT NULL")
    assert zero == 0
    unpriced = store.scalar("SELECT count(*) FROM events WHERE kind = 'llm.call' "
                            "AND cost_status = 'unpriced'")
    assert unpriced == summary.unpriced_calls


def test_attempts_share_the_request_id_of_their_call(
        history: tuple[WorkloadSummary, EventStore]) -> None:
    store = history[1]
    calls = {request_id: (attempt, status, fallback, model) for request_id, attempt, status,
             fallback, model in store.rows(
                 "SELECT request_id, attempt, status, fallback_index, response_model "
                 "FROM events WHERE kind = 'llm.call' AND attempt > 1")}
    attempts: dict[str, list[tuple[int, str, int, str | None]]] = defaultdict(list)
    for request_id, number, status, fallback, model in store.rows(
            "SELECT request_id, attempt, status, fallback_index, response_model FROM events "
            "WHERE kind = 'llm.attempt' ORDER BY request_id, attempt"):
        attempts[request_id].append((number, status, fallback, model))
    assert set(attempts) == set(calls)
    for request_id, rows in attempts.items():
        count, status, fallback, model = calls[request_id]
        assert [number for number, *_ in rows] == list(range(1, count + 1))
        assert all(row[1] == "error" for row in rows[:-1])
        assert rows[-1][1:3] == (status, fallback)
        if status == "ok":
            assert rows[-1][3] == model
    orphans = store.scalar("SELECT count(*) FROM events a WHERE kind = 'cache' AND NOT EXISTS "
                           "(SELECT 1 FROM events c WHERE c.kind = 'llm.call' "
                           "AND c.request_id = a.request_id AND c.cache_outcome = a.cache_outcome)")
    assert orphans == 0


def test_cache_hits_replay_an_earlier_response(history: tuple[WorkloadSummary, EventStore]
                                               ) -> None:
    store = history[1]
    hits = store.rows(
        "SELECT h.ts, h.started_at, h.latency_ms, h.saved_latency_ms, o.ts, h.input_tokens, "
        "o.input_tokens FROM events h JOIN events o ON o.cache_key = h.cache_key "
        "AND o.kind = 'llm.call' AND o.cache_outcome = 'miss' "
        "WHERE h.kind = 'llm.call' AND h.cache_outcome = 'hit'")
    assert 1000 < len(hits) < 8000
    for _ts, started, latency, saved, original_end, tokens, original_tokens in hits:
        assert original_end < started and tokens == original_tokens
        assert latency < 25 and saved > latency
    attempts = store.scalar("SELECT count(*) FROM events WHERE kind = 'llm.call' "
                            "AND cache_outcome = 'hit' AND attempt IS NOT NULL")
    assert attempts == 0


def test_experiment_assignment_is_sticky(history: tuple[WorkloadSummary, EventStore]) -> None:
    store = history[1]
    variants = store.rows("SELECT user_id, list(DISTINCT variant), min(started_at) FROM events "
                          "WHERE kind = 'llm.call' AND agent = 'reviewer' GROUP BY 1")
    exposures = {user: (variant, ts) for user, variant, ts in store.rows(
        "SELECT user_id, variant, ts FROM events WHERE kind = 'experiment.exposure' "
        "AND experiment = 'review-prompt-v2'")}
    assert len(exposures) == len(variants)
    for user, seen, first in variants:
        assert seen == [variant_for(user)]
        assert exposures[user] == (variant_for(user), first)
    assert {v for v, _ in exposures.values()} == {"control", "treatment"}
    outside = store.scalar("SELECT count(*) FROM events WHERE kind = 'llm.call' "
                           "AND agent <> 'reviewer' AND experiment IS NOT NULL")
    assert outside == 0


def test_retrieval_precedes_architect_calls(history: tuple[WorkloadSummary, EventStore]) -> None:
    store = history[1]
    rows = store.rows(
        "SELECT c.started_at, r.ts, e.ts, e.cost_usd, e.input_tokens FROM events c "
        "JOIN events r ON r.trace_id = c.trace_id AND r.kind = 'retrieval' "
        "JOIN events e ON e.trace_id = c.trace_id AND e.kind = 'embedding' "
        "WHERE c.kind = 'llm.call' AND c.agent = 'architect'")
    assert len(rows) > 1000
    for started, retrieved, embedded, cost, tokens in rows:
        assert embedded <= retrieved < started
        assert cost == pytest.approx(BOOK.cost("text-embedding-3-small", int(tokens), 0))


def test_budget_warnings_follow_spend(history: tuple[WorkloadSummary, EventStore]) -> None:
    store = history[1]
    for user, day, value, threshold in store.rows(
            "SELECT user_id, CAST(ts AS DATE), value, threshold FROM events "
            "WHERE kind = 'budget'"):
        assert value >= threshold
        spent = store.scalar("SELECT sum(cost_usd) FROM events WHERE kind = 'llm.call' "
                             "AND user_id = ? AND CAST(ts AS DATE) = ?", [user, day])
        assert spent >= threshold - 1e-9


# -- determinism and arguments ------------------------------------------------------------


def _dump(root: Path) -> list[tuple[Any, ...]]:
    log = EventLog(root)
    with log.store() as store:
        return store.rows("SELECT * EXCLUDE (date) FROM events ORDER BY event_id")


def test_same_seed_same_history(tmp_path: Path) -> None:
    end = END - timedelta(hours=5)  # a partial first and last day
    summaries = [generate_workload(EventLog(tmp_path / name), days=2, calls_per_day=600,
                                   seed=seed, end=end, progress=False)
                 for name, seed in (("a", 7), ("b", 7), ("c", 8))]
    assert summaries[0] == summaries[1] and summaries[0] != summaries[2]
    first = _dump(tmp_path / "a")
    assert first == _dump(tmp_path / "b")
    assert first != _dump(tmp_path / "c")
    assert len({row[0] for row in first}) == len(first)  # unique event ids


def test_progress_bar_and_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    summary = generate_workload(EventLog(tmp_path / "p"), days=1, calls_per_day=200, end=END)
    assert summary.counts["llm.call"] > 0
    assert "writing workload" in capsys.readouterr().out
    with pytest.raises(ValueError, match="timezone-aware"):
        generate_workload(EventLog(tmp_path / "x"), end=END.replace(tzinfo=None))
    with pytest.raises(ValueError, match="at least 1"):
        generate_workload(EventLog(tmp_path / "x"), days=0)


# -- the fit script -----------------------------------------------------------------------


@pytest.mark.shared_data
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} is absent")
def test_fit_script_reproduces_the_shipped_json(tmp_path: Path) -> None:
    shipped = REPO / "devora_lab" / "sim" / "fitted_traces.json"
    fitted_on = json.loads(shipped.read_text())["source"]["fitted_on"]
    out = tmp_path / "fitted.json"
    subprocess.run([sys.executable, str(REPO / "scripts" / "fit_traces.py"), "--data",
                    str(SHARED_DATA), "--out", str(out), "--fitted-on", fitted_on],
                   check=True, capture_output=True)
    assert out.read_text() == shipped.read_text()
