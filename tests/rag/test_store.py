"""ChunkStore (LanceDB) and Retriever, offline with the hashing embedder."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from devora_lab.cache.semantic import HashingEmbedder
from devora_lab.errors import ConfigError
from devora_lab.llm.tokens import count_tokens
from devora_lab.rag.chunking import Chunk
from devora_lab.rag.retriever import Retriever
from devora_lab.rag.store import ChunkStore

EMBED = HashingEmbedder(dim=256)

DOCS = {
    "docs/integration.md": [
        ("Subclass Agent", "To integrate, subclass Agent and override the run method."),
        ("Configure", "Set the provider key in the environment before starting."),
    ],
    "docs/cache.md": [
        ("Semantic cache", "The semantic cache matches similar prompts by embedding."),
        ("Eviction", "Old entries are evicted when the cache exceeds its byte budget."),
    ],
    "docs/o'brien.md": [
        ("Notes", "A quokka appears only in this rare document about marsupials."),
    ],
}


def _chunks(source: str, sections: list[tuple[str, str]], version: str = "v1") -> list[Chunk]:
    file_hash = hashlib.sha256(f"{source}:{version}".encode()).hexdigest()
    return [Chunk(text=text, source=source, title=source, heading=heading, position=i,
                  start_line=10 * i + 1, end_line=10 * i + 5, tokens=count_tokens(text, "gpt-4o"),
                  content_hash=hashlib.sha256(text.encode()).hexdigest(),
                  metadata={"file_hash": file_hash, "kind": "markdown"})
            for i, (heading, text) in enumerate(sections)]


def _fill(store: ChunkStore) -> int:
    added = 0
    for source, sections in DOCS.items():
        chunks = _chunks(source, sections)
        added += store.add(chunks, EMBED([c.text for c in chunks]))
    return added


@pytest.fixture
def store(tmp_path: Path) -> ChunkStore:
    store = ChunkStore(tmp_path / "index")
    _fill(store)
    return store


def test_add_count_delete_and_reopen(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "index")
    assert _fill(store) == 5
    assert store.count() == 5
    assert store.delete_source("docs/cache.md") == 2
    assert store.count() == 3
    assert store.delete_source("missing.md") == 0
    assert ChunkStore(tmp_path / "index").count() == 3  # persisted on disk


def test_add_rejects_misaligned_vectors(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "index")
    chunks = _chunks("a.md", [("H", "text")])
    with pytest.raises(ConfigError):
        store.add(chunks, np.zeros((2, 4), dtype=np.float32))
    store.add(chunks, EMBED(["text"]))
    with pytest.raises(ConfigError):
        store.add(chunks, np.zeros((1, 4), dtype=np.float32))


def test_vector_search_ranks_exact_text_first(store: ChunkStore) -> None:
    text = "Old entries are evicted when the cache exceeds its byte budget."
    hits = store.search(vector=EMBED([text])[0], top_k=3)
    assert hits[0].text == text
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[0].heading == "Eviction"
    assert hits[0].metadata["kind"] == "markdown"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_text_search_finds_rare_word(store: ChunkStore) -> None:
    hits = store.search(text="quokka", mode="text")
    assert len(hits) == 1
    assert hits[0].source == "docs/o'brien.md"
    assert hits[0].score > 0


def test_text_index_refreshes_after_add(store: ChunkStore) -> None:
    assert store.search(text="wombat", mode="text") == []
    chunks = _chunks("new.md", [("W", "A wombat digs burrows.")])
    store.add(chunks, EMBED([chunks[0].text]))
    assert [h.source for h in store.search(text="wombat", mode="text")] == ["new.md"]


def test_hybrid_returns_results(store: ChunkStore) -> None:
    query = "subclass Agent run method"
    hits = store.search(vector=EMBED([query])[0], text=query, mode="hybrid", top_k=3)
    assert hits
    assert hits[0].heading == "Subclass Agent"
    assert all(h.score > 0 for h in hits)


def test_search_argument_checks(store: ChunkStore) -> None:
    with pytest.raises(ConfigError):
        store.search(mode="vector")
    with pytest.raises(ConfigError):
        store.search(vector=EMBED(["x"])[0], mode="hybrid")
    with pytest.raises(ConfigError):
        store.search(text="x", mode="fuzzy")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        store.search(vector=np.zeros(3), top_k=5)
    with pytest.raises(ConfigError):
        ChunkStore(Path("unused"), metric="manhattan")


def test_filters_by_source_including_a_quote(store: ChunkStore) -> None:
    vector = EMBED(["cache"])[0]
    hits = store.search(vector=vector, filters={"source": "docs/o'brien.md"})
    assert {h.source for h in hits} == {"docs/o'brien.md"}
    hits = store.search(vector=vector, filters={"source": "docs/cache.md", "position": 1})
    assert [h.heading for h in hits] == ["Eviction"]
    hits = store.search(text="cache", mode="text", where="source = 'docs/cache.md'")
    assert hits
    assert {h.source for h in hits} == {"docs/cache.md"}
    # an injection attempt is just a value that matches nothing
    assert store.search(vector=vector, filters={"source": "x' OR '1'='1"}) == []


def test_unknown_filter_column_is_config_error(store: ChunkStore) -> None:
    with pytest.raises(ConfigError):
        store.search(vector=EMBED(["x"])[0], filters={"source; DROP": "x"})
    with pytest.raises(ConfigError):
        store.search(vector=EMBED(["x"])[0], filters={"position": 1.5})  # type: ignore[dict-item]


def test_sources_hashes_drive_incremental_reindex(store: ChunkStore) -> None:
    before = store.sources()
    assert set(before) == set(DOCS)
    source = "docs/cache.md"
    assert before[source] == hashlib.sha256(f"{source}:v1".encode()).hexdigest()
    # the file changed on disk: its hash differs, so drop and re-add only that file
    changed = _chunks(source, DOCS[source][:1], version="v2")
    assert changed[0].metadata["file_hash"] != before[source]
    store.delete_source(source)
    store.add(changed, EMBED([c.text for c in changed]))
    after = store.sources()
    assert after[source] == changed[0].metadata["file_hash"]
    assert {k: v for k, v in after.items() if k != source} == \
        {k: v for k, v in before.items() if k != source}
    assert store.count() == 4


def test_empty_store_returns_nothing(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "empty")
    assert store.count() == 0
    assert store.sources() == {}
    assert store.delete_source("a.md") == 0
    assert store.search(vector=EMBED(["x"])[0]) == []
    assert store.search(text="x", mode="text") == []
    retrieval = Retriever(store, EMBED).retrieve("anything")
    assert retrieval.hits == []
    assert retrieval.context == ""
    assert retrieval.tokens == 0


def test_retriever_threshold_drops_low_scores(store: ChunkStore) -> None:
    retriever = Retriever(store, EMBED)
    query = "Old entries are evicted when the cache exceeds its byte budget."
    everything = retriever.retrieve(query, mode="vector", top_k=5)
    assert len(everything.hits) == 5
    strict = retriever.retrieve(query, mode="vector", top_k=5, threshold=0.99)
    assert [h.heading for h in strict.hits] == ["Eviction"]
    assert all(h.score >= 0.99 for h in strict.hits)


def test_retriever_context_respects_max_tokens_and_cites(store: ChunkStore) -> None:
    retriever = Retriever(store, EMBED)
    full = retriever.retrieve("subclass Agent cache", top_k=5)
    assert len(full.hits) == 5
    assert full.tokens == count_tokens(full.context, "gpt-4o")
    first = full.hits[0]
    assert full.context.startswith(
        f"[1] {first.source} \u203a {first.heading} "
        f"(lines {first.start_line}-{first.end_line})\n{first.text}")
    assert "[5] " in full.context
    for budget in (0, 10, 40, full.tokens - 1, full.tokens):
        bounded = retriever.retrieve("subclass Agent cache", top_k=5, max_tokens=budget)
        assert count_tokens(bounded.context, "gpt-4o") == bounded.tokens <= budget
        assert bounded.hits == full.hits[:len(bounded.hits)]  # whole chunks, in score order
        for number, hit in enumerate(bounded.hits, start=1):
            assert f"[{number}] {hit.source}" in bounded.context
            assert hit.text in bounded.context
    assert retriever.retrieve("subclass Agent cache", top_k=5, max_tokens=0).hits == []


def test_retriever_filters_and_text_mode(store: ChunkStore) -> None:
    retriever = Retriever(store, EMBED)
    retrieval = retriever.retrieve("quokka", mode="text")
    assert [h.source for h in retrieval.hits] == ["docs/o'brien.md"]
    retrieval = retriever.retrieve("cache", filters={"source": "docs/integration.md"})
    assert {h.source for h in retrieval.hits} == {"docs/integration.md"}
