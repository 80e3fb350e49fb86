"""The one small interface every response-cache backend implements.

Values are bytes (JSON documents written by ``devora_lab.cache.entry``), never pickles, so a
cache shared across machines or versions can never execute code. Keys are hex digests
made by ``devora_lab.cache.keys``, prefixed with a namespace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["CacheBackend", "CacheStats"]


@dataclass(frozen=True, slots=True)
class CacheStats:
    """What a backend holds and how it has been used since it was opened."""

    entries: int
    bytes: int
    hits: int
    misses: int
    evictions: int


@runtime_checkable
class CacheBackend(Protocol):
    """Get, set and delete bytes by key, with an optional time to live in seconds."""

    def get(self, key: str) -> bytes | None:
        """The value, or None when absent or expired."""
        ...

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store ``value``; ``ttl`` None means no expiry beyond the backend's own bounds."""
        ...

    def delete(self, key: str) -> None: ...

    def clear(self, namespace: str | None = None) -> int:
        """Remove every entry (of one namespace); returns how many were removed."""
        ...

    def stats(self) -> CacheStats: ...

    def close(self) -> None: ...
