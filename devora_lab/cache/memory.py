"""An in-process LRU cache bounded in bytes: the fastest tier, gone when the process ends.

An ``OrderedDict`` keeps the entries in least-recently-used order, so a hit (``move_to_end``)
and an eviction (``popitem(last=False)``) are O(1). The bound counts the bytes of keys and
values, not entries, because LLM answers range from a word to a book. One lock guards all
state: each operation holds it for well under a microsecond, cheaper than anything finer.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from types import TracebackType
from typing import Final, NamedTuple

from devora_lab.cache.base import CacheStats
from devora_lab.cache.keys import check_max_bytes, check_namespace, check_ttl, check_value

__all__ = ["DEFAULT_MAX_BYTES", "MemoryCache"]

DEFAULT_MAX_BYTES: Final = 64 * 2**20


class _Entry(NamedTuple):
    value: bytes
    expires_at: float | None  # on the cache's clock; None: never
    size: int


class MemoryCache:
    """A thread-safe LRU cache of bytes, bounded by ``max_bytes`` of keys plus values.

    ``default_ttl`` (seconds) applies to entries set without a ``ttl``; None keeps them
    until they are evicted. ``clock`` is injectable so that tests control expiry.
    ``stats().evictions`` counts entries dropped to stay under ``max_bytes``; entries that
    expired are counted in ``expirations`` instead, and values larger than the whole
    cache in ``rejected``.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, default_ttl: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = check_max_bytes(max_bytes)
        self.default_ttl = check_ttl(default_ttl, "default_ttl")
        self._clock = clock
        self._lock = threading.Lock()
        self._data: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._hits = self._misses = self._evictions = 0
        self._expirations = self._rejected = 0

    def get(self, key: str) -> bytes | None:
        """The value, or None when absent or expired; a hit makes the entry the newest."""
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                self._misses += 1
                return None
            if entry.expires_at is not None and self._clock() >= entry.expires_at:
                self._drop(key)
                self._expirations += 1
                self._misses += 1
                return None
            self._data.move_to_end(key)
            self._hits += 1
            return entry.value

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store ``value``, evicting the least recently used entries if over the bound.

        ``ttl`` None means ``default_ttl``. A value larger than ``max_bytes`` is not
        stored (and replaces nothing), since it would evict everything and still not fit.
        """
        value = check_value(value)
        ttl = check_ttl(ttl) if ttl is not None else self.default_ttl
        size = _key_bytes(key) + len(value)
        with self._lock:
            self._drop(key)
            if size > self.max_bytes:
                self._rejected += 1
                return
            expires_at = None if ttl is None else self._clock() + ttl
            self._data[key] = _Entry(value, expires_at, size)
            self._bytes += size
            self._evict()

    def delete(self, key: str) -> None:
        with self._lock:
            self._drop(key)

    def clear(self, namespace: str | None = None) -> int:
        """Remove every entry, or those of one namespace; returns how many were removed.

        A namespace clear scans all keys (O(n)): clearing is rare, lookups are not, and
        an index per namespace would slow every ``set``.
        """
        with self._lock:
            if namespace is None:
                removed = len(self._data)
                self._data.clear()
                self._bytes = 0
                return removed
            prefix = check_namespace(namespace) + ":"
            doomed = [key for key in self._data if key.startswith(prefix)]
            for key in doomed:
                self._drop(key)
            return len(doomed)

    def purge_expired(self) -> int:
        """Remove every expired entry now (O(n)); returns how many were removed."""
        with self._lock:
            now = self._clock()
            doomed = [key for key, entry in self._data.items()
                      if entry.expires_at is not None and now >= entry.expires_at]
            for key in doomed:
                self._drop(key)
            self._expirations += len(doomed)
            return len(doomed)

    def stats(self) -> CacheStats:
        """Entries and bytes held (expired entries are purged first, so they do not count)."""
        self.purge_expired()
        with self._lock:
            return CacheStats(entries=len(self._data), bytes=self._bytes, hits=self._hits,
                              misses=self._misses, evictions=self._evictions)

    @property
    def expirations(self) -> int:
        """Entries removed because their time to live had passed."""
        return self._expirations

    @property
    def rejected(self) -> int:
        """Values not stored because they alone were larger than ``max_bytes``."""
        return self._rejected

    def close(self) -> None:
        """Release the memory; the cache stays usable, and empty."""
        self.clear()

    def __len__(self) -> int:
        return len(self._data)

    def __enter__(self) -> MemoryCache:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"MemoryCache({len(self._data)} entries, {self._bytes:,} of "
                f"{self.max_bytes:,} bytes)")

    # -- under the lock ----------------------------------------------------------------------

    def _drop(self, key: str) -> None:
        entry = self._data.pop(key, None)
        if entry is not None:
            self._bytes -= entry.size

    def _evict(self) -> None:
        while self._bytes > self.max_bytes:
            _, entry = self._data.popitem(last=False)
            self._bytes -= entry.size
            self._evictions += 1


def _key_bytes(key: str) -> int:
    """The UTF-8 size of ``key``; keys are ASCII digests, so this rarely encodes."""
    return len(key) if key.isascii() else len(key.encode())
