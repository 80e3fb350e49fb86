"""The approximate index: built automatically at the size threshold, close to exact search,
refreshed as rows arrive; the table remembers its metric and embedder."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from devora_lab.errors import ConfigError
from devora_lab.events import EventLog
from devora_lab.rag.chunking import Chunk
from devora_lab.rag.embedders import HashingBackend
from devora_lab.rag.embeddings import Embeddings
from devora_lab.rag.retriever import Retriever
from devora_lab.rag.store import ChunkStore

DIM = 32


def _rows(count: int, start: int = 0, seed: int = 0) -> tuple[list[Chunk], np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(20, DIM))
    vectors = centers[rng.integers(0, 20, count)] + rng.normal(scale=0.5, size=(count, DIM))
    chunks = [Chunk(text=f"chunk {i}", source=f"doc{i % 7}.md", title=None, heading=None,
                    position=i, start_line=1, end_line=1, tokens=2,
                    content_hash=hashlib.sha256(str(i).encode()).hexdigest(),
                    metadata={"file_hash": "h"}) for i in range(start, start + count)]
    return chunks, vectors.astype(np.float32)


def test_index_is_built_at_the_threshold_and_tracks_exact_search(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "db", ann_min_rows=3000)
    chunks, vectors = _rows(2000)
    store.add(chunks, vectors)
    assert store.vector_index() is None  # below the threshold: exact search only
    more, more_vectors = _rows(1500, start=2000, seed=1)
    store.add(more, more_vectors)
    stats = store.vector_index()
    assert stats is not None and stats.index_type == "IVF_HNSW_SQ"
    assert stats.num_indexed_rows == 3500
    queries = np.concatenate([vectors, more_vectors])[::70] + 0.05
    recall = []
    for query in queries:
        exact = {h.position for h in store.search(vector=query, top_k=10, exact=True)}
        approx = {h.position for h in store.search(vector=query, top_k=10)}
        recall.append(len(exact & approx) / 10)
    assert np.mean(recall) >= 0.95


def test_rows_added_after_the_index_are_found_and_folded_in(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "db", ann_min_rows=2000)
    store.add(*_rows(2000))
    late, late_vectors = _rows(100, start=5000, seed=9)
    store.add(late, late_vectors)  # 5 % unindexed: searched exactly until optimised
    assert store.vector_index().num_unindexed_rows == 100
    assert store.search(vector=late_vectors[3], top_k=1)[0].position == 5003
    store.add(*_rows(300, start=6000, seed=10))  # now 20 %: folded into the index
    assert store.vector_index().num_unindexed_rows == 0


def test_filters_still_apply_with_the_index(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "db", ann_min_rows=1000)
    chunks, vectors = _rows(1400)
    store.add(chunks, vectors)
    hits = store.search(vector=vectors[0], top_k=5, filters={"source": "doc3.md"})
    assert len(hits) == 5 and {hit.source for hit in hits} == {"doc3.md"}


def test_metric_is_remembered_and_a_conflict_refused(tmp_path: Path) -> None:
    ChunkStore(tmp_path / "db", metric="dot").add(*_rows(10))
    assert ChunkStore(tmp_path / "db").metric == "dot"
    with pytest.raises(ConfigError, match="built with the dot metric"):
        ChunkStore(tmp_path / "db", metric="l2")


def test_a_query_from_another_embedder_is_refused(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "db", embedder="local:hashing-32")
    store.add(*_rows(10))
    reopened = ChunkStore(tmp_path / "db")
    assert reopened.embedder == "local:hashing-32"
    with pytest.raises(ConfigError, match="built with the embedder local:hashing-32"):
        Retriever(reopened, _Named("openai:text-embedding-3-small"))
    reopened.drop()
    assert reopened.count() == 0 and reopened.embedder is None


class _Named:
    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, texts: list[str]) -> np.ndarray:
        return np.zeros((len(texts), DIM), dtype=np.float32)


def test_each_retrieval_is_an_event(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events")
    embeddings = Embeddings(HashingBackend(dim=DIM))
    store = ChunkStore(tmp_path / "db")
    texts = ["budgets stop spending", "the cache saves money", "retries back off"]
    chunks = [Chunk(text=t, source="a.md", title="A", heading="A > S", position=i,
                    start_line=i, end_line=i, tokens=3, content_hash=str(i),
                    metadata={"file_hash": "h"}) for i, t in enumerate(texts)]
    store.add(chunks, embeddings(texts))
    retriever = Retriever(store, embeddings, event_log=log)
    found = retriever.retrieve("how do budgets stop spending", top_k=2, mode="vector",
                               agent="architect", user_id="u1", max_tokens=200)
    log.close()
    with EventLog(tmp_path / "events").store() as events:
        rows = events.rows("SELECT name, agent, user_id, item_count, input_tokens, value, "
                           "latency_ms FROM events WHERE kind = 'retrieval'")
    assert rows == [("vector", "architect", "u1", 2, found.tokens, pytest.approx(
        found.hits[0].score), pytest.approx(rows[0][6]))]
    assert found.hits[0].text == "budgets stop spending"
