"""The devora-lab command: each events action on a real workspace, and its error output."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from devora_lab.cli import main
from devora_lab.events import Event, EventKind, EventLog


def _fill(workspace: Path, calls: int = 30) -> None:
    log = EventLog(workspace / "events", roll_max_events=10)
    start = datetime(2026, 11, 20, 9, tzinfo=timezone.utc)
    for i in range(calls):
        log.write(Event(kind=EventKind.LLM_CALL, ts=start + timedelta(hours=i),
                        request_model="gpt-4o" if i % 3 else "mystery-model",
                        input_tokens=100 + i, output_tokens=20, latency_ms=500.0 + i,
                        cost_usd=0.001 if i % 3 else None,
                        cost_status="priced" if i % 3 else "unpriced",
                        status="ok", agent="coder"))
    log.write(Event(kind=EventKind.ALERT, ts=start, name="error-rate", severity="warning"))
    log.close()


def test_stats_counts_kinds_models_and_unpriced(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    _fill(tmp_path)
    assert main(["--workspace", str(tmp_path), "events", "stats"]) == 0
    out = capsys.readouterr().out
    assert "31" in out and "llm.call" in out and "alert" in out
    assert "gpt-4o" in out and "mystery-model" in out and "unpriced" in out


def test_workspace_option_works_after_the_command(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _fill(tmp_path, calls=3)
    assert main(["events", "stats", "--workspace", str(tmp_path)]) == 0
    assert "4" in capsys.readouterr().out


def test_tail_prints_latest_events_in_time_order(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _fill(tmp_path)
    assert main(["events", "tail", "-n", "3", "--kind", "llm.call", "--workspace",
                 str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert lines[0] < lines[1] < lines[2]
    assert lines[-1].startswith("2026-11-21 14:00")


def test_compact_merges_files_and_keeps_every_event(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    _fill(tmp_path)
    assert main(["events", "compact", "--workspace", str(tmp_path)]) == 0
    assert "31 events in Parquet" in capsys.readouterr().out
    with EventLog(tmp_path / "events").store() as store:
        assert store.count() == 31
        assert len(store.snapshot.parquet) == 2  # one file per day


def test_errors_name_the_problem_and_the_fix(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "devora.toml").write_text("[events]\nroll_max_event = 1\n")
    assert main(["events", "stats", "--workspace", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "error: unknown setting events.roll_max_event" in err
    assert "fix: did you mean events.roll_max_events?" in err


def test_config_shows_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--workspace", str(tmp_path)]) == 0
    assert '"roll_max_events": 20000' in capsys.readouterr().out


def test_console_script_runs_as_a_real_process(tmp_path: Path) -> None:
    _fill(tmp_path, calls=2)
    script = Path(sys.executable).with_name("devora-lab")
    env = {**os.environ, "DEVORA_WORKSPACE": str(tmp_path)}
    result = subprocess.run([str(script), "events", "stats"], capture_output=True, text=True,
                            env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "llm.call" in result.stdout
