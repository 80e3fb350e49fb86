"""Damaged files: a reader warns, names the file, skips the damage and reads the rest."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest

from devora_lab.errors import CorruptSegmentWarning
from devora_lab.events import EventLog

if TYPE_CHECKING:
    from conftest import MakeLLMCall

DAY = "2026-02-03"


def _line(event_id: str, tokens: int = 1) -> bytes:
    """One spool line as a writer writes it."""
    return orjson.dumps({"event_id": event_id, "kind": "llm.call",
                         "ts": datetime(2026, 2, 3, 10, tzinfo=timezone.utc),
                         "input_tokens": tokens}) + b"\n"


def _spool_segment(root: Path, content: bytes, name: str = "seg-deadwriter-000001") -> Path:
    """A segment left in the spool by a writer that is gone (nobody holds its lock)."""
    folder = root / "_active" / f"date={DAY}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.jsonl"
    path.write_bytes(content)
    return path


@pytest.fixture
def good_log(log: EventLog, make_llm_call: MakeLLMCall) -> EventLog:
    """The ``log`` fixture holding 12 intact events in Parquet, its writer closed."""
    for i in range(12):
        log.write(make_llm_call(i))
    log.close()
    return log


# -- Parquet ------------------------------------------------------------------------------


def test_garbage_parquet_file_is_skipped_with_a_warning_naming_it(
    good_log: EventLog, log_root: Path
) -> None:
    garbage = log_root / f"date={DAY}" / "seg-broken-000001.parquet"
    garbage.parent.mkdir()
    garbage.write_bytes(b"this is not parquet at all " * 40)
    with pytest.warns(CorruptSegmentWarning, match="seg-broken-000001.parquet"):
        store = good_log.store()
    assert store.count() == 12  # warned once: later queries of this store stay quiet
    assert store.snapshot.corrupt == [str(garbage)]


def test_truncated_parquet_file_is_skipped(good_log: EventLog, log_root: Path) -> None:
    (intact,) = log_root.glob("date=*/*.parquet")
    truncated = intact.with_name("seg-truncated-000001.parquet")
    truncated.write_bytes(intact.read_bytes()[: intact.stat().st_size // 2])
    with pytest.warns(CorruptSegmentWarning, match="seg-truncated-000001.parquet"):
        assert good_log.store().count() == 12


def test_compaction_leaves_a_garbage_parquet_file_alone(
    good_log: EventLog, log_root: Path, make_llm_call: MakeLLMCall
) -> None:
    for i in range(3):
        good_log.write(make_llm_call(i))
        good_log.flush()
    (partition,) = log_root.glob("date=*")
    garbage = partition / "seg-broken-000001.parquet"
    garbage.write_bytes(b"\x00" * 1000)
    with pytest.warns(CorruptSegmentWarning, match="seg-broken-000001.parquet"):
        report = good_log.compact()
    assert report.files_merged == 4
    assert garbage.exists()
    with pytest.warns(CorruptSegmentWarning, match="seg-broken-000001.parquet"):
        assert good_log.store().count() == 15


# -- spool segments -----------------------------------------------------------------------


def test_damaged_middle_line_is_skipped_with_a_warning_naming_the_segment(
    good_log: EventLog, log_root: Path
) -> None:
    segment = _spool_segment(log_root, _line("a") + b'{"event_id": "b", "kind": \n' + _line("c"))
    with pytest.warns(CorruptSegmentWarning, match=f"{segment.name}.*1 damaged line"):
        store = good_log.store()
    assert store.count() == 14
    assert store.rows("SELECT event_id FROM events WHERE date = ? ORDER BY 1",
                      [datetime(2026, 2, 3).date()]) == [("a",), ("c",)]


@pytest.mark.parametrize("damage", [
    pytest.param(b"\x00" * 512 + b"\n", id="zero-filled-block"),
    pytest.param(b"[1, 2, 3]\n", id="not-an-object"),
    pytest.param(b'{"event_id": "\xff\xfe", "kind": "llm.call"}\n', id="invalid-utf8"),
    pytest.param(_line("x")[:30] + _line("y"), id="line-torn-by-a-crash"),
])
def test_other_kinds_of_damaged_line_are_skipped(
    good_log: EventLog, log_root: Path, damage: bytes
) -> None:
    _spool_segment(log_root, _line("a") + damage + _line("c"))
    with pytest.warns(CorruptSegmentWarning, match="damaged line"):
        store = good_log.store()
    ids = {row[0] for row in store.rows("SELECT event_id FROM events")}
    assert {"a", "c"} <= ids and None not in ids
    assert "x" not in ids


def test_torn_last_line_is_not_read_and_not_reported(
    good_log: EventLog, log_root: Path
) -> None:
    torn = _line("torn")[:-10]  # a write still in progress: no newline yet
    _spool_segment(log_root, _line("a") + _line("b") + torn)
    store = good_log.store()  # pytest turns any warning into an error here
    assert store.count() == 14
    assert store.scalar("SELECT count(*) FROM events WHERE event_id IS NULL") == 0
    assert store.scalar("SELECT count(*) FROM events WHERE event_id = 'torn'") == 0


def test_line_that_lacks_only_its_newline_is_never_counted_twice(
    good_log: EventLog, log_root: Path
) -> None:
    segment = _spool_segment(log_root, _line("a") + _line("b")[:-1])
    store = good_log.store()
    assert store.count() in (13, 14)  # its content is complete, so reading it is harmless
    with segment.open("ab") as handle:
        handle.write(b"\n")  # the write completes
    assert store.count() == 14
    assert store.scalar("SELECT count(*) FROM events WHERE event_id = 'b'") == 1


def test_spool_file_of_binary_junk_warns_and_the_rest_is_read(
    good_log: EventLog, log_root: Path
) -> None:
    rng = random.Random(20261123)
    junk = b"\n".join(rng.randbytes(300) for _ in range(8)) + b"\n"
    segment = _spool_segment(log_root, junk)
    _spool_segment(log_root, _line("fine"), name="seg-otherwriter-000001")
    with pytest.warns(CorruptSegmentWarning, match=segment.name):
        store = good_log.store()
    assert store.count() == 13
    assert store.scalar("SELECT count(*) FROM events WHERE event_id IS NULL") == 0


def test_recovery_keeps_good_lines_and_quarantines_a_damaged_segment(
    good_log: EventLog, log_root: Path
) -> None:
    segment = _spool_segment(log_root, _line("a", 5) + b"\x00garbage\n" + _line("c", 7))
    with pytest.warns(CorruptSegmentWarning, match=segment.name):
        report = good_log.compact()
    assert report.recovered_events == 2
    assert not segment.exists()
    assert (segment.parent / f"_corrupt-{segment.name}").exists()
    store = good_log.store()  # no warning any more: the damage is out of the way
    assert store.count() == 14
    assert store.rows("SELECT event_id, input_tokens FROM events "
                      "WHERE event_id IN ('a', 'c') ORDER BY 1") == [("a", 5), ("c", 7)]


def test_recovery_drops_a_torn_last_line_silently(good_log: EventLog, log_root: Path) -> None:
    segment = _spool_segment(log_root, _line("a") + _line("torn")[:25])
    report = good_log.compact()
    assert report.recovered_events == 1
    assert not segment.exists() and not (segment.parent / f"_corrupt-{segment.name}").exists()
    assert good_log.store().count() == 13


def test_empty_orphaned_segment_is_harmless(good_log: EventLog, log_root: Path) -> None:
    segment = _spool_segment(log_root, b"")
    assert good_log.store().count() == 12
    assert good_log.compact().recovered_events == 0
    assert not segment.exists()
