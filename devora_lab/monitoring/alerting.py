"""Evaluating alert rules against the log, remembering what fires, and notifying once.

``AlertManager.check()`` evaluates every rule (one ``metrics`` query per rule; a forecast
rule also one per comparable past window), compares with the state it left last time
(``<workspace>/alerts/state.json``, shared by processes under a file lock) and acts on
changes only:

- a rule (or one group of a ``by`` rule) that starts firing writes an ``alert`` event
  (``status = "firing"``) and notifies every sink, unless the same rule and group notified
  less than ``cooldown`` ago (a flapping alert is written, not re-sent);
- while it keeps firing, it is re-sent once per ``cooldown`` (``attributes.repeat``);
- when it stops, an ``alert`` event with ``status = "resolved"`` is written and sent;
- a window with fewer than ``min_requests`` calls gives no verdict and changes nothing.

Forecast rules compare the window ending now with the same clock window on each of the
``history`` days before (only days of the same kind, weekday or weekend, once there are two
weeks): the interval is median +/- z * s * sqrt(1 + 1/n), s the median absolute deviation
scaled to a normal's sd, and for count metrics at least Poisson noise sqrt(median); a past
window without calls does not count, and fewer than 5 comparable windows give no verdict.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from devora_lab.events import Event, EventKind
from devora_lab.monitoring.metrics import METRICS, metrics
from devora_lab.monitoring.rules import AlertConfig, ForecastRule, ThresholdRule
from devora_lab.monitoring.sinks import Dispatcher, Notification
from devora_lab.monitoring.windows import Window, parse_duration

if TYPE_CHECKING:
    from devora_lab.events import EventLog

__all__ = ["AlertManager", "CheckResult", "Evaluation", "evaluate_rule"]

_MIN_COMPARABLE: Final = 5
_OPS: Final = {">": float.__gt__, ">=": float.__ge__, "<": float.__lt__, "<=": float.__le__}

AnyRule = ThresholdRule | ForecastRule


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One rule (and group) at one check: the measured value and the verdict.

    ``firing`` is None when there was no verdict (too few calls or comparable windows)."""

    rule: AnyRule
    group: str | None
    value: float | None
    requests: int
    firing: bool | None
    threshold: float | None = None
    lower: float | None = None
    upper: float | None = None

    @property
    def key(self) -> str:
        return f"{self.rule.name}|{self.group or ''}"

    def summary(self) -> str:
        value = "no data" if self.value is None else f"{self.value:,.6g}"
        metric = f"{self.rule.metric} over {self.rule.window}"
        if isinstance(self.rule, ThresholdRule):
            return f"{metric} = {value} ({self.rule.op} {self.rule.threshold:,.6g})"
        band = ("?" if self.lower is None or self.upper is None
                else f"{self.lower:,.6g} to {self.upper:,.6g}")
        return f"{metric} = {value}, expected {band} ({self.rule.interval:.0%} interval)"


def evaluate_rule(store: Any, rule: AnyRule, now: datetime) -> list[Evaluation]:
    """The verdicts of ``rule`` at ``now``: one per group (one in all without ``by``)."""
    window = Window(now - parse_duration(rule.window), now, rule.window)
    current = _values(store, rule, window)
    if isinstance(rule, ThresholdRule):
        return [_threshold_verdict(rule, group, value, n) for group, (value, n) in
                current.items()]
    past = _comparable(store, rule, window)
    return [_forecast_verdict(rule, group, value, n, [p[group] for p in past if group in p])
            for group, (value, n) in current.items()]


def _values(store: Any, rule: AnyRule, window: Window) -> dict[str | None, tuple[float | None,
                                                                                  int]]:
    by = [rule.by] if rule.by else []
    frame = metrics(store, list(dict.fromkeys([rule.metric, "requests"])), by=by,
                    window=window, filters=rule.filters or None)
    if not by and frame.empty:
        return {None: (None, 0)}
    out: dict[str | None, tuple[float | None, int]] = {}
    for row in frame.to_dict("records"):
        group = None if not by else _group_label(row[rule.by])
        value = row[rule.metric]
        number = None if value is None or (isinstance(value, float) and math.isnan(value)) \
            else float(value)
        out[group] = (number, int(row["requests"]))
    return out


def _group_label(value: object) -> str:
    """A group's name; calls without a value (no agent, say) are the group ``(none)``."""
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    return "(none)" if missing else str(value)


def _threshold_verdict(rule: ThresholdRule, group: str | None, value: float | None,
                       requests: int) -> Evaluation:
    if value is None or requests < rule.min_requests:
        return Evaluation(rule, group, value, requests, None, rule.threshold)
    return Evaluation(rule, group, value, requests, _OPS[rule.op](value, rule.threshold),
                      rule.threshold)


def _comparable(store: Any, rule: ForecastRule, window: Window) -> list[dict[str | None, float]]:
    days = max(1, int(parse_duration(rule.history).total_seconds() // 86_400))
    weekend = window.since is not None and window.since.weekday() >= 5
    values: list[dict[str | None, float]] = []
    for back in range(1, days + 1):
        past = window.shifted(-timedelta(days=back))
        if days >= 14 and past.since is not None and (past.since.weekday() >= 5) != weekend:
            continue
        # a window without calls (before the log began, or a group absent) is no evidence:
        # counted as 0, a new workspace's empty history would make every hour look unusual
        values.append({group: value for group, (value, n) in _values(store, rule, past).items()
                       if value is not None and n > 0})
    return values


def _forecast_verdict(rule: ForecastRule, group: str | None, value: float | None,
                      requests: int, past: list[float]) -> Evaluation:
    if value is None or requests < rule.min_requests or len(past) < _MIN_COMPARABLE:
        return Evaluation(rule, group, value, requests, None)
    center = statistics.median(past)
    spread = 1.4826 * statistics.median(abs(v - center) for v in past)
    if METRICS[rule.metric].unit == "calls":
        spread = max(spread, math.sqrt(max(center, 1.0)))
    z = statistics.NormalDist().inv_cdf(0.5 + rule.interval / 2)
    half = z * spread * math.sqrt(1 + 1 / len(past))
    lower, upper = max(center - half, 0.0), center + half  # every metric is non-negative
    above, below = value > upper, value < lower
    firing = {"above": above, "below": below, "both": above or below}[rule.direction]
    return Evaluation(rule, group, value, requests, firing, None, lower, upper)


@dataclass(slots=True)
class CheckResult:
    """What one check did: every evaluation, and the notifications it sent."""

    evaluations: list[Evaluation] = field(default_factory=list)
    fired: list[Notification] = field(default_factory=list)
    resolved: list[Notification] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)

    @property
    def firing(self) -> list[Evaluation]:
        return [e for e in self.evaluations if e.firing]


class AlertManager:
    """Checks a workspace's rules and notifies its sinks on changes (see the module doc)."""

    def __init__(self, config: AlertConfig, event_log: EventLog, dispatcher: Dispatcher,
                 state_dir: str | os.PathLike[str]) -> None:
        self.config = config
        self.event_log = event_log
        self.dispatcher = dispatcher
        self.state_dir = Path(state_dir)

    def check(self, now: datetime | None = None) -> CheckResult:
        """Evaluate every rule at ``now`` and act on what changed since the last check."""
        moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
        result = CheckResult()
        with self.event_log.store() as store:
            for rule in self.config.rules:
                result.evaluations.extend(evaluate_rule(store, rule, moment))
        with self._state() as state:
            for evaluation in result.evaluations:
                self._act(evaluation, state, moment, result)
            self._resolve_vanished(result, state, moment)
        return result

    def _act(self, ev: Evaluation, state: dict[str, Any], now: datetime,
             result: CheckResult) -> None:
        if ev.firing is None:
            return
        entry = state.get(ev.key, {})
        was_firing = entry.get("status") == "firing"
        if ev.firing:
            last = entry.get("notified")
            cooled = last is None or now - datetime.fromisoformat(last) >= parse_duration(
                ev.rule.cooldown)
            if was_firing and not cooled:
                return
            note = self._record(ev, "firing", now, repeat=was_firing)
            if cooled:
                self.dispatcher.send(note)
                result.fired.append(note)
                entry["notified"] = now.isoformat()
            else:
                result.suppressed.append(ev.key)
            entry.update(status="firing", since=entry.get("since") if was_firing
                         else now.isoformat(), rule=ev.rule.name, group=ev.group)
            state[ev.key] = entry
        elif was_firing:
            note = self._record(ev, "resolved", now)
            self.dispatcher.send(note)
            result.resolved.append(note)
            state[ev.key] = {**entry, "status": "ok", "since": now.isoformat()}

    def _resolve_vanished(self, result: CheckResult, state: dict[str, Any],
                          now: datetime) -> None:
        """A firing group of a ``by`` rule with no calls left in its window resolves; the
        state of a rule removed from the file is dropped."""
        seen = {e.key for e in result.evaluations}
        rules = {rule.name: rule for rule in self.config.rules}
        for key, entry in list(state.items()):
            rule = rules.get(entry.get("rule", ""))
            if rule is None:
                del state[key]
                continue
            if key in seen or entry.get("status") != "firing" or rule.by is None:
                continue
            note = self._record(Evaluation(rule, entry.get("group"), None, 0, False),
                                "resolved", now)
            self.dispatcher.send(note)
            result.resolved.append(note)
            state[key] = {**entry, "status": "ok", "since": now.isoformat()}

    def _record(self, ev: Evaluation, status: str, now: datetime, *,
                repeat: bool = False) -> Notification:
        rule = ev.rule
        note = Notification(name=rule.name, state=status, severity=rule.severity,
                            summary=ev.summary() if status == "firing" else
                            f"{rule.metric} back to normal ({ev.summary()})",
                            group=ev.group, metric=rule.metric, value=ev.value,
                            threshold=ev.threshold, ts=now,
                            details={"rule_type": rule.type, "window": rule.window,
                                     "repeat": repeat})
        self.event_log.write(Event(
            kind=EventKind.ALERT, ts=now, name=rule.name, severity=rule.severity, status=status,
            value=ev.value, threshold=ev.threshold if ev.threshold is not None else
            (ev.upper if ev.value is not None and ev.upper is not None and ev.value > ev.upper
             else ev.lower),
            item_count=ev.requests, attributes={
                "group": ev.group, "dimension": rule.by, "metric": rule.metric,
                "window": rule.window, "rule_type": rule.type, "repeat": repeat,
                "op": getattr(rule, "op", None), "lower": ev.lower, "upper": ev.upper,
                "summary": note.summary}))
        return note

    @contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        """The state file, read and written back under an exclusive lock."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / "state.json"
        with open(self.state_dir / ".state.lock", "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                state = json.loads(path.read_text()) if path.exists() else {}
            except (json.JSONDecodeError, UnicodeDecodeError):
                state = {}  # a damaged state only costs one repeated notification
            yield state
            with tempfile.NamedTemporaryFile("w", dir=self.state_dir, delete=False,
                                             suffix=".tmp") as f:
                json.dump(state, f, indent=1, sort_keys=True)
            os.replace(f.name, path)

    def state(self) -> dict[str, Any]:
        """The remembered state per ``rule|group`` (for ``alerts list``)."""
        path = self.state_dir / "state.json"
        return json.loads(path.read_text()) if path.exists() else {}
