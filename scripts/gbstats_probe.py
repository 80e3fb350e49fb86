"""Run by .venv-gbstats's interpreter: GrowthBook's gbstats on summary statistics, as JSON.

Usage: ``.venv-gbstats/bin/python scripts/gbstats_probe.py < cases.json``; prints one JSON
document to stdout. Kept free of devora_lab imports: gbstats 0.8 pins numpy<2 and pandas<2,
so it lives in its own environment (``make .venv-gbstats/.installed-stamp``).

Input: a list of cases (or ``{"cases": [...]}``), each::

    {"id": "any label", "kind": "proportion" | "mean", "alpha": 0.05,   # alpha optional
     "control": {"n": 10000, "sum": 1000, "sum_squares": 1000},
     "treatment": {"n": 10000, "sum": 1100, "sum_squares": 1100}}

``sum`` is the total of the metric over the arm's units (successes for a proportion) and
``sum_squares`` the total of its squares (ignored for a proportion: 0/1 values square to
themselves). Output: ``{"gbstats": version, "cases": [...]}`` with, per case and per
``difference_type`` (``"absolute"``: treatment - control; ``"relative"``: treatment /
control - 1), the results of gbstats' frequentist ``TwoSidedTTest`` (point estimate, CI,
p-value, standard error, Welch-Satterthwaite df) and of its ``EffectBayesianABTest`` with
the default improper (flat) Gaussian prior on the effect (chance to win, credible
interval, risk = [expected loss of keeping control, of shipping treatment], posterior sd).
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import sys
from typing import Any

from gbstats.bayesian.tests import (  # type: ignore[import-not-found]  # .venv-gbstats only
    EffectBayesianABTest,
    EffectBayesianConfig,
)
from gbstats.frequentist.tests import (  # type: ignore[import-not-found]
    FrequentistConfig,
    TwoSidedTTest,
)
from gbstats.models.statistics import (  # type: ignore[import-not-found]
    ProportionStatistic,
    SampleMeanStatistic,
)

DIFFERENCE_TYPES = ("absolute", "relative")


def _number(value: Any) -> float | None:
    """A JSON-safe float: NaN and infinities (gbstats' edge outputs) become null."""
    number = float(value)
    return number if math.isfinite(number) else None


def _statistic(kind: str, arm: dict[str, Any]) -> Any:
    if kind == "proportion":
        return ProportionStatistic(n=int(arm["n"]), sum=float(arm["sum"]))
    if kind == "mean":
        return SampleMeanStatistic(n=int(arm["n"]), sum=float(arm["sum"]),
                                   sum_squares=float(arm["sum_squares"]))
    raise ValueError(f"unknown kind {kind!r}: use 'proportion' or 'mean'")


def _frequentist(case: dict[str, Any], difference_type: str) -> dict[str, Any]:
    kind, alpha = case["kind"], float(case.get("alpha", 0.05))
    test = TwoSidedTTest(_statistic(kind, case["control"]), _statistic(kind, case["treatment"]),
                         FrequentistConfig(alpha=alpha, difference_type=difference_type))
    result = test.compute_result()
    return {
        "expected": _number(result.expected),
        "ci": [_number(v) for v in result.ci],
        "p_value": _number(result.p_value),
        "stddev": _number(result.uplift.stddev),
        "dof": _number(test.dof),
        "error_message": result.error_message,
    }


def _bayesian(case: dict[str, Any], difference_type: str) -> dict[str, Any]:
    kind, alpha = case["kind"], float(case.get("alpha", 0.05))
    config = EffectBayesianConfig(alpha=alpha, difference_type=difference_type)
    test = EffectBayesianABTest(_statistic(kind, case["control"]),
                                _statistic(kind, case["treatment"]), config)
    result = test.compute_result()
    prior = config.prior_effect
    return {
        "chance_to_win": _number(result.chance_to_win),
        "expected": _number(result.expected),
        "ci": [_number(v) for v in result.ci],
        "risk": [_number(v) for v in result.risk],
        "risk_type": result.risk_type,
        "stddev": _number(result.uplift.stddev),
        "prior": {"mean": prior.mean, "variance": prior.variance, "proper": prior.proper},
        "error_message": result.error_message,
    }


def run(cases: list[dict[str, Any]]) -> dict[str, Any]:
    out = []
    for case in cases:
        out.append({
            "id": case.get("id"),
            "kind": case["kind"],
            "frequentist": {d: _frequentist(case, d) for d in DIFFERENCE_TYPES},
            "bayesian": {d: _bayesian(case, d) for d in DIFFERENCE_TYPES},
        })
    return {"gbstats": importlib.metadata.version("gbstats"), "cases": out}


def main() -> None:
    document = json.load(sys.stdin)
    cases = document["cases"] if isinstance(document, dict) else document
    json.dump(run(cases), sys.stdout, allow_nan=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
