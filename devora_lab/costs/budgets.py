"""Budgets that hold under concurrency: reserve a call's worst case first, settle its real cost.

Checking "spent < limit" before a call and adding the cost afterwards lets N concurrent calls
all pass the check and overspend by N calls. ``BudgetGuard.reserve`` instead adds the call's
worst-case cost to the budget's *reserved* total, atomically, and a hard budget refuses when
spent + reserved + worst case would pass the limit; ``settle`` swaps the reservation for the
real cost. While real costs stay within their reservations, spend never passes a hard limit,
however many threads or processes share the ledger.

>>> guard = BudgetGuard([Budget(name="day", limit_usd=5, period="daily")], LocalLedger())
>>> hold = guard.reserve(CallScope(user_id="alice"), max_cost_usd=0.02)
>>> alerts = guard.settle(hold, actual_cost_usd=0.004)
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Final, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from devora_lab.costs.ledger import Account, Ledger, LocalLedger, RedisLedger, to_micros, to_usd
from devora_lab.errors import BudgetExceededError, ConfigError, DevoraError
from devora_lab.events.schema import Event, EventKind

if TYPE_CHECKING:
    import pandas as pd

    from devora_lab.events import EventLog

__all__ = [
    "Budget",
    "BudgetAlert",
    "BudgetGuard",
    "CallScope",
    "Hold",
    "Ledger",
    "LocalLedger",
    "Period",
    "RedisLedger",
    "Scope",
    "SpentLookup",
    "period_bounds",
]

log = logging.getLogger("devora_lab.costs")

Period = Literal["daily", "weekly", "monthly"]
Scope = Literal["global", "user", "model", "agent", "tag"]
SpentLookup = Callable[["Budget", str, datetime, datetime], float]
_PERIODS: Final = get_args(Period)
_SCOPES: Final = get_args(Scope)
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")  # it goes into ledger keys
_STATUS_COLUMNS: Final = ["budget", "key", "period", "period_start", "period_end", "hard",
                          "limit_usd", "spent_usd", "reserved_usd", "remaining_usd", "share_used"]


def _bad(name: str, value: object, fix: str) -> ConfigError:
    return ConfigError(f"budget field {name} cannot be {value!r}", fix=fix)


def _number(name: str, value: object, *, low: float = 0.0) -> float:
    """A finite number above ``low``: NaN or a bool would make every comparison wrong."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= low:
        raise _bad(name, value, f"give a finite number above {low:g}")
    return float(value)


def _zone(name: object) -> ZoneInfo:
    """The IANA zone, or a ConfigError: a typo would silently shift every period."""
    try:
        if isinstance(name, str) and name:
            return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        pass
    raise _bad("timezone", name, 'use an IANA name such as "UTC" or "America/New_York"')


@dataclass(frozen=True, slots=True)
class CallScope:
    """Who and what a call is for: budgets pick the calls they cover from these."""

    user_id: str | None = None
    model: str | None = None
    agent: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Budget:
    """A spending limit per calendar period, for all calls or one scope.

    ``match`` picks the scope's value (a user id, a model, an agent, or ``"key=value"`` for
    a tag); ``"*"`` (``"key=*"`` for tags) gives every value its own limit. ``thresholds``
    are shares of the limit that alert once per period; a ``hard`` budget refuses calls
    whose worst case could pass the limit, a soft one only alerts.
    """

    name: str
    limit_usd: float
    period: Period = "daily"
    scope: Scope = "global"
    match: str | None = None
    thresholds: tuple[float, ...] = (0.8, 1.0)
    hard: bool = True
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise _bad("name", self.name, "use 1-64 letters, digits, '_', '.' or '-'")
        object.__setattr__(self, "limit_usd", _number("limit_usd", self.limit_usd))
        if self.period not in _PERIODS:
            raise _bad("period", self.period, f"use one of {', '.join(_PERIODS)}")
        if self.scope not in _SCOPES:
            raise _bad("scope", self.scope, f"use one of {', '.join(_SCOPES)}")
        self._check_match()
        if not isinstance(self.thresholds, (tuple, list)):
            raise _bad("thresholds", self.thresholds, "give shares of the limit: [0.8, 1.0]")
        shares = sorted({_number("thresholds", share) for share in self.thresholds})
        object.__setattr__(self, "thresholds", tuple(shares))
        if not isinstance(self.hard, bool):
            raise _bad("hard", self.hard, "use true or false")
        _zone(self.timezone)

    def _check_match(self) -> None:
        if self.scope == "global":
            if self.match is not None:
                raise _bad("match", self.match, "leave match out for a global budget")
        elif not isinstance(self.match, str) or not self.match:
            raise _bad("match", self.match, f'name the {self.scope}, or "*" for each one')
        elif self.scope == "tag" and not all(self.match.partition("=")):
            raise _bad("match", self.match, 'use "key=value", or "key=*" for each value')

    def applies_to(self, scope: CallScope) -> str | None:
        """The ledger key this call is counted under (``"user=alice"``), or None."""
        if self.scope == "global":
            return "global"
        if self.scope == "tag":
            tag, _, wanted = str(self.match).partition("=")
            value = scope.tags.get(tag)
            return None if not value or wanted not in ("*", value) else f"tag:{tag}={value}"
        value = {"user": scope.user_id, "model": scope.model, "agent": scope.agent}[self.scope]
        return None if not value or self.match not in ("*", value) else f"{self.scope}={value}"

    def fixed_key(self) -> str | None:
        """The one key of a budget without ``*`` (so status can show it before any call)."""
        if self.match is None:
            return "global"
        if self.match == "*" or self.match.endswith("=*"):
            return None
        return f"tag:{self.match}" if self.scope == "tag" else f"{self.scope}={self.match}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "thresholds": list(self.thresholds)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Budget:
        """A budget from JSON-like data; unknown or missing fields raise ConfigError."""
        known = set(cls.__dataclass_fields__)
        if unknown := sorted(set(data) - known):
            raise ConfigError(f"unknown budget field(s) {', '.join(unknown)}",
                              fix=f"use only {', '.join(sorted(known))}")
        if missing := [name for name in ("name", "limit_usd") if name not in data]:
            raise ConfigError(f"a budget needs {' and '.join(missing)}", fix="add them")
        return cls(**data)


def period_bounds(period: str, at: datetime, tz: str) -> tuple[datetime, datetime]:
    """The calendar period holding ``at``, as aware datetimes in ``tz``: [start, end).

    Days start at local midnight (or at the instant a DST jump skips it), so a DST day lasts
    23 or 25 hours; weeks start on Monday (ISO); months on the 1st. Subtract the bounds in
    UTC: Python subtracts datetimes of one zone by their wall clocks.
    """
    if at.utcoffset() is None:
        raise ConfigError(f"period_bounds needs an aware datetime, not {at!r}",
                          fix="pass datetime.now(timezone.utc) or another aware datetime")
    if period not in _PERIODS:
        raise _bad("period", period, f"use one of {', '.join(_PERIODS)}")
    zone = _zone(tz)
    day = at.astimezone(zone).date()
    if period == "daily":
        first, after = day, day + timedelta(days=1)
    elif period == "weekly":
        first = day - timedelta(days=day.weekday())
        after = first + timedelta(days=7)
    else:
        first = day.replace(day=1)
        after = (first + timedelta(days=32)).replace(day=1)
    return _midnight(first, zone), _midnight(after, zone)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    """Local midnight of ``day``, normalised through UTC: with fold=0 a skipped midnight
    maps to the instant of the jump and a repeated one to its first occurrence."""
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(timezone.utc) \
        .astimezone(zone)


def _cost(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{what} must be a finite number of US dollars >= 0, not {value!r}",
                          fix="pass the call's cost in US dollars")
    return float(value)


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    """A threshold crossed: ``spent_usd`` reached ``threshold`` x ``limit_usd`` this period."""

    budget: str
    key: str
    threshold: float
    severity: str  # "warning" below 100 % of the limit, "critical" from 100 %
    spent_usd: float
    limit_usd: float
    period: str
    period_start: datetime
    period_end: datetime


@dataclass(slots=True)
class _Leg:
    """One budget's part of a hold: its account, its period and what it still reserves."""

    budget: Budget
    account: Account
    start: datetime
    end: datetime
    amount: int  # micro-dollars reserved
    held: int  # micro-dollars still reserved (0 once settled or released)


@dataclass(slots=True, eq=False)
class Hold:
    """The reservations of one call: pass it to ``settle`` or ``release``."""

    scope: CallScope
    max_cost_usd: float
    legs: list[_Leg] = field(repr=False)
    state: Literal["held", "settled", "released"] = "held"

    @property
    def budgets(self) -> tuple[str, ...]:
        """Names of the budgets this call counts against."""
        return tuple(leg.budget.name for leg in self.legs)


@dataclass(slots=True)
class _Seen:
    """What this process already knows of an account, to spare the ledger a round trip."""

    seeded: bool = False
    claimed: set[float] = field(default_factory=set)


class BudgetGuard:
    """Enforces ``budgets`` on calls, keeping the totals in ``ledger``.

    ``spent_lookup(budget, key, start, end)`` says what history spent in a period; it seeds
    the ledger once per account, so a restarted process remembers the day's spend.
    Refusals and crossed thresholds become ``budget`` events in ``event_log``; crossed
    thresholds also go to ``on_alert``. ``clock`` returns the current aware datetime.
    """

    def __init__(self, budgets: Iterable[Budget], ledger: Ledger, *,
                 event_log: EventLog | None = None, spent_lookup: SpentLookup | None = None,
                 clock: Callable[[], datetime] | None = None,
                 on_alert: Callable[[BudgetAlert], None] | None = None) -> None:
        self.budgets = tuple(budgets)
        if len({b.name for b in self.budgets}) != len(self.budgets):
            raise ConfigError(f"budget names must be unique: {[b.name for b in self.budgets]}",
                              fix="give each budget its own name")
        self.ledger = ledger
        self.event_log = event_log
        self.spent_lookup = spent_lookup
        self.on_alert = on_alert
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._seen: dict[Account, _Seen] = {}
        self._periods: dict[str, str] = {}  # budget name -> the period _seen holds notes on
        self._lock = threading.Lock()  # guards _seen, and makes this process seed once

    def reserve(self, scope: CallScope, max_cost_usd: float) -> Hold:
        """Reserve the call's worst case in every budget that covers it.

        If a hard budget could pass its limit, writes a ``budget`` event, releases what was
        reserved so far and raises BudgetExceededError.
        """
        cost = _cost(max_cost_usd, "max_cost_usd")
        amount, now, legs = to_micros(cost), self._clock(), list[_Leg]()
        try:
            for budget in self.budgets:
                leg = self._leg(budget, scope, now, amount)
                if leg is None:
                    continue
                limit = to_micros(budget.limit_usd, up=False) if budget.hard else None
                answer = self.ledger.reserve(leg.account, amount, limit, leg.end.timestamp())
                if not answer.accepted:
                    raise self._refuse(leg, scope, cost, answer.spent, answer.reserved)
                legs.append(leg)
        except BaseException:
            self._release_quietly(legs)
            raise
        return Hold(scope, cost, legs)

    def reserve_call(self, *, user_id: str | None, model: str, agent: str | None,
                     tags: Mapping[str, str], max_cost_usd: float) -> Hold:
        """``reserve`` with the scope spelt out: the call path's ``BudgetHook`` protocol."""
        return self.reserve(CallScope(user_id, model, agent, dict(tags)), max_cost_usd)

    def settle(self, hold: Hold, actual_cost_usd: float | None) -> list[BudgetAlert]:
        """Replace the reservations with the real cost (None: keep the worst case, as less
        cannot be known); returns the thresholds this call was the first to cross."""
        if hold.state == "settled":
            log.debug("%r was settled already", hold)
            return []
        hold.state = "settled"  # after a release the cost is still counted, just not un-held
        actual = None if actual_cost_usd is None else _cost(actual_cost_usd, "actual_cost_usd")
        alerts: list[BudgetAlert] = []
        for leg in hold.legs:
            micros = leg.amount if actual is None else to_micros(actual)
            spent = self.ledger.settle(leg.account, leg.held, micros, leg.end.timestamp())
            leg.held = 0
            alerts += self._crossed(leg, spent, hold.scope, to_usd(micros))
        return alerts

    def release(self, hold: Hold) -> None:
        """Drop the reservations of a call that failed before costing anything; a no-op
        after ``settle`` or a first ``release``, so it is safe in a ``finally``."""
        if hold.state == "held":
            hold.state = "released"
            self._release_legs(hold.legs)

    def status(self) -> pd.DataFrame:
        """One row per budget and key of the current period: limit, spent, reserved,
        remaining and the share of the limit spent."""
        import pandas as pd

        now = self._clock()
        rows = [row for budget in self.budgets for row in self._status_rows(budget, now)]
        return pd.DataFrame(rows, columns=_STATUS_COLUMNS)

    # -- helpers -------------------------------------------------------------------------

    def _leg(self, budget: Budget, scope: CallScope, now: datetime, amount: int) -> _Leg | None:
        key = budget.applies_to(scope)
        if key is None:
            return None
        start, end = period_bounds(budget.period, now, budget.timezone)
        account = Account(budget.name, _label(budget, start), key)
        self._ensure_seeded(budget, account, start, end)
        return _Leg(budget, account, start, end, amount, amount)

    def _release_legs(self, legs: Iterable[_Leg]) -> None:
        for leg in legs:
            if leg.held:
                self.ledger.release(leg.account, leg.held)
                leg.held = 0

    def _release_quietly(self, legs: list[_Leg]) -> None:
        """Undo a partial reservation without hiding the error that stopped it."""
        try:
            self._release_legs(legs)
        except DevoraError:
            log.warning("could not release partial budget reservations", exc_info=True)

    def _known(self, account: Account) -> _Seen:
        """This process's notes on ``account`` (lock held). A budget's notes of a past period
        are dropped when its next period begins; the ledger stays the authority either way."""
        seen = self._seen.get(account)
        if seen is None:
            if self._periods.get(account.budget) != account.period:
                self._periods[account.budget] = account.period
                self._seen = {a: s for a, s in self._seen.items() if a.budget != account.budget}
            seen = self._seen[account] = _Seen()
        return seen

    def _ensure_seeded(self, budget: Budget, account: Account, start: datetime,
                       end: datetime) -> None:
        """Seed the account from history once: the ledger's seed is set-if-absent, and
        the is_seeded check spares every later process the (slow) history lookup."""
        if self.spent_lookup is None:
            return
        with self._lock:
            seen = self._known(account)
            if not seen.seeded and not self.ledger.is_seeded(account):
                spent = _cost(self.spent_lookup(budget, account.key, start, end),
                              "spent_lookup's result")
                self.ledger.seed(account, to_micros(spent), end.timestamp())
            seen.seeded = True

    def _claim(self, leg: _Leg, share: float) -> bool:
        """Whether this process fires ``share``: the ledger's set-if-absent picks one."""
        with self._lock:
            seen = self._known(leg.account)
            if share in seen.claimed:
                return False
            seen.claimed.add(share)
        return self.ledger.claim_threshold(leg.account, share, leg.end.timestamp())

    def _crossed(self, leg: _Leg, spent: int, scope: CallScope, cost: float) -> list[BudgetAlert]:
        budget, alerts = leg.budget, list[BudgetAlert]()
        for share in budget.thresholds:
            if spent < share * to_micros(budget.limit_usd, up=False):
                break
            if self._claim(leg, share):
                alert = BudgetAlert(budget.name, leg.account.key, share,
                                    "warning" if share < 1.0 else "critical", to_usd(spent),
                                    budget.limit_usd, budget.period, leg.start, leg.end)
                self._emit(_event(leg, scope, alert.severity, alert.spent_usd,
                                  share * budget.limit_usd, cost, outcome="threshold",
                                  share=share))
                self._notify(alert)
                alerts.append(alert)
        return alerts

    def _refuse(self, leg: _Leg, scope: CallScope, cost: float, spent: int,
                reserved: int) -> BudgetExceededError:
        budget = leg.budget
        self._emit(_event(leg, scope, "error", to_usd(spent), budget.limit_usd, cost,
                          outcome="refused", reserved_usd=to_usd(reserved)))
        return BudgetExceededError(
            f"budget {budget.name!r} ({leg.account.key}) refused the call: "
            f"${to_usd(spent):.4f} spent + ${to_usd(reserved):.4f} reserved by calls in flight "
            f"+ this call's worst case ${cost:.4f} would pass its {budget.period} limit of "
            f"${budget.limit_usd:.2f}", budget=budget.name, limit_usd=budget.limit_usd,
            spent_usd=to_usd(spent), reserved_usd=cost,
            fix=f"wait for the period to reset at {leg.end.isoformat()}, raise the limit of "
                f"budget {budget.name!r}, lower max_tokens to shrink the worst case, or "
                "make the budget soft (hard=False)")

    def _emit(self, event: Event) -> None:
        """Write an event; a broken log must not undo a settled cost or hide a refusal."""
        if self.event_log is not None:
            try:
                self.event_log.write(event)
            except DevoraError:
                log.warning("could not write a budget event", exc_info=True)

    def _notify(self, alert: BudgetAlert) -> None:
        """Call on_alert; a failing sink must not stop the other budgets settling."""
        if self.on_alert is not None:
            try:
                self.on_alert(alert)
            except Exception:
                log.exception("the on_alert callback failed for budget %s", alert.budget)

    def _status_rows(self, budget: Budget, now: datetime) -> Iterator[dict[str, Any]]:
        start, end = period_bounds(budget.period, now, budget.timezone)
        label = _label(budget, start)
        keys = set(self.ledger.keys(budget.name, label))
        if (fixed := budget.fixed_key()) is not None:
            self._ensure_seeded(budget, Account(budget.name, label, fixed), start, end)
            keys.add(fixed)
        for key in sorted(keys):
            spent, reserved = map(to_usd, self.ledger.balance(Account(budget.name, label, key)))
            yield {"budget": budget.name, "key": key, "period": budget.period,
                   "period_start": start, "period_end": end, "hard": budget.hard,
                   "limit_usd": budget.limit_usd, "spent_usd": spent, "reserved_usd": reserved,
                   "remaining_usd": max(0.0, budget.limit_usd - spent - reserved),
                   "share_used": spent / budget.limit_usd}


def _label(budget: Budget, start: datetime) -> str:
    """The period's ledger label: its kind and local start date (``daily-2025-03-09``)."""
    return f"{budget.period}-{start.date().isoformat()}"


def _event(leg: _Leg, scope: CallScope, severity: str, value: float, threshold: float,
           cost: float, **attributes: Any) -> Event:
    """A ``budget`` event: value (spent) against threshold (USD), for this call's scope."""
    budget = leg.budget
    return Event(kind=EventKind.BUDGET, name=budget.name, severity=severity, value=value,
                 threshold=threshold, cost_usd=cost, user_id=scope.user_id, agent=scope.agent,
                 request_model=scope.model,
                 attributes={"period": budget.period, "period_start": leg.start.isoformat(),
                             "period_end": leg.end.isoformat(), "key": leg.account.key,
                             "scope": budget.scope, "limit_usd": budget.limit_usd,
                             "hard": budget.hard, **attributes})
