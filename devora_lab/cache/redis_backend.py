"""A response cache in Redis, shared by every machine that can reach the server.

(Named ``redis_backend`` so that it never shadows the ``redis`` package it imports.)

Redis keeps the entries and expires them itself (``SET key value PX ms``); keys are
``<prefix><namespace>:<digest>``, so one server can hold several applications, and a
namespace is cleared with ``SCAN`` + ``UNLINK`` in batches: ``KEYS`` would block the server
for every other client while it walks the whole keyspace.

A cache must never turn a working call into a failing one, so an unreachable server makes
``get`` a miss and ``set`` a no-op, with one logged warning per outage; after a failure the
server is left alone for ``retry_after`` seconds, so that an outage costs the caller
nothing rather than a connect timeout per call. ``delete``, ``clear`` and ``stats`` raise
``CacheUnavailableError`` instead: a silently failed invalidation would serve stale answers later.
Timeouts are short and redis-py's own retries are cut to one, for the same reason.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Final

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from devora_lab.cache.base import CacheStats
from devora_lab.cache.keys import check_namespace, check_ttl, check_value
from devora_lab.errors import CacheUnavailableError, ConfigError

__all__ = ["DEFAULT_URL", "RedisCache"]

log = logging.getLogger("devora_lab.cache")

DEFAULT_URL: Final = "redis://127.0.0.1:6379/0"
_SCAN_COUNT: Final = 1000
_BATCH: Final = 500
_GLOB: Final = re.compile(r"([*?\[\]\\])")


class RedisCache:
    """Entries in Redis under ``prefix``; ``default_ttl`` (seconds) applies to entries set
    without a ``ttl``.

    Pass ``client`` to share an existing ``redis.Redis`` (it must not decode responses, and
    ``close()`` leaves it open); otherwise one is made from ``url`` with ``timeout``
    seconds to connect and to answer. ``stats()`` counts hits and misses of this instance;
    entries and bytes (keys plus values) are counted with ``SCAN`` over the prefix.
    ``evictions`` is 0: Redis evicts by its own ``maxmemory-policy``, server-wide, and does
    not say which prefix lost keys.
    """

    def __init__(self, url: str = DEFAULT_URL, *, prefix: str = "devora:",
                 default_ttl: float | None = None, client: redis.Redis | None = None,
                 timeout: float = 0.5, retry_after: float = 2.0) -> None:
        if not isinstance(prefix, str):
            raise ConfigError(f"the Redis key prefix must be a str, not {prefix!r}")
        self.prefix = prefix
        self.default_ttl = check_ttl(default_ttl, "default_ttl")
        self.retry_after = retry_after
        self._owns_client = client is None
        self._client = client if client is not None else _client_from_url(url, timeout)
        _check_client(self._client)
        self._lock = threading.Lock()
        self._hits = self._misses = 0
        self._down_until = 0.0  # monotonic time until which the server is not tried

    # -- the CacheBackend protocol -----------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """The value, or None when absent, expired, or the server is unreachable."""
        value: Any = None
        if not self._resting():
            try:
                value = self._client.get(self.prefix + key)
            except redis.RedisError as exc:
                self._outage(exc, "look up an entry")
            else:
                self._reachable()
        with self._lock:
            if value is None:
                self._misses += 1
            else:
                self._hits += 1
        return value if value is None else bytes(value)

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store ``value`` with Redis expiring it after ``ttl`` (None: ``default_ttl``);
        skipped, with a logged warning, when the server is unreachable."""
        value = check_value(value)
        ttl = check_ttl(ttl) if ttl is not None else self.default_ttl
        if self._resting():
            return
        px = None if ttl is None else max(1, math.ceil(ttl * 1000))
        try:
            self._client.set(self.prefix + key, value, px=px)
        except redis.RedisError as exc:
            self._outage(exc, "store an entry")
        else:
            self._reachable()

    def delete(self, key: str) -> None:
        try:
            self._client.delete(self.prefix + key)
        except redis.RedisError as exc:
            raise self._error(exc, "delete an entry") from exc

    def clear(self, namespace: str | None = None) -> int:
        """Remove every entry under the prefix, or those of one namespace, with ``SCAN``
        and ``UNLINK`` in batches; returns how many were removed."""
        pattern = self._pattern(namespace)
        removed = 0
        try:
            for batch in self._scan(pattern):
                removed += int(self._client.unlink(*batch))
        except redis.RedisError as exc:
            raise self._error(exc, "clear the cache") from exc
        return removed

    def stats(self) -> CacheStats:
        """Counts entries and bytes with ``SCAN`` + ``STRLEN`` (O(n), for reports)."""
        entries = size = 0
        try:
            for batch in self._scan(self._pattern(None)):
                pipe = self._client.pipeline(transaction=False)
                for name in batch:
                    pipe.strlen(name)
                lengths = pipe.execute()
                entries += len(batch)
                size += sum(len(name) for name in batch) + sum(int(n) for n in lengths)
        except redis.RedisError as exc:
            raise self._error(exc, "count the entries") from exc
        return CacheStats(entries=entries, bytes=size, hits=self._hits, misses=self._misses,
                          evictions=0)

    def close(self) -> None:
        """Close the connections, if this instance made the client."""
        if self._owns_client:
            self._client.close()

    # -- beyond the protocol -----------------------------------------------------------------

    def ping(self) -> bool:
        """Whether the server answers now (and, if so, stop resting after an outage)."""
        try:
            self._client.ping()
        except redis.RedisError:
            return False
        self._reachable()
        return True

    @property
    def client(self) -> redis.Redis:
        return self._client

    def __enter__(self) -> RedisCache:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisCache({_where(self._client)}, prefix={self.prefix!r})"

    # -- helpers -----------------------------------------------------------------------------

    def _pattern(self, namespace: str | None) -> str:
        """The SCAN pattern of the prefix (and namespace), glob characters escaped."""
        scope = self.prefix if namespace is None else \
            f"{self.prefix}{check_namespace(namespace)}:"
        return _GLOB.sub(r"\\\1", scope) + "*"

    def _scan(self, pattern: str) -> Iterator[list[bytes]]:
        batch: list[bytes] = []
        for name in self._client.scan_iter(match=pattern, count=_SCAN_COUNT):
            batch.append(name)
            if len(batch) >= _BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    def _resting(self) -> bool:
        """Whether a recent failure says not to try the server yet."""
        return bool(self._down_until) and time.monotonic() < self._down_until

    def _outage(self, exc: redis.RedisError, action: str) -> None:
        with self._lock:
            first = not self._down_until
            self._down_until = time.monotonic() + self.retry_after
        level = logging.WARNING if first else logging.DEBUG
        log.log(level, "the Redis response cache at %s is unreachable (%s: %s); could not %s, "
                "so the call goes to the provider; retrying in %.1f s", _where(self._client),
                type(exc).__name__, exc, action, self.retry_after)

    def _reachable(self) -> None:
        if self._down_until:
            with self._lock:
                self._down_until = 0.0
            log.info("the Redis response cache at %s is reachable again", _where(self._client))

    def _error(self, exc: redis.RedisError, action: str) -> CacheUnavailableError:
        return CacheUnavailableError(f"could not {action} in the Redis response cache at "
                           f"{_where(self._client)}: {type(exc).__name__}: {exc}",
                           fix="check that the Redis server is running and reachable")


def _client_from_url(url: str, timeout: float) -> redis.Redis:
    try:
        return redis.Redis.from_url(url, socket_timeout=timeout,
                                    socket_connect_timeout=timeout,
                                    retry=Retry(NoBackoff(), 1))
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL: {exc}",
                          fix="use redis://[:password@]host[:port][/db], rediss://... or "
                              "unix:///path/to/socket") from exc


def _check_client(client: redis.Redis) -> None:
    """Values are bytes, so a client that decodes them to str cannot be used."""
    if client.connection_pool.connection_kwargs.get("decode_responses"):
        raise ConfigError("the Redis client decodes responses to str; the cache stores bytes",
                          fix="pass a client made with decode_responses=False")


def _where(client: redis.Redis) -> str:
    """The server's address, for messages: never the password."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
