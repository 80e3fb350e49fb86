"""The response cache as one logical call sees it: its key, whether it may use the cache,
what the lookup found.

Every call gets a cache key, even with no cache configured: the key is logged so that the
counterfactual analysis can tell what a cache would have saved before anyone turns it on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from devora_lab.cache.keys import CacheKey, cache_key, is_deterministic

if TYPE_CHECKING:
    from devora_lab.cache import ResponseCache, Similar
    from devora_lab.cache.entry import CacheEntry
    from devora_lab.cache.semantic import SemanticMatch
    from devora_lab.llm.types import Completion, MessageLike

__all__ = ["CACHE_OPTIONS", "CacheOptions", "CallCache"]

CACHE_OPTIONS: Final = ("cache_ttl", "no_cache", "no_store", "cache_namespace")


@dataclass(frozen=True, slots=True)
class CacheOptions:
    """Per-call overrides: ``no_cache`` skips the lookup, ``no_store`` the store."""

    ttl: float | None = None
    no_cache: bool = False
    no_store: bool = False
    namespace: str | None = None

    @classmethod
    def pop_from(cls, params: dict[str, Any]) -> CacheOptions:
        """Take the cache options out of the request parameters (they are not sent)."""
        return cls(ttl=params.pop("cache_ttl", None), no_cache=bool(params.pop("no_cache", False)),
                   no_store=bool(params.pop("no_store", False)),
                   namespace=params.pop("cache_namespace", None))


class CallCache:
    """One call's view of the cache."""

    def __init__(self, cache: ResponseCache | None, provider: str, model: str,
                 messages: Sequence[MessageLike], params: Mapping[str, Any],
                 options: CacheOptions) -> None:
        self.cache = cache
        self.options = options
        self.deterministic = is_deterministic(params)
        if cache is not None:
            self.key: CacheKey = cache.key(provider, model, messages, params, options.namespace)
        else:
            self.key = cache_key(provider, model, messages, params,
                                 namespace=options.namespace or "default")
        self.outcome: str | None = None
        self.match: SemanticMatch | None = None
        self.similar: Similar | None = None
        if cache is not None and cache.semantic is not None and (
                cache.eligible_for(self.deterministic)):
            self.similar = cache.similar_request(provider, model, messages, params,
                                                 options.namespace)

    @property
    def usable(self) -> bool:
        """Whether this call may read the cache (a cache exists, policy and caller allow)."""
        return (self.cache is not None and not self.options.no_cache
                and self.cache.eligible_for(self.deterministic))

    def lookup(self, request_id: str) -> CacheEntry | None:
        """The stored answer, setting ``outcome`` to hit, miss or bypass."""
        if self.cache is None:
            return None
        if not self.usable:
            self.outcome = "bypass"
            return None
        entry = self.cache.lookup(self.key, request_id)
        if entry is not None:
            self.outcome = "hit"
            return entry
        found = None if self.similar is None else self.cache.lookup_similar(self.similar,
                                                                             request_id)
        if found is None:
            self.outcome = "miss"
            return None
        entry, self.match = found
        self.outcome = "semantic_hit"
        return entry

    def store(self, completion: Completion, chunks: tuple[str, ...] = ()) -> None:
        if (self.cache is not None and not self.options.no_store
                and self.cache.eligible_for(self.deterministic)):
            self.cache.store(self.key, completion, chunks, self.options.ttl, self.similar)
