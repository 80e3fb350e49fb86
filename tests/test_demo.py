"""The demo end to end at small sizes: history and live events in one workspace, with the
live calls tagged by agent and experiment, retrievals, cache hits, a budget refusal and a
checked alert state; the CLI's safety and options; the planning of the live tasks.

The RAG index uses the hashing embedder here (``DEVORA_RAG__EMBEDDING_MODEL=hashing``):
the local model costs ~10 s of CPU per run on two cores and is exercised by ``make demo``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devora_lab.cli import main
from devora_lab.demo import EXPERIMENT, MARKER, DemoResult, _report_notes, _reports, run_demo
from devora_lab.demo_live import ARRIVALS_PER_S, plan_tasks
from devora_lab.demo_setup import nice
from devora_lab.errors import ReportError, WorkspaceError
from devora_lab.events import Event, EventKind, EventLog
from devora_lab.experiments.registry import ExperimentRegistry
from devora_lab.sim.calls import AGENTS
from devora_lab.workspace import Workspace


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoResult]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEVORA_RAG__EMBEDDING_MODEL", "hashing")
        workspace = Workspace(tmp_path_factory.mktemp("demo") / "ws")
        yield run_demo(workspace, days=3, calls_per_day=300, live_tasks=40, reports=None,
                       progress=False)


def _rows(result: DemoResult, sql: str) -> list[tuple[Any, ...]]:
    with EventLog(result.workspace / "events").store() as store:
        return store.rows(sql)


def test_history_and_live_calls_share_the_log(demo: DemoResult) -> None:
    end = demo.history.end.isoformat()
    before, after = _rows(demo, f"SELECT count(*) FILTER (WHERE ts < '{end}'), "
                                f"count(*) FILTER (WHERE ts >= '{end}') FROM events "
                                "WHERE kind = 'llm.call'")[0]
    assert before == demo.history.counts["llm.call"]
    assert after >= sum(demo.live.ok.values()) > 0
    assert set(demo.timings) >= {"history", "setup", "rag index", "live", "alerts", "reports"}


def test_live_calls_are_tagged_by_agent_and_experiment(demo: DemoResult) -> None:
    end = demo.history.end.isoformat()
    agents = dict(_rows(demo, f"SELECT agent, count(*) FROM events WHERE kind = 'llm.call' "
                              f"AND ts >= '{end}' GROUP BY agent"))
    assert set(agents) == {"coder", "architect", "reviewer"}
    arms = dict(_rows(demo, "SELECT variant, count(*) FROM events WHERE kind = 'llm.call' "
                            f"AND experiment = '{EXPERIMENT}' GROUP BY variant"))
    assert set(arms) <= {"control", "terse"} and sum(arms.values()) == agents["reviewer"]
    assert ExperimentRegistry(demo.workspace / "experiments").get(EXPERIMENT).state == "running"
    exposures = _rows(demo, "SELECT count(*) FROM events WHERE kind = 'experiment.exposure' "
                            f"AND experiment = '{EXPERIMENT}'")[0][0]
    assert exposures >= len(arms)


def test_architects_retrieve_and_repeats_hit_the_cache(demo: DemoResult) -> None:
    end = demo.history.end.isoformat()
    retrievals = _rows(demo, "SELECT count(*) FROM events WHERE kind = 'retrieval' "
                             f"AND agent = 'architect' AND ts >= '{end}'")[0][0]
    assert demo.rag_chunks > 50 and retrievals >= demo.live.ok["architect"] > 0
    hits = _rows(demo, "SELECT count(*) FROM events WHERE kind = 'llm.call' AND "
                       f"cache_outcome = 'hit' AND ts >= '{end}'")[0][0]
    assert hits == demo.live.cache_hits >= 1


def test_budgets_refuse_and_alerts_are_checked(demo: DemoResult) -> None:
    refused = _rows(demo, "SELECT count(*) FROM events WHERE kind = 'budget' AND "
                          "json_extract_string(attributes, '$.outcome') = 'refused'")[0][0]
    assert refused == demo.live.refusals >= 1
    names = {b["name"] for b in json.loads((demo.workspace / "budgets.json").read_text())
             ["budgets"]}
    assert names == {b.name for b in demo.budgets} == {"per-user-daily", "team-daily",
                                                       "team-monthly"}
    assert demo.alerts.evaluations
    assert (demo.workspace / "alerts" / "state.json").is_file()
    config = (demo.workspace / "devora.toml").read_text()
    assert "[providers.openai]" in config and "127.0.0.1" in config
    assert demo.reports == () and any("phase timings" in line for line in demo.lines())


def test_the_cli_runs_a_small_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DEVORA_RAG__EMBEDDING_MODEL", "hashing")
    args = ["demo", "--workspace", str(tmp_path), "--days", "2", "--calls-per-day", "200",
            "--live-tasks", "20", "--no-reports"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "phase timings" in out and f"DEVORA_WORKSPACE={tmp_path}" in out
    assert "jupyter lab" in out and (tmp_path / MARKER).is_file()


def test_a_second_run_replaces_the_first(tmp_path: Path) -> None:
    from devora_lab.demo import _reset

    workspace = Workspace(tmp_path).ensure()
    (tmp_path / MARKER).write_text("demo\n")
    (tmp_path / "budgets.json").write_text("{}")
    (workspace.events_dir / "day=2026-01-01").mkdir()
    (tmp_path / "devora.toml").write_text('[cache]\nbackend = "disk"\n\n# Written by '
                                          '`devora-lab demo`. x\n[providers.openai]\n')
    _reset(workspace)
    assert not (tmp_path / "budgets.json").exists() and not workspace.events_dir.exists()
    assert (tmp_path / "devora.toml").read_text() == '[cache]\nbackend = "disk"\n'


@pytest.mark.parametrize("foreign", ["events", "budgets.json"])
def test_the_cli_refuses_a_workspace_the_demo_did_not_write(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], foreign: str) -> None:
    if foreign == "events":
        log = EventLog(tmp_path / "events")
        log.write(Event(kind=EventKind.LLM_CALL, request_model="gpt-4o"))
        log.close()
    else:
        (tmp_path / foreign).write_text('{"version": 1, "budgets": []}')
    assert main(["demo", "--workspace", str(tmp_path), "--no-reports"]) == 2
    assert "did not write" in capsys.readouterr().err
    with pytest.raises(WorkspaceError):
        run_demo(Workspace(tmp_path), reports=None, progress=False)


def test_live_tasks_follow_the_fitted_shapes() -> None:
    tasks = plan_tasks(400, 7)
    assert tasks == plan_tasks(400, 7)
    shares = Counter(t.agent for t in tasks)
    for spec in AGENTS:
        assert abs(shares[spec.name] / 400 - spec.share) < 0.08
    offsets = [t.at_s for t in tasks]
    assert offsets == sorted(offsets) and offsets[-1] == pytest.approx(400 / ARRIVALS_PER_S)
    repeats = [t for t in tasks if t.repeat_of is not None]
    assert repeats and all(tasks[t.repeat_of].text_seed == t.text_seed for t in repeats
                           if t.repeat_of is not None)
    assert {t.model for t in tasks} >= {"gpt-4o", "claude-3-5-sonnet-20241022"}


def test_limits_are_rounded_like_people_round_them() -> None:
    assert nice(0.7349, up=False) == 0.73 and nice(3.0001, up=True) == 3.1
    assert nice(512.3, up=True) == 520 and nice(0.0, up=True) == 0.01


def test_a_failed_report_fails_the_demo(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from devora_lab.notebook import report

    class Failed:
        error = ReportError("report 'costs' failed at cell 3: ZeroDivisionError",
                            report="costs")

    monkeypatch.setattr(report, "run_reports", lambda *a, **k: [Failed()])
    with pytest.raises(ReportError, match="cell 3"):
        _reports(Workspace(tmp_path), ("all",), progress=False)
    monkeypatch.undo()
    monkeypatch.setenv("DEVORA_NOTEBOOKS", str(tmp_path))  # a folder without notebooks
    assert _reports(Workspace(tmp_path), ("all",), progress=False) == ()
    assert "no curated notebooks" in _report_notes(("all",), ())[0]
