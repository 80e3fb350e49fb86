"""Done-when of the experiments issue, end to end on the simulator: a reviewer agent runs
an A/B test between two template versions through the real client; the analysis shows
per-variant metrics with intervals, sequential p-values, SRM and guardrails; and the
experiment completes itself only when it validly can."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devora_lab.experiments.analysis import decide
from devora_lab.experiments.model import Experiment, Variant
from devora_lab.lab import Lab
from devora_lab.sim.server import SimServer
from devora_lab.team import Reviewer

DIFF = "-def area(r): return 3.14*r*r\n+def area(r: float) -> float:\n+    return math.pi * r**2\n"


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    with SimServer(seed=31, latency_scale=0) as sim:
        for name, value in {**sim.env(), "OPENAI_API_KEY": "sk-test"}.items():
            monkeypatch.setenv(name, value)
        made = Lab(tmp_path)
        yield made
        made.close()


def _experiment(lab: Lab, min_samples: int) -> None:
    first = lab.prompts.get("code-review")
    terse = lab.prompts.register(
        "code-review", [*(dict(m) for m in first.messages),
                        {"role": "user", "content": "At most five short bullet points."}],
        variables=first.variables, model=first.model, params=first.params)
    lab.experiments.create(Experiment(
        name="terse-review", hypothesis="a terse review prompt writes fewer output tokens",
        variants=(Variant("control", template_version=first.version),
                  Variant("terse", template_version=terse.version,
                          params={"max_tokens": 120})),
        primary_metric="output_tokens", guardrails=("success_rate", "latency_ms"),
        min_samples=min_samples, template="code-review"))
    lab.experiments.start("terse-review", by="test")


def _review(lab: Lab, users: range) -> None:
    for user in users:  # a different change per user, so answers differ in length
        diff = DIFF.replace("area", f"area_{user}") + "\n".join(
            f"+# note {n} for reviewer {user}" for n in range(user % 7))
        Reviewer(lab, user_id=f"dev-{user}").review(diff, experiment="terse-review")


def test_completes_only_when_it_validly_can(lab: Lab) -> None:
    _experiment(lab, min_samples=40)
    _review(lab, range(30))  # about 15 per variant: below the minimum sample
    with lab.event_log.store() as store:
        early = decide(lab.experiments, store, "terse-review")
    assert any("minimum sample not reached" in reason for reason in early.missing)
    assert lab.experiments.get("terse-review").state == "running"
    _review(lab, range(30, 300))
    with lab.event_log.store() as store:
        result = decide(lab.experiments, store, "terse-review")
    assert result.missing == [], result.missing
    assert result.winner == "terse"
    done = lab.experiments.get("terse-review")
    assert done.state == "completed" and done.decision is not None
    assert done.decision.decided_by == "auto"
    tokens = result.variants.set_index(["metric", "variant"]).loc["output_tokens"]
    assert tokens.loc["terse", "value"] < tokens.loc["control", "value"]
    primary = result.comparisons.set_index("metric").loc["output_tokens"]
    assert primary["ci_high"] < 0 and primary["p_adjusted"] < 0.05
    assert not result.sequential.empty and result.sequential["p_value"].iloc[-1] < 0.05
    assert result.srm is not None and not result.srm.srm_failed
