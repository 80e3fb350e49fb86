"""The notebook topic views: shared pieces, costs and cache.

Chart builders are checked on small constructed inputs through their vega-lite spec
(marks, encodings, data), so a test says what a reader sees without rendering; the few
functions that query go against a small synthetic workspace (``build_workspace``, also
used by the experiments/RAG tests and the notebook smoke test).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from devora_lab.cache.analysis import CacheAnalysis, Policy, compare_policies, prefix_reuse
from devora_lab.costs.budgets import Budget
from devora_lab.costs.forecast import exhaustion, forecast
from devora_lab.costs.recommend import Recommendation
from devora_lab.costs.registry import BudgetRegistry
from devora_lab.costs.workbench import BudgetForecast, Costs
from devora_lab.experiments.model import Experiment, Variant
from devora_lab.experiments.registry import ExperimentRegistry
from devora_lab.notebook.views import Note, cache, costs, open_scope, render
from devora_lab.notebook.views._common import clean
from devora_lab.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]
EXPERIMENT = "review-prompt-v2"  # the experiment the synthetic workload runs


def build_workspace(root: Path, *, rag: bool = True) -> Workspace:
    """Three days of synthetic traffic (~1,100 events), the workload's experiment
    registered and running, two budgets, and (``rag``) the project's docs indexed with the
    hashing embedder (offline, fast): every piece the four notebooks present."""
    from devora_lab.rag.ingest import Indexer
    from devora_lab.sim.workload import generate_workload

    root.mkdir(parents=True, exist_ok=True)
    (root / "devora.toml").write_text('[rag]\nembedding_model = "hashing"\n')
    workspace = Workspace(root).ensure()
    log = workspace.event_log()
    generate_workload(log, days=3, calls_per_day=300, seed=7, progress=False)
    log.close()
    registry = ExperimentRegistry(workspace.experiments_dir)
    registry.create(Experiment(
        name=EXPERIMENT, hypothesis="the v2 review prompt on gpt-4o succeeds more often",
        variants=(Variant("control", model="gpt-4o-mini"), Variant("treatment", model="gpt-4o")),
        primary_metric="success_rate", guardrails=("p95_latency_ms", "cost_usd"),
        min_samples=50))
    registry.start(EXPERIMENT)
    budgets = BudgetRegistry(root / "budgets.json")
    budgets.set(Budget(name="team-monthly", limit_usd=20.0, period="monthly"))
    budgets.set(Budget(name="per-user", limit_usd=1.0, scope="user", match="*"))
    if rag:
        embeddings = workspace.embeddings(None)
        try:
            Indexer(workspace.chunk_store(), embeddings).index(
                [REPO / "README.md", REPO / "docs"], progress=False)
        finally:
            embeddings.close()
    return workspace


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return build_workspace(tmp_path_factory.mktemp("views") / "ws", rag=False)


def spec(chart: Any) -> dict[str, Any]:
    assert not isinstance(chart, Note), chart.text
    result: dict[str, Any] = chart.to_dict()
    return result


def values(chart_spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The inline rows of a spec (altair keeps them in ``datasets``)."""
    return [row for rows in chart_spec.get("datasets", {}).values() for row in rows]


def breakdown_frame(groups: int = 3) -> pd.DataFrame:
    return pd.DataFrame({
        "model": [f"m{i}" for i in range(groups - 1)] + [None],
        "calls": [10] * groups, "ok_calls": [9] * groups, "errors": [1] * groups,
        "input_tokens": [100] * groups, "output_tokens": [10] * groups,
        "cached_input_tokens": [0] * groups, "cost_usd": [float(groups - i) for i in range(groups)],
        "unpriced_calls": [0] * (groups - 1) + [3], "cost_per_success_usd": [0.1] * groups,
        "share": [1 / groups] * groups})


# ---------------------------------------------------------------------------- shared


def test_open_scope_maps_parameters_to_filters(tmp_path: Path) -> None:
    now = datetime(2026, 1, 15, tzinfo=timezone.utc)
    scope = open_scope(tmp_path, "7d", model="gpt-4o", user="ana", now=now)
    assert scope.filters == {"model": "gpt-4o", "user": "ana"}
    assert scope.query == {"since": now - timedelta(days=7), "until": now,
                           "filters": {"model": "gpt-4o", "user": "ana"}}
    assert scope.days == 7.0
    assert "model = gpt-4o" in scope.describe()
    assert open_scope(tmp_path, "all").days == 30.0


def test_note_renders_as_markdown() -> None:
    note = Note("no index yet")
    assert note._repr_markdown_() == "> **Note.** no index yet"
    assert str(note) == "no index yet"


def test_clean_makes_infinities_missing() -> None:
    frame = pd.DataFrame({"x": [1.0, np.inf, -np.inf], "n": pd.array([1, None, 3], "Int64")})
    out = clean(frame)
    assert out["x"].isna().tolist() == [False, True, True]
    assert out["n"].dtype == "float64"


def test_render_sends_charts_to_show(monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[Any] = []
    monkeypatch.setattr("devora_lab.notebook.display.show", shown.append)
    chart = costs.breakdown_chart(breakdown_frame(), "model")
    render(chart)
    assert shown == [chart]


# ---------------------------------------------------------------------------- costs


def test_top_groups_folds_the_tail_into_other() -> None:
    frame = costs.top_groups(breakdown_frame(15), "model", 12)
    assert len(frame) == 13
    other = frame.iloc[-1]
    assert other["model"] == "(other)"
    assert other["cost_usd"] == pytest.approx(1 + 2 + 3)
    assert other["unpriced_calls"] == 3


def test_breakdown_chart_bars_with_unpriced_in_red() -> None:
    s = spec(costs.breakdown_chart(breakdown_frame(), "model"))
    assert s["mark"]["type"] == "bar"
    assert s["encoding"]["y"]["field"] == "model"
    assert s["encoding"]["x"]["field"] == "cost_usd"
    assert "unpriced_calls" in s["encoding"]["color"]["condition"]["test"]
    assert {t["field"] for t in s["encoding"]["tooltip"]} >= {"calls", "share",
                                                              "unpriced_calls"}
    assert [row["model"] for row in values(s)] == ["m0", "m1", "(none)"]
    assert isinstance(costs.breakdown_chart(breakdown_frame().iloc[0:0], "model"), Note)


def test_daily_chart_stacks_days_with_a_legend_selection() -> None:
    frame = pd.DataFrame({"day": [date(2026, 1, 1)] * 2 + [date(2026, 1, 2)] * 2,
                          "agent": ["coder", "reviewer"] * 2, "cost_usd": [1.0, 2.0, 3.0, 4.0],
                          "calls": [1, 2, 3, 4]})
    s = spec(costs.daily_chart(frame, "agent"))
    assert s["encoding"]["color"]["field"] == "agent"
    assert s["encoding"]["y"]["aggregate"] == "sum"
    assert s["params"][0]["bind"] == "legend"
    assert len(values(s)) == 4


def test_reprice_as_models_skips_embeddings_and_unpriced(workspace: Workspace) -> None:
    scope = open_scope(workspace, "all")
    frame = costs.reprice_as_models(Costs(workspace), ["gpt-4o", "gpt-4o-2024-08-06",
                                                      "text-embedding-3-small", "local-llama",
                                                      "gpt-4o-mini"], **scope.query)
    assert sorted(frame["as_model"]) == ["gpt-4o", "gpt-4o-mini"]
    assert frame["repriced_cost_usd"].is_monotonic_increasing
    assert (frame["recorded_cost_usd"] > 0).all()
    s = spec(costs.reprice_chart(frame))
    bars, rule = s["layer"]
    assert bars["encoding"]["x"]["field"] == "repriced_cost_usd"
    assert rule["mark"]["type"] == "rule"


def _daily(days: int = 28) -> pd.Series:
    index = pd.date_range("2026-01-01", periods=days, freq="D", name="day")
    return pd.Series(10 + 3 * np.sin(np.arange(days) * 2 * np.pi / 7), index=index, name="cost")


def test_forecast_chart_draws_history_mean_and_both_bands() -> None:
    history = _daily()
    result = BudgetForecast(forecast(history, 7, n_paths=200), history)
    s = spec(costs.forecast_chart(result))
    marks = [layer["mark"]["type"] for layer in s["layer"]]
    assert marks == ["area", "area", "line", "line"]
    assert (s["layer"][0]["encoding"]["y"]["field"], s["layer"][0]["encoding"]["y2"]["field"]) \
        == ("lo95", "hi95")
    assert s["layer"][1]["encoding"]["y2"]["field"] == "hi80"
    note = costs.forecast_note(result)
    assert note is not None and "Model:" in note.text


def test_forecast_or_note_on_an_empty_log(tmp_path: Path) -> None:
    note = costs.forecast_or_note(Costs(Workspace(tmp_path)))
    assert isinstance(note, Note)
    assert note.text.startswith("No forecast")
    assert costs.forecast_chart(note) is note
    assert costs.forecast_note(note) is None  # the chart's note already says why


def test_exhaustion_chart_and_table() -> None:
    history = _daily(14)
    fc = forecast(history, 10, n_paths=300)
    budget = Budget(name="month", limit_usd=120.0, period="monthly")
    out = exhaustion(fc, 30.0, 120.0, fc.frame.index[-1].date())
    forecasts: dict[str, BudgetForecast | Note] = {
        "month": BudgetForecast(fc, history, budget, 30.0, out),
        "each-user": Note("per user")}
    s = spec(costs.exhaustion_chart(forecasts))
    line = s["layer"][0]
    assert line["encoding"]["y"]["field"] == "p_exhausted"
    assert line["encoding"]["y"]["scale"]["domain"] == [0, 1]
    assert {row["budget"] for row in values(s) if "budget" in row} == {"month"}
    table = costs.exhaustion_table(forecasts)
    assert table is not None
    assert table["budget"].tolist() == ["month", "each-user"]
    assert table.loc[0, "p_exhausted_by_period_end"] == pytest.approx(
        out.frame["p_exhausted"].iloc[-1])
    assert isinstance(costs.exhaustion_chart({"x": Note("n")}), Note)
    assert costs.exhaustion_table({}) is None


def test_budget_forecasts_forecast_fixed_budgets_only(workspace: Workspace) -> None:
    found = costs.budget_forecasts(Costs(workspace))
    assert isinstance(found["per-user"], Note)
    assert isinstance(found["team-monthly"], BudgetForecast)


def test_budget_status_chart_rules_at_80_and_100_percent() -> None:
    status = pd.DataFrame({"budget": ["a", "b"], "key": ["global", "user=x"],
                           "period": ["daily"] * 2, "limit_usd": [10.0, 5.0],
                           "spent_usd": [9.0, 1.0], "remaining_usd": [1.0, 4.0],
                           "share_used": [0.9, 0.2], "hard": [True, False]})
    s = spec(costs.budget_status_chart(status))
    assert s["layer"][0]["encoding"]["x"]["field"] == "share_used"
    assert [row["x"] for row in values(s) if "x" in row] == [0.8, 1.0]
    assert isinstance(costs.budget_status_chart(pd.DataFrame()), Note)


def test_recommendations_table_chart_and_evidence() -> None:
    recs = [Recommendation("response_cache", "Cache repeats", 12.5, {"share": 0.25},
                           "repeats"),
            Recommendation("top_spenders", "Review user a", 0.0,
                           {"dimension": "user", "top": [{"user": "a", "cost_usd": 2.0},
                                                         {"user": "b", "cost_usd": 1.0}]})]
    table = costs.recommendations_table(recs)
    assert table.columns.tolist() == ["kind", "title", "monthly_saving_usd", "rationale"]
    s = spec(costs.recommendations_chart(recs))
    assert s["encoding"]["x"]["field"] == "monthly_saving_usd"
    evidence = costs.evidence_table(recs[1])
    assert evidence["evidence"].tolist() == ["dimension", "top[0]", "top[1]"]
    assert evidence["value"].iloc[1] == "user=a, cost_usd=2"
    assert isinstance(costs.recommendations_chart([]), Note)


# ---------------------------------------------------------------------------- cache


def _trend() -> pd.DataFrame:
    buckets = pd.date_range("2026-01-01", periods=3, freq="h", tz="UTC")
    return pd.DataFrame({"bucket": list(buckets) * 2, "agent": ["a"] * 3 + ["b"] * 3,
                         "requests": [10] * 6, "cache_lookups": [4, 0, 4, 4, 4, 4],
                         "cache_hits": [1, 0, 2, 0, 1, 4],
                         "cache_hit_rate": [0.25, np.nan, 0.5, 0.0, 0.25, 1.0],
                         "saved_cost_usd": [0.1] * 6})


def test_hit_rate_chart_drops_buckets_without_lookups() -> None:
    s = spec(cache.hit_rate_chart(_trend()))
    assert s["mark"]["type"] == "line"
    assert s["encoding"]["y"]["field"] == "cache_hit_rate"
    assert len(values(s)) == 5
    grouped = spec(cache.hit_rate_chart(_trend(), by="agent"))
    assert grouped["encoding"]["color"]["field"] == "agent"
    assert grouped["params"][0]["bind"] == "legend"
    empty = _trend().assign(cache_lookups=0)
    assert isinstance(cache.hit_rate_chart(empty), Note)


def test_hit_rate_views_over_a_workspace(workspace: Workspace) -> None:
    scope = open_scope(workspace, "all")
    with scope.store() as store:
        by_model = cache.hit_rate_by(store, scope, "model")
        saved = cache.savings_by_day(store, scope)
        trend = cache.hit_rate_trend(store, scope, bucket="1d")
    assert set(cache.HIT_METRICS) <= set(by_model.columns)
    assert spec(cache.hit_rate_bars(by_model, "model"))["encoding"]["x"]["field"] \
        == "cache_hit_rate"
    assert saved.columns.tolist() == ["day", "hits", "saved_cost_usd", "saved_seconds"]
    assert saved["hits"].sum() == trend["cache_hits"].sum()
    both = spec(cache.savings_chart(saved))
    assert [p["encoding"]["y"]["field"] for p in both["hconcat"]] == ["saved_cost_usd",
                                                                       "saved_minutes"]
    assert isinstance(cache.savings_chart(saved.iloc[0:0]), Note)


def _analysis(requests: pd.DataFrame, policies: list[Policy],
              reuse: Any = None) -> CacheAnalysis:
    table = compare_policies(requests, policies)
    return CacheAnalysis(len(requests), len(requests), 0, (), table, reuse, {"gpt-4o": 1.0})


def test_policy_table_and_chart() -> None:
    requests = pd.DataFrame({"ts": [0.0, 10.0, 20.0, 5000.0], "cache_key": ["k", "k", "j", "k"],
                             "cost_usd": [1.0] * 4, "latency_ms": [100.0] * 4,
                             "deterministic": [True] * 4, "storable": [True] * 4})
    policies = [Policy("1h", 3600.0), Policy("forever"), Policy("semantic", mode="semantic")]
    analysis = _analysis(requests, policies)
    table = cache.policy_table(analysis)
    assert table["policy"].tolist()[:2] == ["forever", "1h"]
    s = spec(cache.policy_chart(analysis))
    assert s["encoding"]["x"]["field"] == "dollars_saved"
    assert {row["policy"] for row in values(s)} == {"1h", "forever"}  # semantic unavailable
    only = _analysis(requests, [Policy("semantic", mode="semantic")])
    assert "prompt text" in cache.policy_chart(only).text  # type: ignore[union-attr]
    nothing = _analysis(requests.iloc[0:0], policies)
    assert isinstance(cache.policy_chart(nothing), Note)


def test_prefix_table() -> None:
    requests = pd.DataFrame({"ts": [0.0], "cache_key": ["k"]})
    assert isinstance(cache.prefix_table(_analysis(requests, [])), Note)
    reuse = prefix_reuse([[1, 2], [1, 2, 3]])
    table = cache.prefix_table(_analysis(requests, [], reuse))
    assert isinstance(table, pd.DataFrame)
    assert table.set_index("measure").loc["requests reusing a prefix", "value"] == "1"
    assert table["measure"].iloc[-1] == "saved on gpt-4o"


def test_provider_cache_savings_prices_cached_tokens(workspace: Workspace) -> None:
    scope = open_scope(workspace, "all")
    book = workspace.price_book()
    with scope.store() as store:
        frame = cache.provider_cache_savings(store, scope, book)
    row = frame.set_index("model").loc["gpt-4o"]
    price = book.price("gpt-4o")
    assert price is not None and price.cached_input is not None
    assert row["saved_usd"] == pytest.approx(
        row["cached_input_tokens"] * (price.input - price.cached_input) / 1e6)
    assert spec(cache.provider_cache_chart(frame))["encoding"]["x"]["field"] == "cached_share"
