"""Many writer processes, a reader beside them, and writers killed with SIGKILL."""

from __future__ import annotations

import fcntl
import multiprocessing
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devora_lab.events import Event, EventKind, EventLog
from devora_lab.events import writer as writer_module

pytestmark = pytest.mark.slow

WRITERS = 4
EVENTS_PER_WRITER = 5_000


def _write_events(root: str, writer_no: int, count: int, start: Any, paused: Any,
                  resume: Any) -> None:
    """Body of one writer process: write ``count`` events, pausing once half-way."""
    log = EventLog(root, roll_max_events=400, roll_max_seconds=3600)
    start.wait()
    for i in range(count):
        if i == count // 2:
            with paused.get_lock():
                paused.value += 1
            resume.wait()
        log.write(Event(kind=EventKind.LLM_CALL, request_model="gpt-4o", agent=f"w{writer_no}",
                        input_tokens=i, cost_usd=0.001, attributes={"i": i}))
    log.close()


def test_parallel_writers_and_a_reader_see_every_event_exactly_once(tmp_path: Path) -> None:
    root = str(tmp_path / "events")
    ctx = multiprocessing.get_context("spawn")
    start, resume, paused = ctx.Event(), ctx.Event(), ctx.Value("i", 0)
    writers = [ctx.Process(target=_write_events,
                           args=(root, n, EVENTS_PER_WRITER, start, paused, resume))
               for n in range(WRITERS)]
    for process in writers:
        process.start()
    try:
        store = EventLog(root).store()
        total = WRITERS * EVENTS_PER_WRITER
        counts = [store.count()]
        start.set()
        while paused.value < WRITERS:
            assert all(process.is_alive() for process in writers), "a writer died"
            counts.append(store.count())
        # Every writer is paused half-way while its segments keep rolling into Parquet.
        halfway = [store.count() for _ in range(10)]
        assert halfway == [total // 2] * 10
        counts += halfway
        resume.set()
        while any(process.is_alive() for process in writers):
            counts.append(store.count())
        for process in writers:
            process.join()
            assert process.exitcode == 0
        counts.append(store.count())
    finally:
        for process in writers:
            if process.is_alive():
                process.kill()
                process.join()

    assert counts == sorted(counts), "the count went down while writers were running"
    assert counts[-1] == total and max(counts) <= total
    assert store.rows("SELECT count(DISTINCT event_id), count(DISTINCT agent), "
                      "sum(input_tokens) FROM events") == [
        (total, WRITERS, WRITERS * sum(range(EVENTS_PER_WRITER)))]
    assert store.snapshot.spool == []


# -- kill -9 ------------------------------------------------------------------------------

_KILLED_WRITER = textwrap.dedent("""
    import sys
    from datetime import datetime, timezone
    from devora_lab.events import Event, EventKind, EventLog

    log = EventLog(sys.argv[1], roll_max_events=100, roll_max_seconds=3600)
    back_then = datetime(2020, 1, 1, tzinfo=timezone.utc)
    out = sys.stdout
    for i in range(1_000_000):
        # every 10th event goes to a segment of an old day, open at the kill
        ts = back_then if i % 10 == 0 else datetime.now(timezone.utc)
        event = Event(kind=EventKind.LLM_CALL, ts=ts, input_tokens=i)
        log.write(event)
        out.write(event.event_id + "\\n")
        out.flush()
""")


def _spool_segments(root: Path) -> list[Path]:
    return sorted((root / "_active").glob("date=*/seg-*.jsonl"))


def test_events_acknowledged_before_kill_9_survive_and_are_recovered(tmp_path: Path) -> None:
    root = tmp_path / "events"
    child = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(root)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    acknowledged = []
    for line in child.stdout:
        acknowledged.append(line.strip())
        if len(acknowledged) == 1_234:
            child.send_signal(signal.SIGKILL)
            break
    acknowledged += [line.strip() for line in child.stdout]
    assert child.wait() == -signal.SIGKILL
    acknowledged = [event_id for event_id in acknowledged if event_id]

    log = EventLog(root)
    store = log.store()
    assert _spool_segments(root), "the dead writer left no orphaned segment"
    ids = {row[0] for row in store.rows("SELECT event_id FROM events")}
    assert set(acknowledged) <= ids
    assert store.count() == len(ids)  # no event twice
    assert len(ids) - len(acknowledged) <= 1  # at most the one in flight at the kill

    report = log.compact()
    assert report.recovered_events > 0
    assert _spool_segments(root) == []
    assert {row[0] for row in store.rows("SELECT event_id FROM events")} == ids
    assert store.count() == len(ids)
    assert store.scalar("SELECT count(*) FROM events WHERE date = DATE '2020-01-01'") >= 123


# -- a recovery racing a writer that is opening a segment ---------------------------------


def test_recovery_between_segment_creation_and_lock_loses_no_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process may recover orphans right after a writer created a segment file
    but before it locked it (fault injected by wrapping the writer's ``flock``): the
    writer's events must still be read."""
    root = tmp_path / "events"
    log = EventLog(root, roll_max_events=1_000)
    real_flock: Callable[[int, int], None] = fcntl.flock
    raced: list[int] = []

    def flock_after_a_recovery(fd: int, operation: int) -> None:
        if not raced:
            raced.append(fd)
            EventLog(root).compact()  # what a concurrent compaction or new writer does
        real_flock(fd, operation)

    monkeypatch.setattr(writer_module, "fcntl",
                        _FcntlProxy(flock_after_a_recovery), raising=True)
    for i in range(10):
        log.write(Event(kind=EventKind.LLM_CALL, input_tokens=i))
    monkeypatch.undo()
    assert raced
    assert log.store().count() == 10
    log.close()
    assert log.store().count() == 10


class _FcntlProxy:
    """The ``fcntl`` module with ``flock`` replaced."""

    def __init__(self, flock: Callable[[int, int], None]) -> None:
        self.flock = flock

    def __getattr__(self, name: str) -> Any:
        return getattr(fcntl, name)
