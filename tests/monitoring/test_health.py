"""Health checks on real workspaces: a real event log, a real redis-server, the offline
simulator on loopback, and closed ports for the failures. Every test also guards the promise
that no key or password ever reaches a report."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from devora_lab.cli import main
from devora_lab.events import Event, EventKind, EventLog
from devora_lab.lab import Lab
from devora_lab.monitoring.health import (
    CheckResult,
    HealthReport,
    check_health,
    redact_url,
)
from devora_lab.rag.chunking import Chunk
from devora_lab.rag.store import ChunkStore
from devora_lab.sim.server import SimServer
from devora_lab.workspace import Workspace

SECRET = "sk-health-do-not-print-4242"
PASSWORD = "hunter2-redis-pass"
_ENV_NAMES = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENROUTER_API_KEY", "OPENAI_BASE_URL",
              "ANTHROPIC_BASE_URL", "OPENROUTER_BASE_URL", "ACME_KEY")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys and URLs of the machine running the tests must not change their outcome."""
    for name in [*_ENV_NAMES, *(n for n in os.environ if n.startswith("DEVORA_"))]:
        monkeypatch.delenv(name, raising=False)


def free_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _workspace(root: Path, toml: str = "") -> Workspace:
    root.mkdir(parents=True, exist_ok=True)
    if toml:
        (root / "devora.toml").write_text(toml)
    return Workspace(root).ensure()


def _text(report: HealthReport) -> str:
    return json.dumps(report.to_dict())


def _log_calls(workspace: Workspace, models: list[str]) -> None:
    log = EventLog(workspace.events_dir)
    for i, model in enumerate(models):
        log.write(Event(kind=EventKind.LLM_CALL, ts=datetime(2026, 11, 20, 9, i,
                                                             tzinfo=timezone.utc),
                        request_model=model, input_tokens=10, output_tokens=5, status="ok"))
    log.close()


# -- the report ---------------------------------------------------------------------------

def test_exit_code_is_worst_status() -> None:
    def report(*statuses: str) -> HealthReport:
        return HealthReport(tuple(CheckResult(f"c{i}", s, "d")  # type: ignore[arg-type]
                                  for i, s in enumerate(statuses)))

    assert report().exit_code == 0 and report("ok", "skipped").exit_code == 0
    assert report("ok", "warn").exit_code == 1 and report("ok", "warn").ok
    assert report("warn", "fail", "ok").exit_code == 2 and not report("fail").ok
    assert report("warn", "fail").status == "fail"
    with pytest.raises(KeyError):
        report("ok")["missing"]


def test_redact_url_hides_userinfo() -> None:
    assert redact_url(f"redis://user:{PASSWORD}@host:6379/0") == "redis://***@host:6379/0"
    assert redact_url("see https://api.example.com/v1 now") == "see https://api.example.com/v1 now"


# -- a healthy workspace ------------------------------------------------------------------

def test_fresh_workspace_is_healthy(tmp_path: Path) -> None:
    report = check_health(_workspace(tmp_path), env={})
    assert report.exit_code == 0, report.to_dict()
    assert {r.status for r in report.results} <= {"ok", "skipped"}
    assert report["workspace"].status == "ok"
    assert report["providers"].status == "skipped" and report["providers"].fix
    assert "devora-lab rag index DIR" in (report["rag index"].fix or "")
    assert all(r.duration_ms >= 0 for r in report.results)


def test_lab_health_uses_its_workspace(tmp_path: Path) -> None:
    with Lab(tmp_path) as lab:
        report = lab.health()
    assert report.exit_code == 0 and str(tmp_path) in report["workspace"].detail


def test_populated_workspace_reports_counts(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    _log_calls(workspace, ["gpt-4o", "gpt-4o-mini", "openrouter/gpt-4o"])
    store = ChunkStore(workspace.lancedb_dir, embedder="test")
    store.add([Chunk("hello", "a.md", None, None, 0, 1, 1, 1, "h")],
              np.ones((1, 4), dtype=np.float32))
    report = check_health(workspace, env={})
    assert report.exit_code == 0, report.to_dict()
    assert "3 events" in report["event log"].detail
    assert report["prices cover the log"].status == "ok"  # prefixed names priced too
    assert report["rag index"].status == "ok" and "1 chunks" in report["rag index"].detail


# -- the folder and the log ---------------------------------------------------------------

def test_workspace_under_a_file_fails_and_the_rest_still_runs(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    report = check_health(Workspace(tmp_path / "file" / "ws"), env={})
    assert report["workspace"].status == "fail" and "does not exist" in report["workspace"].detail
    assert "--workspace" in (report["workspace"].fix or "")
    assert report.exit_code == 2 and len(report.results) >= 9


def test_workspace_that_is_a_file_fails(tmp_path: Path) -> None:
    (tmp_path / "ws").write_text("")
    report = check_health(Workspace(tmp_path / "ws"), env={})
    assert report["workspace"].status == "fail" and "not a folder" in report["workspace"].detail


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod")
def test_unwritable_workspace_fails(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path / "ws")
    workspace.root.chmod(0o500)
    try:
        report = check_health(workspace, env={})
    finally:
        workspace.root.chmod(0o700)
    assert report["workspace"].status == "fail" and "not writable" in report["workspace"].detail


def test_unwritable_workspace_fails_even_as_root(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = _workspace(tmp_path)

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("devora_lab.monitoring.health.tempfile.mkstemp", refuse)
    result = check_health(workspace, env={})["workspace"]
    assert result.status == "fail" and "not writable: Permission denied" in result.detail
    assert "chmod" in (result.fix or "")


def test_corrupt_parquet_file_is_reported(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    _log_calls(workspace, ["gpt-4o"] * 3)
    bad = workspace.events_dir / "date=2026-11-20" / "seg-broken-1.parquet"
    bad.write_bytes(b"PAR1 this is not parquet at all")
    report = check_health(workspace, env={})
    result = report["event log"]
    assert result.status == "warn" and "seg-broken-1.parquet" in result.detail
    assert "3 events" in result.detail and result.fix
    assert report.exit_code == 1


def test_unpriced_model_is_named(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    _log_calls(workspace, ["gpt-4o", "mystery-model", "mystery-model"])
    result = check_health(workspace, env={})["prices cover the log"]
    assert result.status == "warn"
    assert "mystery-model (2 calls)" in result.detail and "gpt-4o" not in result.detail
    assert "[pricing] overrides" in (result.fix or "")


def test_following_the_fix_prices_the_model(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, '[pricing]\noverrides = "prices.json"\n')
    (tmp_path / "prices.json").write_text(json.dumps({"version": "ours", "models": {
        "mystery-model": {"provider": "acme", "input": 1.0, "output": 2.0}}}))
    _log_calls(workspace, ["gpt-4o", "mystery-model"])
    report = check_health(workspace, env={})
    assert report["prices cover the log"].status == "ok"
    assert "prices.json" in report["price book"].detail


def test_a_crashing_check_fails_alone_without_secrets(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Workspace) -> None:
        raise RuntimeError(f"boom with {SECRET}")

    monkeypatch.setattr(Workspace, "price_book", broken)
    report = check_health(_workspace(tmp_path), env={"OPENAI_API_KEY": SECRET})
    assert report["price book"].status == "fail"
    assert report["price book"].detail == "RuntimeError: boom with ***"
    assert report["workspace"].status == "ok" and report["provider openai"].status == "ok"
    assert SECRET not in _text(report)


def test_malformed_budgets_and_experiments_fail_with_fixes(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    (workspace.root / "budgets.json").write_text("{not json")
    (workspace.experiments_dir / "broken.json").write_text("[]")
    report = check_health(workspace, env={})
    for name in ("budgets", "experiments"):
        assert report[name].status == "fail" and report[name].fix, report[name]


# -- Redis ----------------------------------------------------------------------------------

def test_redis_down_fails_with_fix_and_hides_the_password(tmp_path: Path) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    toml = (f'[cache]\nbackend = "redis"\nredis_url = "{url}"\n'
            f'[budgets]\nbackend = "redis"\nredis_url = "{url}"\n')
    report = check_health(_workspace(tmp_path, toml), env={}, timeout=0.5)
    for name in ("response cache", "budget ledger"):
        assert report[name].status == "fail", report[name]
        assert "redis://***@127.0.0.1" in report[name].detail
        assert "redis_url" in (report[name].fix or "")
    assert report.exit_code == 2 and PASSWORD not in _text(report)


def test_redis_up_is_ok(tmp_path: Path, redis_url: str) -> None:
    toml = (f'[cache]\nbackend = "redis"\nredis_url = "{redis_url}"\n'
            f'[budgets]\nbackend = "redis"\nredis_url = "{redis_url}"\n')
    report = check_health(_workspace(tmp_path, toml), env={})
    assert report["response cache"].status == "ok" and "PING" in report["response cache"].detail
    assert report["budget ledger"].status == "ok"


# -- providers ------------------------------------------------------------------------------

ACME = '[providers.acme]\nbase_url = "https://api.acme.example/v1"\napi_key_env = "ACME_KEY"\n'


def test_provider_without_its_key_fails_naming_the_variable(tmp_path: Path) -> None:
    report = check_health(_workspace(tmp_path, ACME), env={})
    result = report["provider acme"]
    assert result.status == "fail" and "ACME_KEY" in result.detail
    assert "export ACME_KEY" in (result.fix or "")


def test_provider_with_its_key_is_ok_and_the_key_never_shows(tmp_path: Path) -> None:
    report = check_health(_workspace(tmp_path, ACME), env={"ACME_KEY": SECRET,
                                                           "OPENAI_API_KEY": SECRET + "x"})
    assert report["provider acme"].status == "ok" and report["provider openai"].status == "ok"
    assert "ACME_KEY" in report["provider acme"].detail
    assert SECRET not in _text(report)


def test_local_server_without_a_key_only_warns(tmp_path: Path) -> None:
    report = check_health(_workspace(tmp_path),
                          env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    assert report["provider openai"].status == "warn"


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(seed=5, latency_scale=0) as server:
        yield server


def test_probe_reaches_the_simulator(tmp_path: Path, sim: SimServer) -> None:
    env = {**sim.env(), "OPENAI_API_KEY": SECRET, "ANTHROPIC_API_KEY": SECRET}
    report = check_health(_workspace(tmp_path), env=env, probe_providers=True)
    for name in ("openai", "anthropic"):
        result = report[f"provider {name} reachable"]
        assert result.status == "ok" and "HTTP 200" in result.detail, result
    assert report.exit_code == 0 and SECRET not in _text(report)


def test_probe_of_a_closed_port_fails(tmp_path: Path) -> None:
    env = {"OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1", "OPENAI_API_KEY": SECRET}
    workspace = _workspace(tmp_path)
    assert "provider openai reachable" not in {
        r.name for r in check_health(workspace, env=env).results}
    result = check_health(workspace, env=env, probe_providers=True, timeout=0.5)[
        "provider openai reachable"]
    assert result.status == "fail" and "cannot reach" in result.detail and result.fix


# -- the command ----------------------------------------------------------------------------

def test_cli_prints_a_table_and_exits_zero(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    _workspace(tmp_path)
    assert main(["--workspace", str(tmp_path), "health"]) == 0
    out = capsys.readouterr().out
    assert "workspace" in out and "event log" in out and "exit 0" in out


def test_cli_json_and_exit_code_on_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    _workspace(tmp_path, f'[cache]\nbackend = "redis"\nredis_url = "{url}"\n')
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    assert main(["health", "--json", "--timeout", "0.5", "--workspace", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    data = json.loads(out)
    assert data["exit_code"] == 2 and data["status"] == "fail"
    checks = {c["name"]: c for c in data["checks"]}
    assert checks["response cache"]["status"] == "fail"
    assert set(checks["workspace"]) == {"name", "status", "detail", "fix", "duration_ms"}
    assert PASSWORD not in out and SECRET not in out
    assert main(["health", "--workspace", str(tmp_path), "--timeout", "0.5"]) == 2
    assert PASSWORD not in capsys.readouterr().out


def test_cli_probe_against_the_simulator(tmp_path: Path, sim: SimServer,
                                         capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _workspace(tmp_path)
    for name, value in {**sim.env(), "OPENAI_API_KEY": SECRET,
                        "ANTHROPIC_API_KEY": SECRET}.items():
        monkeypatch.setenv(name, value)
    assert main(["health", "--probe", "--json", "--workspace", str(tmp_path)]) == 0
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["provider openai reachable"]["status"] == "ok"
