"""The analysis and the automatic decision on constructed logs with known effects."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from devora_lab.cli import main
from devora_lab.events import Event, EventKind, EventLog
from devora_lab.experiments.analysis import analyze, decide
from devora_lab.experiments.model import Experiment, Variant
from devora_lab.experiments.registry import ExperimentRegistry

START = datetime(2026, 11, 2, tzinfo=timezone.utc)


def _log(root: Path, rates: tuple[float, float], *, days: int = 14, per_day: int = 300,
         latency: tuple[float, float] = (900.0, 900.0),
         units: tuple[int, int] = (400, 400)) -> EventLog:
    rng = np.random.default_rng(7)
    log = EventLog(root / "events")
    for arm, name in enumerate(("control", "treatment")):
        for unit in range(units[arm]):
            log.write(Event(kind=EventKind.EXPERIMENT_EXPOSURE, ts=START, experiment="exp",
                            variant=name, user_id=f"{name}-{unit}"))
        for day in range(days):
            ok = rng.random(per_day) < rates[arm]
            waits = rng.gamma(4.0, latency[arm] / 4.0, per_day)
            for i in range(per_day):
                log.write(Event(kind=EventKind.LLM_CALL, experiment="exp", variant=name,
                                ts=START + timedelta(days=day, seconds=i),
                                status="ok" if ok[i] else "error",
                                latency_ms=float(waits[i]), cost_usd=0.001,
                                request_model="gpt-4o"))
    log.close()
    return log


def _registry(root: Path, *, min_samples: int = 500) -> ExperimentRegistry:
    registry = ExperimentRegistry(root / "experiments")
    registry.create(Experiment(name="exp", hypothesis="treatment succeeds more often",
                               variants=(Variant("control"), Variant("treatment")),
                               primary_metric="success_rate", guardrails=("latency_ms",),
                               min_samples=min_samples))
    registry.start("exp")
    return registry


def test_a_real_effect_completes_with_the_winner(tmp_path: Path) -> None:
    log, registry = _log(tmp_path, (0.80, 0.88)), _registry(tmp_path)
    with log.store() as store:
        result = decide(registry, store, "exp")
    assert result.missing == [] and result.winner == "treatment"
    done = registry.get("exp")
    assert done.state == "completed" and done.decision is not None
    assert done.decision.winner == "treatment" and done.decision.decided_by == "auto"
    primary = result.comparisons.set_index("metric").loc["success_rate"]
    assert primary["ci_low"] < 0.08 < primary["ci_high"]
    assert result.bayes is not None and result.bayes.chance_to_be_best[1] > 0.99
    assert result.sequential["p_value"].is_monotonic_decreasing  # always-valid: running min


def test_an_aa_test_never_decides(tmp_path: Path) -> None:
    log, registry = _log(tmp_path, (0.85, 0.85)), _registry(tmp_path)
    with log.store() as store:
        result = decide(registry, store, "exp")
    assert result.winner is None and registry.get("exp").state == "running"
    assert any("sequential test" in reason for reason in result.missing)


def test_sample_ratio_mismatch_blocks_the_decision(tmp_path: Path) -> None:
    log, registry = _log(tmp_path, (0.80, 0.88), units=(1000, 800)), _registry(tmp_path)
    with log.store() as store:
        result = decide(registry, store, "exp")
    assert result.srm is not None and result.srm.srm_failed
    assert any("sample ratio mismatch" in reason for reason in result.missing)
    assert registry.get("exp").state == "running"


def test_a_worse_guardrail_blocks_the_decision(tmp_path: Path) -> None:
    log = _log(tmp_path, (0.80, 0.88), latency=(900.0, 1400.0))
    registry = _registry(tmp_path)
    with log.store() as store:
        result = decide(registry, store, "exp")
    assert any("guardrail latency_ms is significantly worse" in r for r in result.missing)
    assert registry.get("exp").state == "running"


def test_minimum_sample_blocks_and_the_command_explains(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _log(tmp_path, (0.80, 0.88), days=3)
    _registry(tmp_path, min_samples=5000)
    assert main(["experiments", "analyze", "exp", "--decide",
                 "--workspace", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "minimum sample not reached: control 900/5000" in out
    assert "more days to the minimum sample" in out
    with EventLog(tmp_path / "events").store() as store:
        assert analyze(store, ExperimentRegistry(tmp_path / "experiments").get("exp")
                       ).experiment.state == "running"
