"""Spool segments: reading JSON-lines segments and rolling them into Parquet.

A segment is owned by the writer that holds an exclusive ``flock`` on it. The kernel drops
that lock when the process dies, however it dies, so any process can tell an orphaned
segment (lock free) from a live one (lock held) and roll the orphan in its place.

Rolling is idempotent: the Parquet file is named after the segment and appears by an atomic
rename, the JSON-lines file is deleted only afterwards, and readers skip a segment whose
Parquet twin already exists. A crash at any step therefore neither loses nor doubles events.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import warnings
from contextlib import suppress
from functools import cache
from typing import TYPE_CHECKING, Any

from devora_lab.errors import CorruptSegmentWarning, EventLogError
from devora_lab.events.layout import TMP_PREFIX, LogLayout, SpoolEntry
from devora_lab.events.schema import COLUMNS

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

__all__ = [
    "arrow_schema",
    "conform",
    "read_segment",
    "recover_orphans",
    "roll_segment",
    "write_parquet_atomically",
]


@cache
def arrow_schema() -> pa.Schema:
    """The Arrow schema of the event log's Parquet files, derived from ``COLUMNS``."""
    import pyarrow as pa

    types: dict[str, Any] = {
        "VARCHAR": pa.string(),
        "JSON": pa.string(),
        "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
        "INTEGER": pa.int32(),
        "BIGINT": pa.int64(),
        "DOUBLE": pa.float64(),
        "BOOLEAN": pa.bool_(),
    }
    return pa.schema([pa.field(column.name, types[column.duckdb_type]) for column in COLUMNS])


def conform(table: pa.Table) -> pa.Table:
    """Cast a table to the canonical schema, adding missing columns as NULL.

    Columns the schema does not know (written by a newer version) are kept at the end, so
    nothing a writer recorded is ever dropped.
    """
    import pyarrow as pa

    schema = arrow_schema()
    arrays = []
    for target in schema:
        if target.name in table.column_names:
            arrays.append(table.column(target.name).cast(target.type))
        else:
            arrays.append(pa.nulls(table.num_rows, target.type))
    extra = [name for name in table.column_names if name not in schema.names]
    fields = list(schema) + [table.schema.field(name) for name in extra]
    arrays.extend(table.column(name) for name in extra)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _json_columns_sql() -> tuple[dict[str, str], str]:
    columns = {column.name: column.duckdb_type for column in COLUMNS}
    select = ", ".join(
        f'"{c.name}"::VARCHAR AS "{c.name}"' if c.duckdb_type == "JSON" else f'"{c.name}"'
        for c in COLUMNS
    )
    return columns, select


@cache
def _not_all_null_sql() -> str:
    # With ignore_errors, DuckDB turns a line it cannot parse (damaged, or torn at the end)
    # into a row of NULLs rather than dropping it. A writer never writes such a row (ts is
    # always set), so these rows are the damaged lines: drop them and count them as damaged.
    return " OR ".join(f'"{c.name}" IS NOT NULL' for c in COLUMNS)


def _complete_lines(path: os.PathLike[str] | str) -> int:
    with open(path, "rb") as handle:
        data = handle.read()
    return data.count(b"\n")


def read_segment(con: duckdb.DuckDBPyConnection, entry: SpoolEntry) -> pa.Table | None:
    """The complete lines of one segment as a conformed Arrow table.

    A line still being written (no newline yet) is not read. Damaged lines are skipped with
    a ``CorruptSegmentWarning`` naming the file; an unreadable file gives ``None`` and a
    warning. Raises ``FileNotFoundError`` if the segment vanished (it was rolled meanwhile).
    """
    return _read_counted(con, entry)[0]


def _read_counted(con: duckdb.DuckDBPyConnection, entry: SpoolEntry,
                  lines: int | None = None) -> tuple[pa.Table | None, int]:
    """The segment's table (or None if unreadable) and how many damaged lines were skipped."""
    import duckdb

    if lines is None:  # the owner of a sealed segment knows; anyone else counts
        lines = _complete_lines(entry.path)
    if lines == 0:
        return conform(arrow_schema().empty_table()), 0
    columns, select = _json_columns_sql()
    try:
        table = con.sql(
            f"SELECT {select} FROM read_json($path, format='newline_delimited', "
            "columns=$columns, ignore_errors=true, maximum_object_size=268435456) "
            f"WHERE {_not_all_null_sql()}",
            params={"path": str(entry.path), "columns": columns},
        ).to_arrow_table()
    except duckdb.IOException as exc:
        if not entry.path.exists():
            raise FileNotFoundError(
                errno.ENOENT, "segment rolled meanwhile", str(entry.path)
            ) from exc
        _warn_corrupt(entry.path, f"unreadable ({exc})")
        return None, lines
    except duckdb.Error as exc:
        _warn_corrupt(entry.path, f"unreadable ({exc})")
        return None, lines
    damaged = max(0, lines - table.num_rows)
    if damaged:
        _warn_corrupt(entry.path, f"{damaged} damaged line(s) skipped")
    return conform(table), damaged


def _warn_corrupt(path: object, what: str) -> None:
    warnings.warn(
        f"event segment {path}: {what}; the other segments were read",
        CorruptSegmentWarning,
        stacklevel=3,
    )


def write_parquet_atomically(
    layout: LogLayout, table: pa.Table, final_path: str, metadata: dict[bytes, bytes] | None = None
) -> None:
    """Write ``table`` to a hidden temporary name, then rename it into place."""
    import pyarrow.parquet as pq

    folder, name = final_path.rsplit("/", 1)
    tmp_path = f"{folder}/{TMP_PREFIX}{secrets.token_hex(6)}-{name}"
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update(metadata)
        table = table.replace_schema_metadata(merged)
    try:
        layout.fs.create_dir(folder, recursive=True)
        with layout.fs.open_output_stream(tmp_path) as sink:
            pq.write_table(table, sink, compression="zstd", row_group_size=256 * 1024)
        layout.fs.move(tmp_path, final_path)
    except OSError as exc:
        with suppress(OSError):
            layout.fs.delete_file(tmp_path)
        raise EventLogError(
            f"cannot write the Parquet file {final_path}: {exc}",
            fix="check free disk space and permissions on the workspace; no event was lost, "
            "the segment stays in the spool and is rolled later",
        ) from exc


def _parquet_exists(layout: LogLayout, path: str) -> bool:
    from pyarrow import fs as pafs

    return bool(layout.fs.get_file_info(path).type == pafs.FileType.File)


def roll_segment(layout: LogLayout, con: duckdb.DuckDBPyConnection, entry: SpoolEntry,
                 lines: int | None = None) -> int:
    """Turn one locked segment into its Parquet file and delete it; returns rows written.

    The caller must hold the segment's lock. Safe to repeat after a crash at any step.
    """
    final_path = layout.parquet_path(entry.day, entry.stem)
    rows = 0
    if not _parquet_exists(layout, final_path):
        table, damaged = _read_counted(con, entry, lines)
        if table is not None and table.num_rows:
            write_parquet_atomically(layout, table, final_path)
            rows = table.num_rows
        if table is None or damaged:
            _quarantine(entry)
            return rows
    with suppress(FileNotFoundError):
        entry.path.unlink()
    return rows


def _quarantine(entry: SpoolEntry) -> None:
    # Keep an unreadable segment for a human to inspect, but out of every reader's way.
    with suppress(OSError):
        entry.path.rename(entry.path.with_name(f"_corrupt-{entry.path.name}"))


def try_lock(path: os.PathLike[str] | str) -> int | None:
    """Open ``path`` and take its exclusive lock without waiting; ``None`` if held elsewhere."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    try:
        same_file = os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        same_file = False
    if not same_file:
        # Another process rolled and deleted it between our open and our lock.
        os.close(fd)
        return None
    return fd


def recover_orphans(layout: LogLayout, con: duckdb.DuckDBPyConnection) -> int:
    """Roll every segment whose writer died; returns the number of events recovered."""
    recovered = 0
    for entry in layout.list_spool():
        fd = try_lock(entry.path)
        if fd is None:
            continue
        try:
            recovered += roll_segment(layout, con, entry)
        finally:
            os.close(fd)
    return recovered
