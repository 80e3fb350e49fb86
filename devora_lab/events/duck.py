"""DuckDB connections for the event log: in-process, in-memory, never downloading.

Extension auto-install and auto-load are off, so a query that would need a missing extension
fails at once with a clear error instead of hanging on a download; the session time zone is
UTC so that dates and hours mean the same thing on every machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

__all__ = ["connect", "quote_literal"]


def connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB connection configured for offline, UTC work."""
    import duckdb

    config: dict[str, str | bool | int | float | list[str]] = {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }
    if threads is not None:
        config["threads"] = threads
    con = duckdb.connect(":memory:", config=config)
    con.execute("SET TimeZone = 'UTC'")
    return con


def quote_literal(text: str) -> str:
    """``text`` as an SQL string literal.

    Only for file paths the log listed itself, in places where DuckDB accepts no prepared
    parameter (a view's definition); values from users always go in as parameters.
    """
    return "'" + text.replace("'", "''") + "'"
