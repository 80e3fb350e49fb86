"""Trace import (Azure, Mooncake, our own exports) and event export."""

from __future__ import annotations

import csv
import json
import shutil
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from devora_lab.errors import ExportError, TraceImportError
from devora_lab.events import Event, EventKind, EventLog
from devora_lab.events.traces import (
    EXPORT_FORMATS,
    TRACE_FORMATS,
    ImportReport,
    export_events,
    import_trace,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
AZURE = FIXTURES / "context_tokens_invented.csv"
MOONCAKE = FIXTURES / "prefix_blocks_invented.jsonl"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
UTC = timezone.utc


@pytest.fixture
def elog(tmp_path: Path) -> Iterator[EventLog]:
    event_log = EventLog(tmp_path / "events")
    yield event_log
    event_log.close()


def fresh_log(tmp_path: Path, name: str) -> EventLog:
    return EventLog(tmp_path / name)


def rows(log: EventLog, sql: str = "SELECT * EXCLUDE (date) FROM events ORDER BY event_id",
         params: list[Any] | None = None) -> list[dict[str, Any]]:
    with log.store() as store:
        return list(store.arrow(sql, params).to_pylist())


def count(log: EventLog) -> int:
    with log.store() as store:
        return store.count()


def azure_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def mooncake_rows(path: Path) -> list[dict[str, Any]]:
    with path.open() as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_text(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- Azure --------------------------------------------------------------------------------


def test_azure_rows_become_unpriced_llm_calls(elog: EventLog) -> None:
    report = import_trace(elog, AZURE)
    source = azure_rows(AZURE)
    assert report == ImportReport(
        "azure", 20, 20, 0,
        datetime(2023, 11, 16, 23, 59, 52, 389563, tzinfo=UTC),
        datetime(2023, 11, 17, 0, 0, 0, 874979, tzinfo=UTC),
    )
    events = rows(elog, "SELECT * FROM events ORDER BY ts")
    assert [e["input_tokens"] for e in events] == [int(r["ContextTokens"]) for r in source]
    assert [e["output_tokens"] for e in events] == [int(r["GeneratedTokens"]) for r in source]
    first = events[0]
    assert first["kind"] == "llm.call"
    assert first["status"] == "ok"
    assert first["operation"] == "chat"
    assert first["request_model"] is None and first["response_model"] is None
    assert first["provider"] is None
    assert first["cost_usd"] is None and first["cost_status"] == "unpriced"
    assert first["schema_version"] == 1
    assert json.loads(first["attributes"]) == {
        "source": "azure", "trace_file": "context_tokens_invented.csv", "row": 1}
    # Seven fractional digits are cut to microseconds, in UTC.
    assert first["ts"] == datetime(2023, 11, 16, 23, 59, 52, 389563, tzinfo=UTC)
    # The trace crosses midnight: one Parquet file per UTC day.
    assert sorted(p.name for p in Path(elog.root).glob("date=*")) == [
        "date=2023-11-16", "date=2023-11-17"]


def test_model_and_provider_fill_every_row(elog: EventLog) -> None:
    import_trace(elog, AZURE, model="gpt-4o-mini", provider="openai")
    assert rows(elog, "SELECT DISTINCT request_model, response_model, provider, cost_status, "
                      "cost_usd FROM events") == [{
        "request_model": "gpt-4o-mini", "response_model": "gpt-4o-mini", "provider": "openai",
        "cost_status": "unpriced", "cost_usd": None}]


def test_azure_extra_columns_are_kept_in_attributes(elog: EventLog, tmp_path: Path) -> None:
    path = write_text(tmp_path, "extra.csv", "TIMESTAMP,ContextTokens,GeneratedTokens,Region\n"
                                             "2023-11-16 18:17:03.9799600,10,2,westus\n")
    import_trace(elog, path)
    (event,) = rows(elog)
    assert json.loads(event["attributes"]) == {
        "Region": "westus", "source": "azure", "trace_file": "extra.csv", "row": 1}


# -- Mooncake -----------------------------------------------------------------------------


def test_mooncake_default_start_makes_the_trace_end_now(elog: EventLog) -> None:
    before = datetime.now(UTC)
    report = import_trace(elog, MOONCAKE)
    after = datetime.now(UTC)
    source = mooncake_rows(MOONCAKE)
    assert (report.format, report.rows_read, report.events_written) == ("mooncake", 20, 20)
    assert report.first_ts is not None and report.last_ts is not None
    assert before <= report.last_ts <= after
    assert report.last_ts - report.first_ts == timedelta(milliseconds=source[-1]["timestamp"])
    events = rows(elog, "SELECT * FROM events ORDER BY event_id")
    for event, line in zip(events, source, strict=True):
        assert event["ts"] == report.first_ts + timedelta(milliseconds=line["timestamp"])
        assert (event["input_tokens"], event["output_tokens"]) == (
            line["input_length"], line["output_length"])
    assert json.loads(events[2]["attributes"]) == {
        "hash_ids": source[2]["hash_ids"], "source": "mooncake",
        "trace_file": "prefix_blocks_invented.jsonl", "row": 3}


def test_mooncake_explicit_start(elog: EventLog) -> None:
    start = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    report = import_trace(elog, MOONCAKE, start=start, model="kimi")
    assert report.first_ts == start
    assert report.last_ts == start + timedelta(seconds=13)
    assert rows(elog, "SELECT DISTINCT request_model FROM events") == [{"request_model": "kimi"}]


# -- detection ----------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "name", "expected"), [
    (AZURE, "trace.csv", "azure"),
    (AZURE, "trace.txt", "azure"),  # the header decides, not the extension
    (MOONCAKE, "trace.jsonl", "mooncake"),
    (MOONCAKE, "trace.log", "mooncake"),
])
def test_format_is_detected(elog: EventLog, tmp_path: Path, source: Path, name: str,
                            expected: str) -> None:
    path = tmp_path / name
    shutil.copy(source, path)
    assert import_trace(elog, path).format == expected


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_devora_exports_are_detected(elog: EventLog, tmp_path: Path, fmt: str) -> None:
    import_trace(elog, AZURE)
    with elog.store() as store:
        export_events(store, tmp_path / f"out.{fmt}", format=fmt)
    odd_name = tmp_path / "export.dat"  # Parquet is told by its magic bytes too
    shutil.copy(tmp_path / f"out.{fmt}", odd_name)
    assert import_trace(fresh_log(tmp_path, "other"), odd_name).format == "devora"


def test_undetectable_file_names_it_and_lists_formats(elog: EventLog, tmp_path: Path) -> None:
    path = write_text(tmp_path, "mystery.csv", "a,b,c\n1,2,3\n")
    with pytest.raises(TraceImportError) as caught:
        import_trace(elog, path)
    message = str(caught.value)
    assert "mystery.csv" in message
    assert all(fmt in message for fmt in TRACE_FORMATS)


def test_empty_file_cannot_be_detected(elog: EventLog, tmp_path: Path) -> None:
    with pytest.raises(TraceImportError, match="cannot tell the format"):
        import_trace(elog, write_text(tmp_path, "empty.csv", ""))


def test_unknown_format_name(elog: EventLog) -> None:
    with pytest.raises(TraceImportError, match="azure, mooncake, devora"):
        import_trace(elog, AZURE, format="helicone")


# -- idempotence --------------------------------------------------------------------------


@pytest.mark.parametrize("trace", [AZURE, MOONCAKE])
def test_reimport_skips_rows_already_present(elog: EventLog, trace: Path) -> None:
    first = import_trace(elog, trace)
    ids = rows(elog, "SELECT event_id FROM events ORDER BY event_id")
    second = import_trace(elog, trace)
    assert (second.rows_read, second.events_written, second.duplicates_skipped) == (20, 0, 20)
    assert count(elog) == first.events_written == 20
    assert rows(elog, "SELECT event_id FROM events ORDER BY event_id") == ids


def test_event_ids_follow_content_not_file_name(elog: EventLog, tmp_path: Path) -> None:
    import_trace(elog, AZURE)
    renamed = tmp_path / "renamed.csv"
    shutil.copy(AZURE, renamed)
    assert import_trace(elog, renamed).duplicates_skipped == 20
    changed = write_text(tmp_path, "changed.csv", AZURE.read_text().replace(",6488,", ",6489,"))
    assert import_trace(elog, changed).events_written == 20  # other content: other events
    assert count(elog) == 40


# -- export and round trip ----------------------------------------------------------------


def varied_events() -> list[Event]:
    base = datetime(2026, 5, 4, 23, 59, 59, 999999, tzinfo=UTC)
    return [
        Event(kind=EventKind.LLM_CALL, event_id="e-1", ts=base,
              started_at=base - timedelta(microseconds=123457), request_model="gpt-4o",
              input_tokens=1200, output_tokens=34, cached_input_tokens=0, temperature=0.7,
              streamed=True, cost_usd=0.1 + 0.2, cost_status="priced", latency_ms=412.5,
              http_status=200, attempt=1, fallback_index=0, status="ok",
              prompt_text='line one\nline "two", with commas', response_text="",
              attributes={"tags": ["a", "ß"], "nested": {"x": 1.5, "none": None}}),
        Event(kind=EventKind.CACHE, event_id="e-2", ts=base + timedelta(microseconds=1),
              cache_outcome="hit", saved_cost_usd=1e-7, streamed=False, max_tokens=2**40),
        Event(kind=EventKind.ALERT, event_id="e-3", ts=base + timedelta(days=1), name="spend",
              severity="critical", value=-3.25, threshold=10.0, item_count=0, pid=2**31 - 1),
        Event(kind=EventKind.BUDGET, event_id="e-4", ts=base - timedelta(days=3)),
    ]


def populated(tmp_path: Path) -> EventLog:
    log = fresh_log(tmp_path, "source")
    for event in varied_events():
        log.write(event)
    log.flush()
    import_trace(log, AZURE)
    import_trace(log, MOONCAKE, start=datetime(2026, 5, 4, tzinfo=UTC), model="m")
    return log


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_export_then_import_round_trips_every_column(tmp_path: Path, fmt: str) -> None:
    source = populated(tmp_path)
    with source.store() as store:
        written = export_events(store, tmp_path / f"all.{fmt}", format=fmt)
    assert written == count(source) == 44
    target = fresh_log(tmp_path, "target")
    report = import_trace(target, tmp_path / f"all.{fmt}")
    assert (report.format, report.rows_read, report.events_written) == ("devora", 44, 44)
    original, restored = rows(source), rows(target)
    assert restored == original
    assert restored[0]["ts"].tzinfo is not None
    assert {e["event_id"]: e for e in restored}["e-1"]["prompt_text"] == \
        'line one\nline "two", with commas'
    # Importing the export into the log it came from adds nothing.
    again = import_trace(source, tmp_path / f"all.{fmt}")
    assert (again.events_written, again.duplicates_skipped) == (0, 44)
    source.close()
    target.close()


def test_devora_import_keeps_the_first_copy_of_a_repeated_id(elog: EventLog,
                                                             tmp_path: Path) -> None:
    source = populated(tmp_path)
    with source.store() as store:
        export_events(store, tmp_path / "all.csv", format="csv", kinds=["alert"])
    lines = (tmp_path / "all.csv").read_text().splitlines()
    copy = lines[1].replace("critical", "info")
    path = write_text(tmp_path, "twice.csv", "\n".join([*lines, copy]) + "\n")
    report = import_trace(elog, path)
    assert (report.rows_read, report.events_written, report.duplicates_skipped) == (2, 1, 1)
    assert rows(elog, "SELECT severity FROM events") == [{"severity": "critical"}]
    source.close()


def test_text_exports_keep_microseconds_utc_and_json_text(tmp_path: Path) -> None:
    source = populated(tmp_path)
    with source.store() as store:
        export_events(store, tmp_path / "e.csv", format="csv", kinds=["llm.call"])
        export_events(store, tmp_path / "e.json", format="json", kinds=["llm.call"])
    with (tmp_path / "e.csv").open(newline="") as handle:
        first = next(row for row in csv.DictReader(handle) if row["event_id"] == "e-1")
    assert first["ts"] == "2026-05-04T23:59:59.999999Z"
    assert first["started_at"] == "2026-05-04T23:59:59.876542Z"
    assert json.loads(first["attributes"])["tags"] == ["a", "ß"]
    lines = [orjson.loads(line) for line in (tmp_path / "e.json").read_bytes().splitlines()]
    e1 = next(line for line in lines if line["event_id"] == "e-1")
    assert e1["ts"] == "2026-05-04T23:59:59.999999Z"
    assert isinstance(e1["attributes"], str)
    assert orjson.loads(e1["attributes"])["nested"] == {"x": 1.5, "none": None}
    source.close()


def test_export_filters(tmp_path: Path) -> None:
    source = populated(tmp_path)
    day = datetime(2026, 5, 4, tzinfo=UTC)
    everything = {e["event_id"] for e in rows(source)}
    mooncake_first_5s = 9  # rows with timestamp < 5000 ms in the fixture
    cases: list[tuple[dict[str, Any], set[str] | int]] = [
        ({"kinds": ["cache", EventKind.ALERT]}, {"e-2", "e-3"}),
        ({"kinds": []}, set()),
        ({"since": day + timedelta(days=1)}, {"e-2", "e-3"}),  # e-2 is exactly at since
        ({"until": day + timedelta(days=1)}, everything - {"e-2", "e-3"}),  # until: exclusive
        ({"kinds": ["llm.call"], "since": day, "until": day + timedelta(seconds=5)},
         mooncake_first_5s),
    ]
    with source.store() as store:
        for index, (filters, expected) in enumerate(cases):
            path = tmp_path / f"f{index}.json"
            written = export_events(store, path, format="json", **filters)
            ids = {orjson.loads(line)["event_id"] for line in path.read_bytes().splitlines()}
            assert written == len(ids)
            assert (len(ids) if isinstance(expected, int) else ids) == expected, filters
    source.close()


def test_export_rejects_unknown_format_and_naive_times(elog: EventLog, tmp_path: Path) -> None:
    with elog.store() as store:
        with pytest.raises(ExportError, match="csv, json, parquet"):
            export_events(store, tmp_path / "x.xlsx", format="xlsx")
        with pytest.raises(ExportError, match="time zone"):
            export_events(store, tmp_path / "x.csv", format="csv", since=datetime(2026, 1, 1))
    assert not (tmp_path / "x.csv").exists()


def test_export_is_atomic(tmp_path: Path) -> None:
    source = populated(tmp_path)
    out = tmp_path / "out"
    with source.store() as store:
        assert export_events(store, out / "a.parquet", format="parquet") == 44
        assert export_events(store, out / "a.parquet", format="parquet", kinds=["alert"]) == 1
        blocker = write_text(tmp_path, "blocker", "a file, not a folder")
        with pytest.raises(ExportError, match="blocker"):
            export_events(store, blocker / "b.csv", format="csv")
    assert [p.name for p in out.iterdir()] == ["a.parquet"]  # no temporary file left
    reread = fresh_log(tmp_path, "reread")
    assert import_trace(reread, out / "a.parquet").rows_read == 1
    source.close()


# -- bad input: a clear error and nothing written -----------------------------------------


def azure_with(line: int, new: str) -> str:
    lines = AZURE.read_text().splitlines()
    lines[line - 1] = new
    return "\n".join(lines) + "\n"


def mooncake_with(line: int, new: str) -> str:
    lines = MOONCAKE.read_text().splitlines()
    lines[line - 1] = new
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("name", "text", "fragments"), [
    ("renamed.csv", azure_with(1, "TIMESTAMP,PromptTokens,GeneratedTokens"),
     ["lacks ContextTokens", "PromptTokens", "needs TIMESTAMP, ContextTokens, GeneratedTokens"]),
    ("words.csv", azure_with(4, "2023-11-16 23:59:52.9236469,many,260"),
     ["ContextTokens on line(s) 4:", "whole number", "'many'"]),
    ("negative.csv", azure_with(6, "2023-11-16 23:59:53.6872581,3963,-47"),
     ["GeneratedTokens on line(s) 6:", "whole number >= 0", "'-47'"]),
    ("fraction.csv", azure_with(3, "2023-11-16 23:59:52.4901941,87.5,49"),
     ["ContextTokens on line(s) 3:", "'87.5'"]),
    ("badtime.csv", azure_with(9, "16/11/2023 23:59,2201,149"),
     ["TIMESTAMP on line(s) 9:", "a UTC time", "'16/11/2023 23:59'"]),
    ("blank.csv", azure_with(2, "2023-11-16 23:59:52.3895632,,334"),
     ["ContextTokens on line(s) 2:", "got nothing"]),
    ("ragged.csv", azure_with(5, "2023-11-16 23:59:53.1987730,1428"), ["cannot be read", "5"]),
    ("renamed.jsonl", MOONCAKE.read_text().replace('"output_length"', '"out_len"'),
     ["lacks output_length", "out_len"]),
    ("neg.jsonl", mooncake_with(7, '{"timestamp": 3500, "input_length": -1, "output_length": 3}'),
     ["input_length on line(s) 7:", "'-1'"]),
    ("float_ts.jsonl",
     mooncake_with(2, '{"timestamp": 0.5, "input_length": 1, "output_length": 3}'),
     ["timestamp on line(s) 2:", "'0.5'"]),
    ("missing.jsonl", mooncake_with(11, '{"timestamp": 5900, "input_length": 1906}'),
     ["output_length on line(s) 11:", "got nothing"]),
    ("broken.jsonl", mooncake_with(12, '{"timestamp": 7100, "input_len'),
     ["JSON on line(s) 12: expected a JSON object", "input_len"]),
])
def test_bad_trace_names_file_lines_and_expectation(elog: EventLog, tmp_path: Path, name: str,
                                                    text: str, fragments: list[str]) -> None:
    path = write_text(tmp_path, name, text)
    with pytest.raises(TraceImportError) as caught:
        import_trace(elog, path)
    message = str(caught.value)
    assert name in message
    for fragment in fragments:
        assert fragment in message
    assert "nothing was imported" in message or "lacks" in message
    assert count(elog) == 0


def test_many_bad_rows_are_summarised(elog: EventLog, tmp_path: Path) -> None:
    lines = AZURE.read_text().splitlines()
    path = write_text(tmp_path, "many.csv", "\n".join(
        [lines[0], *(line.rsplit(",", 1)[0] + ",x" for line in lines[1:])]) + "\n")
    with pytest.raises(TraceImportError, match=r"line\(s\) 2, 3, 4, 5, 6 and 15 more"):
        import_trace(elog, path)
    assert count(elog) == 0


def test_bad_devora_value_is_reported_with_its_line(elog: EventLog, tmp_path: Path) -> None:
    source = populated(tmp_path)
    with source.store() as store:
        export_events(store, tmp_path / "all.csv", format="csv", kinds=["alert", "budget"])
    text = (tmp_path / "all.csv").read_text().replace("2026-05-05T23:59:59.999999Z", "tomorrow")
    path = write_text(tmp_path, "edited.csv", text)
    with pytest.raises(TraceImportError, match=r"ts on line\(s\) 3: expected a TIMESTAMPTZ"):
        import_trace(elog, path)
    assert count(elog) == 0
    source.close()


def test_missing_file_says_how_to_fix(elog: EventLog, tmp_path: Path) -> None:
    with pytest.raises(TraceImportError, match=r"does not exist \(fix: check the path"):
        import_trace(elog, tmp_path / "nope.csv")


def test_options_that_do_not_apply_are_refused(elog: EventLog) -> None:
    with pytest.raises(TraceImportError, match="start cannot apply to azure trace"):
        import_trace(elog, AZURE, start=datetime(2024, 1, 1, tzinfo=UTC))
    with pytest.raises(TraceImportError, match="no time zone"):
        import_trace(elog, MOONCAKE, start=datetime(2024, 1, 1))
    with pytest.raises(TraceImportError, match="model and provider cannot apply to devora"):
        import_trace(elog, AZURE, format="devora", model="m", provider="p")
    assert count(elog) == 0


# -- scale and real traces ----------------------------------------------------------------


def test_a_larger_trace_imports_in_bulk(elog: EventLog, tmp_path: Path) -> None:
    base = datetime(2024, 2, 1, tzinfo=UTC)
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"] + [
        f"{base + timedelta(milliseconds=37 * i):%Y-%m-%d %H:%M:%S.%f}0,{i % 5000},{i % 300}"
        for i in range(20_000)]
    path = write_text(tmp_path, "big.csv", "\n".join(lines) + "\n")
    started = time.perf_counter()
    report = import_trace(elog, path)
    elapsed = time.perf_counter() - started
    assert report.events_written == 20_000
    assert elapsed < 5.0, f"20k rows took {elapsed:.2f} s"  # a per-row path would show here
    sums = rows(elog, "SELECT sum(input_tokens) AS i, sum(output_tokens) AS o FROM events")
    assert sums == [{"i": sum(i % 5000 for i in range(20_000)),
                     "o": sum(i % 300 for i in range(20_000))}]


@pytest.mark.shared_data
def test_real_traces_import_exactly(elog: EventLog) -> None:
    azure, mooncake = SHARED_DATA / "azure_llm_2023_code.csv", \
        SHARED_DATA / "mooncake_synthetic_trace.jsonl"
    if not (azure.is_file() and mooncake.is_file()):
        pytest.skip(f"{SHARED_DATA} is not here (a fresh clone)")
    azure_source, mooncake_source = azure_rows(azure), mooncake_rows(mooncake)
    for path, source, fmt, inputs, outputs in (
        (azure, azure_source, "azure", "ContextTokens", "GeneratedTokens"),
        (mooncake, mooncake_source, "mooncake", "input_length", "output_length"),
    ):
        started = time.perf_counter()
        report = import_trace(elog, path)
        elapsed = time.perf_counter() - started
        print(f"{path.name}: {report.rows_read} rows in {elapsed:.3f} s")
        assert (report.format, report.rows_read, report.events_written) == (
            fmt, len(source), len(source))
        sums = rows(elog, "SELECT count(*) AS n, sum(input_tokens) AS i, sum(output_tokens) AS o "
                          "FROM events WHERE attributes->>'source' = ?", [fmt])
        assert sums == [{"n": len(source), "i": sum(int(r[inputs]) for r in source),
                         "o": sum(int(r[outputs]) for r in source)}]
    assert len(azure_source) == 8819 and len(mooncake_source) == 3993
    assert count(elog) == 8819 + 3993


def test_bad_devora_json_line_is_reported_with_its_number(elog: EventLog, tmp_path: Path) -> None:
    source = populated(tmp_path)
    with source.store() as store:
        export_events(store, tmp_path / "all.json", format="json", kinds=["alert", "budget"])
    lines = (tmp_path / "all.json").read_text().splitlines()
    path = write_text(tmp_path, "cut.json", "\n".join([lines[0], "", lines[1][:30]]) + "\n")
    with pytest.raises(TraceImportError, match=r"JSON on line\(s\) 3: expected a JSON object"):
        import_trace(elog, path)
    assert count(elog) == 0
    source.close()


def test_header_only_trace_imports_nothing(elog: EventLog, tmp_path: Path) -> None:
    path = write_text(tmp_path, "header.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n")
    assert import_trace(elog, path) == ImportReport("azure", 0, 0, 0, None, None)
    assert count(elog) == 0


def test_blank_lines_in_json_lines_are_skipped_and_counted(elog: EventLog, tmp_path: Path) -> None:
    lines = MOONCAKE.read_text().splitlines()
    path = write_text(tmp_path, "gaps.jsonl", "\n".join([lines[0], "", *lines[1:3], "  "]) + "\n")
    report = import_trace(elog, path, start=datetime(2024, 1, 1, tzinfo=UTC))
    assert (report.rows_read, report.events_written) == (3, 3)
    assert [json.loads(e["attributes"])["row"] for e in rows(elog)] == [1, 3, 4]  # line numbers


def test_rows_with_a_known_model_are_priced(elog: EventLog) -> None:
    from devora_lab.llm.pricing import PriceBook

    book = PriceBook.default()
    import_trace(elog, AZURE, model="gpt-4o-mini", provider="openai", price_book=book)
    got = rows(elog, "SELECT input_tokens, output_tokens, cost_usd, cost_status, "
                     "price_book_version FROM events")
    assert got and all(r["cost_status"] == "priced" for r in got)
    for r in got:
        expected = book.cost("gpt-4o-mini", r["input_tokens"], r["output_tokens"])
        assert r["cost_usd"] == pytest.approx(expected)
        assert r["price_book_version"] == book.version
    other = fresh_log(elog.layout.spool.parent.parent, "other")
    import_trace(other, AZURE, model="no-such-model", price_book=book)
    assert {r["cost_status"] for r in rows(other, "SELECT cost_status FROM events")} == {
        "unpriced"}
