"""The in-memory LRU: expiry on an injected clock, the byte bound, and many threads."""

from __future__ import annotations

import random
import threading

import pytest

from devora_lab.cache.base import CacheBackend, CacheStats
from devora_lab.cache.memory import MemoryCache
from devora_lab.errors import ConfigError


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def size(key: str, value: bytes) -> int:
    return len(key) + len(value)


def test_it_is_a_cache_backend() -> None:
    assert isinstance(MemoryCache(), CacheBackend)


def test_get_set_delete_and_stats() -> None:
    cache = MemoryCache()
    assert cache.get("ns:a") is None
    cache.set("ns:a", b"one")
    cache.set("ns:b", bytearray(b"two"))  # type: ignore[arg-type]
    assert cache.get("ns:a") == b"one"
    assert cache.get("ns:b") == b"two"
    cache.set("ns:a", b"uno")  # a replacement, not a second entry
    assert cache.get("ns:a") == b"uno"
    cache.delete("ns:b")
    cache.delete("ns:missing")
    assert cache.get("ns:b") is None
    assert cache.stats() == CacheStats(entries=1, bytes=size("ns:a", b"uno"), hits=3,
                                       misses=2, evictions=0)


def test_values_must_be_bytes() -> None:
    with pytest.raises(TypeError, match="bytes"):
        MemoryCache().set("k", "text")  # type: ignore[arg-type]


def test_ttl_expires_on_the_injected_clock() -> None:
    clock = FakeClock()
    cache = MemoryCache(clock=clock)
    cache.set("short", b"v", ttl=10)
    cache.set("forever", b"v")
    clock.now += 9.99
    assert cache.get("short") == b"v"
    clock.now += 0.01
    assert cache.get("short") is None
    assert cache.get("forever") == b"v"
    assert cache.expirations == 1
    assert cache.stats().entries == 1


def test_default_ttl_applies_unless_a_ttl_is_given() -> None:
    clock = FakeClock()
    cache = MemoryCache(default_ttl=5, clock=clock)
    cache.set("default", b"v")
    cache.set("longer", b"v", ttl=60)
    clock.now += 5
    assert cache.get("default") is None
    assert cache.get("longer") == b"v"


def test_stats_and_purge_drop_expired_entries() -> None:
    clock = FakeClock()
    cache = MemoryCache(clock=clock)
    for i in range(5):
        cache.set(f"k{i}", b"v", ttl=1 + i)
    clock.now += 3
    assert cache.stats().entries == 2
    assert cache.stats().bytes == 2 * size("k0", b"v")
    assert cache.purge_expired() == 0
    assert cache.expirations == 3


def test_eviction_follows_least_recent_use_within_the_byte_bound() -> None:
    value = b"x" * 96
    entry = size("k0", value)
    cache = MemoryCache(max_bytes=4 * entry)
    for i in range(4):
        cache.set(f"k{i}", value)
    assert cache.get("k0") == value  # k0 is now the newest: k1 goes first
    cache.set("k4", value)
    assert cache.get("k1") is None
    cache.set("k5", value)
    assert cache.get("k2") is None
    assert [cache.get(f"k{i}") is not None for i in (0, 3, 4, 5)] == [True] * 4
    stats = cache.stats()
    assert (stats.entries, stats.bytes, stats.evictions) == (4, 4 * entry, 2)


def test_a_large_value_evicts_as_many_entries_as_it_needs() -> None:
    cache = MemoryCache(max_bytes=1000)
    for i in range(10):
        cache.set(f"k{i}", b"x" * 98)  # 100 bytes each: exactly full
    cache.set("big", b"y" * 497)  # 500 bytes: the five oldest go
    assert [cache.get(f"k{i}") is None for i in range(10)] == [True] * 5 + [False] * 5
    assert cache.stats().bytes == 1000


def test_a_value_larger_than_the_cache_is_not_stored() -> None:
    cache = MemoryCache(max_bytes=100)
    cache.set("k", b"small")
    cache.set("k", b"x" * 200)
    assert cache.get("k") is None  # the old value is gone too: it was replaced
    assert cache.rejected == 1
    assert cache.stats().bytes == 0


def test_clear_all_or_one_namespace() -> None:
    cache = MemoryCache()
    for namespace in ("a", "b", "ab"):
        for i in range(3):
            cache.set(f"{namespace}:{i}", b"v")
    assert cache.clear("a") == 3
    assert cache.get("ab:0") == b"v"  # "ab" is not inside "a"
    assert cache.clear("missing") == 0
    assert cache.clear() == 6
    assert cache.stats().bytes == 0
    with pytest.raises(ConfigError):
        cache.clear("a:b")


@pytest.mark.parametrize("kwargs", [{"max_bytes": 0}, {"max_bytes": 1.5},
                                    {"default_ttl": 0}, {"default_ttl": -1}])
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        MemoryCache(**kwargs)  # type: ignore[arg-type]


def test_bad_ttl_is_refused() -> None:
    with pytest.raises(ConfigError, match="ttl"):
        MemoryCache().set("k", b"v", ttl=0)


def test_close_empties_it() -> None:
    with MemoryCache() as cache:
        cache.set("k", b"v")
    assert len(cache) == 0


def test_many_threads_keep_it_consistent() -> None:
    cache = MemoryCache(max_bytes=20_000)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(3000):
                key = f"ns{rng.randrange(3)}:{rng.randrange(200)}"
                action = rng.random()
                if action < 0.5:
                    value = cache.get(key)
                    assert value is None or value == key.encode() * (len(value) // len(key))
                elif action < 0.95:
                    cache.set(key, key.encode() * rng.randrange(1, 8))
                elif action < 0.99:
                    cache.delete(key)
                else:
                    cache.clear(f"ns{rng.randrange(3)}")
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    stats = cache.stats()
    held = {key: cache.get(key) for key in list(cache._data)}
    assert stats.bytes == sum(size(k, v) for k, v in held.items() if v is not None)
    assert stats.bytes <= 20_000
    assert stats.hits + stats.misses >= 8 * 3000 * 0.45
