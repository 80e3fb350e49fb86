"""Loading an experiment for the notebook: which one, its analysis, and the little the
charts need that ``Analysis`` does not carry (exposed units, per-variant intervals, days
with data). Kept apart from the charts in ``views.experiments``, which re-exports it.

An experiment found in the log but not in the registry (a log imported from elsewhere) is
analysed with stated assumptions (equal weights, success rate primary) rather than not at
all; the notes say so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import pandas as pd
from scipy import stats as scipy_stats

from devora_lab.errors import ConfigError
from devora_lab.experiments import data
from devora_lab.experiments.analysis import Analysis, analyze
from devora_lab.experiments.model import Experiment, Variant
from devora_lab.experiments.registry import ExperimentRegistry
from devora_lab.notebook.views._common import Note

if TYPE_CHECKING:
    from devora_lab.events.store import EventStore
    from devora_lab.workspace import Workspace

__all__ = ["Z95", "ExperimentView", "choose_experiment", "load_experiment", "variant_intervals"]

Z95: Final = float(scipy_stats.norm.ppf(0.975))


@dataclass(frozen=True)
class ExperimentView:
    """An analysis plus what its charts need besides: ``exposures`` (units first exposed
    per variant), ``intervals`` (per variant and metric, value with a 95 % interval),
    ``days`` with data, and whether the experiment is in the registry."""

    analysis: Analysis
    exposures: pd.Series
    intervals: pd.DataFrame
    days: int
    registered: bool = True

    @property
    def experiment(self) -> Experiment:
        return self.analysis.experiment


# ---------------------------------------------------------------------------- loading


def _from_log(store: EventStore, name: str | None) -> Experiment | None:
    """An unregistered experiment seen in the log: its variants in name order (``control``
    first if there is one), equal weights, success rate primary, latency and cost guarding."""
    where = "AND experiment = ?" if name else ""
    frame = store.df(f"""SELECT experiment, variant, max(ts) AS last FROM events
                         WHERE kind = 'llm.call' AND experiment IS NOT NULL
                           AND variant IS NOT NULL {where}
                         GROUP BY 1, 2 ORDER BY 1, 2""", [name] if name else [])
    if frame.empty:
        return None
    latest = str(frame.sort_values("last").iloc[-1]["experiment"])
    names = sorted(frame.loc[frame["experiment"] == latest, "variant"].astype(str),
                   key=lambda v: (v != "control", v))
    if len(names) < 2:
        return None
    return Experiment(name=latest, hypothesis="(not in the registry: settings assumed)",
                      variants=tuple(Variant(v) for v in names), primary_metric="success_rate",
                      guardrails=("p95_latency_ms", "cost_usd"), state="running")


def choose_experiment(registered: Sequence[Experiment], name: str | None = None
                      ) -> Experiment | None:
    """``name`` if given, else the first running experiment, else the most recent one."""
    if name is not None:
        return next((e for e in registered if e.name == name), None)
    running = [e for e in registered if e.state == "running"]
    if running:
        return running[0]
    return max(registered, key=lambda e: e.created_at) if registered else None


def _wilson(successes: float, n: float) -> tuple[float, float]:
    """The Wilson score interval: honest near 0 and 1, where success rates live."""
    if n <= 0:
        return math.nan, math.nan
    p, z2 = successes / n, Z95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # at p = 0 or 1 a bound equals p; rounding must not leave p outside its interval
    return max(0.0, min(centre - half, p)), min(1.0, max(centre + half, p))


def variant_intervals(store: EventStore, experiment: Experiment) -> pd.DataFrame:
    """Per variant and metric: n, value and a 95 % interval (Wilson for success rate,
    normal for means, none for the p95, which the comparisons bootstrap instead)."""
    rows = []
    for metric in (experiment.primary_metric, *experiment.guardrails):
        summary = data.variant_summary(store, experiment.name, metric)
        for variant in experiment.variant_names:
            if variant not in summary.index:
                continue
            values = summary.loc[variant].to_dict()
            row = {str(k): float(values[k]) for k in ("n", "mean", "total", "p95", "variance")
                   if k in values}
            n = row["n"]
            if metric == "success_rate":
                value = row["mean"]
                low, high = _wilson(row["total"], n)
            elif metric == "p95_latency_ms":
                value, low, high = row["p95"], math.nan, math.nan
            else:
                value = row["mean"]
                half = Z95 * math.sqrt(row["variance"] / n) if n > 1 else math.nan
                low, high = value - half, value + half
            rows.append({"variant": variant, "metric": metric, "n": int(n), "value": value,
                         "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=["variant", "metric", "n", "value", "ci_low", "ci_high"])


def load_experiment(workspace: Workspace, name: str | None = None) -> ExperimentView | Note:
    """Analyse the chosen experiment (see ``choose_experiment``), or say why there is none."""
    registry = ExperimentRegistry(workspace.experiments_dir)
    with workspace.event_log().store() as store:
        chosen = choose_experiment(registry.list(), name)
        registered = chosen is not None
        chosen = chosen or _from_log(store, name)
        if chosen is None:
            wanted = f"named {name!r} " if name else ""
            return Note(f"No experiment {wanted}in this workspace (registry "
                        f"{workspace.experiments_dir} and event log): create one with "
                        "`devora-lab experiments create`, or run `devora-lab demo`.")
        try:
            analysis = analyze(store, chosen)
        except ConfigError as error:
            return Note(f"Experiment {chosen.name} cannot be analysed: {error.message}")
        looks = data.daily_cumulative(store, chosen.name, chosen.primary_metric)
        return ExperimentView(analysis, data.exposures(store, chosen.name),
                              variant_intervals(store, chosen), len(looks.index),
                              registered)
