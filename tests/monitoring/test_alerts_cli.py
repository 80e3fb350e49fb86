"""``devora-lab metrics | query | alerts``: on a small workspace, and the whole loop on a demo
workload: rules fire, a local webhook receives exactly the expected alerts, once."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from devora_lab.cli import main
from devora_lab.events import EventLog
from devora_lab.monitoring.metrics import METRICS, metrics
from devora_lab.sim.workload import generate_workload

from .helpers import MINUTE, HookServer, calls, write

QUOTED = "o'brien"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A workspace with 30 calls in the last two hours: 20 gpt-4o (5 errors), 10 claude."""
    now = datetime.now(timezone.utc)
    log = EventLog(tmp_path / "events")
    write(log, calls(15, now - 100 * MINUTE, now - MINUTE, model="gpt-4o", user=QUOTED))
    write(log, calls(5, now - 100 * MINUTE, now - MINUTE, model="gpt-4o", status="error"))
    write(log, calls(10, now - 100 * MINUTE, now - MINUTE, model="claude-sonnet-4"))
    log.close()
    return tmp_path


def _run(workspace: Path, *argv: str) -> int:
    return main([*argv, "--workspace", str(workspace)])


def test_metrics_list(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(workspace, "metrics", "--list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(METRICS)
    assert any(line.startswith("error_rate") and "ratio" in line for line in lines)


def test_metrics_by_model_to_csv(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = workspace / "by-model.csv"
    assert _run(workspace, "metrics", "--by", "model", "--window", "all", "--out",
                str(out)) == 0
    assert f"wrote 2 rows to {out}" in capsys.readouterr().out
    frame = pd.read_csv(out).set_index("model")
    assert frame.loc["gpt-4o", "requests"] == 20 and frame.loc["gpt-4o", "errors"] == 5
    assert frame.loc["gpt-4o", "error_rate"] == pytest.approx(0.25)
    assert frame.loc["claude-sonnet-4", "requests"] == 10


def test_metrics_shown_with_filters(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(workspace, "metrics", "-m", "requests", "-m", "errors", "--filter",
                "model=claude-sonnet-4") == 0
    out = capsys.readouterr().out.split()
    assert out == ["requests", "errors", "10", "0"]
    assert _run(workspace, "metrics", "--filter", "model") == 2
    assert "is not DIM=VALUE" in capsys.readouterr().err


def test_metrics_trend(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(workspace, "metrics", "--trend", "1h", "-m", "requests") == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[0].split() == ["bucket", "requests"] and len(shown) in (25, 26)
    out = workspace / "trend.jsonl"
    assert _run(workspace, "metrics", "--trend", "1h", "--window", "6h", "-m", "requests",
                "-m", "error_rate", "--by", "model", "--out", str(out)) == 0
    frame = pd.read_json(out, lines=True)
    assert frame.groupby("model")["requests"].sum().to_dict() == {"claude-sonnet-4": 10,
                                                                   "gpt-4o": 20}


def test_query_with_a_parameter_to_parquet(workspace: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = workspace / "rows.parquet"
    sql = "SELECT user_id, request_model, status FROM events WHERE user_id = ?"
    assert _run(workspace, "query", sql, "-p", QUOTED, "--out", str(out)) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    frame = pd.read_parquet(out)
    assert len(frame) == 15 and set(frame["user_id"]) == {QUOTED}
    assert _run(workspace, "query", "SELECT count(*) AS n FROM events WHERE status = ?",
                "-p", "error") == 0
    assert capsys.readouterr().out.split() == ["n", "5"]
    assert _run(workspace, "query", "SELECT nope FROM events", "--out", str(out)) == 2
    assert "nope" in capsys.readouterr().err
    assert len(pd.read_parquet(out)) == 15  # the earlier export is intact


def test_alerts_check_without_rules(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(workspace, "alerts", "check") == 0
    assert "no alert rules" in capsys.readouterr().out


def test_a_bad_rules_file_exits_2_with_the_fix(workspace: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    (workspace / "alerts.toml").write_text(
        '[[rule]]\nname = "slow"\nmetric = "latency_p95"\nop = ">"\nthreshold = 1\n')
    for action in ("check", "list", "watch"):
        assert _run(workspace, "alerts", action) == 2
        err = capsys.readouterr().err
        assert "rule #1 ('slow'), field metric: unknown metric 'latency_p95'" in err
        assert "fix:" in err
    other = workspace / "other.toml"
    other.write_text("[[rule]\n")
    assert _run(workspace, "alerts", "check", "--rules", str(other)) == 2
    assert "other.toml is not valid TOML" in capsys.readouterr().err


def test_alerts_watch_checks_until_interrupted(workspace: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    (workspace / "alerts.toml").write_text(
        '[[rule]]\nname = "errors"\nmetric = "errors"\nwindow = "6h"\nop = ">"\nthreshold = 1\n'
        '[[sink]]\ntype = "log"\n')

    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("devora_lab.cli.monitoring.time.sleep", interrupt)
    assert _run(workspace, "alerts", "watch", "--interval", "5") == 130
    out = capsys.readouterr().out
    assert "checking 1 rules every 5 s" in out and "FIRING     errors" in out
    assert _run(workspace, "alerts", "watch", "--interval", "0") == 2


# -- the whole loop on a demo workspace ---------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's history phase (``devora-lab demo`` also runs live agents, RAG indexing and
    reports, which this test does not need): three days of the simulated team."""
    root = tmp_path_factory.mktemp("demo")
    log = EventLog(root / "events")
    generate_workload(log, days=3, calls_per_day=300, seed=7, progress=False)
    log.close()
    return root


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[HookServer]:
    with HookServer() as server:
        monkeypatch.setenv("TEST_DEVORA_HOOK", server.url("/services/T1/B2/TOKEN"))
        yield server


def _threshold(demo: Path) -> tuple[float, set[tuple[str, str | None]]]:
    """A threshold in the widest gap between the models' p95 latencies, and the alerts it
    should raise (computed here with ``metrics``, apart from the rule evaluation)."""
    with EventLog(demo / "events").store() as store:
        frame = metrics(store, ["latency_p95_ms", "requests"], by=["model"], window="7d")
    judged = frame[frame["requests"] >= 5]
    values = sorted(set(judged["latency_p95_ms"]))
    assert len(values) >= 2, "the demo should give the models different latencies"
    low, high = max(itertools.pairwise(values), key=lambda pair: pair[1] - pair[0])
    threshold = (low + high) / 2
    firing = {("slow model", str(model)) for model in
              judged.loc[judged["latency_p95_ms"] > threshold, "model"]}
    assert firing and len(firing) < len(judged)
    return threshold, firing | {("traffic", None)}


RULES = """
[[rule]]
name = "slow model"
metric = "latency_p95_ms"
window = "7d"
by = "model"
op = ">"
threshold = {threshold}
min_requests = 5
severity = "critical"

[[rule]]
name = "traffic"
metric = "requests"
window = "7d"
op = ">"
threshold = 0
severity = "info"

[[rule]]
name = "spend runaway"
metric = "cost_usd"
window = "7d"
op = ">"
threshold = 1e9

[[sink]]
type = "webhook"
url_env = "TEST_DEVORA_HOOK"
format = "json"
retries = 1
"""


def test_alerts_on_a_demo_workspace(demo: Path, hook: HookServer,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    threshold, expected = _threshold(demo)
    (demo / "alerts.toml").write_text(RULES.format(threshold=repr(threshold)))

    assert _run(demo, "alerts", "check") == 0
    out = capsys.readouterr().out
    received = {(body["name"], body["group"]) for body in hook.bodies()}
    assert received == expected and len(hook.bodies()) == len(expected)
    assert all(body["state"] == "firing" for body in hook.bodies())
    assert f"{len(expected)} notified, 0 resolved" in out
    assert "ok         spend runaway" in out

    assert _run(demo, "alerts", "check") == 0  # still firing: nothing new is sent
    assert "0 notified, 0 resolved" in capsys.readouterr().out
    assert len(hook.bodies()) == len(expected)

    assert _run(demo, "alerts", "check", "--fail-on-firing") == 1
    assert len(hook.bodies()) == len(expected)
    capsys.readouterr()

    assert _run(demo, "alerts", "history") == 0
    history = capsys.readouterr().out
    assert history.count("firing") == len(expected)
    for name, group in expected:
        assert name in history and (group is None or group in history)

    assert _run(demo, "alerts", "list") == 0
    listing = capsys.readouterr().out
    assert "traffic: requests over 7d > 0 [info]  FIRING: -" in listing
    assert "spend runaway: cost_usd over 7d > 1e+09 [warning]\n" in listing
    assert "sink: webhook" in listing
    assert "TOKEN" not in out + history + listing
