"""A/B test of two prompt versions with the Reviewer agent, analysed with peeking-safe stats.

Shows: an ``Experiment`` over two versions of the built-in ``code-review`` template
(control, and a terse one capped at 60 output tokens); the ``Reviewer`` run inside it, each
user sticking to one variant; ``analyze`` after a few users (no decision: too early) and
``decide`` once enough users have come, which completes the experiment only when the
sequential test, the minimum sample, the sample ratio and the guardrails all allow it.

Run:  python examples/ab_test.py
      (``devora-lab experiments analyze terse-review --decide`` does the same from the shell)
"""

from __future__ import annotations

from _offline import example_workspace

from devora_lab import Lab
from devora_lab.experiments.analysis import analyze, decide
from devora_lab.experiments.model import Experiment, Variant
from devora_lab.team import Reviewer

NAME = "terse-review"
DIFF = "-def area(r): return 3.14*r*r\n+def area(r: float) -> float:\n+    return math.pi * r**2"


def review(lab: Lab, users: range) -> None:
    for user in users:  # each user reviews a slightly different change
        diff = DIFF.replace("area", f"area_{user}") + f"\n+# reviewed by dev-{user}" * (user % 5)
        Reviewer(lab, user_id=f"dev-{user}").review(diff, experiment=NAME)


with example_workspace(latency_scale=0) as workspace, Lab(workspace) as lab:
    if NAME not in {experiment.name for experiment in lab.experiments.list()}:
        control = lab.prompts.get("code-review")
        terse = lab.prompts.register(
            "code-review", [*control.messages, {"role": "user", "content": "Five bullets."}],
            variables=control.variables, model=control.model, params=control.params)
        lab.experiments.create(Experiment(
            name=NAME, hypothesis="a terse review prompt writes fewer output tokens",
            variants=(Variant("control", template_version=control.version),
                      Variant("terse", template_version=terse.version,
                              params={"max_tokens": 60})),
            primary_metric="output_tokens", guardrails=("success_rate", "latency_ms"),
            min_samples=40, template="code-review"))
        lab.experiments.start(NAME, by="examples/ab_test.py")

    review(lab, range(20))
    with lab.event_log.store() as store:
        early = analyze(store, lab.experiments.get(NAME))
    print("after 20 users:", "no decision yet, because" if early.missing else "decidable")
    for reason in early.missing:
        print("  -", reason)

    review(lab, range(20, 160))
    with lab.event_log.store() as store:
        result = decide(lab.experiments, store, NAME)  # completes it only if valid
    table = result.variants.pivot(index="variant", columns="metric", values="value")
    print("\nafter 160 users, per variant:")
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    primary = result.comparisons.set_index("metric").loc["output_tokens"]
    print(f"\noutput tokens, terse vs control: {primary['difference']:+.1f} "
          f"({primary['relative']:+.0%}; 95% CI {primary['ci_low']:.1f} to "
          f"{primary['ci_high']:.1f}), Holm-adjusted p = {primary['p_adjusted']:.2g}")
    experiment = lab.experiments.get(NAME)
    print(f"decision: winner {result.winner}, experiment {experiment.state}"
          if result.winner else f"no decision yet: {'; '.join(result.missing)}")
