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
    from devora_lab.cache.keys import CacheKey
    from devora_lab.llm.types import Completion, MessageLike

__all__ = [
    "CacheBackend",
    "CacheEntry",
    "CachePolicy",
    "CacheStats",
    "CorruptCacheEntryWarning",
    "ResponseCache",
]

log = logging.getLogger("devora_lab.cache")


class CorruptCacheEntryWarning(DevoraWarning):
    """A cached value could not be decoded; it was dropped and the call went to the provider."""


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
                 policy: CachePolicy | None = None) -> None:
        if backend is None:
            from devora_lab.cache.memory import MemoryCache

            backend = MemoryCache()
        self.backend = backend
        self.policy = policy if policy is not None else CachePolicy()

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
              ttl: float | None = None) -> None:
        self.backend.set(key.full, encode_entry(completion, chunks),
                         ttl if ttl is not None else self.policy.ttl)

    def stats(self) -> CacheStats:
        return self.backend.stats()

    def close(self) -> None:
        self.backend.close()
