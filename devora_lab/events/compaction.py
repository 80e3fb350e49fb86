"""Compaction: merge a day's small Parquet files into few large ones, crash-safely.

The merged file is written under a hidden name and renamed into place; its footer lists
every file it replaces (and what those replaced), which hides them from readers at the
instant of the rename. Only then are the sources deleted. Interrupted anywhere, a later run
finds either the sources alone, or the merged file hiding sources not yet deleted, and
finishes the job: no event is lost or counted twice. One compaction runs at a time per log
(an ``flock`` in the spool folder).
"""

from __future__ import annotations

import fcntl
import os
import secrets
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import orjson

from devora_lab.errors import EventLogError
from devora_lab.events.catalog import Catalog, FileFacts
from devora_lab.events.duck import connect, quote_literal
from devora_lab.events.layout import COMPACT_PREFIX, REPLACES_KEY, TMP_PREFIX, LogLayout
from devora_lab.events.segments import conform, recover_orphans, write_parquet_atomically

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

__all__ = ["CompactionReport", "compact"]


@dataclass(frozen=True, slots=True)
class CompactionReport:
    """What one compaction run did."""

    recovered_events: int
    files_before: int
    files_after: int
    files_merged: int
    files_deleted: int
    temporary_files_removed: int
    events: int


@contextmanager
def _exclusive(layout: LogLayout) -> Iterator[None]:
    layout.ensure()
    path = layout.spool / "compact.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise EventLogError(
                "another compaction of this event log is running",
                fix="wait for it to finish; compaction is safe to run again afterwards",
            ) from exc
        yield
    finally:
        os.close(fd)


def compact(
    layout: LogLayout,
    *,
    target_rows: int = 1_000_000,
    min_files: int = 2,
    tmp_grace_seconds: float = 3600.0,
) -> CompactionReport:
    """Roll orphaned segments, finish interrupted work and merge small files per day."""
    with _exclusive(layout):
        con = connect()
        recovered = recover_orphans(layout, con)
        busy = {(s.day, s.stem) for s in layout.list_spool()}  # listed before the Parquet
        catalog = Catalog(layout)
        snapshot = catalog.snapshot()
        files_before = len(snapshot.parquet) + len(snapshot.replaced)
        deleted = _delete(layout, [e.path for e in snapshot.replaced])
        merged = 0
        for day, batch in _batches(snapshot.parquet, busy, target_rows, min_files):
            _merge(layout, con, day, batch)
            deleted += _delete(layout, [facts.entry.path for facts in batch])
            merged += len(batch)
        removed_tmp = _remove_stale_tmp(layout, tmp_grace_seconds)
        after = catalog.snapshot()
        con.close()
        return CompactionReport(
            recovered_events=recovered,
            files_before=files_before,
            files_after=len(after.parquet) + len(after.replaced),
            files_merged=merged,
            files_deleted=deleted,
            temporary_files_removed=removed_tmp,
            events=after.parquet_rows,
        )


def _batches(
    files: list[FileFacts], busy: set[tuple[date, str]], target_rows: int, min_files: int
) -> Iterator[tuple[date, list[FileFacts]]]:
    by_day: dict[date, list[FileFacts]] = defaultdict(list)
    for facts in files:
        small = facts.rows < target_rows
        if small and (facts.entry.day, facts.entry.stem) not in busy:
            by_day[facts.entry.day].append(facts)
    for day, candidates in sorted(by_day.items()):
        batch: list[FileFacts] = []
        rows = 0
        for facts in candidates:
            if batch and rows + facts.rows > target_rows:
                if len(batch) >= min_files:
                    yield day, batch
                batch, rows = [], 0
            batch.append(facts)
            rows += facts.rows
        if len(batch) >= min_files:
            yield day, batch


def _merge(
    layout: LogLayout, con: duckdb.DuckDBPyConnection, day: date, batch: list[FileFacts]
) -> None:
    replaces = sorted({f.entry.stem for f in batch} | {n for f in batch for n in f.replaces})
    if layout.is_local:
        files = ", ".join(quote_literal(f.entry.path) for f in batch)
        table = con.sql(
            f"SELECT * FROM read_parquet([{files}], union_by_name = true, "
            "hive_partitioning = false) ORDER BY ts"
        ).to_arrow_table()
    else:
        table = _read_remote(layout, batch)
    stem = f"{COMPACT_PREFIX}{secrets.token_hex(8)}"
    write_parquet_atomically(
        layout,
        conform(table),
        layout.parquet_path(day, stem),
        metadata={REPLACES_KEY: orjson.dumps(replaces)},
    )


def _read_remote(layout: LogLayout, batch: list[FileFacts]) -> pa.Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for facts in batch:
        with layout.fs.open_input_file(facts.entry.path) as handle:
            tables.append(pq.read_table(handle))
    table = pa.concat_tables(tables, promote_options="permissive")
    return table.sort_by("ts")


def _delete(layout: LogLayout, paths: list[str]) -> int:
    deleted = 0
    for path in paths:
        with suppress(FileNotFoundError):
            layout.fs.delete_file(path)
            deleted += 1
    return deleted


def _remove_stale_tmp(layout: LogLayout, grace_seconds: float) -> int:
    from pyarrow import fs as pafs

    cutoff_ns = int((time.time() - grace_seconds) * 1e9)
    removed = 0
    selector = pafs.FileSelector(layout.root, recursive=True, allow_not_found=True)
    for info in layout.fs.get_file_info(selector):
        stale = (info.mtime_ns or 0) < cutoff_ns
        if info.type == pafs.FileType.File and info.base_name.startswith(TMP_PREFIX) and stale:
            removed += _delete(layout, [info.path])
    return removed
