"""Provider prompt caching, simulated deterministically.

Both providers cache prompt *prefixes*: a request whose beginning matches a recent request's
beginning is billed less for the matching part. We model a prompt as a sequence of segments
(OpenAI: messages; Anthropic: content blocks) and a prefix by a hash chain over them, so
"seen this prefix in the last ``ttl_s`` seconds" is one dictionary lookup per segment.

* OpenAI caches automatically once a prefix reaches 1,024 tokens, and reports hits in
  128-token steps beyond that (``openai_cached_tokens``).
* Anthropic caches only up to ``cache_control`` breakpoints; a request reads the longest
  cached prefix ending at a block boundary up to 20 blocks before one of its breakpoints,
  and writes its last breakpoint's prefix when that is new (``anthropic_cache``).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["Prefix", "PromptCache", "prefix_chain"]

_OPENAI_STEP: Final = 128
_LOOKBACK_BLOCKS: Final = 20


@dataclass(frozen=True, slots=True)
class Prefix:
    """The prompt up to and including one segment: its hash and its token count."""

    digest: bytes
    tokens: int


def prefix_chain(namespace: bytes, segments: Sequence[tuple[bytes, int]]) -> list[Prefix]:
    """The prefixes ending at each segment; ``namespace`` separates models and tool sets."""
    digest = hashlib.blake2b(namespace, digest_size=16).digest()
    tokens = 0
    chain: list[Prefix] = []
    for content, count in segments:
        digest = hashlib.blake2b(digest + content, digest_size=16).digest()
        tokens += count
        chain.append(Prefix(digest, tokens))
    return chain


class PromptCache:
    """Prefixes seen in the last ``ttl_s`` seconds (an LRU bounded to ``max_entries``).

    A hit refreshes the entry's lifetime, as both providers do.
    """

    def __init__(self, ttl_s: float = 300.0, max_entries: int = 200_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def longest_hit(self, prefixes: Sequence[Prefix]) -> int:
        """Tokens of the longest of ``prefixes`` still cached (0 if none); refreshes it."""
        now = self._clock()
        with self._lock:
            for prefix in sorted(prefixes, key=lambda p: p.tokens, reverse=True):
                expires = self._entries.get(prefix.digest)
                if expires is None:
                    continue
                if expires < now:
                    del self._entries[prefix.digest]
                    continue
                self._touch(prefix.digest, now)
                return prefix.tokens
        return 0

    def store(self, prefixes: Sequence[Prefix]) -> None:
        """Remember ``prefixes`` for ``ttl_s`` seconds from now."""
        now = self._clock()
        with self._lock:
            for prefix in prefixes:
                self._touch(prefix.digest, now)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def _touch(self, digest: bytes, now: float) -> None:
        self._entries[digest] = now + self.ttl_s
        self._entries.move_to_end(digest)

    def openai_cached_tokens(self, chain: Sequence[Prefix], min_tokens: int) -> int:
        """Cached prompt tokens as OpenAI reports them, and remember this prompt."""
        eligible = [prefix for prefix in chain if prefix.tokens >= min_tokens]
        hit = self.longest_hit(eligible)
        self.store(eligible)
        if hit < min_tokens:
            return 0
        return min_tokens + (hit - min_tokens) // _OPENAI_STEP * _OPENAI_STEP

    def anthropic_cache(self, chain: Sequence[Prefix], breakpoints: Sequence[int],
                        min_tokens: int) -> tuple[int, int]:
        """(cache_read, cache_creation) input tokens for a prompt with these breakpoints.

        ``breakpoints`` are indices into ``chain`` of the blocks carrying ``cache_control``.
        """
        if not breakpoints:
            return 0, 0
        candidates = {index for point in breakpoints
                      for index in range(max(point - _LOOKBACK_BLOCKS, 0), point + 1)}
        read = self.longest_hit([chain[i] for i in sorted(candidates)
                                 if chain[i].tokens >= min_tokens])
        last = chain[max(breakpoints)]
        written = [chain[i] for i in breakpoints if chain[i].tokens >= min_tokens]
        self.store(written)
        if last.tokens < min_tokens or read >= last.tokens:
            return read, 0
        return read, last.tokens - read
