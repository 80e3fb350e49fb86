"""A persistent cache in one SQLite file, shared safely by threads and processes.

``<workspace>/cache/responses.sqlite`` survives restarts and is shared by every process of
the workspace. SQLite in WAL mode lets readers run beside one writer, and ``busy_timeout``
makes writers queue instead of failing; each thread has its own connection, since a
connection must not be used by two threads at once. ``synchronous=NORMAL`` skips the fsync
per commit: a power cut may lose the last answers stored, which a cache can afford.

Why the design is what it is:

- Expiry is a wall-clock epoch (``expires_at``), because entries outlive the process that
  wrote them and a monotonic clock restarts with each boot.
- A hit does not write. Eviction is least-recently-*used*, so hits must record their time,
  but a write per read would serialise every reader behind the write lock. So the time
  is recorded to a minute (``_TOUCH_RESOLUTION``): an entry whose recorded time is newer
  needs nothing; the others are remembered in memory and written in one batch with the
  next ``set`` (or every ``_TOUCH_BATCH`` of them). The order is therefore LRU-ish.
- Triggers keep the total size in a one-row table, so ``set`` knows it is over
  ``max_bytes`` without summing the table; it then evicts, in one batch, down to 90% of
  ``max_bytes``, so that eviction runs once per many sets instead of on every one.
- A damaged file is moved aside (``responses.sqlite.corrupt-<time>``) with a
  ``DevoraWarning`` and the cache starts empty: losing a cache is cheap, crashing the
  caller is not. Lookups and stores that fail for other reasons (a disk full, a lock held
  past the timeout) degrade to a miss or a skipped store, logged; ``delete`` and ``clear``
  raise ``WorkspaceError`` instead, since a silently failed invalidation serves stale
  answers.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Final

from devora_lab.cache.base import CacheStats
from devora_lab.cache.keys import check_max_bytes, check_namespace, check_ttl, check_value
from devora_lab.errors import DevoraWarning, WorkspaceError

__all__ = ["DEFAULT_MAX_BYTES", "FILE_NAME", "DiskCache"]

log = logging.getLogger("devora_lab.cache")

DEFAULT_MAX_BYTES: Final = 2**30
FILE_NAME: Final = "responses.sqlite"
_SCHEMA_VERSION: Final = 1
_LOW_WATER: Final = 0.9  # eviction frees space down to this share of max_bytes
_TOUCH_BATCH: Final = 256  # remembered hits written at the latest after this many
_TOUCH_RESOLUTION: Final = 60.0  # seconds; a hit on an entry used more recently is not noted
_CORRUPT: Final = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
_SIDE_FILES: Final = ("-wal", "-shm")

_SCHEMA: Final = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS entries (
    key         TEXT PRIMARY KEY,
    value       BLOB NOT NULL,
    size        INTEGER NOT NULL,
    expires_at  REAL,
    accessed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_access ON entries (accessed_at);
CREATE INDEX IF NOT EXISTS entries_by_expiry ON entries (expires_at)
    WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS totals (
    id    INTEGER PRIMARY KEY CHECK (id = 0),
    bytes INTEGER NOT NULL
);
INSERT OR IGNORE INTO totals (id, bytes) VALUES (0, 0);
CREATE TRIGGER IF NOT EXISTS entries_added AFTER INSERT ON entries BEGIN
    UPDATE totals SET bytes = bytes + NEW.size WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS entries_removed AFTER DELETE ON entries BEGIN
    UPDATE totals SET bytes = bytes - OLD.size WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS entries_resized AFTER UPDATE OF size ON entries BEGIN
    UPDATE totals SET bytes = bytes - OLD.size + NEW.size WHERE id = 0;
END;
PRAGMA user_version = {_SCHEMA_VERSION};
COMMIT;
"""

_UPSERT: Final = """
INSERT INTO entries (key, value, size, expires_at, accessed_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET value = excluded.value, size = excluded.size,
    expires_at = excluded.expires_at, accessed_at = excluded.accessed_at
"""


class DiskCache:
    """A response cache in ``<folder>/responses.sqlite`` (``folder``: the workspace's
    ``cache/`` folder), bounded by ``max_bytes`` of keys plus values.

    ``default_ttl`` (seconds) applies to entries set without a ``ttl``. ``clock`` gives
    wall-clock epoch seconds (injectable for tests). ``stats()`` counts hits, misses and
    evictions of this instance since it was opened; entries and bytes are the file's.
    ``max_bytes`` bounds the data, not the file: SQLite reuses freed pages rather than
    shrinking the file.
    """

    _connections: list[tuple[weakref.ref[threading.Thread], sqlite3.Connection]]
    _touches: dict[str, float]  # key -> time of its latest hit not yet written

    def __init__(self, folder: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES,
                 default_ttl: float | None = None, *, clock: Callable[[], float] = time.time,
                 busy_timeout: float = 10.0) -> None:
        self.max_bytes = check_max_bytes(max_bytes)
        self.default_ttl = check_ttl(default_ttl, "default_ttl")
        self.path = Path(folder) / FILE_NAME
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._hits = self._misses = self._evictions = self._expirations = 0
        self._closed = False
        self._reset_process_state()
        _make_folder(self.path.parent)
        self._conn()  # open now, so that a bad folder or file shows at construction

    # -- the CacheBackend protocol -----------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """The value, or None when absent, expired, or unreadable (logged, never raised)."""
        try:
            value = self._lookup(self._conn(), key, self._clock())
        except sqlite3.DatabaseError as exc:
            self._degraded(exc, "look up an entry in")
            value = None
        with self._state_lock:
            if value is None:
                self._misses += 1
            else:
                self._hits += 1
        return value

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store ``value`` (``ttl`` None: ``default_ttl``), evicting if over the bound.

        A failure to store is logged, not raised: the caller already has its answer.
        A value larger than ``max_bytes`` is not stored, and removes the old one.
        """
        value = check_value(value)
        ttl = check_ttl(ttl) if ttl is not None else self.default_ttl
        now = self._clock()
        size = len(key.encode()) + len(value)
        try:
            conn = self._conn()
            if size > self.max_bytes:
                conn.execute("DELETE FROM entries WHERE key = ?", (key,))
                return
            with _immediate(conn):
                self._write_touches(conn)
                conn.execute(_UPSERT, (key, value, size, None if ttl is None else now + ttl,
                                       now))
                if _total_bytes(conn) > self.max_bytes:
                    self._evict(conn, now)
        except sqlite3.DatabaseError as exc:
            self._degraded(exc, "store an entry in")

    def delete(self, key: str) -> None:
        with self._state_lock:
            self._touches.pop(key, None)
        try:
            self._conn().execute("DELETE FROM entries WHERE key = ?", (key,))
        except sqlite3.DatabaseError as exc:
            raise self._failed(exc, "delete an entry from") from exc

    def clear(self, namespace: str | None = None) -> int:
        """Remove every entry, or those of one namespace; returns how many were removed."""
        args: tuple[str, ...] = ()
        sql = "DELETE FROM entries WHERE 1"
        if namespace is not None:
            # Keys of a namespace sort between "ns:" and "ns;" (';' follows ':'): an index
            # range, with no LIKE pattern to escape.
            prefix = check_namespace(namespace)
            sql, args = "DELETE FROM entries WHERE key >= ? AND key < ?", (
                f"{prefix}:", f"{prefix};")
        try:
            return self._conn().execute(sql, args).rowcount
        except sqlite3.DatabaseError as exc:
            raise self._failed(exc, "clear") from exc

    def stats(self) -> CacheStats:
        """Entries and bytes not yet expired in the file; counters of this instance."""
        try:
            entries, size = self._conn().execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM entries "
                "WHERE expires_at IS NULL OR expires_at > ?", (self._clock(),)).fetchone()
        except sqlite3.DatabaseError as exc:
            raise self._failed(exc, "read the statistics of") from exc
        return CacheStats(entries=entries, bytes=size, hits=self._hits, misses=self._misses,
                          evictions=self._evictions)

    def close(self) -> None:
        """Write the remembered hit times, then close every connection this instance opened.

        Connections of other threads are closed too, so call it when they are done.
        """
        if self._closed:
            return
        try:
            conn = self._conn()
            with _immediate(conn):
                self._write_touches(conn)
        except sqlite3.DatabaseError as exc:
            log.warning("could not record the last hits in %s: %s", self.path, exc)
        self._closed = True
        with self._state_lock:
            for _, connection in self._connections:
                connection.close()
            self._connections.clear()

    # -- beyond the protocol -----------------------------------------------------------------

    def purge_expired(self) -> int:
        """Remove every expired entry now; returns how many were removed."""
        try:
            removed = self._conn().execute("DELETE FROM entries WHERE expires_at <= ?",
                                           (self._clock(),)).rowcount
        except sqlite3.DatabaseError as exc:
            raise self._failed(exc, "purge") from exc
        with self._state_lock:
            self._expirations += removed
        return removed

    @property
    def expirations(self) -> int:
        """Expired entries this instance removed."""
        return self._expirations

    def __enter__(self) -> DiskCache:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DiskCache({str(self.path)!r}, max_bytes={self.max_bytes:,})"

    # -- reading and writing -----------------------------------------------------------------

    def _lookup(self, conn: sqlite3.Connection, key: str, now: float) -> bytes | None:
        row = conn.execute("SELECT value, expires_at, accessed_at FROM entries WHERE key = ?",
                           (key,)).fetchone()
        if row is None:
            return None
        value, expires_at, accessed_at = row
        if expires_at is not None and expires_at <= now:
            # Guarded by expires_at, in case another process has just stored it afresh.
            removed = conn.execute("DELETE FROM entries WHERE key = ? AND expires_at <= ?",
                                   (key, now)).rowcount
            with self._state_lock:
                self._expirations += removed
            return None
        if now - accessed_at >= _TOUCH_RESOLUTION:
            self._remember_hit(conn, key, now)
        return bytes(value)

    def _remember_hit(self, conn: sqlite3.Connection, key: str, now: float) -> None:
        """Note the hit's time, to be written later in a batch (see the module's notes)."""
        with self._state_lock:
            self._touches[key] = now
            due = len(self._touches) >= _TOUCH_BATCH
        if due:
            try:
                with _immediate(conn):
                    self._write_touches(conn)
            except sqlite3.DatabaseError as exc:  # the hit stands; only its time is lost
                log.warning("could not record hits in %s: %s", self.path, exc)

    def _write_touches(self, conn: sqlite3.Connection) -> None:
        """Record the remembered hit times (inside the caller's write transaction)."""
        with self._state_lock:
            touches, self._touches = self._touches, {}
        if touches:
            conn.executemany(
                "UPDATE entries SET accessed_at = max(accessed_at, ?) WHERE key = ?",
                [(when, key) for key, when in touches.items()])

    def _evict(self, conn: sqlite3.Connection, now: float) -> None:
        """Drop expired entries, then the least recently used ones, until the data fits in
        90% of ``max_bytes`` (inside the caller's write transaction)."""
        expired = conn.execute("DELETE FROM entries WHERE expires_at <= ?", (now,)).rowcount
        excess = _total_bytes(conn) - int(self.max_bytes * _LOW_WATER)
        doomed: list[tuple[int]] = []
        if excess > 0:
            for rowid, size in conn.execute(
                    "SELECT rowid, size FROM entries ORDER BY accessed_at, rowid"):
                doomed.append((rowid,))
                excess -= size
                if excess <= 0:
                    break
            conn.executemany("DELETE FROM entries WHERE rowid = ?", doomed)
        with self._state_lock:
            self._expirations += expired
            self._evictions += len(doomed)

    # -- connections -------------------------------------------------------------------------

    def _reset_process_state(self) -> None:
        """Fresh locks, connections and remembered hits: at start, and in a forked child,
        which must not use its parent's SQLite connections."""
        self._pid = os.getpid()
        self._state_lock = threading.Lock()
        self._local = threading.local()
        self._connections = []
        self._touches = {}
        self._generation = 0  # bumped to make every thread reopen its connection
        self._check_on_open = False

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use (and again after damage)."""
        if self._closed:
            raise WorkspaceError(f"the cache {self.path} is closed",
                                 fix="open a new DiskCache")
        if os.getpid() != self._pid:
            self._reset_process_state()
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is None or local.generation != self._generation:
            if conn is not None:
                self._forget(conn)
            local.generation = self._generation
            conn = local.conn = self._open()
        return conn

    def _open(self) -> sqlite3.Connection:
        """A new connection to a usable file: a damaged file is moved aside first."""
        identity = _file_identity(self.path)
        try:
            return self._register(self._connect())
        except sqlite3.DatabaseError as exc:
            if not _is_corruption(exc):
                raise self._failed(exc, "open") from exc
            self._quarantine(exc, identity)
        try:
            return self._register(self._connect())
        except sqlite3.DatabaseError as exc:
            raise self._failed(exc, "open") from exc

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None,
                               check_same_thread=False)
        try:
            _prepare(conn)
            with self._state_lock:
                check, self._check_on_open = self._check_on_open, False
            if check:
                _verify(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _register(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        """Remember ``conn`` for ``close()``; close those of threads that have ended."""
        with self._state_lock:
            alive = []
            for thread, connection in self._connections:
                owner = thread()
                if owner is None or not owner.is_alive():
                    connection.close()
                else:
                    alive.append((thread, connection))
            alive.append((weakref.ref(threading.current_thread()), conn))
            self._connections = alive
        return conn

    def _forget(self, conn: sqlite3.Connection) -> None:
        with self._state_lock:
            self._connections = [(t, c) for t, c in self._connections if c is not conn]
        conn.close()

    # -- damage and failures -----------------------------------------------------------------

    def _quarantine(self, exc: sqlite3.DatabaseError, identity: tuple[int, int] | None) -> None:
        """Move the damaged file (and its WAL) aside, and warn; unless the file is no longer
        the one found damaged (``identity``), as another thread or process has moved it."""
        aside = self.path.with_name(f"{FILE_NAME}.corrupt-{_timestamp()}")
        with self._state_lock:
            if _file_identity(self.path) != identity:
                return
            try:
                self.path.rename(aside)
            except FileNotFoundError:
                return
            except OSError as error:
                raise WorkspaceError(f"the cache {self.path} is damaged and cannot be moved "
                                     f"aside: {error}", fix="delete the file") from error
            for suffix in _SIDE_FILES:
                side = Path(f"{self.path}{suffix}")
                if side.exists():
                    side.rename(f"{aside}{suffix}")
        warnings.warn(f"the response cache {self.path} is damaged ({exc}); it was moved to "
                      f"{aside.name} and the cache starts empty", DevoraWarning, stacklevel=5)

    def _degraded(self, exc: sqlite3.DatabaseError, action: str) -> None:
        """A lookup or store failed: note damage for the next open, log anything else."""
        if _is_corruption(exc):
            self._damaged(exc)
        else:
            log.warning("could not %s the response cache %s: %s", action, self.path, exc)

    def _failed(self, exc: sqlite3.DatabaseError, action: str) -> WorkspaceError:
        if _is_corruption(exc):
            self._damaged(exc)
        return WorkspaceError(f"could not {action} the response cache {self.path}: {exc}",
                              fix="check the disk and the folder's permissions")

    def _damaged(self, exc: sqlite3.DatabaseError) -> None:
        """Damage found in use: every thread reopens, and the next open checks the file
        (and moves it aside if the damage is real)."""
        with self._state_lock:
            first = not self._check_on_open
            self._check_on_open = True
            self._generation += 1
        if first:
            warnings.warn(f"the response cache {self.path} is damaged ({exc}); it will be "
                          "checked and, if need be, moved aside", DevoraWarning, stacklevel=4)


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction that takes the write lock at once, so that it waits in
    ``busy_timeout`` at the start instead of failing half-way with SQLITE_BUSY."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _prepare(conn: sqlite3.Connection) -> None:
    """Settings of every connection, and the schema if the file has none yet."""
    conn.execute("PRAGMA synchronous = NORMAL")
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        conn.execute("PRAGMA journal_mode = WAL")
    if conn.execute("PRAGMA user_version").fetchone()[0] != _SCHEMA_VERSION:
        conn.executescript(_SCHEMA)


def _verify(conn: sqlite3.Connection) -> None:
    """Raise ``sqlite3.DatabaseError`` if SQLite's quick check finds damage."""
    result = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
    if result != "ok":
        error = sqlite3.DatabaseError(f"quick_check: {result}")
        error.sqlite_errorcode = sqlite3.SQLITE_CORRUPT
        raise error


def _total_bytes(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT bytes FROM totals WHERE id = 0").fetchone()[0])


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return type(exc) is sqlite3.DatabaseError
    return code & 0xFF in _CORRUPT


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkspaceError(f"cannot create the cache folder {folder}: {exc.strerror}",
                             fix="choose another workspace with --workspace or "
                                 "DEVORA_WORKSPACE") from exc


def _file_identity(path: Path) -> tuple[int, int] | None:
    """The file's device and inode, or None if it does not exist."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_dev, status.st_ino


def _timestamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
