"""Embedders: the cache, one event per batch, the OpenAI-compatible API over a real socket
(the simulator), retries, costs, and the local model when it is installed."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from devora_lab.config import load_settings
from devora_lab.errors import AuthenticationError, ConfigError, DevoraError
from devora_lab.events import EventLog
from devora_lab.llm.policy import RetryPolicy
from devora_lab.llm.pricing import PriceBook
from devora_lab.llm.providers.anthropic import AnthropicAdapter
from devora_lab.llm.providers.openai import OpenAIAdapter
from devora_lab.rag.embedders import (
    EmbeddingBatch,
    HashingBackend,
    LocalBackend,
    OpenAIBackend,
    local_model_available,
)
from devora_lab.rag.embeddings import EmbeddingCache, Embeddings, backend_for
from devora_lab.sim.faults import FaultConfig
from devora_lab.sim.server import SimServer

BOOK = PriceBook.default()


def _price(model: str, tokens: int) -> float | None:
    return BOOK.cost(model, tokens, 0)


class CountingBackend:
    """A hashing backend that records every batch it is sent."""

    model = "counting"
    provider = "test"
    batch_size = 4

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.inner = HashingBackend(dim=64)

    def embed_batch(self, texts: Sequence[str]) -> EmbeddingBatch:
        self.batches.append(list(texts))
        return self.inner.embed_batch(texts)


def _events(root: Path) -> list[tuple[object, ...]]:
    with EventLog(root).store() as store:
        return store.rows(
            "SELECT provider, request_model, item_count, input_tokens, cost_usd, cost_status, "
            "cache_outcome, status, error_type, attempt FROM events WHERE kind = 'embedding' "
            "ORDER BY ts")


def test_cache_embeds_each_text_once_across_calls_and_processes(tmp_path: Path) -> None:
    backend = CountingBackend()
    path = tmp_path / "embeddings.sqlite"
    first = Embeddings(backend, cache=EmbeddingCache(path))
    texts = [f"text {i}" for i in range(6)]
    vectors = first([*texts, "text 0"])  # a repeat inside one call is sent once
    assert vectors.shape == (7, 64) and np.allclose(vectors[0], vectors[6])
    assert [len(batch) for batch in backend.batches] == [4, 2]
    first.close()
    again = Embeddings(backend, cache=EmbeddingCache(path))  # a new process: same file
    assert np.allclose(again(["text 3", "new"]), first.backend.embed_batch(
        ["text 3", "new"]).vectors)
    assert backend.batches[2] == ["new"]  # only the unseen text went to the backend
    assert again.cache is not None and len(again.cache) == 7


def test_cache_is_keyed_by_model(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    small, large = HashingBackend(dim=32), HashingBackend(dim=48)
    assert Embeddings(small, cache=cache)(["same"]).shape == (1, 32)
    assert Embeddings(large, cache=cache)(["same"]).shape == (1, 48)


def test_one_event_per_batch_and_a_hit_event(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events")
    embeddings = Embeddings(CountingBackend(), cache=EmbeddingCache(), event_log=log,
                            agent="indexer")
    embeddings([f"t{i}" for i in range(9)])
    embeddings(["t1", "t2"])
    log.close()
    rows = _events(tmp_path / "events")
    assert [row[2] for row in rows] == [4, 4, 1, 2]
    assert [row[6] for row in rows] == ["miss", "miss", "miss", "hit"]
    assert all(row[0] == "test" and row[1] == "counting" and row[7] == "ok" for row in rows)
    assert rows[3][3] == 0 and rows[3][4] == 0.0


def test_empty_input_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no texts"):
        Embeddings(HashingBackend())([])


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(seed=21, latency_scale=0) as server:
        yield server


def test_openai_backend_against_the_simulator(sim: SimServer, tmp_path: Path) -> None:
    adapter = OpenAIAdapter("openai", sim.openai_base_url, "sk-test")
    backend = OpenAIBackend(adapter, "text-embedding-3-small", batch_size=3, price=_price)
    log = EventLog(tmp_path / "events")
    embeddings = Embeddings(backend, event_log=log)
    texts = ["alpha beta", "gamma", "delta epsilon zeta", "alpha beta", "eta"]
    vectors = embeddings(texts)
    log.close()
    assert vectors.shape == (5, 1536)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vectors[0], vectors[3])  # the simulator is deterministic per text
    rows = _events(tmp_path / "events")
    assert [row[2] for row in rows] == [3, 1]  # 4 distinct texts, batches of 3
    tokens = sum(int(row[3]) for row in rows)  # type: ignore[call-overload]
    assert tokens > 0
    cost = sum(float(row[4]) for row in rows)  # type: ignore[arg-type]
    assert cost == pytest.approx(tokens * 0.02 / 1e6)
    assert all(row[5] == "priced" and row[0] == "openai" for row in rows)


def test_openai_backend_dimensions_and_unpriced_model(sim: SimServer) -> None:
    adapter = OpenAIAdapter("openai", sim.openai_base_url, "sk-test")
    backend = OpenAIBackend(adapter, "text-embedding-3-large", dimensions=256, price=_price)
    assert backend.model == "text-embedding-3-large@256"
    assert backend.embed_batch(["x"]).vectors.shape == (1, 256)
    custom = OpenAIBackend(adapter, "house-embedder", price=_price)
    batch = custom.embed_batch(["x"])
    assert batch.cost_usd is None  # unknown model: unpriced, never a silent $0


def test_openai_backend_retries_through_faults(tmp_path: Path) -> None:
    faults = FaultConfig(rate_503=0.4, rate_429=0.2, retry_after_seconds=0.01)
    with SimServer(seed=7, latency_scale=0, faults=faults) as flaky:
        adapter = OpenAIAdapter("openai", flaky.openai_base_url, "sk-test")
        backend = OpenAIBackend(adapter, "text-embedding-3-small", batch_size=2, seed=1,
                                retry=RetryPolicy(max_attempts=12, initial_backoff=0.001,
                                                  max_backoff=0.01))
        log = EventLog(tmp_path / "events")
        vectors = Embeddings(backend, event_log=log)([f"doc {i}" for i in range(20)])
        log.close()
        stats = flaky.stats()
    assert vectors.shape == (20, 1536)
    rows = _events(tmp_path / "events")
    attempts = sum(int(row[9]) for row in rows)  # type: ignore[call-overload]
    assert len(rows) == 10 and attempts > 10  # some batches needed retries
    assert stats["requests"] == attempts


def test_failed_batch_is_an_error_event_and_the_key_never_leaks(tmp_path: Path) -> None:
    with SimServer(seed=3, latency_scale=0, require_key=True) as strict:
        adapter = OpenAIAdapter("openai", strict.openai_base_url, None)
        log = EventLog(tmp_path / "events")
        embeddings = Embeddings(OpenAIBackend(adapter, "text-embedding-3-small"),
                                event_log=log)
        with pytest.raises(AuthenticationError):
            embeddings(["secret-free text"])
        log.close()
    assert _events(tmp_path / "events")[0][7:9] == ("error", "AuthenticationError")


def test_unreachable_endpoint_names_the_url_not_the_key() -> None:
    adapter = OpenAIAdapter("openai", "http://127.0.0.1:9/v1", "sk-very-secret-123")
    backend = OpenAIBackend(adapter, "text-embedding-3-small",
                            retry=RetryPolicy(max_attempts=1))
    with pytest.raises(DevoraError) as caught:
        backend.embed_batch(["x"])
    assert "127.0.0.1:9" in str(caught.value) and "sk-very-secret" not in str(caught.value)


def test_anthropic_has_no_embeddings() -> None:
    with pytest.raises(ConfigError, match="no embeddings endpoint"):
        OpenAIBackend(AnthropicAdapter("anthropic", "http://127.0.0.1:1", None), "claude-x")


def test_backend_for_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(tmp_path)
    assert backend_for("hashing", settings).model == "hashing-2048"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    api = backend_for("text-embedding-3-small", load_settings(tmp_path))
    assert (api.provider, api.model) == ("openai", "text-embedding-3-small")
    expected = "all-MiniLM-L6-v2" if local_model_available() else "hashing-2048"
    assert backend_for("auto", settings).model == expected


@pytest.mark.skipif(not local_model_available(), reason="local-embeddings extra not installed")
def test_local_model_embeds_meaning() -> None:
    backend = LocalBackend()
    batch = backend.embed_batch([
        "How do I limit how much my agents spend per day?",
        "Set a daily budget so that agent costs stay under a cap.",
        "The weather in Lisbon is sunny today.",
    ])
    assert batch.vectors.shape == (3, 384) and batch.cost_usd == 0.0
    assert batch.input_tokens > 20
    similar = float(batch.vectors[0] @ batch.vectors[1])
    unrelated = float(batch.vectors[0] @ batch.vectors[2])
    assert similar > 0.5 > unrelated + 0.3
