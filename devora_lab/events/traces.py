"""Importing public LLM traces into the event log, and exporting events to files.

Public production traces (Azure's LLM inference trace, Mooncake's) give a fresh workspace
realistic load to analyse, and export lets a team take its events to any other tool. Both
run in bulk through DuckDB and Arrow: a million-row trace is parsed, checked and written
without a Python loop over its rows.

Imports are safe to repeat: a trace row's ``event_id`` is derived from the file's content
hash and the row number, and rows whose id is already in the log are skipped. Every row is
checked before anything is written, so a bad file leaves the log untouched.
"""

from __future__ import annotations

import csv
import hashlib
import os
import secrets
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import orjson

from devora_lab.errors import ExportError, TraceImportError
from devora_lab.events.duck import connect
from devora_lab.events.schema import COLUMNS, SCHEMA_VERSION, EventKind, utc_now

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from devora_lab.events import EventLog
    from devora_lab.events.store import EventStore
    from devora_lab.llm.pricing import PriceBook

__all__ = ["EXPORT_FORMATS", "TRACE_FORMATS", "ImportReport", "export_events", "import_trace"]

TRACE_FORMATS: Final = ("azure", "mooncake", "devora")
EXPORT_FORMATS: Final = ("csv", "json", "parquet")
_AZURE_COLUMNS: Final = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
_MOONCAKE_KEYS: Final = ("timestamp", "input_length", "output_length")
_DEVORA_REQUIRED: Final = ("event_id", "kind", "ts")
_ROW: Final = "__devora_row"  # the 1-based row number added to every file read
_SHOWN: Final = 5  # line numbers quoted per broken rule
# Only plain digits are a token count: a bare TRY_CAST would round "1.5" to 2 and take "-3".
_WHOLE: Final = ("CASE WHEN regexp_full_match(trim({0}), '[0-9]{{1,18}}') "
                 "THEN CAST(trim({0}) AS BIGINT) END")
_LINE: Final = "__devora_line"  # one line of a JSON-lines file, as text
_JSON: Final = f"(CASE WHEN json_valid({_LINE}) THEN CAST({_LINE} AS JSON) END)"
_COPY_OPTIONS: Final = {"csv": "FORMAT csv, HEADER true", "json": "FORMAT json",
                        "parquet": "FORMAT parquet, COMPRESSION zstd"}


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What ``import_trace`` did. ``first_ts``/``last_ts`` span every row read (None if empty)."""

    format: str
    rows_read: int
    events_written: int
    duplicates_skipped: int
    first_ts: datetime | None
    last_ts: datetime | None


class _Check(NamedTuple):
    """A rule every row must pass; ``bad`` is SQL that is true on a row that fails it."""

    field: str
    value: str
    bad: str
    expected: str


class _Parsed(NamedTuple):
    """A file as read (plus a row column), its rules, and the SQL making events of it."""

    raw: pa.Table
    checks: list[_Check]
    select: str
    line_offset: int | None  # line = row + offset (a header line); None: Parquet has no lines


def import_trace(log: EventLog, path: str | os.PathLike[str], *, format: str | None = None,
                 start: datetime | None = None, model: str | None = None,
                 provider: str | None = None, price_book: PriceBook | None = None) -> ImportReport:
    """Import a trace file as ``llm.call`` events (or a devora export as it was) and report.

    ``format`` is one of ``TRACE_FORMATS``; None detects it from the extension and first
    line. Mooncake timestamps are millisecond offsets added to ``start``, which defaults to
    now minus the trace's span so that the replayed trace ends now. Without ``model`` the
    model columns stay NULL and rows are ``unpriced`` (an unknown cost must never read as
    $0); with a ``model`` the ``price_book`` knows, rows are priced at its current rates. Rows
    already in the log (same file content and row, or same ``event_id`` for devora files) are
    skipped and counted.
    """
    import duckdb

    file = Path(path)
    if not file.is_file():
        raise TraceImportError(f"trace file {file} does not exist",
                               fix="check the path; relative paths start at the current folder")
    fmt = _detect(file) if format is None else format
    if fmt not in TRACE_FORMATS:
        raise TraceImportError(f"unknown trace format {fmt!r} for {file}",
                               fix=f"pass format= one of {', '.join(TRACE_FORMATS)}")
    options = {"start": start, "model": model, "provider": provider}
    if wrong := [name for name, value in options.items() if value is not None
                 and (fmt == "devora" or (name, fmt) == ("start", "azure"))]:
        raise TraceImportError(f"{' and '.join(wrong)} cannot apply to {fmt} trace {file}",
                               fix="start is for mooncake traces only (others carry their "
                               "times); a devora export keeps its own model and provider")
    if start is not None and start.tzinfo is None:
        raise TraceImportError(f"start={start.isoformat()} has no time zone",
                               fix="pass an aware datetime, e.g. with tzinfo=timezone.utc")
    con = connect()
    try:
        parsed = {"azure": _azure, "mooncake": _mooncake, "devora": _devora}[fmt](con, file)
        con.register("_raw", parsed.raw)
        _validate(con, file, fmt, parsed)
        params = None if fmt == "devora" else _event_params(con, file, fmt, model, provider, start)
        if params is not None:
            params |= _rates(price_book, model)
        table = con.sql(parsed.select, params=params).to_arrow_table()
    except duckdb.Error as exc:  # a CSV row DuckDB cannot split: its message names the line
        detail = "; ".join(str(exc).splitlines()[:3])  # the rest is DuckDB's option list
        raise TraceImportError(f"{fmt} trace {file} cannot be read: {detail}",
                               fix="correct the line it names; nothing was imported") from exc
    finally:
        con.close()
    return _write_new(log, fmt, parsed.raw.num_rows, table)


def _detect(file: Path) -> str:
    """The format of ``file`` from its extension, magic bytes or first line. One known
    column is enough, so that a renamed column gets "lacks ContextTokens", not "unknown"."""
    first = _first_line(file)
    if file.suffix.lower() == ".parquet" or first.startswith(b"PAR1"):
        return "devora"
    keys = _json_keys(first)
    names = keys if keys is not None else {
        name.strip().strip('"') for name in first.decode("utf-8", "replace").split(",")}
    if {"event_id", "kind"} <= names:
        return "devora"
    if names & set(_MOONCAKE_KEYS if keys is not None else _AZURE_COLUMNS):
        return "mooncake" if keys is not None else "azure"
    raise TraceImportError(
        f"cannot tell the format of trace file {file} from its name and first line "
        f"{first[:80].decode('utf-8', 'replace')!r}", fix=f"pass format= one of "
        f"{', '.join(TRACE_FORMATS)} (azure: CSV with header {','.join(_AZURE_COLUMNS)}; mooncake: "
        f"JSON lines with {', '.join(_MOONCAKE_KEYS)}; devora: a file export_events wrote)")


def _first_line(file: Path) -> bytes:
    with file.open("rb") as handle:
        return handle.readline().strip().removeprefix(b"\xef\xbb\xbf")


def _json_keys(line: bytes) -> set[str] | None:
    """The keys of ``line`` if it is a JSON object, else None."""
    try:
        value = orjson.loads(line) if line.startswith(b"{") else None
    except orjson.JSONDecodeError:
        return None
    return set(value) if isinstance(value, dict) else None


def _with_rows(table: pa.Table) -> pa.Table:
    """``table`` plus its 1-based row numbers (in Arrow: SQL would not promise the order)."""
    import numpy as np
    import pyarrow as pa

    return table.append_column(_ROW, pa.array(np.arange(1, table.num_rows + 1, dtype=np.int64)))


def _read_csv(con: duckdb.DuckDBPyConnection, file: Path, fmt: str,
              needed: Sequence[str]) -> pa.Table:
    """Every field of a CSV file as text. Columns come from the header, not DuckDB's sniffer,
    so a ragged row is named by its line; lines are counted as if none were blank."""
    header = next(csv.reader([_first_line(file).decode("utf-8", "replace")]), [])
    _require(file, fmt, header, needed)
    source = ("read_csv($path, header=true, auto_detect=false, columns=$columns, delim=',', "
              "quote='\"', escape='\"', allow_quoted_nulls=false)")
    return _with_rows(con.sql(f"SELECT * FROM {source}", params={
        "path": str(file), "columns": dict.fromkeys(header, "VARCHAR")}).to_arrow_table())


def _read_lines(file: Path) -> pa.Table:
    """The lines of a JSON-lines file as text with their exact numbers, blank ones dropped.

    Parsing is left to SQL so that a malformed line is reported by its number like any other
    bad row (DuckDB's JSON reader miscounts lines). A JSON line never holds a raw 0x1f.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    try:
        table = pcsv.read_csv(
            file, read_options=pcsv.ReadOptions(column_names=[_LINE], block_size=1 << 25),
            parse_options=pcsv.ParseOptions(delimiter="\x1f", quote_char=False,
                                            ignore_empty_lines=False),
            convert_options=pcsv.ConvertOptions(column_types={_LINE: pa.string()},
                                                strings_can_be_null=False))
    except pa.ArrowInvalid as exc:
        raise TraceImportError(f"trace {file} cannot be read as JSON lines: {exc}",
                               fix="write one JSON object per line; nothing was imported") from exc
    table = _with_rows(table)
    return table.filter(pc.not_equal(pc.utf8_trim_whitespace(table.column(_LINE)), ""))


def _require(file: Path, fmt: str, found: Sequence[str], needed: Sequence[str]) -> None:
    if missing := [name for name in needed if name not in found]:
        raise TraceImportError(f"{fmt} trace {file} lacks {', '.join(missing)}: its first line "
                               f"has {', '.join(found) or 'nothing'}", fix=f"the {fmt} format "
                               f"needs {', '.join(needed)} (names are case-sensitive)")


def _azure(con: duckdb.DuckDBPyConnection, file: Path) -> _Parsed:
    """Azure's CSV; its 7-digit fractions of a second are cut to the log's microseconds."""
    import pyarrow as pa

    raw = _read_csv(con, file, "azure", _AZURE_COLUMNS)
    ts = 'TRY_CAST(trim("TIMESTAMP") AS TIMESTAMPTZ)'
    inputs, outputs = _WHOLE.format('"ContextTokens"'), _WHOLE.format('"GeneratedTokens"')
    checks = [_Check("TIMESTAMP", '"TIMESTAMP"', f"{ts} IS NULL",
                     "a UTC time like 2023-11-16 18:17:03.9799600")]
    checks += [_Check(name, f'"{name}"', f"{sql} IS NULL", "a whole number >= 0")
               for name, sql in (("ContextTokens", inputs), ("GeneratedTokens", outputs))]
    attributes = f"json_object('source', $source, 'trace_file', $trace_file, 'row', {_ROW})"
    if extras := [name for name in raw.column_names if name not in (*_AZURE_COLUMNS, _ROW)]:
        # Columns we do not know are kept in attributes, never dropped.
        arrays = [raw.column(name).combine_chunks() for name in extras]
        raw = raw.append_column("__devora_extras", pa.StructArray.from_arrays(arrays, extras))
        attributes = f"json_merge_patch(to_json(__devora_extras), {attributes})"
    return _Parsed(raw, checks, _event_select(ts, inputs, outputs, attributes), 1)


def _mooncake(con: duckdb.DuckDBPyConnection, file: Path) -> _Parsed:
    """Mooncake's JSON lines; keys beyond the three known ones (hash_ids) go to attributes.

    Each line is parsed once here into text columns, which the rules and events then share.
    """
    _require(file, "mooncake", sorted(_json_keys(_first_line(file)) or ()), _MOONCAKE_KEYS)
    con.register("_lines", _read_lines(file))
    known = orjson.dumps(dict.fromkeys(_MOONCAKE_KEYS)).decode()  # a merge patch removing them
    raw = con.sql(
        f"SELECT {_LINE}, {_ROW}, coalesce(json_type(j) = 'OBJECT', false) AS __devora_object, "
        "v[1] AS timestamp, v[2] AS input_length, v[3] AS output_length, "
        f"CAST(json_merge_patch(j, '{known}') AS VARCHAR) AS __devora_extras FROM ("
        f"SELECT *, json_extract_string(j, $keys) AS v FROM (SELECT *, {_JSON} AS j FROM _lines))",
        params={"keys": list(_MOONCAKE_KEYS)}).to_arrow_table()
    ms, inputs, outputs = (_WHOLE.format(f'"{key}"') for key in _MOONCAKE_KEYS)
    checks = [_Check("JSON", _LINE, "NOT __devora_object", "a JSON object")]
    checks += [_Check(key, f'"{key}"', f"__devora_object AND {sql} IS NULL", "a whole number >= 0")
               for key, sql in zip(_MOONCAKE_KEYS, (ms, inputs, outputs), strict=True)]
    attributes = (f"json_merge_patch(CAST(__devora_extras AS JSON), json_object('source', "
                  f"$source, 'trace_file', $trace_file, 'row', {_ROW}))")
    ts = f"CAST($start AS TIMESTAMPTZ) + to_milliseconds({ms})"
    return _Parsed(raw, checks, _event_select(ts, inputs, outputs, attributes), 0)


def _event_select(ts: str, inputs: str, outputs: str, attributes: str) -> str:
    return (
        f"SELECT printf('%s%010x', $prefix, {_ROW}) AS event_id, $kind AS kind, {ts} AS ts, "
        f"{inputs} AS input_tokens, {outputs} AS output_tokens, 'ok' AS status, "
        "'chat' AS operation, CAST($provider AS VARCHAR) AS provider, "
        "CAST($model AS VARCHAR) AS request_model, CAST($model AS VARCHAR) AS response_model, "
        f"CAST(({inputs}) * $input_rate + ({outputs}) * $output_rate AS DOUBLE) / 1e6 "
        "AS cost_usd, CASE WHEN $input_rate IS NULL THEN 'unpriced' ELSE 'priced' END "
        "AS cost_status, CAST($price_book_version AS VARCHAR) AS price_book_version, "
        "CAST($schema_version AS INTEGER) AS schema_version, "
        f"$sdk_version AS sdk_version, CAST({attributes} AS VARCHAR) AS attributes "
        f"FROM _raw ORDER BY {_ROW}"
    )


def _event_params(con: duckdb.DuckDBPyConnection, file: Path, fmt: str, model: str | None,
                  provider: str | None, start: datetime | None) -> dict[str, Any]:
    """The values ``_event_select`` needs; ids start with a hash of the file's content."""
    from devora_lab import __version__

    digest = hashlib.sha256()
    with file.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    params = {"prefix": "t" + digest.hexdigest()[:21], "kind": EventKind.LLM_CALL.value,
              "source": fmt, "trace_file": file.name, "model": model, "provider": provider,
              "schema_version": SCHEMA_VERSION, "sdk_version": __version__}
    if fmt == "mooncake" and start is None:  # now minus the span: the replayed trace ends now
        ms = _WHOLE.format('"timestamp"')
        span = con.sql(f"SELECT max({ms}) FROM _raw").fetchall()[0][0]
        start = utc_now() - timedelta(milliseconds=int(span or 0))
    return params | ({"start": start} if fmt == "mooncake" else {})


def _rates(book: PriceBook | None, model: str | None) -> dict[str, Any]:
    """Per-million-token rates for the SQL, NULL (so the cost is NULL) when unknown."""
    price = book.price(model) if book is not None and model is not None else None
    if price is None:
        return {"input_rate": None, "output_rate": None, "price_book_version": None}
    assert book is not None
    return {"input_rate": price.input, "output_rate": price.output,
            "price_book_version": book.version}


def _devora(con: duckdb.DuckDBPyConnection, file: Path) -> _Parsed:
    """A file written by ``export_events``, every column typed back as the schema says.

    Text formats are read as text and cast here, so that a bad value is reported with its
    line like any trace's; within the file the first copy of a repeated event_id wins.
    """
    import duckdb

    first = _first_line(file)
    checks = []
    if file.suffix.lower() == ".parquet" or first.startswith(b"PAR1"):
        table = con.sql("SELECT * FROM read_parquet($path)", params={"path": str(file)})
        raw, offset = _with_rows(table.to_arrow_table()), None
        _require(file, "devora", raw.column_names[:-1], _DEVORA_REQUIRED)
    elif first.startswith(b"{"):
        _require(file, "devora", sorted(_json_keys(first) or ()), _DEVORA_REQUIRED)
        fields, offset = {c.name: "VARCHAR" for c in COLUMNS}, 0
        try:  # DuckDB's reader is lean, but it miscounts lines: a bad file is read by lines
            source = "read_json($path, format='newline_delimited', columns=$fields)"
            raw = _with_rows(con.sql(f"SELECT * FROM {source}", params={
                "path": str(file), "fields": fields}).to_arrow_table())
        except duckdb.Error:
            con.register("_lines", _read_lines(file))
            raw = con.sql(f"SELECT unnest(json_transform({_JSON}, $fields)), {_LINE}, {_ROW} "
                          "FROM _lines", params={"fields": orjson.dumps(fields).decode()})
            raw, checks = raw.to_arrow_table(), [
                _Check("JSON", _LINE, f"{_JSON} IS NULL", "a JSON object")]
    else:  # CSV: a quoted "" is an empty string, an empty field is NULL
        raw, offset = _read_csv(con, file, "devora", _DEVORA_REQUIRED), 1
    checks += [_Check(name, name, f'"{name}" IS NULL', "a value") for name in _DEVORA_REQUIRED]
    selects = []
    for column in (c for c in COLUMNS if c.name in raw.column_names):
        name, kind = f'"{column.name}"', column.duckdb_type.replace("JSON", "VARCHAR")
        text = f"CAST({name} AS VARCHAR)"
        selects.append(f"CAST({name} AS {kind}) AS {name}")
        bad = (f"NOT json_valid({text})" if column.duckdb_type == "JSON" else
               f"NOT regexp_full_match(trim({text}), '-?[0-9]+')" if "INT" in kind else
               f"{name} IS NOT NULL AND TRY_CAST({name} AS {kind}) IS NULL")
        checks.append(_Check(column.name, name, bad, f"a {column.duckdb_type} value"))
    select = (f"SELECT {', '.join(selects)} FROM _raw WHERE {_ROW} IN "
              f"(SELECT min({_ROW}) FROM _raw GROUP BY event_id) ORDER BY {_ROW}")
    return _Parsed(raw, checks, select, offset)


def _validate(con: duckdb.DuckDBPyConnection, file: Path, fmt: str, parsed: _Parsed) -> None:
    """Raise one error naming every rule broken with its first lines, before anything is
    written; rows are counted in one scan and listed only for the rules they break."""
    counts = con.sql("SELECT " + ", ".join(f"count(*) FILTER (WHERE {check.bad})"
                                           for check in parsed.checks) + " FROM _raw").fetchall()
    broken = [(check, n) for check, n in zip(parsed.checks, counts[0], strict=True) if n]
    if not broken:
        return
    aggregates = []  # the lines and values of broken rules only: listing is the slow part
    for check, _ in broken:
        where = f"FILTER (WHERE {check.bad})"
        aggregates += [f"list({_ROW} ORDER BY {_ROW}) {where}[1:{_SHOWN}]",
                       f"list(CAST({check.value} AS VARCHAR) ORDER BY {_ROW}) {where}[1:3]"]
    found = con.sql(f"SELECT {', '.join(aggregates)} FROM _raw").fetchall()[0]
    unit, offset = ("row", 0) if parsed.line_offset is None else ("line", parsed.line_offset)
    problems = []
    for index, (check, count) in enumerate(broken):
        rows, values = found[2 * index: 2 * index + 2]
        more = f" and {count - len(rows)} more" if count > len(rows) else ""
        got = ", ".join("nothing" if v is None else repr(v[:40]) for v in values)
        problems.append(f"{check.field} on {unit}(s) {', '.join(str(r + offset) for r in rows)}"
                        f"{more}: expected {check.expected}, got {got}")
    raise TraceImportError(f"{fmt} trace {file} has bad rows: {'; '.join(problems)}",
                           fix="correct or remove those rows; nothing was imported")


def _write_new(log: EventLog, fmt: str, rows_read: int, table: pa.Table) -> ImportReport:
    """Write the rows whose event_id the log lacks; report what was read and written."""
    import pyarrow.compute as pc

    first_ts = last_ts = None
    if table.num_rows:
        span = pc.min_max(table.column("ts"))
        first_ts, last_ts = span["min"].as_py(), span["max"].as_py()
        with log.store() as store:
            store.connection.register("_devora_import_ids", table.select(["event_id"]))
            known = store.arrow("SELECT DISTINCT event_id FROM events WHERE event_id IN "
                                "(SELECT event_id FROM _devora_import_ids)")
        if known.num_rows:
            table = table.filter(pc.invert(pc.is_in(table.column("event_id"),
                                                    value_set=known.column("event_id"))))
    written = log.writer().write_table(table) if table.num_rows else 0
    return ImportReport(fmt, rows_read, written, rows_read - written, first_ts, last_ts)


def export_events(store: EventStore, path: str | os.PathLike[str], *, format: str,
                  kinds: Sequence[str] | None = None, since: datetime | None = None,
                  until: datetime | None = None) -> int:
    """Write the events of ``store`` to ``path`` as csv, json (JSON lines) or parquet.

    Filters: ``kind`` in ``kinds`` and ``since <= ts < until``, passed to DuckDB as
    parameters. The file appears complete or not at all (a temporary file, then a rename).
    Timestamps keep microseconds and UTC (ISO 8601 with ``Z`` in text formats) and
    ``attributes`` stays JSON text, so that ``import_trace(..., format="devora")`` restores
    every column. Returns the number of rows written.
    """
    import duckdb

    if format not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {format!r}",
                          fix=f"use one of {', '.join(EXPORT_FORMATS)}")
    where, params = ["TRUE"], list[Any]()
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        where.append("list_contains(CAST(? AS VARCHAR[]), kind)")
        params.append([str(kind) for kind in kinds])
    for bound, op, name in ((since, ">=", "since"), (until, "<", "until")):
        if bound is not None and bound.tzinfo is None:
            raise ExportError(f"{name}={bound.isoformat()} has no time zone",
                              fix="pass an aware datetime, e.g. with tzinfo=timezone.utc")
        if bound is not None:
            where.append(f"ts {op} ?")
            params.append(bound)
    columns = ", ".join(_export_column(c.name, c.duckdb_type, format) for c in COLUMNS)
    sql = f"SELECT {columns} FROM events WHERE {' AND '.join(where)} ORDER BY ts, event_id"
    target = Path(path)
    tmp = target.with_name(f".tmp-{secrets.token_hex(6)}-{target.name}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        store.refresh()
        copied = store.connection.execute(f"COPY ({sql}) TO ? ({_COPY_OPTIONS[format]})",
                                          [*params, str(tmp)]).fetchall()
        os.replace(tmp, target)
    except (duckdb.Error, OSError) as exc:
        with suppress(OSError):
            tmp.unlink()
        raise ExportError(f"cannot export events to {target}: {exc}",
                          fix="check that the folder is writable and has free space") from exc
    return int(copied[0][0])


def _export_column(name: str, duckdb_type: str, fmt: str) -> str:
    if duckdb_type == "JSON":  # text, as in the log's own Parquet files
        return f'CAST("{name}" AS VARCHAR) AS "{name}"'
    if duckdb_type == "TIMESTAMPTZ" and fmt != "parquet":
        return f'strftime("{name}", \'%Y-%m-%dT%H:%M:%S.%fZ\') AS "{name}"'
    return f'"{name}"'
