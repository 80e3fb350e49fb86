"""Benchmarks of the response-cache backends: the latency and rate of a cache hit.

What is measured, and why that baseline:

``cache.memory`` — one exact hit in ``MemoryCache`` *including* making the key of a 4 KB
chat request with ``cache_key`` (normalisation, canonical JSON, SHA-256), since a caller
pays both on every call. The baseline is the cache a team writes by hand: a dict keyed by
``hashlib.sha256(json.dumps(request, sort_keys=True))``, as an ``functools.lru_cache``
would hold it. Ours does more (None fields dropped, stop/max-token aliases, ignored fields,
an LRU bounded in bytes with TTLs, a lock), so the goal is an absolute one: ≤ 30 µs.

``cache.disk`` — one hit in ``DiskCache`` (SQLite, WAL) with a precomputed key, against a
raw ``sqlite3`` ``SELECT value FROM entries WHERE key = ?`` on the same file, so both read
the same pages; the difference is what the cache adds (expiry check, remembering the hit
for LRU, counters, a thread's connection lookup).

``cache.redis`` — one hit in ``RedisCache`` against a redis-server started on loopback for
the run, with a precomputed key, against a raw redis-py ``GET`` of the same key; goal
≤ 0.3 ms. Skipped, with a note, when ``redis-server`` is not installed.

Latencies are the median of single timed lookups, ours and the baseline interleaved in
rounds so that drift hits both alike; rates are lookups per second of one thread in a
tight loop over the same keys.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import shutil
import socket
import sqlite3
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from benchmarks.harness import Context, benchmark, median
from benchmarks.table import Row
from devora_lab.cache.disk import DiskCache
from devora_lab.cache.keys import cache_key
from devora_lab.cache.memory import MemoryCache

_MEMORY_GOAL_US = 30.0
_REDIS_GOAL_MS = 0.3
_REQUEST_BYTES = 4096
_VALUE = json.dumps({"v": 1, "text": "The weather in Paris is 21 °C and sunny. " * 40,
                     "model": "gpt-4o-2024-08-06", "usage": [900, 120, 0, 0, 0]}).encode()
_ROUNDS = 5


def _request(variant: int = 0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A realistic chat request of about 4 KB of JSON: system prompt, turns, a tool call
    and its result, a tool definition and sampling parameters."""
    tools = [{"type": "function", "function": {
        "name": "weather", "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}]
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a concise travel assistant. " * 8},
        {"role": "user", "content": f"Request {variant}: what should I pack for Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"celsius": 21, "sky": "sun"}'},
        {"role": "assistant", "content": "It is mild and sunny. "},
        {"role": "user", "content": ""},
    ]
    params = {"temperature": 0, "max_tokens": 512, "tools": tools, "tool_choice": "auto",
              "stream": False, "user": "bench"}
    missing = _REQUEST_BYTES - len(json.dumps({"model": "gpt-4o", "messages": messages,
                                                **params}))
    messages[-1]["content"] = ("And for the evening? " * 200)[:max(missing, 0)]
    return messages, params


def _p50_us(samples: Sequence[int]) -> float:
    return median(samples) / 1000


def _timed_each(call: Callable[[], Any], n: int) -> list[int]:
    """Nanoseconds of each of ``n`` calls."""
    samples = []
    clock = time.perf_counter_ns
    for _ in range(n):
        start = clock()
        call()
        samples.append(clock() - start)
    return samples


def _interleaved(contenders: dict[str, Callable[[], Any]], n: int) -> dict[str, float]:
    """p50 in µs of each contender, measured in interleaved rounds after a warm-up."""
    for call in contenders.values():
        _timed_each(call, min(n // 10, 500))
    samples: dict[str, list[int]] = {name: [] for name in contenders}
    gc.collect()
    for _ in range(_ROUNDS):
        for name, call in contenders.items():
            samples[name] += _timed_each(call, n // _ROUNDS)
    return {name: _p50_us(values) for name, values in samples.items()}


def _rates(calls: dict[str, Callable[[], Any]], n: int, rounds: int = 5) -> dict[str, float]:
    """Calls per second of each contender: median over interleaved rounds, so that drift
    in the machine's speed hits every contender alike."""
    seen: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            seen[name].append(_rate(call, max(1, n // rounds)))
    return {name: statistics.median(values) for name, values in seen.items()}


def _rate(call: Callable[[], Any], n: int) -> float:
    """Calls per second of ``call`` in a tight loop."""
    start = time.perf_counter()
    for _ in range(n):
        call()
    return n / (time.perf_counter() - start)


def _cycling(keys: Sequence[str], lookup: Callable[[str], Any]) -> Callable[[], Any]:
    """A no-argument call that looks up the next key of ``keys`` each time (all hits)."""
    position = iter(range(1 << 62))
    count = len(keys)

    def call() -> Any:
        value = lookup(keys[next(position) % count])
        assert value is not None
        return value

    return call


@benchmark("cache.memory")
def bench_memory(ctx: Context) -> list[Row]:
    """MemoryCache hit with cache_key of a 4 KB request vs a dict + sha256(json.dumps)."""
    n = ctx.size(50_000, 5_000)
    messages, params = _request()
    request = {"model": "gpt-4o", "messages": messages, **params}
    size = len(json.dumps(request))
    ours, plain = MemoryCache(), dict[str, bytes]()
    for variant in range(ctx.size(10_000, 1_000)):  # other entries, for a realistic table
        other_messages, other_params = _request(variant + 1)
        ours.set(cache_key("openai", "gpt-4o", other_messages, other_params).full, _VALUE)
        plain[_plain_key({"model": "gpt-4o", "messages": other_messages, **other_params})] = \
            _VALUE
    ours.set(cache_key("openai", "gpt-4o", messages, params).full, _VALUE)
    plain[_plain_key(request)] = _VALUE
    key_only = cache_key("openai", "gpt-4o", messages, params).full

    def ours_hit() -> bytes | None:
        return ours.get(cache_key("openai", "gpt-4o", messages, params).full)

    def plain_hit() -> bytes | None:
        return plain.get(_plain_key(request))

    assert ours_hit() == plain_hit() == _VALUE
    p50 = _interleaved({"ours": ours_hit, "plain": plain_hit,
                        "key": lambda: cache_key("openai", "gpt-4o", messages, params),
                        "get": lambda: ours.get(key_only)}, n)
    rates = _rates({"ours": ours_hit, "plain": plain_hit}, n)
    baseline = "dict + sha256(json.dumps(request, sort_keys=True))"
    return [
        Row(benchmark=f"cache.memory: hit incl. cache_key of a {size:,} B request, p50 of {n:,}",
            ours=p50["ours"], unit="µs/lookup", baseline_name=baseline,
            baseline=p50["plain"], goal=_MEMORY_GOAL_US,
            notes=(f"of which cache_key {p50['key']:.2f} µs and MemoryCache.get "
                   f"{p50['get']:.2f} µs; {len(ours):,} entries held",)),
        Row(benchmark="cache.memory: hits per second incl. cache_key, one thread",
            ours=rates["ours"], unit="lookups/s", higher_is_better=True,
            baseline_name=baseline, baseline=rates["plain"]),
    ]


def _plain_key(request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


@benchmark("cache.disk")
def bench_disk(ctx: Context) -> list[Row]:
    """DiskCache hit vs a raw sqlite3 SELECT on the same file."""
    n, entries = ctx.size(20_000, 2_000), ctx.size(10_000, 1_000)
    folder = ctx.scratch("cache-disk")
    cache = DiskCache(folder)
    keys = [f"default:{hashlib.sha256(str(i).encode()).hexdigest()}" for i in range(entries)]
    for key in keys:
        cache.set(key, _VALUE)
    raw = sqlite3.connect(folder / "responses.sqlite", isolation_level=None)

    def raw_get(key: str) -> bytes | None:
        row = raw.execute("SELECT value FROM entries WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    ours_hit, raw_hit = _cycling(keys, cache.get), _cycling(keys, raw_get)
    p50 = _interleaved({"ours": ours_hit, "raw": raw_hit}, n)
    rates = _rates({"ours": ours_hit, "raw": raw_hit}, n)
    file_mib = (folder / "responses.sqlite").stat().st_size / 2**20
    raw.close()
    cache.close()
    baseline = "raw sqlite3 SELECT value WHERE key = ? on the same file"
    return [
        Row(benchmark=f"cache.disk: hit, p50 of {n:,} over {entries:,} entries",
            ours=p50["ours"], unit="µs/lookup", baseline_name=baseline, baseline=p50["raw"],
            notes=(f"{len(_VALUE):,} B values, key precomputed; WAL mode, file "
                   f"{file_mib:.0f} MiB (in the page cache); hit times for LRU are "
                   "recorded to the minute, so hits on entries stored during the run "
                   "write nothing",)),
        Row(benchmark="cache.disk: hits per second, one thread", ours=rates["ours"],
            unit="lookups/s", higher_is_better=True, baseline_name=baseline,
            baseline=rates["raw"]),
    ]


@benchmark("cache.redis")
def bench_redis(ctx: Context) -> list[Row]:
    """RedisCache hit vs a raw redis-py GET, on loopback."""
    if shutil.which("redis-server") is None:
        return [_not_measured("redis-server is not installed (scripts/setup.sh installs it "
                              "where it can: apt-get install redis-server)")]
    try:
        import redis
    except ImportError:
        return [_not_measured("the redis package is not installed (pip install redis)")]
    from devora_lab.cache.redis_backend import RedisCache

    n, entries = ctx.size(20_000, 2_000), ctx.size(10_000, 1_000)
    with _redis_server() as url:
        cache = RedisCache(url, prefix="bench:")
        raw = redis.Redis.from_url(url)
        keys = [f"default:{hashlib.sha256(str(i).encode()).hexdigest()}"
                for i in range(entries)]
        pipe = raw.pipeline(transaction=False)
        for key in keys:
            pipe.set(f"bench:{key}", _VALUE)
        pipe.execute()
        ours_hit = _cycling(keys, cache.get)
        raw_hit = _cycling([f"bench:{key}" for key in keys], raw.get)
        p50 = _interleaved({"ours": ours_hit, "raw": raw_hit}, n)
        rates = _rates({"ours": ours_hit, "raw": raw_hit}, n)
        cache.close()
        raw.close()
    baseline = "raw redis-py GET of the same key"
    return [
        Row(benchmark=f"cache.redis: hit on loopback, p50 of {n:,} over {entries:,} entries",
            ours=p50["ours"] / 1000, unit="ms/lookup", baseline_name=baseline,
            baseline=p50["raw"] / 1000, goal=_REDIS_GOAL_MS,
            notes=(f"{len(_VALUE):,} B values, key precomputed; redis-server started for "
                   "the run on 127.0.0.1 without persistence",)),
        Row(benchmark="cache.redis: hits per second, one thread", ours=rates["ours"],
            unit="lookups/s", higher_is_better=True, baseline_name=baseline,
            baseline=rates["raw"]),
    ]


def _not_measured(reason: str) -> Row:
    return Row(benchmark="cache.redis: not measured", ours=math.nan, unit="ms/lookup",
               notes=(reason,))


@contextmanager
def _redis_server() -> Iterator[str]:
    """A redis-server on a free loopback port, without persistence; yields its URL."""
    import redis

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    process = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        process.kill()
        process.wait(timeout=10)
