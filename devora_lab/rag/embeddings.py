"""``Embeddings``: any backend with a cache, batching and one event per batch.

Embedding is the slow or paid step of RAG, and documents are re-indexed far more often
than they change, so vectors are cached by ``sha256(model, text)``: unchanged text is
never embedded twice, whichever file or run it comes from. The cache is a SQLite file in
the workspace's cache folder (WAL mode: several processes share it safely). Each batch
sent to the backend is written to the event log as an ``embedding`` event with the model,
provider, item count, tokens, cost, latency and attempts; texts answered wholly from the
cache give one event with ``cache_outcome = 'hit'`` and no cost, so the log shows what the
cache saved.

``embeddings_for(settings, ...)`` builds the workspace's configured embedder
(``[rag] embedding_model``): ``auto`` (the local model when installed, else hashing),
``local``, ``hashing``, or an API model routed like chat models (``text-embedding-3-small``,
``openai/text-embedding-3-large``, ``<provider>/<model>`` for a configured provider).
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from numpy.typing import NDArray

from devora_lab.errors import ConfigError
from devora_lab.events.schema import Event, EventKind
from devora_lab.rag.embedders import (
    EmbeddingBackend,
    EmbeddingBatch,
    HashingBackend,
    LocalBackend,
    OpenAIBackend,
    describe_failure,
    local_model_available,
)

if TYPE_CHECKING:
    from devora_lab.config import Settings
    from devora_lab.events import EventLog
    from devora_lab.llm.pricing import PriceBook

__all__ = ["EmbeddingCache", "Embeddings", "backend_for", "embeddings_for"]

_SCHEMA: Final = ("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, "
                  "vector BLOB NOT NULL)")
_LOOKUP_CHUNK: Final = 500  # SQLite's default limit on bound parameters is 999


def text_key(model: str, text: str) -> bytes:
    """The cache key of ``text`` under ``model``: 16 bytes of SHA-256 over both."""
    return hashlib.sha256(model.encode() + b"\0" + text.encode()).digest()[:16]


class EmbeddingCache:
    """Vectors by ``text_key`` in one SQLite file (``path``) or in memory (``None``)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(":memory:" if self.path is None else self.path,
                                   timeout=30.0, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            if self.path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
            self._db.commit()

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, NDArray[np.float32]]:
        found: dict[bytes, NDArray[np.float32]] = {}
        with self._lock:
            for start in range(0, len(keys), _LOOKUP_CHUNK):
                part = keys[start:start + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(part))
                rows = self._db.execute(
                    f"SELECT key, vector FROM vectors WHERE key IN ({marks})", part)
                for key, blob in rows:
                    found[key] = np.frombuffer(blob, dtype="<f4").astype(np.float32)
        return found

    def put_many(self, items: Sequence[tuple[bytes, NDArray[np.float32]]]) -> None:
        with self._lock:
            self._db.executemany(
                "INSERT OR REPLACE INTO vectors (key, vector) VALUES (?, ?)",
                [(key, np.asarray(vec, dtype="<f4").tobytes()) for key, vec in items])
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM vectors").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Embeddings:
    """Callable ``texts -> (n, d) float32`` over a backend, cached and logged.

    ``name`` (``provider:model``) identifies the vector space: an index remembers the
    name it was built with and refuses queries embedded by another.
    """

    def __init__(self, backend: EmbeddingBackend, *, cache: EmbeddingCache | None = None,
                 event_log: EventLog | None = None, agent: str | None = None) -> None:
        self.backend = backend
        self.cache = cache
        self.event_log = event_log
        self.agent = agent

    @property
    def name(self) -> str:
        return f"{self.backend.provider}:{self.backend.model}"

    def __call__(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self.embed(texts)

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """One unit vector per text, in order; only texts the cache lacks are sent."""
        if not texts:
            raise ConfigError("no texts to embed", fix="pass at least one text")
        keys = [text_key(self.name, text) for text in texts]
        known = self.cache.get_many(keys) if self.cache is not None else {}
        missing = list(dict.fromkeys(k for k in keys if k not in known))
        by_key = dict(zip(keys, texts, strict=True))
        fresh: dict[bytes, NDArray[np.float32]] = {}
        size = self.backend.batch_size
        for start in range(0, len(missing), size):
            part = missing[start:start + size]
            batch = self._send([by_key[key] for key in part])
            fresh.update(zip(part, batch.vectors, strict=True))
            if self.cache is not None:
                self.cache.put_many(list(zip(part, batch.vectors, strict=True)))
        if not missing:
            self._write(item_count=len(texts), cache_outcome="hit", input_tokens=0,
                        cost_usd=0.0, latency_ms=0.0)
        vectors = {**known, **fresh}
        return np.stack([vectors[key] for key in keys]).astype(np.float32, copy=False)

    def _send(self, texts: list[str]) -> EmbeddingBatch:
        started = time.perf_counter()
        try:
            batch = self.backend.embed_batch(texts)
        except Exception as error:
            self._write(item_count=len(texts), status="error",
                        error_type=describe_failure(error),
                        latency_ms=(time.perf_counter() - started) * 1000)
            raise
        self._write(item_count=len(texts), cache_outcome="miss" if self.cache is not None else None,
                    input_tokens=batch.input_tokens, cost_usd=batch.cost_usd,
                    latency_ms=(time.perf_counter() - started) * 1000, attempt=batch.attempts)
        return batch

    def _write(self, **fields: Any) -> None:
        if self.event_log is None:
            return
        fields.setdefault("status", "ok")
        if "cost_usd" in fields:
            fields["cost_status"] = "unpriced" if fields["cost_usd"] is None else "priced"
        self.event_log.write(Event(
            kind=EventKind.EMBEDDING, name="embed", provider=self.backend.provider,
            request_model=self.backend.model, agent=self.agent, **fields))

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
        closer = getattr(self.backend, "close", None)
        if callable(closer):
            closer()


def backend_for(model: str, settings: Settings, *, price_book: PriceBook | None = None,
                dimensions: int | None = None) -> EmbeddingBackend:
    """The backend named by ``model`` (see the module docstring)."""
    if model == "auto":
        model = "local" if local_model_available() else "hashing"
    if model == "hashing":
        return HashingBackend()
    if model in ("local", "all-MiniLM-L6-v2"):
        return LocalBackend()
    from devora_lab.llm.routing import Router

    route = Router(settings=settings).resolve(model)
    book = price_book

    def price(name: str, tokens: int) -> float | None:
        return None if book is None else book.cost(name, tokens, 0)

    return OpenAIBackend(route.adapter, route.model, dimensions=dimensions, price=price)


def embeddings_for(settings: Settings, *, event_log: EventLog | None = None,
                   price_book: PriceBook | None = None, cache_dir: Path | None = None,
                   agent: str | None = None) -> Embeddings:
    """The workspace's embedder from ``[rag]`` settings, cached under ``cache_dir``."""
    rag = settings.rag
    backend = backend_for(rag.embedding_model, settings, price_book=price_book,
                          dimensions=rag.embedding_dimensions)
    cache = EmbeddingCache(cache_dir / "embeddings.sqlite") if cache_dir is not None else None
    return Embeddings(backend, cache=cache, event_log=event_log, agent=agent)
