"""What an experiment is: its variants, what it measures, and where it is in its lifecycle.

Everything here is a validated, frozen value: a bad field raises ``ConfigError`` naming the
field the moment the value is built, from code or from a JSON file, so that a typo in a
metric or a weight never reaches the assignment or the analysis. Changes (starting,
pausing, re-weighting) make new values, which ``ExperimentRegistry`` stores.

Metrics are names from a fixed set (``METRICS``), each computed from ``llm.call`` events
that carry the experiment and variant:

==================  ===========================================================
``success_rate``    share of calls with ``status = 'ok'``
``latency_ms``      mean ``latency_ms``
``cost_usd``        mean ``cost_usd`` (unpriced calls are left out, never read as $0)
``output_tokens``   mean ``output_tokens``
``judge_score``     mean ``attributes.judge_score`` (a grader's score of the answer)
``p95_latency_ms``  95th percentile of ``latency_ms``
==================  ===========================================================
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, get_args

from devora_lab.errors import ConfigError
from devora_lab.events.schema import utc_now

__all__ = [
    "METRICS",
    "TRANSITIONS",
    "Decision",
    "Experiment",
    "Metric",
    "State",
    "StateChange",
    "Unit",
    "Variant",
]

Unit = Literal["user", "session", "request"]
State = Literal["draft", "running", "paused", "completed"]
Metric = Literal["success_rate", "latency_ms", "cost_usd", "output_tokens", "judge_score",
                 "p95_latency_ms"]

METRICS: Final[Mapping[str, str]] = {
    "success_rate": "share of calls with status 'ok' (higher is better)",
    "latency_ms": "mean latency_ms of a call (lower is better)",
    "cost_usd": "mean cost_usd of a priced call (lower is better)",
    "output_tokens": "mean output_tokens of a call",
    "judge_score": "mean attributes.judge_score of a call (higher is better)",
    "p95_latency_ms": "95th percentile of latency_ms (lower is better)",
}
"""The metrics an experiment may name, with how each is computed from ``llm.call`` events."""

TRANSITIONS: Final[Mapping[str, tuple[str, ...]]] = {
    "draft": ("running",),
    "running": ("paused", "completed"),
    "paused": ("running", "completed"),
    "completed": (),
}
"""The states each state may move to; anything else is refused."""

_UNITS: Final = get_args(Unit)
_STATES: Final = get_args(State)
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")  # experiment names are file names
_LIFECYCLE: Final = "draft -> running, running <-> paused, running/paused -> completed"


def _bad(owner: str, name: str, value: object, fix: str) -> ConfigError:
    return ConfigError(f"{owner} field {name} cannot be {value!r}", fix=fix)


def _name(owner: str, field_name: str, value: object) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise _bad(owner, field_name, value, "use 1-64 letters, digits, '_', '.' or '-'")
    return value


def _text(owner: str, field_name: str, value: object, *, optional: bool = False) -> str | None:
    """A non-empty string (or None when ``optional``): an empty label or template name
    would be indistinguishable from a missing one in the event log."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _bad(owner, field_name, value, "give a non-empty string"
                   + (", or leave it out" if optional else ""))
    return value


def _stamp(owner: str, field_name: str, value: object) -> datetime:
    """An aware datetime, also parsed from ISO text: naive times would compare wrongly with
    the UTC timestamps of the event log."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = datetime.fromisoformat(value)
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise _bad(owner, field_name, value, "give an aware datetime or ISO 8601 text with offset")
    return value


def _json_safe(owner: str, field_name: str, value: object) -> dict[str, Any]:
    """A deep, JSON-safe copy: the registry stores it as JSON, so anything that would not
    survive the round trip (NaN, sets, objects) is refused now rather than on save."""
    if not isinstance(value, Mapping):
        raise _bad(owner, field_name, value, "give a mapping of JSON values")
    try:
        copied: dict[str, Any] = json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise _bad(owner, field_name, value, f"use only JSON values ({exc})") from exc
    return copied


def _fields_of(cls: type[Any], data: Mapping[str, Any], required: Sequence[str]) -> None:
    """Refuse unknown and missing fields by name, before the constructor's TypeError could."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"a {cls.__name__} must be a JSON object, not {data!r}",
                          fix="write it as an object of fields")
    known = {f.name for f in dataclasses.fields(cls)}
    if unknown := sorted(set(data) - known):
        raise ConfigError(f"unknown {cls.__name__} field(s) {', '.join(unknown)}",
                          fix=f"use only {', '.join(sorted(known))}")
    if missing := [name for name in required if name not in data]:
        raise ConfigError(f"a {cls.__name__} needs {', '.join(missing)}", fix="add them")


def _weight(value: object, field_name: str = "weight") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise _bad("variant", field_name, value, "give a finite number above 0")
    return float(value)


@dataclass(frozen=True, slots=True)
class Variant:
    """One arm of an experiment: what it changes (template version, model, parameters)
    and its share of new units (``weight``, relative to the other variants' weights)."""

    name: str
    weight: float = 1.0
    template_version: str | None = None
    label: str | None = None
    model: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _name("variant", "name", self.name)
        object.__setattr__(self, "weight", _weight(self.weight))
        for optional in ("template_version", "label", "model"):
            _text("variant", optional, getattr(self, optional), optional=True)
        object.__setattr__(self, "params", _json_safe("variant", "params", self.params))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "weight": self.weight,
                "template_version": self.template_version, "label": self.label,
                "model": self.model, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Variant:
        _fields_of(cls, data, ("name",))
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Decision:
    """How an experiment ended: the ``winner`` (None: keep the control, or no clear
    winner), why, and who decided (``"auto"`` for a stopping rule, else a person)."""

    winner: str | None
    reason: str
    decided_by: str = "auto"
    at: datetime = field(default_factory=utc_now)

    def __post_init__(self) -> None:
        if self.winner is not None:
            _name("decision", "winner", self.winner)
        _text("decision", "reason", self.reason)
        _text("decision", "decided_by", self.decided_by)
        object.__setattr__(self, "at", _stamp("decision", "at", self.at))

    def to_dict(self) -> dict[str, Any]:
        return {"winner": self.winner, "reason": self.reason, "decided_by": self.decided_by,
                "at": self.at.isoformat()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        _fields_of(cls, data, ("winner", "reason"))
        return cls(**data)


@dataclass(frozen=True, slots=True)
class StateChange:
    """One entry of an experiment's history: the state after the change, when, who or what
    made it (``by``), and why. A re-weighting keeps the state and records the new
    ``weights``, so that an analysis can tell which units arrived under which split."""

    state: State
    at: datetime
    by: str
    reason: str = ""
    weights: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        if self.state not in _STATES:
            raise _bad("history", "state", self.state, f"use one of {', '.join(_STATES)}")
        object.__setattr__(self, "at", _stamp("history", "at", self.at))
        _text("history", "by", self.by)
        if not isinstance(self.reason, str):
            raise _bad("history", "reason", self.reason, "give a string")
        if self.weights is not None:
            if not isinstance(self.weights, Mapping):
                raise _bad("history", "weights", self.weights, "give variant: weight pairs")
            object.__setattr__(self, "weights", {_name("history", "weights", k): _weight(v)
                                                 for k, v in self.weights.items()})

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"state": self.state, "at": self.at.isoformat(), "by": self.by,
                                "reason": self.reason}
        if self.weights is not None:
            data["weights"] = dict(self.weights)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StateChange:
        _fields_of(cls, data, ("state", "at", "by"))
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Experiment:
    """An A/B(/n) test of prompt templates or models, compared on ``primary_metric``.

    ``unit`` is what is randomised: every call of one user (or session, or request) sees
    the same variant. ``guardrails`` are metrics that must not get worse; ``min_samples``
    is the number of units each variant needs before any decision; ``alpha`` the
    significance level. ``salt`` makes this experiment's split independent of every other
    experiment's; left empty it becomes the experiment's name. ``template`` names the
    prompt template whose versions the variants pick. The first variant is the control.
    """

    name: str
    hypothesis: str
    variants: tuple[Variant, ...]
    primary_metric: Metric
    unit: Unit = "user"
    guardrails: tuple[str, ...] = ()
    min_samples: int = 100
    alpha: float = 0.05
    salt: str = ""
    state: State = "draft"
    template: str | None = None
    decision: Decision | None = None
    created_at: datetime = field(default_factory=utc_now)
    history: tuple[StateChange, ...] = ()

    def __post_init__(self) -> None:
        _name("experiment", "name", self.name)
        _text("experiment", "hypothesis", self.hypothesis)
        self._check_variants()
        self._check_metrics()
        if self.unit not in _UNITS:
            raise _bad("experiment", "unit", self.unit, f"use one of {', '.join(_UNITS)}")
        if isinstance(self.min_samples, bool) or not isinstance(self.min_samples, int) \
                or self.min_samples < 1:
            raise _bad("experiment", "min_samples", self.min_samples,
                       "give a whole number of units per variant, at least 1")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) \
                or not 0 < self.alpha < 0.5:
            raise _bad("experiment", "alpha", self.alpha, "give a level in (0, 0.5), e.g. 0.05")
        object.__setattr__(self, "alpha", float(self.alpha))
        if not isinstance(self.salt, str):
            raise _bad("experiment", "salt", self.salt, "give a string, or leave it out")
        object.__setattr__(self, "salt", self.salt or self.name)
        if self.state not in _STATES:
            raise _bad("experiment", "state", self.state, f"use one of {', '.join(_STATES)}")
        _text("experiment", "template", self.template, optional=True)
        self._check_decision()
        object.__setattr__(self, "created_at", _stamp("experiment", "created_at", self.created_at))
        if not isinstance(self.history, (tuple, list)) \
                or not all(isinstance(change, StateChange) for change in self.history):
            raise _bad("experiment", "history", self.history, "give a list of StateChange")
        object.__setattr__(self, "history", tuple(self.history))

    def _check_variants(self) -> None:
        variants = self.variants
        if not isinstance(variants, (tuple, list)) \
                or not all(isinstance(variant, Variant) for variant in variants):
            raise _bad("experiment", "variants", variants, "give a list of Variant")
        if len(variants) < 2:
            raise _bad("experiment", "variants", [v.name for v in variants],
                       "give at least two variants: a control and a treatment")
        names = [variant.name for variant in variants]
        if len(set(names)) != len(names):
            raise _bad("experiment", "variants", names, "give each variant its own name")
        object.__setattr__(self, "variants", tuple(variants))

    def _check_metrics(self) -> None:
        known = ", ".join(METRICS)
        if self.primary_metric not in METRICS:
            raise _bad("experiment", "primary_metric", self.primary_metric, f"use one of {known}")
        guardrails = self.guardrails
        if not isinstance(guardrails, (tuple, list)):
            raise _bad("experiment", "guardrails", guardrails, f"give a list of: {known}")
        for metric in guardrails:
            if metric not in METRICS:
                raise _bad("experiment", "guardrails", metric, f"use one of {known}")
        if len(set(guardrails)) != len(guardrails) or self.primary_metric in guardrails:
            raise _bad("experiment", "guardrails", guardrails,
                       "name each metric once, and not the primary metric")
        object.__setattr__(self, "guardrails", tuple(guardrails))

    def _check_decision(self) -> None:
        decision = self.decision
        if decision is None:
            return
        if not isinstance(decision, Decision):
            raise _bad("experiment", "decision", decision, "give a Decision, or leave it out")
        if self.state != "completed":
            raise _bad("experiment", "decision", decision.winner,
                       "only a completed experiment has a decision")
        if decision.winner is not None and decision.winner not in self.variant_names:
            raise _bad("experiment", "decision", decision.winner,
                       f"name one of the variants: {', '.join(self.variant_names)}")

    # -- views ------------------------------------------------------------------------------

    @property
    def control(self) -> Variant:
        """The first variant: the baseline, and what a paused experiment serves."""
        return self.variants[0]

    @property
    def variant_names(self) -> tuple[str, ...]:
        return tuple(variant.name for variant in self.variants)

    @property
    def weights(self) -> dict[str, float]:
        return {variant.name: variant.weight for variant in self.variants}

    def variant(self, name: str) -> Variant:
        """The variant called ``name``; ConfigError naming the others if there is none."""
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise ConfigError(f"experiment {self.name!r} has no variant {name!r}",
                          fix=f"use one of: {', '.join(self.variant_names)}")

    # -- changes ----------------------------------------------------------------------------

    def moved_to(self, state: State, *, by: str, reason: str = "",
                 decision: Decision | None = None, at: datetime | None = None) -> Experiment:
        """This experiment in ``state``, the change added to its history; ConfigError if
        the lifecycle does not allow it (a completed experiment never runs again, so its
        data stays the data its decision was made on)."""
        if state not in TRANSITIONS.get(self.state, ()):
            allowed = ", ".join(TRANSITIONS.get(self.state, ())) or "nothing"
            raise ConfigError(
                f"experiment {self.name!r} is {self.state} and cannot go to {state}",
                fix=f"from {self.state} it may go to: {allowed} (lifecycle: {_LIFECYCLE})")
        change = StateChange(state, at or utc_now(), by, reason)
        return dataclasses.replace(self, state=state, decision=decision,
                                   history=(*self.history, change))

    def with_weights(self, weights: Mapping[str, float], *, by: str, reason: str = "",
                     at: datetime | None = None) -> Experiment:
        """This experiment with new weights for the variants named (the others keep theirs),
        recorded in its history. Units already assigned keep their variant when an
        assignment store is used; see ``devora_lab.experiments.assignment``."""
        if self.state == "completed":
            raise ConfigError(f"experiment {self.name!r} is completed; its weights are final",
                              fix="create a new experiment to try another split")
        if not isinstance(weights, Mapping) or not weights:
            raise _bad("experiment", "weights", weights, "give variant: weight pairs")
        for name in weights:
            self.variant(name)
        variants = tuple(dataclasses.replace(v, weight=_weight(weights[v.name], "weights"))
                         if v.name in weights else v for v in self.variants)
        updated = dataclasses.replace(self, variants=variants)
        change = StateChange(self.state, at or utc_now(), by, reason or "weights changed",
                             weights=updated.weights)
        return dataclasses.replace(updated, history=(*self.history, change))

    # -- JSON -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data (datetimes as ISO 8601 text); ``from_dict`` reads it back."""
        return {
            "name": self.name, "hypothesis": self.hypothesis,
            "variants": [variant.to_dict() for variant in self.variants],
            "primary_metric": self.primary_metric, "unit": self.unit,
            "guardrails": list(self.guardrails), "min_samples": self.min_samples,
            "alpha": self.alpha, "salt": self.salt, "state": self.state,
            "template": self.template,
            "decision": None if self.decision is None else self.decision.to_dict(),
            "created_at": self.created_at.isoformat(),
            "history": [change.to_dict() for change in self.history],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Experiment:
        """An experiment from JSON-like data; unknown, missing or bad fields: ConfigError."""
        _fields_of(cls, data, ("name", "hypothesis", "variants", "primary_metric"))
        fields = dict(data)
        for key, kind in (("variants", "variant"), ("history", "history")):
            items = fields.get(key, ())
            if not isinstance(items, (list, tuple)):
                raise _bad("experiment", key, items, f"give a list of {kind} objects")
        fields["variants"] = tuple(v if isinstance(v, Variant) else Variant.from_dict(v)
                                   for v in fields["variants"])
        fields["history"] = tuple(c if isinstance(c, StateChange) else StateChange.from_dict(c)
                                  for c in fields.get("history", ()))
        if isinstance(fields.get("decision"), Mapping):
            fields["decision"] = Decision.from_dict(fields["decision"])
        return cls(**fields)

