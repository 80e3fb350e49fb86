"""The workspace: one folder that holds all of a user's state.

::

    <workspace>/
      devora.toml      optional settings
      events/          the event log (Parquet by day, plus events/_active/ for live segments)
      cache/           response cache, embedding cache (embeddings.sqlite)
      lancedb/         RAG vector store
      experiments/     experiment definitions and state
      prompts/         prompt template registry
      reports/         executed notebooks and HTML reports

Chosen by ``--workspace``, else ``DEVORA_WORKSPACE``, else ``./devora-workspace``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devora_lab.config import Settings, load_settings
from devora_lab.errors import WorkspaceError

if TYPE_CHECKING:
    from devora_lab.cache import ResponseCache
    from devora_lab.events import EventLog
    from devora_lab.llm.pricing import PriceBook
    from devora_lab.rag.embeddings import Embeddings
    from devora_lab.rag.store import ChunkStore

__all__ = ["Workspace"]

_FOLDERS = ("events", "cache", "lancedb", "experiments", "prompts", "reports")


class Workspace:
    """Paths and settings of one workspace; folders are created on ``ensure()``."""

    def __init__(
        self, root: str | os.PathLike[str] | None = None, *, settings: Settings | None = None
    ) -> None:
        self.settings = settings if settings is not None else load_settings(root)
        self.root = self.settings.workspace

    @property
    def events_dir(self) -> Path:
        return self.root / "events"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def lancedb_dir(self) -> Path:
        return self.root / "lancedb"

    @property
    def experiments_dir(self) -> Path:
        return self.root / "experiments"

    @property
    def prompts_dir(self) -> Path:
        return self.root / "prompts"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    def ensure(self) -> Workspace:
        """Create the folders and check the workspace is writable; returns self."""
        try:
            for name in _FOLDERS:
                (self.root / name).mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe-"):
                pass
        except OSError as exc:
            raise WorkspaceError(
                f"workspace {self.root} is not writable: {exc.strerror}",
                fix="choose another folder with --workspace or DEVORA_WORKSPACE",
            ) from exc
        return self

    def event_log(self) -> EventLog:
        """The workspace's event log, configured from its settings."""
        from devora_lab.events import EventLog

        events = self.settings.events
        return EventLog(
            self.events_dir,
            roll_max_events=events.roll_max_events,
            roll_max_seconds=events.roll_max_seconds,
            fsync=events.fsync,
        )

    def price_book(self) -> PriceBook:
        """The shipped price book with the workspace's overrides, if any, on top."""
        from devora_lab.llm.pricing import PriceBook

        book = PriceBook.default()
        overrides = self.settings.pricing.overrides
        if overrides is None:
            return book
        path = overrides if overrides.is_absolute() else self.root / overrides
        return book.with_overrides(PriceBook.load(path))

    def response_cache(self) -> ResponseCache | None:
        """The response cache the settings ask for (None when ``backend = "none"``)."""
        from devora_lab.cache import CachePolicy, ResponseCache

        config = self.settings.cache
        policy = CachePolicy(deterministic_only=config.deterministic_only,
                             ttl=config.ttl_seconds, namespace=config.namespace)
        if config.backend == "none":
            return None
        semantic = None
        if config.semantic_threshold is not None:
            from devora_lab.cache.semantic import HashingEmbedder, SemanticIndex

            semantic = SemanticIndex(HashingEmbedder(), config.semantic_threshold)
        if config.backend == "disk":
            from devora_lab.cache.disk import DiskCache

            return ResponseCache(DiskCache(self.cache_dir, max_bytes=config.max_bytes), policy,
                                 semantic)
        if config.backend == "redis":
            from devora_lab.cache.redis_backend import RedisCache

            return ResponseCache(RedisCache(config.redis_url), policy, semantic)
        from devora_lab.cache.memory import MemoryCache

        return ResponseCache(MemoryCache(max_bytes=config.max_bytes), policy, semantic)

    def client_options(self, event_log: EventLog | None = None) -> dict[str, Any]:
        """What a client of this workspace is built with: its event log (``event_log``, else
        a new one), budgets, providers, prices, content policy and cache
        (``Client.from_workspace`` and ``Lab`` both use this)."""
        from devora_lab.costs.wiring import budget_guard
        from devora_lab.llm.routing import Router

        log = event_log if event_log is not None else self.event_log()
        return {
            "event_log": log,
            "budget": budget_guard(self, log),
            "router": Router(settings=self.settings),
            "price_book": self.price_book(),
            "content_policy": self.settings.events.content_policy,
            "cache": self.response_cache(),
        }

    def embeddings(self, event_log: EventLog | None = None, *,
                   agent: str | None = None) -> Embeddings:
        """The configured embedder (``[rag] embedding_model``), its vectors cached in
        ``<workspace>/cache/embeddings.sqlite`` and each batch logged to ``event_log``."""
        from devora_lab.rag.embeddings import embeddings_for

        return embeddings_for(self.settings, event_log=event_log,
                              price_book=self.price_book(), cache_dir=self.cache_dir,
                              agent=agent)

    def chunk_store(self) -> ChunkStore:
        """The document index in ``<workspace>/lancedb``."""
        from devora_lab.rag.store import ChunkStore

        return ChunkStore(self.lancedb_dir, ann_min_rows=self.settings.rag.ann_min_rows)

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"
