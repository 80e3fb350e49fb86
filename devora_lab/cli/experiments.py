"""``devora-lab experiments create | start | pause | complete | weights | list``: prompt and
model A/B experiments in ``<workspace>/experiments/``.

``create NAME --variant control:template_version=1-cad12aab --variant terse:template_version=2-…``
(each variant ``NAME[:key=value,...]`` with keys weight, template_version, label, model), or
``create --from spec.json`` with the fields of ``Experiment.to_dict()``. Agents join with
``run_template(..., experiment=NAME)``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devora_lab.cli.context import console, open_workspace

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["register"]

_VARIANT_KEYS = ("weight", "template_version", "label", "model")


def _variant(text: str) -> dict[str, Any]:
    from devora_lab.errors import ConfigError

    name, _, rest = text.partition(":")
    spec: dict[str, Any] = {"name": name}
    for pair in filter(None, rest.split(",")):
        key, sep, value = pair.partition("=")
        if not sep or key not in _VARIANT_KEYS:
            raise ConfigError(f"variant option {pair!r} is not KEY=VALUE with KEY in "
                              f"{', '.join(_VARIANT_KEYS)}",
                              fix="write e.g. --variant terse:template_version=2,weight=1")
        spec[key] = float(value) if key == "weight" else value
    return spec


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("experiments", parents=[common], help="A/B experiments",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="experiments_command", required=True, metavar="ACTION")

    create = sub.add_parser("create", parents=[common], help="a new experiment (a draft)")
    create.add_argument("name", nargs="?", help="the experiment's name")
    create.add_argument("--from", dest="spec", type=Path, help="a JSON spec file")
    create.add_argument("--hypothesis", default="", help="what the experiment should show")
    create.add_argument("--variant", dest="variants", action="append", type=_variant,
                        default=[], metavar="NAME[:KEY=VALUE,...]", help="repeat per variant; "
                        "the first is the control")
    create.add_argument("--metric", default="success_rate", help="the primary metric")
    create.add_argument("--guardrail", dest="guardrails", action="append", default=[],
                        help="a metric that must not get significantly worse (repeatable)")
    create.add_argument("--unit", choices=["user", "session", "request"], default="user")
    create.add_argument("--min-samples", type=int, default=100, help="per variant")
    create.add_argument("--alpha", type=float, default=0.05)
    create.add_argument("--template", default=None, help="the template the variants version")
    create.set_defaults(handler=_create)

    for action, helptext in (("start", "start or resume"), ("pause", "serve the control only")):
        command = sub.add_parser(action, parents=[common], help=helptext)
        command.add_argument("name")
        command.add_argument("--reason", default="")
        command.set_defaults(handler=_transition, action=action)

    complete = sub.add_parser("complete", parents=[common], help="end with a decision")
    complete.add_argument("name")
    complete.add_argument("--winner", default=None, help="the winning variant, if any")
    complete.add_argument("--reason", required=True, help="why")
    complete.add_argument("--by", default="cli", help="who decided")
    complete.set_defaults(handler=_complete)

    weights = sub.add_parser("weights", parents=[common], help="change traffic weights")
    weights.add_argument("name")
    weights.add_argument("weights", nargs="+", metavar="VARIANT=WEIGHT")
    weights.set_defaults(handler=_weights)

    sub.add_parser("list", parents=[common], help="the experiments").set_defaults(
        handler=_list)

    analyze = sub.add_parser("analyze", parents=[common],
                             help="metrics, tests, sequential p-values, SRM, guardrails")
    analyze.add_argument("name")
    analyze.add_argument("--decide", action="store_true",
                         help="complete the experiment if, and only if, it validly can")
    analyze.set_defaults(handler=_analyze)


def _create(args: argparse.Namespace) -> int:
    from devora_lab.errors import ConfigError
    from devora_lab.experiments.model import Experiment, Variant
    from devora_lab.experiments.registry import ExperimentRegistry

    workspace = open_workspace(args)
    if args.spec is not None:
        experiment = Experiment.from_dict(json.loads(args.spec.read_text(encoding="utf-8")))
    else:
        if not args.name:
            raise ConfigError("no experiment name", fix="pass NAME, or --from spec.json")
        experiment = Experiment(
            name=args.name, hypothesis=args.hypothesis,
            variants=tuple(Variant.from_dict(v) for v in args.variants),
            primary_metric=args.metric, guardrails=tuple(args.guardrails), unit=args.unit,
            min_samples=args.min_samples, alpha=args.alpha, template=args.template)
    created = ExperimentRegistry(workspace.experiments_dir).create(experiment)
    console().print(f"experiment {created.name} created as a draft with variants "
                    f"{', '.join(v.name for v in created.variants)}; start it with "
                    f"`devora-lab experiments start {created.name}`", markup=False)
    return 0


def _transition(args: argparse.Namespace) -> int:
    from devora_lab.experiments.registry import ExperimentRegistry

    registry = ExperimentRegistry(open_workspace(args).experiments_dir)
    changed = getattr(registry, args.action)(args.name, reason=args.reason)
    console().print(f"experiment {changed.name} is {changed.state}", markup=False)
    return 0


def _complete(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from devora_lab.experiments.model import Decision
    from devora_lab.experiments.registry import ExperimentRegistry

    registry = ExperimentRegistry(open_workspace(args).experiments_dir)
    decision = Decision(winner=args.winner, reason=args.reason, decided_by=args.by,
                        at=datetime.now(timezone.utc))
    done = registry.complete(args.name, decision)
    console().print(f"experiment {done.name} completed: winner {decision.winner or 'none'}",
                    markup=False)
    return 0


def _weights(args: argparse.Namespace) -> int:
    from devora_lab.errors import ConfigError
    from devora_lab.experiments.registry import ExperimentRegistry

    pairs: dict[str, float] = {}
    for item in args.weights:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"{item!r} is not VARIANT=WEIGHT", fix="write e.g. control=1")
        pairs[name] = float(value)
    registry = ExperimentRegistry(open_workspace(args).experiments_dir)
    changed = registry.set_weights(args.name, pairs)
    console().print(", ".join(f"{v.name}={v.weight:g}" for v in changed.variants), markup=False)
    return 0


def _list(args: argparse.Namespace) -> int:
    from devora_lab.experiments.registry import ExperimentRegistry

    out = console()
    found = ExperimentRegistry(open_workspace(args).experiments_dir).list()
    if not found:
        out.print("no experiments: create one with `devora-lab experiments create`")
    for item in found:
        arms = ", ".join(f"{v.name} ({v.weight:g})" for v in item.variants)
        out.print(f"{item.name} [{item.state}] {item.primary_metric} by {item.unit}: {arms}",
                  markup=False)
    return 0


def _analyze(args: argparse.Namespace) -> int:
    from devora_lab.experiments.analysis import analyze, decide
    from devora_lab.experiments.registry import ExperimentRegistry

    workspace = open_workspace(args)
    registry = ExperimentRegistry(workspace.experiments_dir)
    with workspace.event_log().store() as store:
        result = (decide(registry, store, args.name) if args.decide
                  else analyze(store, registry.get(args.name)))
    out = console()
    number = "{:,.4g}".format

    def show(frame: pd.DataFrame) -> None:
        out.print(frame.to_string(index=False, float_format=number),
                  markup=False, soft_wrap=True)

    experiment = result.experiment
    out.print(f"{experiment.name} [{registry.get(args.name).state}]: "
              f"{experiment.hypothesis}", markup=False)
    show(result.variants)
    show(result.comparisons)
    if not result.sequential.empty:
        out.print(f"sequential (mSPRT) on {experiment.primary_metric}, by day:", markup=False)
        show(result.sequential)
    if result.srm is not None:
        out.print(f"sample ratio: p = {result.srm.p_value:.3g} "
                  f"({'MISMATCH' if result.srm.srm_failed else 'as planned'})", markup=False)
    if result.bayes is not None:
        chances = ", ".join(f"{name} {p:.1%}" for name, p in zip(
            experiment.variant_names, result.bayes.chance_to_be_best, strict=True))
        out.print(f"chance to be best: {chances}", markup=False)
    if result.days_to_sample:
        out.print(f"~{result.days_to_sample:.1f} more days to the minimum sample", markup=False)
    if result.can_complete:
        out.print(f"decision: {result.winner} wins"
                  + (" (completed)" if args.decide else " (run with --decide)"), markup=False)
    else:
        out.print("no decision yet:", markup=False)
        for reason in result.missing:
            out.print(f"  - {reason}", markup=False)
    return 0
