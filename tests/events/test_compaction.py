"""Compaction: many small files become one per day, exactly, even when it is killed."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import random
import shutil
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from devora_lab.errors import EventLogError
from devora_lab.events import EventLog

if TYPE_CHECKING:
    from conftest import MakeLLMCall

DAYS = [datetime(2026, 8, d, 9, tzinfo=timezone.utc) for d in (1, 2, 3)]
CONTENT_SQL = "SELECT * FROM events ORDER BY event_id"
TOTALS_SQL = ("SELECT count(*), count(DISTINCT event_id), sum(input_tokens), sum(cost_usd), "
              "min(ts), max(ts) FROM events")


def _parquet_files(root: Path) -> list[Path]:
    """The finished Parquet files (temporary ones start with a dot)."""
    return sorted(p for p in root.glob("date=*/*.parquet") if not p.name.startswith("."))


def _fill(log: EventLog, make_llm_call: MakeLLMCall, start: int, count: int,
          per_file: int = 7) -> None:
    """Write ``count`` events spread over three days, flushing every ``per_file`` events."""
    for i in range(start, start + count):
        day = DAYS[i % len(DAYS)]
        log.write(make_llm_call(i, ts=day + timedelta(seconds=i)))
        if (i - start) % per_file == per_file - 1:
            log.flush()
    log.flush()


def _contents(log: EventLog) -> pa.Table:
    return log.store().arrow(CONTENT_SQL)


def _totals(log: EventLog) -> tuple[Any, ...]:
    return tuple(log.store().rows(TOTALS_SQL)[0])


def test_compaction_merges_small_files_into_one_per_day_with_identical_contents(
    log: EventLog, log_root: Path, make_llm_call: MakeLLMCall
) -> None:
    _fill(log, make_llm_call, 0, 90)
    files_before = len(_parquet_files(log_root))
    assert files_before > 3
    before, totals = _contents(log), _totals(log)

    report = log.compact()

    files = _parquet_files(log_root)
    assert [p.parent.name for p in files] == ["date=2026-08-01", "date=2026-08-02",
                                              "date=2026-08-03"]
    assert all(p.name.startswith("compact-") for p in files)
    assert (report.files_before, report.files_after) == (files_before, 3)
    assert report.files_merged == report.files_deleted == files_before
    assert report.events == 90 and report.recovered_events == 0
    after = _contents(log)
    assert after.equals(before)
    assert _totals(log) == totals


def test_compaction_is_idempotent(
    log: EventLog, log_root: Path, make_llm_call: MakeLLMCall
) -> None:
    _fill(log, make_llm_call, 0, 40)
    log.compact()
    files, contents = _parquet_files(log_root), _contents(log)
    report = log.compact()
    assert report.files_merged == report.files_deleted == 0
    assert report.files_before == report.files_after == 3
    assert _parquet_files(log_root) == files
    assert _contents(log).equals(contents)


def test_compacted_files_merge_again_with_new_small_files(
    log: EventLog, log_root: Path, make_llm_call: MakeLLMCall
) -> None:
    _fill(log, make_llm_call, 0, 30)
    log.compact()
    _fill(log, make_llm_call, 30, 30)
    expected = _contents(log)
    log.compact()
    assert len(_parquet_files(log_root)) == 3
    assert _contents(log).equals(expected)


def test_files_at_or_above_target_rows_are_left_alone(
    log: EventLog, log_root: Path, make_llm_call: MakeLLMCall
) -> None:
    _fill(log, make_llm_call, 0, 60, per_file=30)  # files of 10 rows each, 2 per day
    report = log.compact(target_rows=10)
    assert report.files_merged == 0
    assert len(_parquet_files(log_root)) == 6


def test_compaction_keeps_unknown_columns_and_fills_missing_ones(
    log: EventLog, log_root: Path, make_llm_call: MakeLLMCall
) -> None:
    _fill(log, make_llm_call, 0, 6, per_file=3)
    sample = pq.read_table(_parquet_files(log_root)[0]).slice(0, 1)
    newer = sample.set_column(0, "event_id", pa.array(["newer"])).append_column(
        "carbon_grams", pa.array([2.5]))
    older = sample.select(["event_id", "kind", "ts"]).set_column(0, "event_id",
                                                                pa.array(["older"]))
    folder = _parquet_files(log_root)[0].parent
    pq.write_table(newer, folder / "seg-newer-000001.parquet")
    pq.write_table(older, folder / "seg-older-000001.parquet")
    expected = log.store().rows("SELECT event_id, carbon_grams, input_tokens FROM events "
                                "ORDER BY 1")
    log.compact()
    assert len(list(folder.glob("*.parquet"))) == 1
    assert log.store().rows("SELECT event_id, carbon_grams, input_tokens FROM events "
                            "ORDER BY 1") == expected


def test_compaction_leaves_live_segments_of_a_running_writer_alone(
    log: EventLog, log_root: Path, make_llm_call: MakeLLMCall
) -> None:
    _fill(log, make_llm_call, 0, 30)
    for i in range(30, 40):
        log.write(make_llm_call(i))  # still in this writer's live segment
    live = sorted((log_root / "_active").glob("date=*/seg-*.jsonl"))
    assert live
    report = log.compact()
    assert report.recovered_events == 0
    assert sorted((log_root / "_active").glob("date=*/seg-*.jsonl")) == live
    assert log.store().count() == 40
    log.write(make_llm_call(40))
    log.flush()
    assert log.store().count() == 41


# -- interrupted compaction ---------------------------------------------------------------


def _compact(root: str) -> None:
    EventLog(root).compact()


def _run_compaction_killed_after(root: Path, delay: float | None) -> float | None:
    """Compact in a child process and SIGKILL it after ``delay`` seconds (None: never);
    returns how long it took if it finished first, else None."""
    child = multiprocessing.get_context("fork").Process(target=_compact, args=(str(root),))
    started = time.monotonic()
    child.start()
    child.join(timeout=delay)
    if child.is_alive():
        child.kill()
        child.join()
        return None
    assert child.exitcode == 0
    return time.monotonic() - started


def test_compaction_killed_at_random_points_never_loses_or_doubles_events(
    log: EventLog, log_root: Path, make_llm_call: MakeLLMCall
) -> None:
    rng = random.Random(1123)
    store = log.store()
    written = 0
    duration = 0.0  # of a compaction run: kills aim anywhere inside one
    kills = 0
    for loop in range(15):
        _fill(log, make_llm_call, written, 20, per_file=5)
        written += 20
        expected = store.arrow("SELECT event_id, input_tokens, ts FROM events ORDER BY 1")
        assert expected.num_rows == written
        delay = {0: None, 1: 0.0, 14: None}.get(loop, rng.uniform(0.0, 1.2) * duration)
        took = _run_compaction_killed_after(log_root, delay)
        if took is None:
            kills += 1
            duration *= 1.15  # the files it left make the next run longer
        else:
            duration = took
        after = store.arrow("SELECT event_id, input_tokens, ts FROM events ORDER BY 1")
        assert after.equals(expected)
        assert store.scalar("SELECT count(DISTINCT event_id) FROM events") == written
    assert kills >= 1
    assert len(_parquet_files(log_root)) == 3  # the last run was not killed
    log.compact()
    assert store.arrow("SELECT event_id, input_tokens, ts FROM events ORDER BY 1").equals(after)


def test_merged_file_beside_its_undeleted_sources_counts_once(
    log: EventLog, log_root: Path, make_llm_call: MakeLLMCall, tmp_path: Path
) -> None:
    _fill(log, make_llm_call, 0, 45)
    saved = tmp_path / "sources"
    shutil.copytree(log_root, saved, ignore=shutil.ignore_patterns("_active"))
    before, totals = _contents(log), _totals(log)
    log.compact()
    # The crash case: the merged file was renamed into place, the sources not yet deleted.
    for source in saved.glob("date=*/*.parquet"):
        shutil.copy2(source, log_root / source.parent.name / source.name)
    assert len(_parquet_files(log_root)) > 3
    assert _totals(log) == totals
    assert _contents(log).equals(before)

    report = log.compact()  # finishes the job: deletes the hidden sources, merges nothing
    assert report.files_merged == 0 and report.files_deleted > 0
    assert len(_parquet_files(log_root)) == 3
    assert _contents(log).equals(before)


def test_stale_temporary_files_are_invisible_and_removed_after_a_grace_period(
    log: EventLog, log_root: Path, make_llm_call: MakeLLMCall
) -> None:
    _fill(log, make_llm_call, 0, 12)
    folder = _parquet_files(log_root)[0].parent
    stale = folder / ".tmp-0123456789ab-compact-dead.parquet"
    shutil.copy2(_parquet_files(log_root)[0], stale)
    fresh = folder / ".tmp-ba9876543210-compact-live.parquet"
    shutil.copy2(_parquet_files(log_root)[0], fresh)
    two_hours_ago = (datetime.now(timezone.utc) - timedelta(hours=2)).timestamp()
    os.utime(stale, (two_hours_ago, two_hours_ago))
    assert log.store().count() == 12
    report = log.compact()
    assert report.temporary_files_removed == 1
    assert not stale.exists() and fresh.exists()
    assert log.store().count() == 12


def test_a_second_compaction_at_the_same_time_is_refused(
    log: EventLog, log_root: Path, make_llm_call: MakeLLMCall
) -> None:
    _fill(log, make_llm_call, 0, 20)
    files = _parquet_files(log_root)
    # A running compaction holds this lock (see devora_lab.events.compaction).
    lock_path = log_root / "_active" / "compact.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(EventLogError, match="another compaction"):
            EventLog(log_root).compact()
        assert _parquet_files(log_root) == files
    finally:
        os.close(fd)
    assert log.compact().files_merged == len(files)
