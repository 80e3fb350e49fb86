"""Reading the event log: DuckDB in-process, with an ``events`` view over every file.

The view unions the rolled Parquet files (Hive-partitioned by ``date``) with the rows of the
spool segments that are still being written, by column name, so files written before a
column was added read as NULL in it. Each query refreshes the view first (cheap: footers and
unchanged segments are cached) so a notebook sees what the writers wrote a moment ago.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from devora_lab.errors import QueryError
from devora_lab.events.catalog import Catalog, Snapshot
from devora_lab.events.duck import connect, quote_literal
from devora_lab.events.layout import LogLayout, SpoolEntry
from devora_lab.events.segments import arrow_schema, conform, read_segment

if TYPE_CHECKING:
    import duckdb
    import pandas as pd
    import polars as pl
    import pyarrow as pa

__all__ = ["EventStore"]

T = TypeVar("T")
_RETRIES = 5


class EventStore:
    """A read-only, in-process DuckDB session over one event log.

    Query the ``events`` view with ``df``/``pl``/``arrow``/``rows``/``scalar``; parameters
    are passed to DuckDB, never formatted into the SQL.
    """

    def __init__(
        self, layout: LogLayout, *, threads: int | None = None, auto_refresh: bool = True
    ) -> None:
        self.layout = layout
        self.auto_refresh = auto_refresh
        self._con = connect(threads=threads)
        self._catalog = Catalog(layout)
        self._spool_cache: dict[str, tuple[int, int, pa.Table | None]] = {}
        self._snapshot = Snapshot()
        self._con.register("_devora_empty", conform(arrow_schema().empty_table()))
        self.refresh()

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection, for anything the helpers do not cover."""
        return self._con

    @property
    def snapshot(self) -> Snapshot:
        """The files behind the view as of the last refresh."""
        return self._snapshot

    def refresh(self) -> Snapshot:
        """Re-list the log's files and rebuild the ``events`` view.

        The spool is listed and read *before* the Parquet files are listed: a segment rolled
        while it was being read is then found as Parquet (and its spool rows are dropped),
        so a reader never misses or doubles an event and never has to start over because
        writers keep rolling segments.
        """
        spool = self.layout.list_spool()
        tables = self._read_spool(spool)
        snapshot = self._catalog.snapshot(spool=spool)
        # A segment gone before it could be read was rolled (its Parquet is listed now), or
        # was empty or unreadable and removed by a recovery: it contributes no rows.
        snapshot.spool = [entry for entry in snapshot.spool if str(entry.path) in tables]
        self._install_view(snapshot, self._spool_table(snapshot.spool, tables))
        self._snapshot = snapshot
        return snapshot

    def _read_spool(self, entries: list[SpoolEntry]) -> dict[str, pa.Table | None]:
        """Each present segment's rows (None if unreadable), by path; vanished ones left out."""
        tables: dict[str, pa.Table | None] = {}
        for entry in entries:
            key = str(entry.path)
            try:
                stat = entry.path.stat()
                cached = self._spool_cache.get(key)
                if cached is None or cached[:2] != (stat.st_size, stat.st_mtime_ns):
                    cached = (stat.st_size, stat.st_mtime_ns, read_segment(self._con, entry))
                    self._spool_cache[key] = cached
            except FileNotFoundError:
                continue  # rolled or removed meanwhile
            tables[key] = cached[2]
        for key in set(self._spool_cache) - tables.keys():
            del self._spool_cache[key]
        return tables

    @staticmethod
    def _spool_table(entries: list[SpoolEntry], tables: dict[str, pa.Table | None]) -> pa.Table:
        import pyarrow as pa

        present = [table for entry in entries if (table := tables[str(entry.path)]) is not None]
        if not present:
            return conform(arrow_schema().empty_table())
        return pa.concat_tables(present, promote_options="permissive")

    def _install_view(self, snapshot: Snapshot, spool_table: pa.Table) -> None:
        self._con.register("_devora_spool", spool_table)
        parts = []
        if snapshot.parquet:
            parts.append(self._parquet_source(snapshot))
        parts.append("SELECT *, CAST(ts AS DATE) AS date FROM _devora_spool")
        parts.append("SELECT *, CAST(NULL AS DATE) AS date FROM _devora_empty")
        union = "\nUNION ALL BY NAME\n".join(parts)
        self._con.execute(
            "CREATE OR REPLACE TEMP VIEW events AS "
            f"SELECT * REPLACE (CAST(attributes AS JSON) AS attributes) FROM ({union})"
        )

    def _parquet_source(self, snapshot: Snapshot) -> str:
        if self.layout.is_local:
            files = ", ".join(quote_literal(f.entry.path) for f in snapshot.parquet)
            return (
                f"SELECT * FROM read_parquet([{files}], union_by_name = true, "
                "hive_partitioning = true, hive_types = {'date': DATE})"
            )
        self._con.register("_devora_remote", self._remote_dataset(snapshot))
        return "SELECT * FROM _devora_remote"

    def _remote_dataset(self, snapshot: Snapshot) -> Any:
        import pyarrow as pa
        import pyarrow.dataset as ds

        schema = pa.unify_schemas([f.schema.remove_metadata() for f in snapshot.parquet])
        schema = schema.append(pa.field("date", pa.date32()))
        partitioning = ds.partitioning(pa.schema([("date", pa.date32())]), flavor="hive")
        return ds.dataset(
            [f.entry.path for f in snapshot.parquet],
            schema=schema,
            format="parquet",
            filesystem=self.layout.fs,
            partitioning=partitioning,
            partition_base_dir=self.layout.root,
        )

    # -- queries -------------------------------------------------------------------------

    def _run(
        self,
        sql: str,
        params: Sequence[Any] | dict[str, Any] | None,
        fetch: Callable[[duckdb.DuckDBPyRelation], T],
    ) -> T:
        import duckdb

        last: Exception | None = None
        for _ in range(_RETRIES):
            if self.auto_refresh:
                self.refresh()
            try:
                return fetch(self._con.sql(sql, params=params))
            except duckdb.IOException as exc:
                last = exc  # a file was compacted away under us: refresh and run again
                if not self.auto_refresh:
                    self.refresh()
            except duckdb.Error as exc:
                raise QueryError(
                    f"query failed: {exc}",
                    fix="check the SQL against the schema (devora-lab events "
                    "stats shows the columns)",
                ) from exc
        raise QueryError(
            f"query failed after {_RETRIES} tries: {last}", fix="retry when compaction has finished"
        )

    def df(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> pd.DataFrame:
        """Run a query and return a pandas DataFrame."""
        return self._run(sql, params, lambda relation: cast("pd.DataFrame", relation.df()))

    def pl(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> pl.DataFrame:
        """Run a query and return a polars DataFrame."""
        import polars

        def fetch(relation: duckdb.DuckDBPyRelation) -> pl.DataFrame:
            frame = polars.from_arrow(relation.to_arrow_table())
            assert isinstance(frame, polars.DataFrame)
            return frame

        return self._run(sql, params, fetch)

    def arrow(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> pa.Table:
        """Run a query and return an Arrow table."""
        return self._run(sql, params, lambda relation: relation.to_arrow_table())

    def rows(
        self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run a query and return its rows as tuples."""
        return self._run(sql, params, lambda relation: relation.fetchall())

    def scalar(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Any:
        """Run a query and return the first column of its first row (None if no rows)."""
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None

    def count(self, kind: str | None = None) -> int:
        """Number of events, optionally of one kind."""
        if kind is None:
            return int(self.scalar("SELECT count(*) FROM events"))
        return int(self.scalar("SELECT count(*) FROM events WHERE kind = ?", [kind]))

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
