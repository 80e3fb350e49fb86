"""The response cache: the same deterministic request twice costs one provider call.

``ResponseCache`` puts a policy (which requests may be cached, for how long, in which
namespace) in front of a storage backend: in-memory LRU (the default), a SQLite file in the
workspace shared by every process on the machine, or Redis shared across machines.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from devora_lab.cache.base import CacheBackend, CacheStats
from devora_lab.cache.entry import CacheEntry, CorruptEntryError, decode_entry, encode_entry
from devora_lab.errors import DevoraWarning

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from devora_lab.cache.keys import CacheKey
    from devora_lab.cache.semantic import SemanticIndex, SemanticMatch
    from devora_lab.llm.types import Completion, MessageLike

__all__ = [
    "CacheBackend",
    "CacheEntry",
    "CachePolicy",
    "CacheStats",
    "CorruptCacheEntryWarning",
    "ResponseCache",
    "Similar",
]

log = logging.getLogger("devora_lab.cache")


class CorruptCacheEntryWarning(DevoraWarning):
    """A cached value could not be decoded; it was dropped and the call went to the provider."""


@dataclass(frozen=True, slots=True)
class Similar:
    """A request as the semantic index sees it: its scope, compared text and vector."""

    scope: str
    text: str
    vector: NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """Which requests are cached, for how long, and under which namespace by default.

    ``deterministic_only`` (the default) caches only requests with temperature 0 or a
    seed: for sampled requests a cached answer would hide the variety the caller asked for.
    """

    deterministic_only: bool = True
    ttl: float | None = None
    namespace: str = "default"


class ResponseCache:
    """A policy over a backend; the client asks it for keys, lookups and stores."""

    def __init__(self, backend: CacheBackend | None = None,
                 policy: CachePolicy | None = None,
                 semantic: SemanticIndex | None = None) -> None:
        if backend is None:
            from devora_lab.cache.memory import MemoryCache

            backend = MemoryCache()
        self.backend = backend
        self.policy = policy if policy is not None else CachePolicy()
        self.semantic = semantic

    def key(self, provider: str, model: str, messages: Sequence[MessageLike],
            params: Mapping[str, Any], namespace: str | None = None) -> CacheKey:
        from devora_lab.cache.keys import cache_key

        return cache_key(provider, model, messages, params,
                         namespace=namespace or self.policy.namespace)

    def eligible(self, params: Mapping[str, Any]) -> bool:
        from devora_lab.cache.keys import is_deterministic

        return self.eligible_for(is_deterministic(params))

    def eligible_for(self, deterministic: bool) -> bool:
        """Whether a request that is (or is not) deterministic may be cached."""
        return deterministic or not self.policy.deterministic_only

    def lookup(self, key: CacheKey, request_id: str) -> CacheEntry | None:
        """The stored entry, or None; a corrupt entry is dropped with a warning."""
        raw = self.backend.get(key.full)
        if raw is None:
            return None
        try:
            return decode_entry(raw, request_id=request_id)
        except CorruptEntryError as exc:
            warnings.warn(f"cache entry {key.full} was unreadable and is dropped: {exc}",
                          CorruptCacheEntryWarning, stacklevel=2)
            self.backend.delete(key.full)
            return None

    def store(self, key: CacheKey, completion: Completion, chunks: tuple[str, ...] = (),
              ttl: float | None = None, similar: Similar | None = None) -> None:
        self.backend.set(key.full, encode_entry(completion, chunks),
                         ttl if ttl is not None else self.policy.ttl)
        if similar is not None and self.semantic is not None:
            self.semantic.add(similar.scope, similar.text, key.full, vector=similar.vector)

    def similar_request(self, provider: str, model: str, messages: Sequence[MessageLike],
                        params: Mapping[str, Any], namespace: str | None = None
                        ) -> Similar | None:
        """What a semantic lookup compares for this request, or None when it must match
        exactly (no semantic index, or it ends with a tool result or holds media)."""
        if self.semantic is None:
            return None
        from devora_lab.cache.semantic import conversation_text, scope_key, semantic_parts

        parts = semantic_parts(messages)
        if parts is None:
            return None
        context, question = parts
        scope = scope_key(provider, model, params,
                          namespace=namespace or self.policy.namespace, context=context)
        text = conversation_text([question])
        return Similar(scope, text, self.semantic.embed(text))

    def lookup_similar(self, similar: Similar, request_id: str
                       ) -> tuple[CacheEntry, SemanticMatch] | None:
        """The stored answer to the nearest earlier request within the same model and
        parameters, if it is similar enough; a match whose entry expired is forgotten."""
        if self.semantic is None:
            return None
        match = self.semantic.nearest(similar.scope, similar.text, vector=similar.vector)
        if match is None:
            return None
        from devora_lab.cache.keys import CacheKey

        namespace, _, digest = match.key.partition(":")
        entry = self.lookup(CacheKey(namespace, digest, (), ()), request_id)
        if entry is None:
            self.semantic.discard(similar.scope, match.key)
            return None
        return entry, match

    def stats(self) -> CacheStats:
        return self.backend.stats()

    def close(self) -> None:
        self.backend.close()
