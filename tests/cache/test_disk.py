"""The SQLite cache: persistence, expiry, eviction, many processes, and damaged files."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from devora_lab.cache.base import CacheBackend, CacheStats
from devora_lab.cache.disk import FILE_NAME, DiskCache
from devora_lab.errors import ConfigError, DevoraWarning, WorkspaceError

PROCESSES = 4
KEYS_PER_PROCESS = 600


class FakeClock:
    """Wall-clock seconds that the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def value_of(key: str) -> bytes:
    """A value that can only belong to ``key``, 32 to 1,056 bytes long."""
    digest = hashlib.sha256(key.encode()).digest()
    return digest * (1 + digest[0] % 33)


def totals_agree(folder: Path) -> tuple[int, int]:
    """The trigger-kept total and the sum of the entries' sizes, read directly."""
    with sqlite3.connect(folder / FILE_NAME) as conn:
        kept = conn.execute("SELECT bytes FROM totals").fetchone()[0]
        summed = conn.execute("SELECT coalesce(sum(size), 0) FROM entries").fetchone()[0]
    return kept, summed


def test_it_is_a_cache_backend(tmp_path: Path) -> None:
    with DiskCache(tmp_path) as cache:
        assert isinstance(cache, CacheBackend)
        assert cache.path == tmp_path / "responses.sqlite"


def test_entries_survive_a_reopen(tmp_path: Path) -> None:
    with DiskCache(tmp_path) as cache:
        cache.set("ns:a", b'{"text": "hello"}')
        cache.set("ns:b", bytearray(b"\x00\xff binary"))  # type: ignore[arg-type]
        cache.delete("ns:b")
    with DiskCache(tmp_path) as again:
        assert again.get("ns:a") == b'{"text": "hello"}'
        assert again.get("ns:b") is None
        assert again.stats() == CacheStats(entries=1, bytes=len("ns:a") + 17, hits=1,
                                           misses=1, evictions=0)


def test_ttl_is_a_wall_clock_epoch_that_outlives_the_process(tmp_path: Path) -> None:
    clock = FakeClock()
    with DiskCache(tmp_path, default_ttl=100, clock=clock) as cache:
        cache.set("short", b"v", ttl=10)
        cache.set("default", b"v")
        cache.set("other", b"v", ttl=1000)
    clock.now += 10
    with DiskCache(tmp_path, clock=clock) as cache:
        assert cache.get("short") is None
        assert cache.get("default") == b"v"
        assert cache.stats().entries == 2
        clock.now += 90
        assert cache.get("default") is None
        assert cache.purge_expired() == 0  # both were removed when found expired
        assert cache.expirations == 2
        assert cache.get("other") == b"v"


def test_eviction_drops_the_least_recently_used_down_to_90_percent(tmp_path: Path) -> None:
    clock = FakeClock()
    with DiskCache(tmp_path, max_bytes=1000, clock=clock) as cache:
        for i in range(10):  # 10 entries of 100 bytes: exactly full
            clock.now += 100  # more than the minute to which hit times are recorded
            cache.set(f"k{i}", b"x" * 98)
        clock.now += 100
        assert cache.get("k0") is not None and cache.get("k1") is not None
        clock.now += 100
        cache.set("k10", b"x" * 99)  # 1,102 bytes: down to 900 means dropping three
        present = [i for i in range(11) if cache.get(f"k{i}") is not None]
        assert present == [0, 1, 5, 6, 7, 8, 9, 10]
        assert cache.stats().evictions == 3
        assert cache.stats().bytes == 802
    assert totals_agree(tmp_path) == (802, 802)


def test_hit_times_are_recorded_to_the_minute(tmp_path: Path) -> None:
    clock = FakeClock()
    with DiskCache(tmp_path, max_bytes=1000, clock=clock) as cache:
        for i in range(10):
            cache.set(f"k{i}", b"x" * 98)
            clock.now += 1
        assert cache.get("k0") is not None  # stored 10 s ago: not noted, still the oldest
        cache.set("k10", b"x" * 99)  # 1,101 bytes: k0, k1 and k2 go
        assert [cache.get(f"k{i}") for i in range(3)] == [None] * 3
        clock.now += 60
        assert cache.get("k3") is not None  # noted now: k4 and k5 are the oldest
        cache.set("k11", b"x" * 99)
        cache.set("k12", b"x" * 99)  # 1,003 bytes: two go
        assert cache.get("k3") is not None
        assert cache.get("k4") is None and cache.get("k5") is None


def test_expired_entries_go_before_live_ones(tmp_path: Path) -> None:
    clock = FakeClock()
    with DiskCache(tmp_path, max_bytes=1000, clock=clock) as cache:
        for i in range(10):
            cache.set(f"k{i}", b"x" * 98, ttl=5 if i >= 5 else None)
        clock.now += 10
        cache.set("k10", b"x" * 98)  # the expired k5-k9 make room: nothing live goes
        assert all(cache.get(f"k{i}") is not None for i in (0, 1, 2, 3, 4, 10))
        assert cache.stats().evictions == 0
        assert cache.expirations == 5


def test_a_value_larger_than_the_cache_is_not_stored(tmp_path: Path) -> None:
    with DiskCache(tmp_path, max_bytes=100) as cache:
        cache.set("k", b"small")
        cache.set("k", b"x" * 200)
        assert cache.get("k") is None
        assert cache.stats().bytes == 0


def test_clear_all_or_one_namespace(tmp_path: Path) -> None:
    with DiskCache(tmp_path) as cache:
        for namespace in ("a", "b", "ab", "a-b"):
            for i in range(3):
                cache.set(f"{namespace}:{i}", b"v")
        assert cache.clear("a") == 3
        assert cache.get("ab:0") == b"v" and cache.get("a-b:0") == b"v"
        assert cache.clear("nothing") == 0
        assert cache.clear() == 9
        assert cache.stats().entries == 0
        with pytest.raises(ConfigError):
            cache.clear("a%")
    assert totals_agree(tmp_path) == (0, 0)


def test_bad_settings_and_bad_values_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        DiskCache(tmp_path, max_bytes=0)
    with pytest.raises(ConfigError):
        DiskCache(tmp_path, default_ttl=-5)
    with DiskCache(tmp_path) as cache, pytest.raises(TypeError):
        cache.set("k", {"a": 1})  # type: ignore[arg-type]


def test_an_unusable_folder_is_a_workspace_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(WorkspaceError, match="cannot create the cache folder"):
        DiskCache(blocker / "cache")


def test_a_closed_cache_says_so(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path)
    cache.close()
    cache.close()  # twice is harmless
    with pytest.raises(WorkspaceError, match="closed"):
        cache.get("k")


def test_threads_share_one_instance(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    with DiskCache(tmp_path) as cache:

        def work(number: int) -> None:
            try:
                for i in range(150):
                    key = f"t{number}:{i}"
                    cache.set(key, value_of(key))
                    assert cache.get(key) == value_of(key)
                    other = f"t{(number + 1) % 4}:{i}"
                    assert cache.get(other) in (None, value_of(other))
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert cache.stats().entries == 600


def _process_body(folder: str, number: int, max_bytes: int, start: Any) -> list[str]:
    """Write this process's keys, read them and the others'; return what was wrong."""
    wrong: list[str] = []
    cache = DiskCache(folder, max_bytes=max_bytes)
    start.wait()
    for i in range(KEYS_PER_PROCESS):
        key = f"p{number}:{i}"
        cache.set(key, value_of(key))
        got = cache.get(key)
        if got not in (value_of(key), None) or (got is None and max_bytes >= 2**30):
            wrong.append(f"own {key}")
        other = f"p{(number + 1) % PROCESSES}:{i}"
        if cache.get(other) not in (None, value_of(other)):
            wrong.append(f"other {other}")
    cache.close()
    return wrong


def _run_processes(folder: Path, max_bytes: int) -> list[str]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        start = manager.Event()
        with ctx.Pool(PROCESSES) as pool:
            results = [pool.apply_async(_process_body, (str(folder), n, max_bytes, start))
                       for n in range(PROCESSES)]
            start.set()
            return [problem for result in results for problem in result.get(timeout=60)]


@pytest.mark.slow
def test_four_processes_write_and_read_exactly(tmp_path: Path) -> None:
    DiskCache(tmp_path).close()  # the schema exists before they start, as in real use
    assert _run_processes(tmp_path, 2**30) == []
    with DiskCache(tmp_path) as cache:
        for number in range(PROCESSES):
            for i in range(KEYS_PER_PROCESS):
                assert cache.get(f"p{number}:{i}") == value_of(f"p{number}:{i}")
        assert cache.stats().entries == PROCESSES * KEYS_PER_PROCESS
    kept, summed = totals_agree(tmp_path)
    assert kept == summed


@pytest.mark.slow
def test_four_processes_evicting_keep_the_totals_exact(tmp_path: Path) -> None:
    assert _run_processes(tmp_path, 64_000) == []  # about a fifth of what they write
    kept, summed = totals_agree(tmp_path)
    assert kept == summed <= 64_000
    with DiskCache(tmp_path) as cache:
        with sqlite3.connect(tmp_path / FILE_NAME) as conn:
            keys = [row[0] for row in conn.execute("SELECT key FROM entries")]
        assert keys and all(cache.get(key) == value_of(key) for key in keys)


def test_a_file_that_is_not_a_database_is_moved_aside(tmp_path: Path) -> None:
    garbage = os.urandom(8192)
    (tmp_path / FILE_NAME).write_bytes(garbage)
    (tmp_path / f"{FILE_NAME}-wal").write_bytes(os.urandom(100))
    with pytest.warns(DevoraWarning, match="damaged"), DiskCache(tmp_path) as cache:
        assert cache.get("k") is None
        assert cache.stats().entries == 0
        cache.set("k", b"v")
        assert cache.get("k") == b"v"
    aside = sorted(tmp_path.glob(f"{FILE_NAME}.corrupt-*"))
    assert aside and aside[0].read_bytes() == garbage  # kept for a post-mortem


def test_damage_found_in_use_is_a_miss_then_a_fresh_file(tmp_path: Path) -> None:
    with DiskCache(tmp_path) as cache:
        for i in range(1500):
            cache.set(f"ns:{i}", os.urandom(300))
    path = tmp_path / FILE_NAME
    data = bytearray(path.read_bytes())
    for offset in range(2 * 4096, len(data), 3 * 4096):  # the header and schema stay
        data[offset:offset + 4096] = os.urandom(4096)
    path.write_bytes(bytes(data))
    with pytest.warns(DevoraWarning, match="damaged"):
        cache = DiskCache(tmp_path)
        results = [cache.get(f"ns:{i}") for i in range(0, 1500, 10)]
        cache.set("ns:new", b"fresh")
    assert all(result is None or len(result) == 300 for result in results)
    assert cache.get("ns:new") == b"fresh"
    assert list(tmp_path.glob(f"{FILE_NAME}.corrupt-*"))
    cache.close()
