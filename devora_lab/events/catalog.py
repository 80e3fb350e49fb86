"""Which files make up the event log right now.

A snapshot lists the spool *before* the Parquet files: a segment rolled in between is then
seen as Parquet and its spool copy skipped, so no event is missed or counted twice.
Each Parquet footer is checked once (cached by path, size and mtime); a damaged file is left
out with a ``CorruptSegmentWarning`` and the rest stay visible. A compacted file names the
files it replaces in its footer, which hides them from the moment it appears.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

from devora_lab.errors import CorruptSegmentWarning
from devora_lab.events.layout import REPLACES_KEY, LogLayout, ParquetEntry, SpoolEntry

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Catalog", "FileFacts", "Snapshot"]


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What a readable Parquet file's footer says."""

    entry: ParquetEntry
    rows: int
    schema: pa.Schema
    replaces: frozenset[str]


@dataclass(slots=True)
class Snapshot:
    """The files to read for one consistent view of the log."""

    parquet: list[FileFacts] = field(default_factory=list)
    spool: list[SpoolEntry] = field(default_factory=list)
    replaced: list[ParquetEntry] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)

    @property
    def parquet_rows(self) -> int:
        return sum(facts.rows for facts in self.parquet)


class Catalog:
    """Lists and checks the files of one event log, remembering footers it already read."""

    def __init__(self, layout: LogLayout) -> None:
        self.layout = layout
        self._facts: dict[tuple[str, int, int], FileFacts | None] = {}

    def snapshot(self, spool: list[SpoolEntry] | None = None) -> Snapshot:
        """The current files; ``spool``, if given, is a spool listing taken just before."""
        if spool is None:
            spool = self.layout.list_spool()
        entries = self.layout.list_parquet()
        snapshot = Snapshot()
        readable = [facts for facts in map(self._facts_for, entries) if facts is not None]
        snapshot.corrupt = [e.path for e in entries if self._cached(e) is None]
        hidden = {(f.entry.day, name) for f in readable for name in f.replaces}
        for facts in readable:
            if (facts.entry.day, facts.entry.stem) in hidden:
                snapshot.replaced.append(facts.entry)
            else:
                snapshot.parquet.append(facts)
        rolled = {(e.day, e.stem) for e in entries} | hidden
        snapshot.spool = [s for s in spool if (s.day, s.stem) not in rolled]
        self._forget_missing(entries)
        return snapshot

    def _cached(self, entry: ParquetEntry) -> FileFacts | None:
        return self._facts.get((entry.path, entry.size, entry.mtime_ns))

    def _facts_for(self, entry: ParquetEntry) -> FileFacts | None:
        key = (entry.path, entry.size, entry.mtime_ns)
        if key not in self._facts:
            self._facts[key] = self._read_footer(entry)
        return self._facts[key]

    def _read_footer(self, entry: ParquetEntry) -> FileFacts | None:
        import pyarrow.parquet as pq

        try:
            with self.layout.fs.open_input_file(entry.path) as handle:
                metadata = pq.read_metadata(handle)
                schema = metadata.schema.to_arrow_schema()
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid (a ValueError)
            warnings.warn(
                f"event file {entry.path} is damaged and was skipped ({exc}); "
                "the other files were read",
                CorruptSegmentWarning,
                stacklevel=4,
            )
            return None
        replaces: frozenset[str] = frozenset()
        raw = (schema.metadata or {}).get(REPLACES_KEY)
        if raw is not None:
            replaces = frozenset(orjson.loads(raw))
        return FileFacts(entry, metadata.num_rows, schema, replaces)

    def _forget_missing(self, entries: list[ParquetEntry]) -> None:
        present = {(e.path, e.size, e.mtime_ns) for e in entries}
        for key in [key for key in self._facts if key not in present]:
            del self._facts[key]
