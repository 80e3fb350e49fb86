"""Retrieval metrics: is the retriever finding the right chunks, and what does it save?

A RAG pipeline is only as good as what it retrieves, so retrieval gets measured on its
own, against hand-labelled relevance judgements (``qrels``), before any answer quality.
Everything here is a pure function over document ids, so the numbers are reproducible
and cheap enough to run in tests and notebooks.

Conventions shared by every metric:

* ``retrieved`` is a ranking, best first. Repeated ids are counted once, at their first
  position: a retriever that returns the same chunk twice must not earn credit twice.
* ``k`` is a cut-off, not a promise: a ranking shorter than ``k`` is scored as it is.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import TypedDict

import pandas as pd

__all__ = [
    "TokenSavings",
    "evaluate",
    "ndcg_at_k",
    "recall_at_k",
    "reciprocal_rank",
    "summarize",
    "token_savings",
]


def _unique(retrieved: Sequence[str]) -> list[str]:
    """The ranking with repeats dropped, so duplicates neither score twice nor take slots."""
    return list(dict.fromkeys(retrieved))


def _check_k(k: int) -> None:
    """A cut-off below 1 would make every metric silently 0; say so instead."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")


def recall_at_k(retrieved: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Fraction of the relevant ids that appear in the top ``k`` of ``retrieved``.

    Recall answers "did the context we send contain what the answer needs?". With no
    relevant ids the question has no answer, so that raises rather than returning 0 or 1
    and quietly skewing an average.
    """
    _check_k(k)
    wanted = set(relevant)
    if not wanted:
        raise ValueError("recall is undefined when there are no relevant ids for the query")
    found = wanted.intersection(_unique(retrieved)[:k])
    return len(found) / len(wanted)


def reciprocal_rank(retrieved: Sequence[str], relevant: Collection[str]) -> float:
    """``1 / rank`` of the first relevant id (rank 1 is the top), or 0 if none is retrieved.

    Averaged over queries this is MRR: it rewards putting *something* useful first, which
    matters when only the top few chunks fit the prompt.
    """
    wanted = set(relevant)
    for rank, doc_id in enumerate(_unique(retrieved), start=1):
        if doc_id in wanted:
            return 1.0 / rank
    return 0.0


def _gains(relevance: Mapping[str, float] | Collection[str]) -> dict[str, float]:
    """Per-id gains: graded from a mapping, 1 for each id of a plain collection."""
    if isinstance(relevance, Mapping):
        gains = {str(doc_id): float(gain) for doc_id, gain in relevance.items()}
    else:
        gains = dict.fromkeys(relevance, 1.0)
    negative = sorted(doc_id for doc_id, gain in gains.items() if gain < 0)
    if negative:
        raise ValueError(f"relevance gains must be non-negative; negative for {negative}")
    return gains


def _dcg(gains: Sequence[float]) -> float:
    """Discounted cumulative gain: the gain at rank r is divided by log2(r + 1)."""
    return sum(gain / math.log2(rank + 1) for rank, gain in enumerate(gains, start=1))


def ndcg_at_k(
    retrieved: Sequence[str], relevance: Mapping[str, float] | Collection[str], k: int
) -> float:
    """Normalised DCG of the top ``k``: 1 for the best possible order, 0 for no gain.

    Unlike recall, nDCG cares about order and about *how* relevant each hit is (pass a
    mapping of graded gains; a plain collection means binary gains). The ideal DCG sorts
    all the judged gains, so a ranking that misses a highly relevant id is penalised even
    if everything it did retrieve is in the right order. Gains are used linearly.
    """
    _check_k(k)
    gains = _gains(relevance)
    ideal = _dcg(sorted(gains.values(), reverse=True)[:k])
    if ideal <= 0:
        return 0.0
    actual = _dcg([gains.get(doc_id, 0.0) for doc_id in _unique(retrieved)[:k]])
    return actual / ideal


def evaluate(
    runs: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Collection[str]],
    ks: Sequence[int] = (1, 3, 5, 10),
) -> pd.DataFrame:
    """One row per judged query: ``recall@k`` for each ``k``, ``mrr`` and ``ndcg@10``.

    Queries come from ``qrels``, because the judgements define the test set: a query the
    run forgot scores 0 everywhere instead of vanishing from the average, and run entries
    without judgements are ignored. The index is the query id, sorted, for stable output.
    """
    if not ks:
        raise ValueError("ks must name at least one cut-off")
    for k in ks:
        _check_k(k)
    unjudged = sorted(query_id for query_id, relevant in qrels.items() if not relevant)
    if unjudged:
        raise ValueError(f"queries with no relevant ids cannot be scored: {unjudged}")
    rows: dict[str, dict[str, float]] = {}
    for query_id in sorted(qrels):
        retrieved = runs.get(query_id, ())
        relevant = qrels[query_id]
        row = {f"recall@{k}": recall_at_k(retrieved, relevant, k) for k in ks}
        row["mrr"] = reciprocal_rank(retrieved, relevant)
        row["ndcg@10"] = ndcg_at_k(retrieved, relevant, 10)
        rows[query_id] = row
    columns = [*(f"recall@{k}" for k in ks), "mrr", "ndcg@10"]
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=columns, dtype=float)
    frame.index.name = "query_id"
    return frame


def summarize(frame: pd.DataFrame) -> dict[str, float]:
    """Mean of each metric column over the queries: the numbers to compare two retrievers.

    An empty frame raises, since a mean over no queries would be NaN and compare oddly.
    """
    if frame.empty:
        raise ValueError("cannot summarize an evaluation with no queries")
    return {str(column): float(value) for column, value in frame.mean(axis=0).items()}


class TokenSavings(TypedDict):
    """What retrieval sent against what stuffing whole documents would have sent."""

    sent_tokens: int
    stuffed_tokens: int
    saved_tokens: int
    ratio: float
    saved_share: float


def token_savings(context_tokens: Sequence[int], stuffed_tokens: Sequence[int]) -> TokenSavings:
    """Totals, ``ratio`` (sent / stuffed) and ``saved_share`` (1 - ratio) over queries.

    The point of retrieval is to send less than the whole documents; this puts a number
    on it, per pair of equal-length sequences (one entry per query). Totals are compared
    rather than averaging per-query ratios, because the bill is paid on totals.
    """
    if len(context_tokens) != len(stuffed_tokens):
        raise ValueError(
            f"need one stuffed count per context count, got {len(context_tokens)} "
            f"and {len(stuffed_tokens)}"
        )
    if any(n < 0 for n in (*context_tokens, *stuffed_tokens)):
        raise ValueError("token counts must be non-negative")
    sent, stuffed = sum(context_tokens), sum(stuffed_tokens)
    if stuffed == 0:
        raise ValueError("stuffed token total is 0, so there is nothing to compare against")
    ratio = sent / stuffed
    return TokenSavings(
        sent_tokens=sent,
        stuffed_tokens=stuffed,
        saved_tokens=stuffed - sent,
        ratio=ratio,
        saved_share=1.0 - ratio,
    )
