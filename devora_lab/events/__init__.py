"""The event log: every LLM call, attempt, cache lookup and more, one wide row each.

>>> log = EventLog("workspace/events")
>>> log.write(Event(kind=EventKind.LLM_CALL, request_model="gpt-4o", input_tokens=12))
>>> log.store().count()
1
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from devora_lab.events.layout import LogLayout
from devora_lab.events.schema import (
    COLUMN_NAMES,
    COLUMNS,
    SCHEMA_VERSION,
    Column,
    Event,
    EventKind,
    new_id,
    utc_now,
)

if TYPE_CHECKING:
    from devora_lab.events.compaction import CompactionReport
    from devora_lab.events.store import EventStore
    from devora_lab.events.writer import EventWriter

__all__ = [
    "COLUMNS",
    "COLUMN_NAMES",
    "SCHEMA_VERSION",
    "Column",
    "Event",
    "EventKind",
    "EventLog",
    "new_id",
    "utc_now",
]


class EventLog:
    """One event log: a folder of Parquet files plus a local spool of live segments.

    ``write`` goes through one shared writer per process; ``store()`` opens a DuckDB
    reader. Roll settings tune how large spool segments grow before they become Parquet.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        spool: str | os.PathLike[str] | None = None,
        roll_max_events: int = 20_000,
        roll_max_seconds: float = 60.0,
        fsync: bool = False,
    ) -> None:
        self.layout = LogLayout(root, spool)
        self._writer_options = {
            "roll_max_events": roll_max_events,
            "roll_max_seconds": roll_max_seconds,
            "fsync": fsync,
        }
        self._writer: EventWriter | None = None
        self._writer_lock = threading.Lock()

    @property
    def root(self) -> str:
        return str(self.layout.root)

    def writer(self) -> EventWriter:
        """The writer this process shares for this log (created on first use)."""
        from devora_lab.events.writer import EventWriter

        with self._writer_lock:
            if self._writer is None or self._writer._closed:
                self._writer = EventWriter(
                    self.layout,
                    roll_max_events=int(self._writer_options["roll_max_events"]),
                    roll_max_seconds=float(self._writer_options["roll_max_seconds"]),
                    fsync=bool(self._writer_options["fsync"]),
                )
            return self._writer

    def write(self, event: Event) -> None:
        """Append one event (durable against a crash of this process when it returns)."""
        self.writer().write(event)

    def store(self, *, threads: int | None = None) -> EventStore:
        """A new DuckDB reader over the whole log, spool included."""
        from devora_lab.events.store import EventStore

        return EventStore(self.layout, threads=threads)

    def compact(self, *, target_rows: int = 1_000_000) -> CompactionReport:
        """Merge small Parquet files and recover segments of dead writers."""
        from devora_lab.events.compaction import compact

        return compact(self.layout, target_rows=target_rows)

    def flush(self) -> None:
        """Roll this process's open segments into Parquet now."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close this process's writer."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
