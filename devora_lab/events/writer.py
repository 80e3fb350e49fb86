"""The event writer: one per process, appending to its own spool segments.

``write`` serialises the event to one JSON line and hands it to the kernel with a single
``write(2)`` on an ``O_APPEND`` file before it returns, so the event survives ``kill -9`` of
the process (pass ``fsync=True`` to survive power loss too, at a large cost). A background
thread rolls full segments into Parquet in batches; no process ever holds a DuckDB database
open for writing, so any number of writers and readers work side by side.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import queue
import secrets
import socket
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any, Final

import orjson

from devora_lab.errors import EventLogError, EventSchemaError
from devora_lab.events.layout import SEGMENT_PREFIX, LogLayout, SpoolEntry
from devora_lab.events.schema import COLUMNS, SCHEMA_VERSION, Event, EventKind, new_id

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

__all__ = ["EventWriter"]

log = logging.getLogger("devora_lab.events")

_ORJSON_OPTIONS: Final = orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY
_MAX_OPEN_SEGMENTS: Final = 8
_EXACT_TYPES: Final[dict[str, frozenset[type]]] = {
    "VARCHAR": frozenset({str}),
    "JSON": frozenset({dict}),
    "TIMESTAMPTZ": frozenset({datetime}),
    "INTEGER": frozenset({int}),
    "BIGINT": frozenset({int}),
    "DOUBLE": frozenset({float, int}),
    "BOOLEAN": frozenset({bool}),
}
_TYPE_OF: Final = {c.name: c.duckdb_type for c in COLUMNS}
_EXACT: Final = {
    c.name: _EXACT_TYPES[c.duckdb_type]
    | {type(None)}
    | ({EventKind} if c.name == "kind" else set())
    for c in COLUMNS
}
# Ints a column can store: INTEGER is 32-bit, BIGINT 64-bit (larger values would read as NULL).
_INT_RANGES: Final[dict[str, tuple[float, float]]] = {
    "INTEGER": (-(2**31), 2**31 - 1),
    "BIGINT": (-(2**63), 2**63 - 1),
    "DOUBLE": (float("-inf"), float("inf")),
}
_INT_RANGE: Final = {
    c.name: _INT_RANGES[c.duckdb_type] for c in COLUMNS if c.duckdb_type in _INT_RANGES
}
_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1
_live_writers: weakref.WeakSet[EventWriter] = weakref.WeakSet()


def _sdk_version() -> str:
    from devora_lab import __version__

    return __version__


def _safe_host() -> str:
    host = socket.gethostname() or "host"
    return "".join(ch if ch.isalnum() else "_" for ch in host)[:32]


@dataclass(slots=True)
class _Segment:
    entry: SpoolEntry
    fd: int
    day_start: datetime
    day_end: datetime
    opened: float
    count: int = 0
    nbytes: int = 0


class EventWriter:
    """Appends events to spool segments and rolls them into the Parquet log.

    Thread-safe. Use one per process (``EventLog.writer()`` shares one); a forked child
    starts its own segments automatically.
    """

    def __init__(
        self,
        layout: LogLayout,
        *,
        roll_max_events: int = 20_000,
        roll_max_bytes: int = 32 * 1024 * 1024,
        roll_max_seconds: float = 60.0,
        fsync: bool = False,
        recover_orphans: bool = True,
    ) -> None:
        layout.ensure()
        self.layout = layout
        self.roll_max_events = roll_max_events
        self.roll_max_bytes = roll_max_bytes
        self.roll_max_seconds = roll_max_seconds
        self.fsync = fsync
        self._recover = recover_orphans
        self._closed = False
        self._reset_process_state()
        _live_writers.add(self)

    def _reset_process_state(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[date, _Segment] = {}
        self._current: _Segment | None = None
        self._sequence = 0
        self._token = f"{_safe_host()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._host = socket.gethostname()
        self._pid = os.getpid()
        self._version = _sdk_version()
        self._queue: queue.Queue[_Segment | None] = queue.Queue()
        self._roller: threading.Thread | None = None
        self._roll_errors: list[BaseException] = []
        if self._recover and self.layout.list_spool():
            # Only when there may be orphans: the roller imports DuckDB, which a short
            # script or a latency-sensitive first call should not pay for up front.
            self._ensure_roller()

    # -- writing -------------------------------------------------------------------------

    def write(self, event: Event) -> None:
        """Append one event; when this returns the event survives a crash of the process."""
        line = self._serialise(event)
        ts = event._data["ts"]
        with self._lock:
            segment = self._current
            if segment is None or not (segment.day_start <= ts < segment.day_end):
                segment = self._segment_for(ts)
            try:
                written = os.write(segment.fd, line)
            except OSError as exc:
                raise _append_error(segment, exc) from exc
            if written == len(line) and not self.fsync:
                segment.count += 1  # the common case: one system call and nothing more
                segment.nbytes += written
            else:
                self._append(segment, line[written:], nbytes=len(line))
            self._maybe_seal(segment)

    def write_many(self, events: Iterable[Event]) -> int:
        """Append many events with one system call per day they fall on; returns the count."""
        lines_by_day: dict[date, list[bytes]] = {}
        first_ts: dict[date, datetime] = {}
        for event in events:
            line = self._serialise(event)
            ts = event.fields["ts"]
            day = ts.astimezone(timezone.utc).date()
            lines_by_day.setdefault(day, []).append(line)
            first_ts.setdefault(day, ts)
        count = 0
        with self._lock:
            for day, lines in lines_by_day.items():
                segment = self._segment_for(first_ts[day])
                self._append(segment, b"".join(lines), len(lines))
                count += len(lines)
                self._maybe_seal(segment)
        return count

    def write_table(self, table: pa.Table) -> int:
        """Write an Arrow table of rows straight to Parquet, one file per day; returns rows.

        The bulk path for imports: no spool, each file appears by an atomic rename.
        """
        import pyarrow.compute as pc

        from devora_lab.events.segments import write_parquet_atomically

        self._check_open()
        table = _conformed(table)
        days = pc.cast(table.column("ts"), "date32")
        for day in pc.unique(days).to_pylist():
            part = table.filter(pc.equal(days, day))
            stem = self._next_stem()
            write_parquet_atomically(self.layout, part, self.layout.parquet_path(day, stem))
        return int(table.num_rows)

    def _serialise(self, event: Event) -> bytes:
        if self._closed:
            self._check_open()
        data = event._data
        if "host" not in data:  # stamp provenance once, never overwriting what the caller set
            data["host"] = self._host
            data.setdefault("pid", self._pid)
            data.setdefault("sdk_version", self._version)
        try:
            return orjson.dumps(_checked(event, data), option=_ORJSON_OPTIONS)
        except TypeError as exc:
            raise EventSchemaError(
                f"event {data.get('event_id')} ({data.get('kind')}) cannot be stored: {exc}",
                fix="ints must fit in 64 bits; attributes may hold only str, int, float, bool, "
                "None, lists and dicts",
            ) from exc

    def _append(self, segment: _Segment, data: bytes, lines: int = 1,
                nbytes: int | None = None) -> None:
        """Write all of ``data`` (and fsync if asked); count ``lines`` events of ``nbytes``."""
        view = memoryview(data)
        try:
            while view:
                written = os.write(segment.fd, view)
                view = view[written:]
            if self.fsync:
                os.fsync(segment.fd)
        except OSError as exc:
            raise _append_error(segment, exc) from exc
        segment.count += lines
        segment.nbytes += len(data) if nbytes is None else nbytes

    def _maybe_seal(self, segment: _Segment) -> None:
        if (
            segment.count >= self.roll_max_events
            or segment.nbytes >= self.roll_max_bytes
            or time.monotonic() - segment.opened >= self.roll_max_seconds
        ):
            self._seal(segment)

    # -- segments ------------------------------------------------------------------------

    def _next_stem(self) -> str:
        self._sequence += 1
        return f"{SEGMENT_PREFIX}{self._token}-{self._sequence:06d}"

    def _segment_for(self, ts: datetime) -> _Segment:
        if ts.tzinfo is None:
            raise EventSchemaError(
                f"event timestamp {ts.isoformat()} has no time zone",
                fix="use an aware datetime, e.g. datetime.now(timezone.utc)",
            )
        day = ts.astimezone(timezone.utc).date()
        segment = self._open.get(day)
        if segment is None:
            segment = self._open_segment(day)
        self._current = segment
        return segment

    def _open_segment(self, day: date) -> _Segment:
        self._check_open()
        if len(self._open) >= _MAX_OPEN_SEGMENTS:
            self._seal(min(self._open.values(), key=lambda s: s.opened))
        folder = self.layout.spool_partition(day)
        path = folder / f"{self._next_stem()}.jsonl"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = _create_locked(path)
        except OSError as exc:
            raise EventLogError(
                f"cannot create the event segment {path}: {exc.strerror}",
                fix="check that the workspace is writable (devora-lab health)",
            ) from exc
        start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        segment = _Segment(
            SpoolEntry(path, day), fd, start, start + timedelta(days=1), time.monotonic()
        )
        self._open[day] = segment
        return segment

    def _seal(self, segment: _Segment) -> None:
        self._open.pop(segment.entry.day, None)
        if self._current is segment:
            self._current = None
        self._ensure_roller()
        self._queue.put(segment)

    # -- rolling -------------------------------------------------------------------------

    def _ensure_roller(self) -> None:
        if self._roller is None or not self._roller.is_alive():
            self._roller = threading.Thread(
                target=self._roll_loop, name="devora-roller", daemon=True
            )
            self._roller.start()

    def _roll_loop(self) -> None:
        from devora_lab.events.duck import connect
        from devora_lab.events.segments import recover_orphans, roll_segment

        con: duckdb.DuckDBPyConnection = connect(threads=1)
        if self._recover:
            try:
                recovered = recover_orphans(self.layout, con)
                if recovered:
                    log.info("recovered %d events from segments of dead writers", recovered)
            except Exception as exc:  # noqa: BLE001 - recovery is retried by the next writer
                log.warning("recovering orphaned segments failed: %s", exc)
        while True:
            segment = self._queue.get()
            try:
                if segment is None:
                    return
                roll_segment(self.layout, con, segment.entry, segment.count)
            except Exception as exc:  # noqa: BLE001 - the segment stays and is recovered later
                self._roll_errors.append(exc)
                log.warning(
                    "rolling %s failed, it stays in the spool: %s",
                    segment.entry.path if segment else "?",
                    exc,
                )
            finally:
                if segment is not None:
                    os.close(segment.fd)
                self._queue.task_done()

    def flush(self) -> None:
        """Roll every open segment into Parquet now and wait until that is done."""
        with self._lock:
            for segment in list(self._open.values()):
                self._seal(segment)
        self._queue.join()

    def close(self) -> None:
        """Flush, stop the background thread and refuse further writes. Idempotent."""
        if self._closed:
            return
        self.flush()
        self._closed = True
        if self._roller is not None and self._roller.is_alive():
            self._queue.put(None)
            self._roller.join()

    def _check_open(self) -> None:
        if self._closed:
            raise EventLogError(
                "this event writer is closed", fix="open a new one with EventLog.writer()"
            )

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _after_fork_in_child(self) -> None:
        # The child must not keep the parent's segment locks alive nor write into them.
        for segment in self._open.values():
            os.close(segment.fd)
        self._reset_process_state()


def _conformed(table: pa.Table) -> pa.Table:
    """``table`` cast to the schema, checked before any file is written (else EventSchemaError).

    Every row needs a kind and a ts: ts chooses the file a row goes to.
    """
    import pyarrow as pa

    from devora_lab.events.segments import conform

    try:
        table = conform(table)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise EventSchemaError(
            f"the table does not fit the event schema: {exc}",
            fix="give each column the type of its schema column (see COLUMNS)",
        ) from exc
    table = _with_defaults(table)
    for required in ("kind", "ts"):
        missing = table.column(required).null_count
        if missing:
            raise EventSchemaError(
                f"{missing} row(s) of the table have no {required}; nothing was written",
                fix=f"give every row a {required}",
            )
    return table


def _with_defaults(table: pa.Table) -> pa.Table:
    """Fill the columns an ``Event`` would fill itself: event_id and schema_version."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = table.column("event_id")
    if ids.null_count:
        fresh = pa.array([new_id() for _ in range(table.num_rows)], pa.string())
        table = table.set_column(table.schema.get_field_index("event_id"), "event_id",
                                 pc.coalesce(ids, fresh))
    versions = table.column("schema_version")
    if versions.null_count:
        table = table.set_column(table.schema.get_field_index("schema_version"),
                                 "schema_version",
                                 pc.coalesce(versions, pa.scalar(SCHEMA_VERSION, pa.int32())))
    return table


def _create_locked(path: os.PathLike[str]) -> int:
    """Create the segment file ``path`` and hold its lock.

    Until the lock is taken the new, empty file looks orphaned: a recovery in another
    process may roll it, that is delete it, in between. The lock must therefore be held on
    the file that is at ``path`` afterwards; if it is not, create the file again.
    """
    while True:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _append_error(segment: _Segment, exc: OSError) -> EventLogError:
    return EventLogError(
        f"cannot append to the event segment {segment.entry.path}: {exc.strerror}",
        fix="free disk space or fix permissions; events written before are intact",
    )


def _checked(event: Event, data: dict[str, Any]) -> dict[str, Any]:
    """The event's fields, type-checked; coerced into a copy only when a value needs it.

    Exact type checks cost nanoseconds; only unusual types (numpy scalars, str subclasses,
    mappings) take the slower path.
    """
    for name, value in data.items():
        kind = type(value)
        if kind not in _EXACT[name]:
            return _coerced(event, data)
        if kind is int and not _INT32_MIN <= value <= _INT32_MAX:  # rare: look the range up
            low, high = _INT_RANGE[name]
            if not low <= value <= high:
                _reject(event, name, value, f"an int from {low:.0f} to {high:.0f}")
    for stamp in ("ts", "started_at"):
        value = data.get(stamp)
        if value is None:
            continue
        offset = value.utcoffset()
        if offset is None:
            _reject(event, stamp, value, "a timezone-aware datetime")
        elif offset.seconds % 60 or offset.microseconds:
            # orjson writes offsets in whole minutes; store such instants in UTC instead.
            data = {**data, stamp: value.astimezone(timezone.utc)}
    return data


def _coerced(event: Event, data: dict[str, Any]) -> dict[str, Any]:
    fixed = {
        name: value if type(value) in _EXACT[name] else _coerce(event, name, _TYPE_OF[name], value)
        for name, value in data.items()
    }
    return _checked(event, fixed)


def _coerce(event: Event, name: str, duckdb_type: str, value: object) -> object:
    if duckdb_type in ("INTEGER", "BIGINT") and _is_number(value, Integral):
        return int(value)  # type: ignore[call-overload]
    if duckdb_type == "DOUBLE" and _is_number(value, Real):
        return float(value)  # type: ignore[arg-type]
    if duckdb_type == "VARCHAR" and isinstance(value, str):
        return value
    if duckdb_type == "JSON" and isinstance(value, Mapping):
        return dict(value)
    if duckdb_type == "BOOLEAN" and _is_numpy_bool(value):
        return bool(value)
    expected = {
        "INTEGER": "an int",
        "BIGINT": "an int",
        "DOUBLE": "a float",
        "VARCHAR": "a str",
        "JSON": "a dict",
        "BOOLEAN": "a bool",
        "TIMESTAMPTZ": "a timezone-aware datetime",
    }
    _reject(event, name, value, expected[duckdb_type])
    return None


def _is_numpy_bool(value: object) -> bool:
    # numpy 1 calls the type bool_, numpy 2 calls it bool (np.bool_ is an alias).
    kind = type(value)
    return kind.__module__ == "numpy" and kind.__name__ in ("bool_", "bool")


def _is_number(value: object, kind: type) -> bool:
    return isinstance(value, kind) and not isinstance(value, bool)


def _reject(event: Event, name: str, value: object, expected: str) -> None:
    raise EventSchemaError(
        f"event {event.event_id} ({event.kind}): field {name} is {type(value).__name__} "
        f"{value!r:.40}, expected {expected}",
        fix=f"pass {name} as {expected} or None",
    )


def _close_all_at_exit() -> None:
    for writer in list(_live_writers):
        try:
            writer.close()
        except Exception as exc:  # noqa: BLE001 - exit must go on; the spool keeps the events
            log.warning("closing an event writer at exit failed: %s", exc)


def _after_fork() -> None:
    for writer in list(_live_writers):
        writer._after_fork_in_child()


atexit.register(_close_all_at_exit)
os.register_at_fork(after_in_child=_after_fork)
