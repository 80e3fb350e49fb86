"""Assignment: the hash, weight proportions, stickiness, and one exposure per unit."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from devora_lab.errors import ConfigError, EventLogError, WorkspaceError
from devora_lab.events import Event, EventLog
from devora_lab.experiments.assignment import (
    Assigner,
    AssignmentStore,
    _fraction,
    assign,
    bucket,
)
from devora_lab.experiments.model import Decision, Experiment, Variant
from devora_lab.experiments.registry import ExperimentRegistry

PROCESSES = 4
SHARED_UNITS = 400
P_FLOOR = 1e-3  # the units are fixed, so a chi-square test passes or fails the same each run


def experiment(name: str = "exp", weights: tuple[float, ...] = (1.0, 1.0),
               **overrides: Any) -> Experiment:
    variants = tuple(Variant(f"v{i}", weight, template_version=f"t{i}", model=f"m{i}")
                     for i, weight in enumerate(weights))
    return Experiment(name=name, hypothesis="v1 beats v0", variants=variants,
                      primary_metric="judge_score", template="tpl", **overrides)


def proportions_fit(counts: Counter[str], weights: dict[str, float]) -> float:
    """The chi-square p-value of the counts against the weights' proportions."""
    total, weight_sum = sum(counts.values()), sum(weights.values())
    observed = [counts[name] for name in weights]
    expected = [total * weight / weight_sum for weight in weights.values()]
    return float(stats.chisquare(observed, expected).pvalue)


class Setup:
    """A workspace's experiments folder with a registry, a store, an event log and an
    assigner over them."""

    def __init__(self, root: Path, event_log: EventLog | None = None) -> None:
        self.registry = ExperimentRegistry(root / "experiments")
        self.store = AssignmentStore(root / "experiments")
        self.log = event_log
        self.assigner = Assigner(self.registry, self.store, event_log)

    def exposures(self) -> list[tuple[Any, ...]]:
        assert self.log is not None
        with self.log.store() as store:
            return store.rows("SELECT experiment, variant, user_id, session_id, request_id, "
                              "template_name, template_version, attributes FROM events "
                              "WHERE kind = 'experiment.exposure' ORDER BY ts")


@pytest.fixture
def setup(tmp_path: Path, log: EventLog) -> Setup:
    return Setup(tmp_path, log)


# -- the hash -------------------------------------------------------------------------------

@given(st.text(max_size=40), st.text(min_size=1, max_size=80))
def test_bucket_is_in_unit_interval_and_stable(salt: str, unit_id: str) -> None:
    point = bucket(salt, unit_id)
    assert 0.0 <= point < 1.0
    assert bucket(salt, unit_id) == point
    digest = hashlib.sha256(f"{salt}:{unit_id}".encode()).digest()
    assert point == (int.from_bytes(digest[:8], "big") >> 11) / 2**53  # the documented formula


def test_bucket_extremes_stay_below_one() -> None:
    assert _fraction(b"\x00" * 8) == 0.0
    assert _fraction(b"\xff" * 8) == 1 - 2**-53  # 64 bits / 2**64 would round to 1.0
    assert bucket("salt", "alice") != bucket("pepper", "alice")


def test_assign_is_the_same_in_another_process() -> None:
    exp = experiment(weights=(1, 2, 3))
    units = [f"user-{i}" for i in range(300)]
    here = {unit: assign(exp, unit).name for unit in units}
    script = ("import json, sys\n"
              "from devora_lab.experiments.assignment import assign\n"
              "from devora_lab.experiments.model import Experiment\n"
              "exp = Experiment.from_dict(json.loads(sys.argv[1]))\n"
              "print(json.dumps({u: assign(exp, u).name for u in json.loads(sys.argv[2])}))\n")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # hash() differs; sha256 must not
    result = subprocess.run([sys.executable, "-c", script, json.dumps(exp.to_dict()),
                             json.dumps(units)], capture_output=True, text=True, check=True,
                            env=env, cwd=Path(__file__).parents[2], timeout=60)
    assert json.loads(result.stdout) == here
    assert set(here.values()) == {"v0", "v1", "v2"}


def test_weights_give_their_proportions_over_20000_units() -> None:
    exp = experiment(weights=(5, 3, 2))
    counts = Counter(assign(exp, f"user-{i}").name for i in range(20_000))
    assert proportions_fit(counts, exp.weights) > P_FLOOR
    assert abs(counts["v0"] / 20_000 - 0.5) < 0.02


def test_salt_decorrelates_experiments() -> None:
    first, second = experiment("a"), experiment("b")
    pairs = Counter((assign(first, f"u{i}").name, assign(second, f"u{i}").name)
                    for i in range(8_000))
    table = [[pairs["v0", "v0"], pairs["v0", "v1"]], [pairs["v1", "v0"], pairs["v1", "v1"]]]
    assert stats.chi2_contingency(table).pvalue > P_FLOOR


def test_assign_refuses_an_empty_unit() -> None:
    with pytest.raises(ConfigError, match="unit_id"):
        assign(experiment(), "")


# -- stickiness -----------------------------------------------------------------------------

def test_units_keep_their_variant_when_weights_change(tmp_path: Path) -> None:
    setup = Setup(tmp_path)  # no event log: 14,000 exposures would only slow this down
    setup.registry.create(experiment(weights=(1, 1)))
    setup.registry.start("exp")
    old = [f"old-{i}" for i in range(4_000)]
    before = {u: _name(setup.assigner.variant_for("exp", u)) for u in old}

    setup.registry.set_weights("exp", {"v0": 1, "v1": 9})
    after = {u: _name(setup.assigner.variant_for("exp", u)) for u in old}
    assert after == before
    moved = sum(assign(setup.registry.get("exp"), u).name != before[u] for u in old)
    assert moved > 1_000  # what the pure hash would have done to ~40% of the seen units

    new = Counter(_name(setup.assigner.variant_for("exp", f"new-{i}")) for i in range(10_000))
    assert proportions_fit(new, {"v0": 1, "v1": 9}) > P_FLOOR
    old_counts = Counter(before.values())
    assert setup.store.counts("exp") == {name: old_counts[name] + new[name]
                                         for name in ("v0", "v1")}


def _name(variant: Variant | None) -> str:
    assert variant is not None
    return variant.name


def test_the_store_survives_a_new_process_state(tmp_path: Path) -> None:
    first = Setup(tmp_path)
    first.registry.create(experiment(weights=(1, 1)))
    first.registry.start("exp")
    seen = _name(first.assigner.variant_for("exp", "alice"))
    first.store.close()
    first.registry.set_weights("exp", {"v0" if seen == "v1" else "v1": 1_000})
    again = Setup(tmp_path)
    assert _name(again.assigner.variant_for("exp", "alice")) == seen


# -- exposure events ------------------------------------------------------------------------

def _serve(root: str, log_root: str, number: int, ready: Any) -> dict[str, str]:
    """Body of one process: serve the shared units in the order every process uses, so that
    the processes race for the same unit all the time (even ones reverse it, so that
    they also meet units already recorded)."""
    log = EventLog(log_root, roll_max_events=50, roll_max_seconds=3600)
    setup = Setup(Path(root), log)
    units = [f"user-{i}" for i in range(SHARED_UNITS)]
    random.Random(0).shuffle(units)
    if number % 2:
        units.reverse()
    ready.wait(timeout=60)
    served = {unit: _name(setup.assigner.variant_for("exp", unit, session_id=f"s-{unit}"))
              for unit in units}
    log.close()
    return served


@pytest.mark.slow
def test_one_exposure_per_unit_across_processes(tmp_path: Path, log_root: Path) -> None:
    setup = Setup(tmp_path, EventLog(log_root))
    setup.registry.create(experiment(weights=(1, 1, 2)))
    setup.registry.start("exp")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        ready = manager.Barrier(PROCESSES)  # every worker ready before any begins
        with ctx.Pool(PROCESSES) as pool:
            results = [pool.apply_async(_serve, (str(tmp_path), str(log_root), n, ready))
                       for n in range(PROCESSES)]
            served = [result.get(timeout=120) for result in results]

    assert all(mapping == served[0] for mapping in served)  # every process agrees
    exposures = setup.exposures()
    assert len(exposures) == SHARED_UNITS
    assert {row[2]: row[1] for row in exposures} == served[0]  # user_id -> variant
    assert sum(setup.store.counts("exp").values()) == SHARED_UNITS


def _record(root: str, number: int, ready: Any) -> tuple[list[str], dict[str, str]]:
    """Body of one process: claim every shared unit for this process's own variant."""
    store = AssignmentStore(root)
    ready.wait(timeout=60)
    won, seen = [], {}
    for i in range(SHARED_UNITS):
        seen[f"u{i}"], first = store.record("exp", f"u{i}", f"v{number}")
        if first:
            won.append(f"u{i}")
    return won, seen


@pytest.mark.slow
def test_exactly_one_process_records_each_unit(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        ready = manager.Barrier(PROCESSES)
        with ctx.Pool(PROCESSES) as pool:
            results = [pool.apply_async(_record, (str(tmp_path), n, ready))
                       for n in range(PROCESSES)]
            outcomes = [result.get(timeout=120) for result in results]

    won = [unit for units, _ in outcomes for unit in units]
    assert sorted(won) == sorted(f"u{i}" for i in range(SHARED_UNITS))  # each once
    store = AssignmentStore(tmp_path)
    stored = {f"u{i}": store.get("exp", f"u{i}") for i in range(SHARED_UNITS)}
    assert all(seen == stored for _, seen in outcomes)  # and every process got the winner
    for number, (units, _) in enumerate(outcomes):
        assert all(stored[unit] == f"v{number}" for unit in units)


def test_exposure_event_fields(setup: Setup) -> None:
    setup.registry.create(experiment(unit="session"))
    setup.registry.start("exp")
    variant = setup.assigner.variant_for("exp", "sess-1", user_id="alice", request_id="r1")
    assert variant is not None
    assert setup.assigner.variant_for("exp", "sess-1", user_id="alice") == variant
    [row] = setup.exposures()
    experiment_name, name, user, session, request, template, version, attributes = row
    assert (experiment_name, name, user, session, request) == (
        "exp", variant.name, "alice", "sess-1", "r1")
    assert (template, version) == ("tpl", variant.template_version)
    assert json.loads(attributes) == {"unit": "session", "unit_id": "sess-1",
                                      "model": variant.model}


def test_states_decide_what_is_served(setup: Setup) -> None:
    setup.registry.create(experiment(weights=(1, 1)))
    served = setup.assigner.variant_for
    assert served("exp", "alice") is None  # draft
    setup.registry.start("exp")
    alice = _name(served("exp", "alice"))
    units = [f"u{i}" for i in range(50)]

    setup.registry.pause("exp")
    assert {_name(served("exp", u)) for u in ["alice", *units]} == {"v0"}  # the control
    assert all(setup.store.get("exp", u) is None for u in units)  # nothing recorded
    assert len(setup.exposures()) == 1  # nor logged

    setup.registry.start("exp")
    assert _name(served("exp", "alice")) == alice
    resumed = {u: _name(served("exp", u)) for u in units}
    assert resumed == {u: assign(setup.registry.get("exp"), u).name for u in units}
    assert len(setup.exposures()) == 1 + len(units)

    setup.registry.complete("exp", Decision("v1", "better", "ana"))
    assert served("exp", "alice") is None
    assert len(setup.exposures()) == 1 + len(units)


def test_unknown_experiment_and_empty_unit_raise(setup: Setup) -> None:
    with pytest.raises(ConfigError, match="no experiment named 'ghost'"):
        setup.assigner.variant_for("ghost", "alice")
    setup.registry.create(experiment())
    setup.registry.start("exp")
    with pytest.raises(ConfigError, match="unit_id"):
        setup.assigner.variant_for("exp", "")


def test_without_an_event_log_nothing_is_logged_but_units_are_recorded(
        tmp_path: Path) -> None:
    setup = Setup(tmp_path)
    setup.registry.create(experiment())
    setup.registry.start("exp")
    variant = _name(setup.assigner.variant_for("exp", "alice"))
    assert setup.store.get("exp", "alice") == variant


class _BrokenStore(AssignmentStore):
    def get(self, experiment: str, unit_id: str) -> str | None:
        raise WorkspaceError("disk on fire")


class _BrokenLog(EventLog):
    def write(self, event: Event) -> None:
        raise EventLogError("log on fire")


def test_a_failing_store_serves_the_hash_unlogged(tmp_path: Path, log: EventLog,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    setup = Setup(tmp_path, log)
    setup.registry.create(experiment(weights=(1, 3)))
    setup.registry.start("exp")
    broken = Assigner(setup.registry, _BrokenStore(tmp_path / "experiments"), log)
    with caplog.at_level(logging.WARNING, "devora_lab.experiments"):
        variant = broken.variant_for("exp", "alice")
    assert variant == assign(setup.registry.get("exp"), "alice")
    assert "assignment store failed" in caplog.text
    assert setup.exposures() == []


def test_a_failing_event_log_does_not_fail_the_call(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    setup = Setup(tmp_path, _BrokenLog(tmp_path / "events"))
    setup.registry.create(experiment())
    setup.registry.start("exp")
    with caplog.at_level(logging.WARNING, "devora_lab.experiments"):
        variant = setup.assigner.variant_for("exp", "alice")
    assert variant is not None and setup.store.get("exp", "alice") == variant.name
    assert "could not write the exposure" in caplog.text
