"""Exports: any metric table or raw event query to CSV, JSON (records or lines) or Parquet.

``export_frame`` writes a DataFrame (what ``metrics``, ``trend``, ``breakdown`` return);
``export_query`` runs SQL over the ``events`` view with bound parameters and lets DuckDB's
``COPY`` stream the result to the file, so a raw export of millions of events never becomes
a pandas frame. Both go through the same writer, so a metric table and a raw query come out
alike: CSV with a header, JSON as an array of records, JSON lines, or zstd Parquet.
The format follows the file's suffix unless given. A file is written next to its target
and renamed into place: an export that fails leaves any earlier file intact.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from devora_lab.errors import ExportError

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

    from devora_lab.events.store import EventStore

__all__ = ["FORMATS", "export_frame", "export_query"]

#: Format name → file suffixes that imply it.
FORMATS: Final = {"csv": (".csv",), "json": (".json",), "jsonl": (".jsonl", ".ndjson"),
                  "parquet": (".parquet", ".pq")}
_COPY_OPTIONS: Final = {"csv": "FORMAT csv, HEADER true", "json": "FORMAT json, ARRAY true",
                        "jsonl": "FORMAT json", "parquet": "FORMAT parquet, COMPRESSION zstd"}


def _format_for(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise ExportError(f"unknown export format {fmt!r}",
                              fix=f"use one of {', '.join(FORMATS)}")
        return fmt
    for name, suffixes in FORMATS.items():
        if path.suffix.lower() in suffixes:
            return name
    raise ExportError(f"cannot tell the format of {path.name} from its suffix",
                      fix="end the name in .csv, .json, .jsonl or .parquet, or pass format=")


def _copy(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any],
          path: str | os.PathLike[str], fmt: str | None) -> Path:
    import duckdb

    target = Path(path)
    kind = _format_for(target, fmt)
    if not target.parent.is_dir():
        raise ExportError(f"the folder {target.parent} does not exist",
                          fix="create it first or choose another path")
    try:
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.",
                                         suffix=target.suffix, delete=False) as handle:
            temp = Path(handle.name)
    except OSError as exc:
        raise ExportError(f"cannot write in {target.parent}: {exc.strerror or exc}",
                          fix="choose a folder you can write to") from None
    query = sql.strip().rstrip(";").rstrip()  # COPY (...;) is a syntax error
    try:
        con.execute(f"COPY ({query}) TO ? ({_COPY_OPTIONS[kind]})", [*params, str(temp)])
        os.replace(temp, target)
    except duckdb.Error as exc:
        raise ExportError(f"cannot export to {target.name}: {exc}",
                          fix="check the query against the schema (devora-lab events stats)"
                          ) from None
    except OSError as exc:  # the target is a folder, or not writable
        raise ExportError(f"cannot write {target}: {exc.strerror or exc}",
                          fix="choose a writable file path") from None
    finally:
        temp.unlink(missing_ok=True)
    return target


def export_frame(frame: pd.DataFrame, path: str | os.PathLike[str],
                 fmt: str | None = None) -> Path:
    """Write a DataFrame (a metric table, a breakdown) to ``path``; returns the path."""
    from devora_lab.events.duck import connect

    con = connect(threads=1)
    try:
        con.register("_devora_frame", frame)
        return _copy(con, "SELECT * FROM _devora_frame", [], path, fmt)
    finally:
        con.close()


def export_query(store: EventStore, sql: str, path: str | os.PathLike[str], *,
                 params: Sequence[Any] | None = None, fmt: str | None = None) -> Path:
    """Run ``sql`` over the log (parameters bound, not formatted) and write its result."""
    store.refresh()
    return _copy(store.connection, sql, list(params or []), path, fmt)
