"""The Redis cache against a real redis-server (skipped, with the reason, without one)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

from devora_lab.cache.base import CacheBackend
from devora_lab.errors import CacheUnavailableError, ConfigError, DevoraError

redis = pytest.importorskip("redis", reason="the redis package is not installed")

from devora_lab.cache.redis_backend import RedisCache  # noqa: E402 - needs redis


@pytest.fixture
def cache(redis_url: str, redis_prefix: str) -> Iterator[RedisCache]:
    with RedisCache(redis_url, prefix=redis_prefix) as made:
        yield made
        made.clear()


def test_it_is_a_cache_backend(cache: RedisCache) -> None:
    assert isinstance(cache, CacheBackend)
    assert cache.ping()


def test_get_set_delete(cache: RedisCache) -> None:
    assert cache.get("ns:a") is None
    cache.set("ns:a", b'{"text": "hello"}')
    cache.set("ns:b", bytearray(b"\x00\xff"))  # type: ignore[arg-type]
    assert cache.get("ns:a") == b'{"text": "hello"}'
    assert cache.get("ns:b") == b"\x00\xff"
    cache.delete("ns:b")
    assert cache.get("ns:b") is None
    stats = cache.stats()
    assert (stats.entries, stats.hits, stats.misses, stats.evictions) == (1, 2, 2, 0)
    assert stats.bytes == len(f"{cache.prefix}ns:a") + 17


def test_keys_carry_the_prefix(cache: RedisCache) -> None:
    cache.set("ns:a", b"v")
    assert cache.client.get(f"{cache.prefix}ns:a") == b"v"


def test_redis_expires_entries(cache: RedisCache, redis_url: str, redis_prefix: str) -> None:
    cache.set("ns:short", b"v", ttl=0.05)
    cache.set("ns:kept", b"v")
    assert 0 < cache.client.pttl(f"{cache.prefix}ns:short") <= 50
    assert cache.client.pttl(f"{cache.prefix}ns:kept") == -1  # no expiry
    time.sleep(0.12)
    assert cache.get("ns:short") is None
    assert cache.get("ns:kept") == b"v"
    with RedisCache(redis_url, prefix=redis_prefix, default_ttl=0.05) as short:
        short.set("ns:default", b"v")
        assert 0 < short.client.pttl(f"{cache.prefix}ns:default") <= 50


def test_namespaces_and_clear(cache: RedisCache, redis_url: str) -> None:
    for namespace in ("a", "b", "ab"):
        for i in range(700):  # more than one SCAN / UNLINK batch
            cache.set(f"{namespace}:{i}", b"v")
    with RedisCache(redis_url, prefix="another-app:") as neighbour:
        neighbour.set("a:0", b"theirs")
        assert cache.clear("a") == 700
        assert cache.get("ab:0") == b"v"
        assert cache.clear("missing") == 0
        assert cache.clear() == 1400
        assert cache.stats().entries == 0
        assert neighbour.get("a:0") == b"theirs"  # another prefix is never touched
        neighbour.clear()
    with pytest.raises(ConfigError):
        cache.clear("a*")


def test_glob_characters_in_the_prefix_match_only_themselves(redis_url: str) -> None:
    with RedisCache(redis_url, prefix="t[x]*:") as odd, \
            RedisCache(redis_url, prefix="tx-other:") as other:
        odd.set("ns:1", b"v")
        other.set("ns:1", b"v")
        assert odd.clear() == 1
        assert other.get("ns:1") == b"v"
        other.clear()


def test_two_instances_share_entries(redis_url: str, redis_prefix: str) -> None:
    with RedisCache(redis_url, prefix=redis_prefix) as one, \
            RedisCache(redis_url, prefix=redis_prefix) as two:
        one.set("ns:k", b"from one")
        assert two.get("ns:k") == b"from one"
        two.set("ns:k", b"from two")
        assert one.get("ns:k") == b"from two"
        two.delete("ns:k")
        assert one.get("ns:k") is None


def test_a_shared_client_is_left_open(redis_url: str, redis_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    with RedisCache(client=client, prefix=redis_prefix) as cache:
        cache.set("ns:k", b"v")
    assert client.get(f"{redis_prefix}ns:k") == b"v"
    client.delete(f"{redis_prefix}ns:k")
    client.close()


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="invalid Redis URL"):
        RedisCache("http://127.0.0.1:6379")
    with pytest.raises(ConfigError, match="invalid Redis URL"):
        RedisCache("redis://127.0.0.1:notaport/0")
    with pytest.raises(ConfigError, match="decodes responses"):
        RedisCache(client=redis.Redis(decode_responses=True))
    with pytest.raises(ConfigError, match="default_ttl"):
        RedisCache(default_ttl=0)


def test_an_outage_is_a_miss_and_a_warning(
        redis_server_factory: Callable[[], AbstractContextManager[Any]],
        caplog: pytest.LogCaptureFixture) -> None:
    with redis_server_factory() as server:
        cache = RedisCache(server.url, prefix="outage:", retry_after=0.2)
        cache.set("ns:k", b"v")
        assert cache.get("ns:k") == b"v"
        server.kill()
        with caplog.at_level(logging.WARNING, logger="devora_lab.cache"):
            started = time.monotonic()
            assert cache.get("ns:k") is None
            cache.set("ns:k", b"v2")  # swallowed
            assert cache.get("ns:k") is None
            assert time.monotonic() - started < 2
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1  # one per outage, not one per call
        assert "unreachable" in warnings[0].getMessage()
        assert "goes to the provider" in warnings[0].getMessage()
        assert cache.ping() is False
        # Invalidations and counts must not pretend to have worked.
        with pytest.raises(CacheUnavailableError, match="check that the Redis server is running"):
            cache.clear()
        with pytest.raises(DevoraError):
            cache.delete("ns:k")
        with pytest.raises(DevoraError):
            cache.stats()
        time.sleep(0.25)
        assert cache.get("ns:k") is None  # tried again after the rest: still a miss
        cache.close()
