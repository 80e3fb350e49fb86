"""A reviewer agent in an A/B experiment between two template versions, on the simulator:
sticky variants, tagged calls, one exposure per unit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devora_lab.errors import ConfigError
from devora_lab.experiments.model import Experiment, Variant
from devora_lab.lab import Lab
from devora_lab.sim.server import SimServer
from devora_lab.team import Reviewer

DIFF = "-    return a+b\n+    return a + b  # spacing\n"


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    with SimServer(seed=12, latency_scale=0) as sim:
        for name, value in {**sim.env(), "OPENAI_API_KEY": "sk-test"}.items():
            monkeypatch.setenv(name, value)
        made = Lab(tmp_path)
        yield made
        made.close()


def _start(lab: Lab) -> tuple[str, str]:
    first = lab.prompts.get("code-review")
    second = lab.prompts.register(
        "code-review", [dict(m) for m in first.messages] + [
            {"role": "user", "content": "Answer in at most five bullet points."}],
        variables=first.variables, model=first.model, params=first.params)
    lab.experiments.create(Experiment(
        name="review-terse", hypothesis="a terser prompt costs less and is as useful",
        variants=(Variant("control", template_version=first.version),
                  Variant("terse", template_version=second.version)),
        primary_metric="success_rate", guardrails=("latency_ms",), min_samples=10,
        template="code-review"))
    lab.experiments.start("review-terse", by="test")
    return first.version, second.version


def test_variants_are_sticky_tagged_and_exposed_once(lab: Lab) -> None:
    versions = dict(zip(("control", "terse"), _start(lab), strict=True))
    seen: dict[str, str] = {}
    for _round in range(2):
        for user in range(30):
            reply = Reviewer(lab, user_id=f"dev-{user}").review(DIFF, experiment="review-terse")
            assert reply.text
    with lab.event_log.store() as store:
        calls = store.rows("SELECT user_id, variant, template_version, experiment FROM events "
                           "WHERE kind = 'llm.call' ORDER BY ts")
        exposures = store.rows("SELECT user_id, variant FROM events "
                               "WHERE kind = 'experiment.exposure'")
    assert len(calls) == 60 and all(row[3] == "review-terse" for row in calls)
    for user, variant, version, _ in calls:
        assert seen.setdefault(user, variant) == variant  # sticky across rounds
        assert version == versions[variant]
    assert sorted(exposures) == sorted(seen.items())  # one exposure per unit
    assert set(seen.values()) == {"control", "terse"}


def test_outside_a_running_experiment(lab: Lab) -> None:
    _start(lab)
    lab.experiments.pause("review-terse", by="test")
    reviewer = Reviewer(lab, user_id="dev-1")
    reviewer.review(DIFF, experiment="review-terse")  # paused: control for everyone
    with lab.event_log.store() as store:
        assert store.rows("SELECT variant FROM events WHERE kind = 'llm.call'") == [
            ("control",)]
        assert store.count("experiment.exposure") == 0
    with pytest.raises(ConfigError, match="has no user_id"):
        Reviewer(lab).review(DIFF, experiment="review-terse")
