"""The experiments and RAG views: charts on hand-built analyses, loaders on a workspace."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from devora_lab.experiments import sequential as seq
from devora_lab.experiments.analysis import Analysis
from devora_lab.experiments.model import Experiment, Variant
from devora_lab.notebook.views import Note, experiments, open_scope, rag
from devora_lab.rag.evalset import EvalQuery, Section
from devora_lab.workspace import Workspace

from .test_views import EXPERIMENT, build_workspace, spec, values


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return build_workspace(tmp_path_factory.mktemp("views-exp") / "ws", rag=True)


def _experiment(**changes: Any) -> Experiment:
    base = Experiment(name="exp", hypothesis="h", variants=(Variant("control"),
                                                            Variant("treatment", weight=1.0)),
                      primary_metric="success_rate", guardrails=("latency_ms",),
                      min_samples=100, state="running")
    return replace(base, **changes)


def _view(*, worse: bool = False, missing: list[str] | None = None,
          winner: str | None = None) -> experiments.ExperimentView:
    exp = _experiment()
    comparisons = pd.DataFrame({
        "variant": ["treatment", "treatment"], "metric": ["success_rate", "latency_ms"],
        "difference": [0.02, 50.0], "ci_low": [0.01, 10.0], "ci_high": [0.03, 90.0],
        "relative": [0.02, 0.05], "p_value": [0.001, 0.01], "test": ["chi-square", "welch"],
        "p_adjusted": [0.002, 0.01], "significantly_worse": [False, worse]})
    days = pd.date_range("2026-01-01", periods=3, freq="D")
    sequential = pd.DataFrame({"day": days.date, "variant": "treatment",
                               "difference": [0.0, 0.01, 0.02],
                               "ci_low": [-np.inf, -0.01, 0.005], "ci_high": [np.inf, 0.03, 0.03],
                               "p_value": [1.0, 0.2, 0.0]})
    analysis = Analysis(exp, pd.DataFrame(), comparisons, sequential,
                        seq.sample_ratio_mismatch([480, 520], [1, 1]),
                        seq.bayesian_proportions([450, 480], [500, 500], draws=2000), 4.0,
                        missing if missing is not None else [], winner)
    intervals = pd.DataFrame({"variant": ["control", "treatment"] * 2,
                              "metric": ["success_rate"] * 2 + ["latency_ms"] * 2,
                              "n": [500, 500, 500, 500], "value": [0.9, 0.96, 900.0, 950.0],
                              "ci_low": [0.87, 0.94, 880.0, 930.0],
                              "ci_high": [0.92, 0.97, 920.0, 970.0]})
    return experiments.ExperimentView(analysis, pd.Series({"control": 480, "treatment": 520}),
                                      intervals, days=5)


# ---------------------------------------------------------------------------- experiments


def test_choose_experiment_prefers_the_name_then_running_then_recent() -> None:
    old = _experiment(name="old", state="completed", decision=None,
                      created_at=datetime(2026, 1, 1, tzinfo=timezone.utc))
    new = _experiment(name="new", state="paused",
                      created_at=datetime(2026, 2, 1, tzinfo=timezone.utc))
    running = _experiment(name="run", created_at=datetime(2025, 1, 1, tzinfo=timezone.utc))
    assert experiments.choose_experiment([old, new, running]) is running
    assert experiments.choose_experiment([old, new]) is new
    assert experiments.choose_experiment([old, new], "old") is old
    assert experiments.choose_experiment([], None) is None


def test_variant_chart_points_with_interval_bars() -> None:
    s = spec(experiments.variant_chart(_view()))
    assert s["facet"]["row"]["field"] == "metric"
    assert s["resolve"]["scale"]["x"] == "independent"
    bars, points = s["spec"]["layer"]
    assert bars["mark"]["type"] == "errorbar"
    assert (bars["encoding"]["x"]["field"], bars["encoding"]["x2"]["field"]) == ("ci_low",
                                                                                 "ci_high")
    assert points["encoding"]["x"]["field"] == "value"


def test_lift_chart_marks_significantly_worse_in_red() -> None:
    s = spec(experiments.lift_chart(_view(worse=True)))
    _, points, zero = s["spec"]["layer"]
    assert points["encoding"]["color"]["scale"]["range"][1] == "#e45756"
    assert zero["mark"]["type"] == "rule"
    assert {row["significantly_worse"] for row in values(s)} == {"False", "True"}


def test_sequential_chart_p_values_on_a_log_axis_and_the_sequence() -> None:
    s = spec(experiments.sequential_chart(_view()))
    top, bottom = s["vconcat"]
    p_line, alpha_rule = top["layer"]
    assert p_line["encoding"]["y"]["scale"]["type"] == "log"
    assert alpha_rule["mark"]["type"] == "rule"
    assert bottom["layer"][0]["encoding"]["y2"]["field"] == "ci_high"
    rows = [row for row in values(s) if "p_value" in row]
    assert min(row["p_value"] for row in rows) == pytest.approx(1e-12)  # 0 kept on the axis
    assert rows[0]["ci_low"] is None  # -inf is not JSON
    assert [row["alpha"] for row in values(s) if "alpha" in row] == [0.05]


def test_srm_table_and_note() -> None:
    view = _view()
    table = experiments.srm_table(view)
    assert table["expected"].tolist() == [500.0, 500.0]
    assert table["units"].tolist() == [480, 520]
    assert "as planned" in experiments.srm_note(view).text
    bad = replace(view.analysis, srm=seq.sample_ratio_mismatch([400, 600], [1, 1]))
    assert "MISMATCH" in experiments.srm_note(replace(view, analysis=bad)).text


def test_guardrails_bayes_and_power() -> None:
    view = _view(worse=True)
    guard = experiments.guardrail_table(view)
    assert guard[["metric", "verdict"]].values.tolist() == [["latency_ms", "WORSE"]]
    bayes = experiments.bayes_table(view)
    assert isinstance(bayes, pd.DataFrame)
    assert bayes["chance_to_be_best"].sum() == pytest.approx(1.0)
    assert spec(experiments.bayes_chart(view))["encoding"]["x"]["field"] == "chance_to_be_best"
    power = experiments.power_table(view, effects=(0.5,))
    assert isinstance(power, pd.DataFrame)
    row = power.iloc[0]
    assert row["detectable_difference"] == pytest.approx(0.05)  # half of 1 - 0.9
    assert row["needed_per_variant"] == seq.sample_size_proportions(0.9, 0.05)
    assert row["days_more"] == pytest.approx(
        seq.days_to_significance(int(row["needed_per_variant"]), 100.0,
                                 users_so_far_per_variant=500))


def test_decision_note_says_why() -> None:
    missing = ["the sequential test is not significant", "minimum sample not reached"]
    waiting = experiments.decision_note(_view(missing=missing)).text
    assert "No decision yet" in waiting
    assert all(f"> - {reason}" in waiting for reason in missing)
    assert "winner **treatment**" in experiments.decision_note(_view(winner="treatment")).text
    assert "about 4 more days" in experiments.sample_note(_view()).text


def test_views_pass_notes_through() -> None:
    note = Note("nothing")
    for view_function in (experiments.summary_table, experiments.variant_chart,
                          experiments.lift_chart, experiments.sequential_chart,
                          experiments.srm_table, experiments.guardrail_table,
                          experiments.bayes_chart, experiments.power_table,
                          experiments.decision_note, experiments.comparison_table):
        assert view_function(note) is note


def test_load_experiment_from_the_registry(workspace: Workspace) -> None:
    view = experiments.load_experiment(workspace)
    assert isinstance(view, experiments.ExperimentView)
    assert view.registered and view.experiment.name == EXPERIMENT
    rates = view.intervals[view.intervals["metric"] == "success_rate"]
    assert ((rates["ci_low"] <= rates["value"]) & (rates["value"] <= rates["ci_high"])).all()
    assert experiments.summary_table(view).loc["state", "value"] == "running"
    assert view.days >= 3


def test_load_experiment_from_the_log_alone(tmp_path: Path, workspace: Workspace) -> None:
    alone = Workspace(tmp_path)  # the same log, no registry
    (tmp_path / "events").symlink_to(workspace.events_dir)
    view = experiments.load_experiment(alone)
    assert isinstance(view, experiments.ExperimentView)
    assert not view.registered
    assert view.experiment.variant_names == ("control", "treatment")
    assert "not registered" in experiments.decision_note(view).text
    missing = experiments.load_experiment(Workspace(tmp_path / "empty"))
    assert isinstance(missing, Note) and "No experiment" in missing.text


# ---------------------------------------------------------------------------- rag


def _results() -> pd.DataFrame:
    metrics = {"recall@1": 0.5, "recall@3": 0.7, "recall@5": 0.8, "recall@10": 0.9, "mrr": 0.6,
               "ndcg@10": 0.7, "context_tokens": 800.0, "stuffed_tokens": 16000.0,
               "saved_share": 0.95}
    return pd.DataFrame([{"mode": m, **metrics} for m in ("vector", "text", "hybrid")]
                        ).set_index("mode")


def test_metrics_and_savings_charts() -> None:
    s = spec(rag.metrics_chart(_results()))
    assert s["encoding"]["column"]["field"] == "metric"
    assert s["encoding"]["y"]["scale"]["domain"] == [0, 1]
    assert len(values(s)) == 18
    table = rag.savings_table(_results())
    assert isinstance(table, pd.DataFrame)
    assert table["times_smaller"].tolist() == [20.0] * 3
    saving = spec(rag.savings_chart(_results()))
    assert saving["encoding"]["yOffset"]["field"] == "sent"


def test_retrieval_chart_leaves_out_measures_the_events_lack() -> None:
    trend = pd.DataFrame({"bucket": pd.date_range("2026-01-01", periods=2, freq="D", tz="UTC"),
                          "mode": "hybrid", "retrievals": [5, 7],
                          "latency_p50_ms": [20.0, 22.0], "latency_p95_ms": [40.0, 45.0],
                          "mean_hits": [5.0, 5.0], "mean_context_tokens": [math.nan] * 2,
                          "mean_top_score": [0.7, 0.6]})
    s = spec(rag.retrieval_chart(trend))
    assert s["facet"]["row"]["field"] == "measure"
    assert s["params"][0]["bind"] == "scales"
    assert "context tokens" not in {row["measure"] for row in values(s)}
    assert isinstance(rag.retrieval_chart(trend.iloc[0:0]), Note)


def test_missing_index_and_queries_become_notes(tmp_path: Path) -> None:
    retriever = rag.open_retriever(Workspace(tmp_path))
    assert isinstance(retriever, Note) and "rag index" in retriever.text
    queries = rag.load_eval_set(tmp_path / "none.jsonl")
    assert isinstance(queries, Note)
    assert rag.evaluate(retriever, []) is retriever
    assert rag.sample_hits(retriever, []) is retriever
    assert rag.metrics_chart(retriever) is retriever
    assert rag.index_summary(retriever) is retriever


def test_evaluate_and_sample_hits_on_the_index(workspace: Workspace) -> None:
    retriever = rag.open_retriever(workspace)
    assert not isinstance(retriever, Note)
    queries = rag.load_eval_set()
    assert isinstance(queries, list) and len(queries) > 10
    results = rag.evaluate(retriever, queries[:4], modes=("text", "hybrid"))
    assert isinstance(results, pd.DataFrame)
    assert results.index.tolist() == ["text", "hybrid"]
    assert (results["saved_share"] > 0.5).all()
    hits = rag.sample_hits(retriever, queries, n=2, top_k=3)
    assert isinstance(hits, pd.DataFrame)
    assert hits.columns.tolist() == ["query", "rank", "score", "source", "section", "lines",
                                     "relevant"]
    assert len(hits) == 6 and hits["relevant"].dtype == bool
    assert not hits["source"].str.startswith("/").any()  # relative to the repository
    assert "chunks" in rag.index_summary(retriever).text
    made_up = [EvalQuery("x", "q", (Section("missing.md", "A"),))]
    assert isinstance(rag.evaluate(retriever, made_up), Note)


def test_retrieval_trend_over_the_log(workspace: Workspace) -> None:
    scope = open_scope(workspace, "all")
    with scope.store() as store:
        trend = rag.retrieval_trend(store, scope)
        logged = store.count("retrieval")  # the history's size depends on the hour it ends
    assert logged > 0 and trend["retrievals"].sum() == logged
    assert str(trend["bucket"].dt.tz) == "UTC"
    assert spec(rag.retrieval_chart(trend))["facet"]["row"]["field"] == "measure"
