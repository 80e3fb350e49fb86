"""Retrieval metrics against hand-computed values, edge cases and properties."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from devora_lab.rag.evaluation import (
    evaluate,
    ndcg_at_k,
    recall_at_k,
    reciprocal_rank,
    summarize,
    token_savings,
)

# ---------------------------------------------------------------- hand-computed values


def test_recall_hand_computed() -> None:
    retrieved = ["d1", "d9", "d2", "d8", "d3"]
    relevant = {"d1", "d2", "d3", "d4"}
    # top 1: {d1} -> 1/4; top 3: {d1, d2} -> 2/4; top 5: {d1, d2, d3} -> 3/4
    assert recall_at_k(retrieved, relevant, 1) == 0.25
    assert recall_at_k(retrieved, relevant, 3) == 0.5
    assert recall_at_k(retrieved, relevant, 5) == 0.75


def test_reciprocal_rank_hand_computed() -> None:
    # first relevant (d2) is at rank 3 -> 1/3
    assert reciprocal_rank(["d7", "d8", "d2", "d1"], {"d1", "d2"}) == pytest.approx(1 / 3)
    assert reciprocal_rank(["d1"], {"d1"}) == 1.0


def test_ndcg_graded_hand_computed() -> None:
    # DCG  = 0/log2(2) + 3/log2(3) + 2/log2(4) = 0 + 1.892789 + 1 = 2.892789
    # IDCG = 3/log2(2) + 2/log2(3) + 0/log2(4) = 3 + 1.261860     = 4.261860
    # nDCG = 2.892789 / 4.261860 = 0.678762
    value = ndcg_at_k(["d3", "d1", "d2"], {"d1": 3, "d2": 2, "d3": 0}, 3)
    assert value == pytest.approx(0.678762, abs=1e-6)
    expected = (3 / math.log2(3) + 2 / 2) / (3 + 2 / math.log2(3))
    assert value == pytest.approx(expected)


def test_ndcg_binary_hand_computed() -> None:
    # retrieved [x, d1, d2], relevant {d1, d2}
    # DCG  = 0 + 1/log2(3) + 1/log2(4) = 0.630930 + 0.5 = 1.130930
    # IDCG = 1/log2(2) + 1/log2(3)     = 1 + 0.630930   = 1.630930
    # nDCG = 0.693426
    value = ndcg_at_k(["x", "d1", "d2"], {"d1", "d2"}, 3)
    assert value == pytest.approx(0.693426, abs=1e-6)


def test_ndcg_cutoff_limits_ideal_too() -> None:
    # k=1, retrieved [d2, d1], gains {d1: 3, d2: 2}: DCG = 2/1, IDCG = 3/1 -> 2/3
    assert ndcg_at_k(["d2", "d1"], {"d1": 3, "d2": 2}, 1) == pytest.approx(2 / 3)


# ---------------------------------------------------------------------- edge cases


def test_duplicates_counted_once() -> None:
    # deduplicated ranking is [d1, d2]: recall@2 = 1/2 ... duplicates take no slots
    assert recall_at_k(["d1", "d1", "d2"], {"d1", "d3"}, 2) == 0.5
    assert recall_at_k(["d1", "d1", "d3"], {"d1", "d3"}, 2) == 1.0
    # rank of d2 is 2 once the repeat of d1 is dropped
    assert reciprocal_rank(["d1", "d1", "d2"], {"d2"}) == 0.5
    # a repeated relevant id earns its gain once: [d1, d1] is the same as [d1]
    assert ndcg_at_k(["d1", "d1"], {"d1", "d2"}, 2) == ndcg_at_k(["d1"], {"d1", "d2"}, 2)


def test_k_larger_than_list() -> None:
    assert recall_at_k(["d1", "d2"], {"d1", "d2", "d3"}, 100) == pytest.approx(2 / 3)
    assert ndcg_at_k(["d1"], {"d1"}, 100) == 1.0


def test_nothing_relevant_retrieved() -> None:
    assert recall_at_k(["x", "y"], {"d1"}, 2) == 0.0
    assert reciprocal_rank(["x", "y"], {"d1"}) == 0.0
    assert ndcg_at_k(["x", "y"], {"d1": 2.0}, 2) == 0.0
    assert reciprocal_rank([], {"d1"}) == 0.0


def test_ndcg_zero_without_positive_gains() -> None:
    assert ndcg_at_k(["d1"], {"d1": 0.0}, 3) == 0.0
    assert ndcg_at_k(["d1"], set(), 3) == 0.0


def test_invalid_inputs_raise() -> None:
    with pytest.raises(ValueError, match="no relevant ids"):
        recall_at_k(["d1"], set(), 3)
    with pytest.raises(ValueError, match="k must be at least 1"):
        recall_at_k(["d1"], {"d1"}, 0)
    with pytest.raises(ValueError, match="k must be at least 1"):
        ndcg_at_k(["d1"], {"d1"}, -1)
    with pytest.raises(ValueError, match="non-negative"):
        ndcg_at_k(["d1"], {"d1": -1.0}, 3)


# ---------------------------------------------------------------------- properties

_ids = st.sampled_from([f"d{i}" for i in range(8)])
_rankings = st.lists(_ids, max_size=10)
_relevant = st.sets(_ids, min_size=1, max_size=6)
_graded = st.dictionaries(_ids, st.integers(min_value=0, max_value=3), max_size=6)
_k = st.integers(min_value=1, max_value=12)


@given(_rankings, _relevant, _graded, _k)
def test_metrics_in_unit_interval(
    retrieved: list[str], relevant: set[str], graded: dict[str, int], k: int
) -> None:
    for value in (
        recall_at_k(retrieved, relevant, k),
        reciprocal_rank(retrieved, relevant),
        ndcg_at_k(retrieved, relevant, k),
        ndcg_at_k(retrieved, graded, k),
    ):
        assert 0.0 <= value <= 1.0 + 1e-12


@given(_rankings, _relevant, _k)
def test_recall_non_decreasing_in_k(retrieved: list[str], relevant: set[str], k: int) -> None:
    assert recall_at_k(retrieved, relevant, k) <= recall_at_k(retrieved, relevant, k + 1)


@given(_graded, _k)
def test_perfect_ranking_scores_one(graded: dict[str, int], k: int) -> None:
    positive = {doc_id: gain for doc_id, gain in graded.items() if gain > 0}
    ranking = sorted(positive, key=lambda doc_id: positive[doc_id], reverse=True)
    if positive:
        assert ndcg_at_k(ranking, graded, k) == pytest.approx(1.0)
        assert reciprocal_rank(ranking, positive) == 1.0
        assert recall_at_k(ranking, positive, len(ranking)) == 1.0
    else:
        assert ndcg_at_k(ranking, graded, k) == 0.0


# ------------------------------------------------------------- evaluate / summarize


def test_evaluate_and_summarize_tiny_run() -> None:
    runs = {
        "q1": ["a", "b", "c"],  # relevant {a}: hit at rank 1
        "q2": ["x", "y", "b"],  # relevant {b, c}: b at rank 3, c missing
        "q9": ["z"],  # no judgements: ignored
    }
    qrels = {"q1": {"a"}, "q2": {"b", "c"}, "q3": {"d"}}  # q3 missing from runs: scores 0
    frame = evaluate(runs, qrels, ks=(1, 3))
    assert list(frame.index) == ["q1", "q2", "q3"]
    assert list(frame.columns) == ["recall@1", "recall@3", "mrr", "ndcg@10"]
    assert list(frame.loc["q1"]) == [1.0, 1.0, 1.0, 1.0]
    # q2: recall@1 0, recall@3 1/2, mrr 1/3,
    # ndcg = (1/log2(4)) / (1 + 1/log2(3)) = 0.5 / 1.630930 = 0.306574
    assert frame.loc["q2", "recall@1"] == 0.0
    assert frame.loc["q2", "recall@3"] == 0.5
    assert frame.loc["q2", "mrr"] == pytest.approx(1 / 3)
    assert frame.loc["q2", "ndcg@10"] == pytest.approx(0.306574, abs=1e-6)
    assert list(frame.loc["q3"]) == [0.0, 0.0, 0.0, 0.0]

    summary = summarize(frame)
    # means over 3 queries: recall@1 1/3, recall@3 1.5/3, mrr (1 + 1/3)/3, ndcg (1 + .306574)/3
    assert summary["recall@1"] == pytest.approx(1 / 3)
    assert summary["recall@3"] == pytest.approx(0.5)
    assert summary["mrr"] == pytest.approx(4 / 9)
    assert summary["ndcg@10"] == pytest.approx((1 + 0.306574) / 3, abs=1e-6)
    assert all(isinstance(value, float) for value in summary.values())


def test_evaluate_default_ks_and_errors() -> None:
    frame = evaluate({"q1": ["a"]}, {"q1": ["a"]})
    expected = ["recall@1", "recall@3", "recall@5", "recall@10", "mrr", "ndcg@10"]
    assert list(frame.columns) == expected
    with pytest.raises(ValueError, match="no relevant ids"):
        evaluate({"q1": ["a"]}, {"q1": set()})
    with pytest.raises(ValueError, match="no queries"):
        summarize(pd.DataFrame())


# -------------------------------------------------------------------- token savings


def test_token_savings() -> None:
    # sent 100 + 300 = 400, stuffed 1000 + 1000 = 2000: ratio 0.2, saved 0.8
    result = token_savings([100, 300], [1000, 1000])
    assert result == {
        "sent_tokens": 400,
        "stuffed_tokens": 2000,
        "saved_tokens": 1600,
        "ratio": 0.2,
        "saved_share": 0.8,
    }


def test_token_savings_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="one stuffed count"):
        token_savings([1, 2], [3])
    with pytest.raises(ValueError, match="non-negative"):
        token_savings([-1], [3])
    with pytest.raises(ValueError, match="nothing to compare"):
        token_savings([0], [0])
