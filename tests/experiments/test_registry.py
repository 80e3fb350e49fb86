"""Experiments as values and in the registry: validation, lifecycle, files, many processes."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from devora_lab.errors import ConfigError
from devora_lab.experiments.model import (
    METRICS,
    TRANSITIONS,
    Decision,
    Experiment,
    StateChange,
    Variant,
)
from devora_lab.experiments.registry import ExperimentRegistry

PROCESSES = 4
TOGGLES = 15
EXPERIMENTS_PER_PROCESS = 5


def experiment(name: str = "greeting", **overrides: Any) -> Experiment:
    fields: dict[str, Any] = {
        "name": name,
        "hypothesis": "a shorter system prompt answers as well for less",
        "variants": (Variant("control", 1, template_version="v1"),
                     Variant("short", 1, template_version="v2", model="gpt-4o-mini",
                             params={"temperature": 0.2})),
        "primary_metric": "success_rate",
        "guardrails": ("cost_usd", "p95_latency_ms"),
        "template": "greeting",
    }
    fields.update(overrides)
    return Experiment(**fields)


@pytest.fixture
def registry(tmp_path: Path) -> ExperimentRegistry:
    return ExperimentRegistry(tmp_path / "experiments")


# -- the model ------------------------------------------------------------------------------

def test_defaults_and_views() -> None:
    exp = experiment()
    assert exp.state == "draft" and exp.unit == "user" and exp.alpha == 0.05
    assert exp.salt == "greeting"  # an empty salt becomes the name
    assert exp.control.name == "control"
    assert exp.weights == {"control": 1.0, "short": 1.0}
    assert exp.variant("short").model == "gpt-4o-mini"
    with pytest.raises(ConfigError, match="no variant 'long'"):
        exp.variant("long")
    assert set(METRICS) == {"success_rate", "latency_ms", "cost_usd", "output_tokens",
                            "judge_score", "p95_latency_ms"}


def test_to_dict_is_json_and_round_trips() -> None:
    exp = experiment(salt="s1", unit="session", min_samples=500, alpha=0.01)
    exp = exp.moved_to("running", by="ana", reason="go")
    exp = exp.moved_to("completed", by="auto", decision=Decision("short", "won", "auto"))
    data = json.loads(json.dumps(exp.to_dict(), allow_nan=False))
    assert Experiment.from_dict(data) == exp
    assert data["history"][-1]["state"] == "completed"


@pytest.mark.parametrize(("overrides", "field"), [
    ({"variants": (Variant("only"),)}, "variants"),
    ({"variants": (Variant("a"), Variant("a"))}, "variants"),
    ({"variants": [{"name": "a"}, {"name": "b"}]}, "variants"),
    ({"alpha": 0.5}, "alpha"),
    ({"alpha": 0.0}, "alpha"),
    ({"alpha": True}, "alpha"),
    ({"primary_metric": "accuracy"}, "primary_metric"),
    ({"guardrails": ("latency",)}, "guardrails"),
    ({"guardrails": ("success_rate",)}, "guardrails"),
    ({"unit": "team"}, "unit"),
    ({"min_samples": 0}, "min_samples"),
    ({"min_samples": 10.5}, "min_samples"),
    ({"state": "archived"}, "state"),
    ({"name": "../escape"}, "name"),
    ({"hypothesis": "  "}, "hypothesis"),
    ({"template": ""}, "template"),
    ({"created_at": datetime(2025, 1, 1)}, "created_at"),  # naive
    ({"decision": Decision(None, "no winner")}, "decision"),  # not completed
])
def test_bad_experiment_fields_name_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=rf"\b{field}\b"):
        experiment(**overrides)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"weight": 0}, "weight"),
    ({"weight": -1}, "weight"),
    ({"weight": float("nan")}, "weight"),
    ({"weight": float("inf")}, "weight"),
    ({"name": "has space"}, "name"),
    ({"model": ""}, "model"),
    ({"params": {"x": float("nan")}}, "params"),
    ({"params": {"x": {1, 2}}}, "params"),
])
def test_bad_variant_fields_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=rf"\b{field}\b"):
        Variant(**{"name": "v", **kwargs})


def test_from_dict_refuses_unknown_and_missing_fields() -> None:
    data = experiment().to_dict()
    with pytest.raises(ConfigError, match=r"unknown Experiment field.*colour"):
        Experiment.from_dict({**data, "colour": "red"})
    del data["primary_metric"]
    with pytest.raises(ConfigError, match="needs primary_metric"):
        Experiment.from_dict(data)
    with pytest.raises(ConfigError, match=r"unknown Variant field.*wieght"):
        Variant.from_dict({"name": "a", "wieght": 2})


def test_decision_winner_must_be_a_variant() -> None:
    running = experiment().moved_to("running", by="cli")
    with pytest.raises(ConfigError, match="decision"):
        running.moved_to("completed", by="cli", decision=Decision("nobody", "?"))


def test_params_are_copied() -> None:
    params = {"stop": ["\n"]}
    variant = Variant("a", params=params)
    params["stop"].append("x")
    assert variant.params == {"stop": ["\n"]}


# -- the registry ---------------------------------------------------------------------------

def test_create_get_list_round_trip(registry: ExperimentRegistry) -> None:
    stored = registry.create(experiment("b"), by="ana")
    registry.create(experiment("a", unit="session"))
    assert stored.state == "draft"
    assert stored.history == (StateChange("draft", stored.created_at, "ana", "created",
                                          {"control": 1.0, "short": 1.0}),)
    assert registry.get("b") == stored
    assert [e.name for e in registry.list()] == ["b", "a"]  # oldest first
    on_disk = json.loads(registry.path_for("b").read_text(encoding="utf-8"))
    assert on_disk["version"] == 1 and on_disk["experiment"]["name"] == "b"
    assert ExperimentRegistry(registry.folder).get("a").unit == "session"


def test_create_refuses_an_existing_name_and_non_drafts(registry: ExperimentRegistry) -> None:
    registry.create(experiment())
    with pytest.raises(ConfigError, match="exists already"):
        registry.create(experiment(hypothesis="another"))
    with pytest.raises(ConfigError, match="as a draft"):
        registry.create(experiment("other", state="running"))


def test_get_unknown_names_the_known_ones(registry: ExperimentRegistry) -> None:
    registry.create(experiment("known"))
    with pytest.raises(ConfigError, match=r"no experiment named 'nope'.*known"):
        registry.get("nope")
    with pytest.raises(ConfigError, match="name"):
        registry.get("../known")


def test_lifecycle_and_history(registry: ExperimentRegistry) -> None:
    registry.create(experiment())
    assert registry.start("greeting", by="ana", reason="launch").state == "running"
    assert registry.pause("greeting", by="bob", reason="incident").state == "paused"
    assert registry.start("greeting").state == "running"
    decision = Decision("short", "cheaper and not worse", decided_by="auto")
    done = registry.complete("greeting", decision)
    assert done.state == "completed" and done.decision == decision
    assert [(c.state, c.by, c.reason) for c in done.history] == [
        ("draft", "cli", "created"), ("running", "ana", "launch"),
        ("paused", "bob", "incident"), ("running", "cli", ""),
        ("completed", "auto", "cheaper and not worse")]
    assert registry.get("greeting") == done


@pytest.mark.parametrize(("steps", "refused"), [
    ((), "pause"),
    ((), "complete"),
    (("start",), "start"),
    (("start", "pause"), "pause"),
    (("start", "complete"), "start"),
    (("start", "complete"), "pause"),
    (("start", "complete"), "complete"),
])
def test_refused_transitions_say_which_are_allowed(registry: ExperimentRegistry,
                                                   steps: tuple[str, ...], refused: str) -> None:
    registry.create(experiment())
    decision = Decision(None, "stopped")
    act = {"start": lambda: registry.start("greeting"),
           "pause": lambda: registry.pause("greeting"),
           "complete": lambda: registry.complete("greeting", decision)}
    for step in steps:
        act[step]()
    before = registry.get("greeting")
    allowed = ", ".join(TRANSITIONS[before.state]) or "nothing"
    with pytest.raises(ConfigError, match=f"may go to: {allowed}"):
        act[refused]()
    assert registry.get("greeting") == before


def test_set_weights_records_the_split(registry: ExperimentRegistry) -> None:
    registry.create(experiment())
    registry.start("greeting")
    updated = registry.set_weights("greeting", {"short": 3}, by="ana", reason="ramp up")
    assert updated.weights == {"control": 1.0, "short": 3.0}
    assert updated.history[-1].weights == {"control": 1.0, "short": 3.0}
    assert (updated.history[-1].state, updated.history[-1].by) == ("running", "ana")
    with pytest.raises(ConfigError, match="no variant 'long'"):
        registry.set_weights("greeting", {"long": 1})
    with pytest.raises(ConfigError, match="weights"):
        registry.set_weights("greeting", {"short": 0})
    registry.complete("greeting", Decision("short", "won", "ana"))
    with pytest.raises(ConfigError, match="completed"):
        registry.set_weights("greeting", {"short": 1})
    assert registry.get("greeting").weights == {"control": 1.0, "short": 3.0}


def test_malformed_files_raise_config_error(registry: ExperimentRegistry) -> None:
    registry.folder.mkdir(parents=True)
    registry.path_for("broken").write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="malformed"):
        registry.get("broken")
    data = {"version": 1, "experiment": {**experiment("bad").to_dict(), "alpha": 2}}
    registry.path_for("bad").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"invalid.*alpha"):
        registry.get("bad")
    data = {"version": 1, "experiment": experiment("inside").to_dict()}
    registry.path_for("outside").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ConfigError, match="holds experiment 'inside'"):
        registry.get("outside")


def test_get_sees_changes_made_by_another_registry(registry: ExperimentRegistry) -> None:
    registry.create(experiment())
    assert registry.get("greeting").state == "draft"  # now cached
    ExperimentRegistry(registry.folder).start("greeting")
    assert registry.get("greeting").state == "running"


# -- many processes -------------------------------------------------------------------------

def _worker(folder: str, number: int, ready: Any) -> tuple[int, int]:
    """Create distinct experiments, re-weight this worker's variant, and toggle the shared
    experiment; returns how many pauses and starts succeeded."""
    registry = ExperimentRegistry(folder)
    ready.wait(timeout=60)
    pauses = starts = 0
    for i in range(EXPERIMENTS_PER_PROCESS):
        registry.create(experiment(f"w{number}-{i}"))
    for i in range(TOGGLES):
        registry.set_weights("shared", {f"v{number}": float(i + 1)}, by=f"worker-{number}")
        for action in ("pause", "start"):
            try:
                getattr(registry, action)("shared", by=f"worker-{number}")
            except ConfigError:  # another worker got there first: the move is not allowed
                continue
            if action == "pause":
                pauses += 1
            else:
                starts += 1
    return pauses, starts


@pytest.mark.slow
def test_processes_never_lose_each_others_changes(registry: ExperimentRegistry) -> None:
    variants = tuple(Variant(f"v{n}") for n in range(PROCESSES))
    registry.create(experiment("shared", variants=variants))
    registry.start("shared")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        ready = manager.Barrier(PROCESSES)  # every worker ready before any begins
        with ctx.Pool(PROCESSES) as pool:
            results = [pool.apply_async(_worker, (str(registry.folder), n, ready))
                       for n in range(PROCESSES)]
            outcomes = [result.get(timeout=120) for result in results]

    names = {e.name for e in registry.list()}
    assert names == {"shared"} | {f"w{n}-{i}" for n in range(PROCESSES)
                                  for i in range(EXPERIMENTS_PER_PROCESS)}
    shared = registry.get("shared")
    assert shared.weights == {f"v{n}": float(TOGGLES) for n in range(PROCESSES)}
    moves = [c.state for c in shared.history if c.weights is None]
    pauses = sum(p for p, _ in outcomes)
    starts = sum(s for _, s in outcomes)
    assert pauses >= 1 and pauses - starts in (0, 1)
    # Pausing works only from running and starting only from paused, so a lost or
    # interleaved update would show as two equal states in a row.
    assert moves == ["running"] + [("paused", "running")[i % 2] for i in range(pauses + starts)]
    reweights = [c for c in shared.history if c.weights is not None]
    assert len(reweights) == 1 + PROCESSES * TOGGLES  # the creation and every re-weighting
    assert shared.state == ("paused" if pauses > starts else "running")


def test_stamps_are_aware_utc(registry: ExperimentRegistry) -> None:
    created = registry.create(experiment())
    assert created.created_at.tzinfo is not None
    assert created.created_at <= datetime.now(timezone.utc)
    assert dataclasses.replace(created, salt="").salt == "greeting"
