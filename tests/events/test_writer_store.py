"""Writing events and reading them back: spool, Parquet, other readers, schema evolution."""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from devora_lab.errors import EventLogError, EventSchemaError, QueryError
from devora_lab.events import EventKind, EventLog

if TYPE_CHECKING:
    from conftest import MakeLLMCall


def _utc(year: int, month: int, day: int, hour: int = 12) -> datetime:
    return datetime(year, month, day, hour, tzinfo=timezone.utc)


def _parquet_files(root: Path) -> list[Path]:
    return sorted(root.glob("date=*/*.parquet"))


def _spool_files(root: Path) -> list[Path]:
    return sorted((root / "_active").glob("date=*/seg-*.jsonl"))


# -- spool and roll -----------------------------------------------------------------------


def test_events_are_readable_from_the_spool_before_any_roll(
    log: EventLog, log_root: Path, make_llm_call: MakeLLMCall
) -> None:
    for i in range(7):
        log.write(make_llm_call(i))
    store = log.store()
    assert store.count() == 7
    assert store.snapshot.parquet == [] and len(store.snapshot.spool) == 1
    assert _parquet_files(log_root) == []


def test_flush_moves_every_event_into_parquet(
    log: EventLog, log_root: Path, make_llm_call: MakeLLMCall
) -> None:
    for i in range(7):
        log.write(make_llm_call(i))
    log.flush()
    store = log.store()
    assert store.count() == 7
    assert store.count(kind=EventKind.LLM_CALL) == 7
    assert store.count(kind=EventKind.ALERT) == 0
    assert store.snapshot.spool == []
    assert len(_parquet_files(log_root)) == 1 and _spool_files(log_root) == []


def test_segments_roll_every_roll_max_events(
    log: EventLog, log_root: Path, make_llm_call: MakeLLMCall
) -> None:
    store = log.store()
    for i in range(120):
        log.write(make_llm_call(i))
        if i % 40 == 0:
            assert store.count() == i + 1
    assert store.count() == 120
    log.flush()
    assert store.count() == 120
    assert sorted(f.rows for f in store.snapshot.parquet) == [20, 50, 50]
    assert len(_parquet_files(log_root)) == 3


def test_one_store_sees_new_events_and_rolls_without_reopening(
    log: EventLog, make_llm_call: MakeLLMCall
) -> None:
    store = log.store()
    assert store.count() == 0
    log.write(make_llm_call(0))
    assert store.count() == 1
    log.flush()
    log.write(make_llm_call(1))
    assert store.count() == 2


def test_view_has_a_date_column_from_spool_and_from_parquet(
    log: EventLog, make_llm_call: MakeLLMCall
) -> None:
    log.write(make_llm_call(0, ts=_utc(2026, 3, 1, 23)))
    log.write(make_llm_call(1, ts=datetime(2026, 3, 2, 0, 30, tzinfo=timezone(timedelta(hours=2)))))
    store = log.store()
    query = "SELECT request_id, date FROM events ORDER BY request_id"
    expected = [("req-0", date(2026, 3, 1)), ("req-1", date(2026, 3, 1))]
    assert store.rows(query) == expected
    log.flush()
    assert store.rows(query) == expected


def test_store_helpers_return_the_same_rows(log: EventLog, make_llm_call: MakeLLMCall) -> None:
    for i in range(10):
        log.write(make_llm_call(i))
    store = log.store()
    sql = "SELECT request_id, input_tokens FROM events WHERE input_tokens >= ? ORDER BY 1"
    rows = store.rows(sql, [105])
    assert len(rows) == 5
    assert store.arrow(sql, [105]).to_pylist() == [
        {"request_id": r, "input_tokens": n} for r, n in rows]
    assert store.pl(sql, [105]).rows() == rows
    assert store.scalar("SELECT sum(input_tokens) FROM events WHERE agent = $agent",
                        {"agent": "coder"}) == sum(100 + i for i in range(1, 10, 2))
    assert store.scalar("SELECT request_id FROM events WHERE false") is None


def test_bad_sql_raises_query_error(log: EventLog, make_llm_call: MakeLLMCall) -> None:
    log.write(make_llm_call())
    with pytest.raises(QueryError, match="query failed"):
        log.store().rows("SELECT no_such_column FROM events")


def test_attributes_are_queryable_as_json(log: EventLog, make_llm_call: MakeLLMCall) -> None:
    log.write(make_llm_call(4))
    log.flush()
    log.write(make_llm_call(5))
    rows = log.store().rows(
        "SELECT attributes->>'$.tags[1]', CAST(attributes->'tool_calls' AS INTEGER) "
        "FROM events ORDER BY request_id")
    assert rows == [("batch-0", 1), ("batch-0", 2)]


# -- other readers ------------------------------------------------------------------------


def test_parquet_files_are_readable_by_pyarrow_dataset_and_polars(
    log: EventLog, log_root: Path, make_llm_call: MakeLLMCall
) -> None:
    for i in range(75):
        log.write(make_llm_call(i, ts=_utc(2026, 5, 1 + i % 3)))
    log.flush()
    dataset = ds.dataset(log_root, format="parquet", partitioning="hive")
    assert dataset.count_rows() == 75
    frame = pl.scan_parquet(f"{log_root}/date=*/*.parquet", hive_partitioning=True).collect()
    assert frame.height == 75
    assert frame.get_column("date").cast(pl.String).value_counts().height == 3
    assert frame.get_column("input_tokens").sum() == sum(100 + i for i in range(75))
    assert log.store().count() == 75


def test_other_readers_ignore_the_spool_and_temporary_files(
    log: EventLog, log_root: Path, make_llm_call: MakeLLMCall
) -> None:
    log.write(make_llm_call(0))
    log.flush()
    log.write(make_llm_call(1))  # stays in the spool
    (partition,) = log_root.glob("date=*")
    (partition / ".tmp-abc-half-written.parquet").write_bytes(b"PAR1 not yet")
    assert ds.dataset(log_root, format="parquet", partitioning="hive").count_rows() == 1
    assert log.store().count() == 2


# -- schema evolution ---------------------------------------------------------------------


def _write_foreign_parquet(root: Path, day: str, table: pa.Table, name: str) -> None:
    folder = root / f"date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / name)


def test_files_with_fewer_or_unknown_columns_are_read_by_name(
    log: EventLog, log_root: Path, make_llm_call: MakeLLMCall
) -> None:
    log.write(make_llm_call(0, ts=_utc(2026, 4, 2)))
    log.flush()
    current = pq.read_table(_parquet_files(log_root)[0])
    old = current.select(["event_id", "kind", "ts", "request_model", "input_tokens"])
    old = old.set_column(0, "event_id", pa.array(["old-1"]))
    _write_foreign_parquet(log_root, "2026-04-01", old, "seg-old-writer-000001.parquet")
    newer = current.set_column(0, "event_id", pa.array(["new-1"]))
    newer = newer.append_column("carbon_grams", pa.array([1.25]))
    _write_foreign_parquet(log_root, "2026-04-03", newer, "seg-new-writer-000001.parquet")
    log.write(make_llm_call(1, ts=_utc(2026, 4, 2)))  # and one in the spool

    store = log.store()
    assert store.count() == 4
    old_row = store.rows("SELECT request_model, input_tokens, output_tokens, provider, "
                         "attributes, date FROM events WHERE event_id = 'old-1'")
    assert old_row == [("gpt-4o", 100, None, None, None, date(2026, 4, 1))]
    assert store.rows("SELECT carbon_grams, output_tokens FROM events "
                      "WHERE event_id = 'new-1'") == [(1.25, 10)]
    assert store.scalar("SELECT count(carbon_grams) FROM events") == 1


# -- the write paths ----------------------------------------------------------------------


def test_write_many_returns_the_count_and_splits_days(
    log: EventLog, log_root: Path, make_llm_call: MakeLLMCall
) -> None:
    events = [make_llm_call(i, ts=_utc(2026, 6, 1 + i % 2)) for i in range(30)]
    assert log.writer().write_many(events) == 30
    assert log.writer().write_many([]) == 0
    store = log.store()
    assert store.count() == 30
    log.flush()
    assert store.rows("SELECT date, count(*) FROM events GROUP BY 1 ORDER BY 1") == [
        (date(2026, 6, 1), 15), (date(2026, 6, 2), 15)]
    assert {p.parent.name for p in _parquet_files(log_root)} == {"date=2026-06-01",
                                                                "date=2026-06-02"}


def test_write_table_writes_parquet_per_day_directly(log: EventLog, log_root: Path) -> None:
    tokyo = pa.timestamp("us", tz="Asia/Tokyo")
    stamps = [_utc(2026, 7, 1, 20), _utc(2026, 7, 2, 1), _utc(2026, 7, 2, 2)]
    table = pa.table({
        "event_id": ["imp-1", "imp-2", "imp-3"],
        "kind": ["llm.call"] * 3,
        "ts": pa.array(stamps, type=tokyo),
        "input_tokens": pa.array([1, 2, 3], type=pa.int16()),
        "request_model": ["gpt-4o", "gpt-4o", "o3"],
    })
    assert log.writer().write_table(table) == 3
    assert _spool_files(log_root) == []
    assert {p.parent.name for p in _parquet_files(log_root)} == {"date=2026-07-01",
                                                                "date=2026-07-02"}
    rows = log.store().rows("SELECT event_id, ts, date, input_tokens FROM events ORDER BY 1")
    assert rows == [
        ("imp-1", stamps[0], date(2026, 7, 1), 1),
        ("imp-2", stamps[1], date(2026, 7, 2), 2),
        ("imp-3", stamps[2], date(2026, 7, 2), 3),
    ]


@pytest.mark.parametrize("column", ["ts", "kind"])
def test_write_table_with_a_row_lacking_ts_or_kind_writes_nothing(
    log: EventLog, log_root: Path, column: str
) -> None:
    columns: dict[str, pa.Array] = {
        "event_id": pa.array(["imp-1", "imp-2"]),
        "kind": pa.array(["llm.call", "llm.call"]),
        "ts": pa.array([_utc(2026, 7, 1), _utc(2026, 7, 2)], pa.timestamp("us", tz="UTC")),
    }
    columns[column] = pa.array([columns[column][0].as_py(), None], columns[column].type)
    with pytest.raises(EventSchemaError, match=f"no {column}"):
        log.writer().write_table(pa.table(columns))
    assert _parquet_files(log_root) == []
    assert log.store().count() == 0


def test_write_table_with_an_uncastable_column_raises_schema_error(
    log: EventLog, log_root: Path
) -> None:
    table = pa.table({"kind": ["llm.call"], "ts": [_utc(2026, 7, 1)],
                      "input_tokens": ["a dozen"]})
    with pytest.raises(EventSchemaError, match="does not fit the event schema"):
        log.writer().write_table(table)
    assert _parquet_files(log_root) == []


def test_old_events_land_in_their_own_date_partition(
    log: EventLog, log_root: Path, make_llm_call: MakeLLMCall
) -> None:
    log.write(make_llm_call(0))
    log.write(make_llm_call(1, ts=_utc(2019, 12, 31, 23)))
    log.write(make_llm_call(2, ts=_utc(2020, 1, 1, 0)))
    store = log.store()
    query = "SELECT request_id, date FROM events WHERE date < DATE '2021-01-01' ORDER BY 1"
    expected = [("req-1", date(2019, 12, 31)), ("req-2", date(2020, 1, 1))]
    assert store.rows(query) == expected
    log.flush()
    assert store.rows(query) == expected
    folders = {p.parent.name for p in _parquet_files(log_root)}
    today = datetime.now(timezone.utc).date()
    assert {"date=2019-12-31", "date=2020-01-01"} <= folders
    assert folders <= {"date=2019-12-31", "date=2020-01-01", f"date={today}",
                       f"date={today - timedelta(days=1)}"}
    assert store.count() == 3


def test_more_open_days_than_segments_loses_nothing(
    log: EventLog, make_llm_call: MakeLLMCall
) -> None:
    days = [_utc(2025, 1, 1 + d) for d in range(10)]  # more days than a writer keeps open
    for i in range(30):
        log.write(make_llm_call(i, ts=days[i % len(days)]))
    store = log.store()
    assert store.count() == 30  # while the writer rolls a segment for almost every event
    log.flush()
    assert store.rows("SELECT count(DISTINCT date), count(DISTINCT event_id) FROM events") == [
        (10, 30)]


def test_closed_writer_refuses_writes(log: EventLog, make_llm_call: MakeLLMCall) -> None:
    writer = log.writer()
    writer.write(make_llm_call(0))
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(EventLogError, match="closed"):
        writer.write(make_llm_call(1))
    with pytest.raises(EventLogError, match="closed"):
        writer.write_many([make_llm_call(2)])
    with pytest.raises(EventLogError, match="closed"):
        writer.write_table(pa.table({"kind": ["llm.call"], "ts": [_utc(2026, 1, 1)]}))
    assert log.store().count() == 1
    log.write(make_llm_call(3))  # the log itself opens a fresh writer
    assert log.writer() is not writer
    assert log.store().count() == 2


def test_writer_as_context_manager_flushes_on_exit(
    log: EventLog, log_root: Path, make_llm_call: MakeLLMCall
) -> None:
    with log.writer() as writer:
        writer.write(make_llm_call(0))
    assert _spool_files(log_root) == []
    assert log.store().count() == 1


def test_writer_stamps_provenance(log: EventLog, make_llm_call: MakeLLMCall) -> None:
    log.write(make_llm_call(0))
    (row,) = log.store().rows("SELECT pid, host, sdk_version FROM events")
    assert row[0] == os.getpid() and row[1] and row[2]


# -- fork ---------------------------------------------------------------------------------


def test_forked_child_writes_to_its_own_segment_and_nothing_is_lost(
    log: EventLog, log_root: Path, make_llm_call: MakeLLMCall
) -> None:
    for i in range(5):
        log.write(make_llm_call(i))  # the parent has an open segment when it forks
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            for i in range(100, 120):
                log.write(make_llm_call(i))
            log.close()
        except BaseException:  # noqa: BLE001 - report any failure through the exit code
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    for i in range(5, 10):
        log.write(make_llm_call(i))

    store = log.store()
    assert store.count() == 30
    assert store.scalar("SELECT count(DISTINCT event_id) FROM events") == 30
    assert store.rows("SELECT pid, count(*) FROM events GROUP BY pid ORDER BY 2 DESC") == [
        (pid, 20), (os.getpid(), 10)]
    # The parent's events are still in its own live segment; the child's are not in it.
    (parent_segment,) = _spool_files(log_root)
    pids = {orjson.loads(line)["pid"] for line in parent_segment.read_bytes().splitlines()}
    assert pids == {os.getpid()}
    log.flush()
    assert store.count() == 30
