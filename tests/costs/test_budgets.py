"""Budgets in one process: calendar periods, scopes, refusals, thresholds, the registry."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from devora_lab.costs.budgets import (
    Budget,
    BudgetAlert,
    BudgetGuard,
    CallScope,
    period_bounds,
)
from devora_lab.costs.ledger import Account, LocalLedger, redact_url, to_micros
from devora_lab.costs.registry import BudgetRegistry
from devora_lab.errors import BudgetExceededError, ConfigError
from devora_lab.events import Event, EventKind, EventLog

UTC = timezone.utc
NOON = datetime(2025, 6, 11, 12, 0, tzinfo=UTC)  # a Wednesday


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def hours(start: datetime, end: datetime) -> float:
    """Elapsed hours between aware datetimes (in UTC: same-zone subtraction is wall-clock)."""
    return (end.astimezone(UTC) - start.astimezone(UTC)) / timedelta(hours=1)


class Clock:
    def __init__(self, now: datetime = NOON) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def seconds(self) -> float:
        """The same time as POSIX seconds, the ledger's clock."""
        return self.now.timestamp()


class Events:
    """Stands in for an EventLog: keeps what is written."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def write(self, event: Event) -> None:
        self.events.append(event)

    def budget(self, severity: str | None = None) -> list[Event]:
        return [e for e in self.events if e.kind == EventKind.BUDGET
                and (severity is None or e.severity == severity)]


def ledger_of(clock: Clock) -> LocalLedger:
    return LocalLedger(clock=clock.seconds)


def guard(*budgets: Budget, clock: Clock | None = None, **kwargs: Any) -> BudgetGuard:
    clock = clock or Clock()
    ledger = kwargs.pop("ledger", None) or ledger_of(clock)
    return BudgetGuard(budgets, ledger, clock=clock, **kwargs)


# -- calendar periods ------------------------------------------------------------------------


@pytest.mark.parametrize(("at", "start", "end"), [
    # 23:59 in New York on 9 March is already 10 March in UTC
    (utc(2025, 3, 10, 3, 59), "2025-03-09T00:00:00-05:00", "2025-03-10T00:00:00-04:00"),
    (utc(2025, 3, 10, 4, 0), "2025-03-10T00:00:00-04:00", "2025-03-11T00:00:00-04:00"),
])
def test_days_roll_over_at_local_midnight_in_new_york(at: datetime, start: str,
                                                      end: str) -> None:
    first, after = period_bounds("daily", at, "America/New_York")
    assert (first.isoformat(), after.isoformat()) == (start, end)
    assert first <= at < after


def test_days_roll_over_at_local_midnight_in_kolkata() -> None:
    before, after = utc(2025, 1, 31, 18, 29, 59), utc(2025, 1, 31, 18, 30)
    assert period_bounds("daily", before, "Asia/Kolkata")[0].isoformat() == \
        "2025-01-31T00:00:00+05:30"
    start, end = period_bounds("daily", after, "Asia/Kolkata")
    assert start.isoformat() == "2025-02-01T00:00:00+05:30" and start == after
    assert hours(start, end) == 24
    # the month rolls over at the same instant
    assert period_bounds("monthly", before, "Asia/Kolkata")[0].month == 1
    assert period_bounds("monthly", after, "Asia/Kolkata")[0].isoformat() == \
        "2025-02-01T00:00:00+05:30"


@pytest.mark.parametrize(("at", "length"), [
    (utc(2025, 3, 9, 12), 23),  # spring forward: 02:00 -> 03:00
    (utc(2025, 11, 2, 12), 25),  # fall back: 02:00 -> 01:00
    (utc(2025, 6, 11, 12), 24),
])
def test_a_dst_day_lasts_23_or_25_hours(at: datetime, length: int) -> None:
    start, end = period_bounds("daily", at, "America/New_York")
    assert hours(start, end) == length
    assert (start.hour, start.minute, end.hour, end.minute) == (0, 0, 0, 0)


def test_a_day_whose_midnight_is_skipped_starts_at_the_jump() -> None:
    # Chile springs forward at midnight: 8 September 2024 starts at 01:00 local
    start, end = period_bounds("daily", utc(2024, 9, 8, 12), "America/Santiago")
    assert start.isoformat() == "2024-09-08T01:00:00-03:00"
    assert hours(start, end) == 23
    previous = period_bounds("daily", utc(2024, 9, 8, 3, 59), "America/Santiago")
    assert previous[1] == start and hours(*previous) == 24


def test_weeks_start_on_monday_and_span_dst() -> None:
    sunday_night = utc(2025, 3, 10, 3, 59)  # Sunday 9 March, 23:59 in New York
    start, end = period_bounds("weekly", sunday_night, "America/New_York")
    assert start.isoformat() == "2025-03-03T00:00:00-05:00" and start.weekday() == 0
    assert end.isoformat() == "2025-03-10T00:00:00-04:00"
    assert hours(start, end) == 7 * 24 - 1
    monday = period_bounds("weekly", utc(2025, 3, 10, 4), "America/New_York")
    assert monday[0] == end


@pytest.mark.parametrize(("at", "start", "end"), [
    (utc(2024, 2, 29, 23, 59), "2024-02-01T00:00:00+00:00", "2024-03-01T00:00:00+00:00"),
    (utc(2024, 3, 1), "2024-03-01T00:00:00+00:00", "2024-04-01T00:00:00+00:00"),
    (utc(2025, 2, 28, 12), "2025-02-01T00:00:00+00:00", "2025-03-01T00:00:00+00:00"),
    (utc(2024, 12, 31, 23, 59), "2024-12-01T00:00:00+00:00", "2025-01-01T00:00:00+00:00"),
    (utc(2025, 1, 31, 12), "2025-01-01T00:00:00+00:00", "2025-02-01T00:00:00+00:00"),
])
def test_months_end_on_the_last_day_leap_years_included(at: datetime, start: str,
                                                        end: str) -> None:
    first, after = period_bounds("monthly", at, "UTC")
    assert (first.isoformat(), after.isoformat()) == (start, end)


def test_a_leap_day_is_its_own_day() -> None:
    start, end = period_bounds("daily", utc(2024, 2, 29, 8), "UTC")
    assert (start.date().isoformat(), end.date().isoformat()) == ("2024-02-29", "2024-03-01")


def test_period_bounds_refuses_naive_times_and_unknown_periods() -> None:
    with pytest.raises(ConfigError, match="aware"):
        period_bounds("daily", datetime(2025, 1, 1), "UTC")
    with pytest.raises(ConfigError, match="period"):
        period_bounds("hourly", NOON, "UTC")
    with pytest.raises(ConfigError, match="timezone"):
        period_bounds("daily", NOON, "Mars/Olympus_Mons")


# -- budgets and scopes ----------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "field"), [
    ({"limit_usd": -5}, "limit_usd"),
    ({"limit_usd": 0}, "limit_usd"),
    ({"limit_usd": float("nan")}, "limit_usd"),
    ({"limit_usd": "10"}, "limit_usd"),
    ({"period": "hourly"}, "period"),
    ({"scope": "team"}, "scope"),
    ({"timezone": "Europe/Atlantis"}, "timezone"),
    ({"timezone": ""}, "timezone"),
    ({"match": "alice"}, "match"),  # global budgets match everything
    ({"scope": "user"}, "match"),
    ({"scope": "tag", "match": "search"}, "match"),
    ({"thresholds": (0.8, -1)}, "thresholds"),
    ({"thresholds": 0.8}, "thresholds"),
    ({"hard": "yes"}, "hard"),
    ({"name": "has space"}, "name"),
    ({"name": ""}, "name"),
])
def test_bad_budget_fields_raise_config_error_naming_the_field(fields: dict[str, Any],
                                                               field: str) -> None:
    with pytest.raises(ConfigError, match=field) as caught:
        Budget(**{"name": "b", "limit_usd": 10, **fields})
    assert caught.value.fix


def test_thresholds_are_sorted_and_deduplicated() -> None:
    assert Budget(name="b", limit_usd=1, thresholds=[1.0, 0.5, 0.5]).thresholds == (0.5, 1.0)


@pytest.mark.parametrize(("scope", "match", "call", "key"), [
    ("global", None, CallScope(), "global"),
    ("user", "alice", CallScope(user_id="alice"), "user=alice"),
    ("user", "alice", CallScope(user_id="bob"), None),
    ("user", "*", CallScope(user_id="bob"), "user=bob"),
    ("user", "*", CallScope(), None),
    ("model", "gpt-4o", CallScope(model="gpt-4o"), "model=gpt-4o"),
    ("model", "gpt-4o", CallScope(model="gpt-4o-mini"), None),
    ("agent", "*", CallScope(agent="planner"), "agent=planner"),
    ("tag", "team=search", CallScope(tags={"team": "search"}), "tag:team=search"),
    ("tag", "team=search", CallScope(tags={"team": "ads"}), None),
    ("tag", "team=*", CallScope(tags={"team": "ads"}), "tag:team=ads"),
    ("tag", "team=*", CallScope(tags={"env": "prod"}), None),
])
def test_budgets_apply_to_their_scope(scope: Any, match: str | None, call: CallScope,
                                      key: str | None) -> None:
    assert Budget(name="b", limit_usd=1, scope=scope, match=match).applies_to(call) == key


def test_a_star_budget_gives_each_value_its_own_limit() -> None:
    g = guard(Budget(name="per-user", limit_usd=1.0, scope="user", match="*"))
    alice, bob = CallScope(user_id="alice"), CallScope(user_id="bob")
    g.reserve(alice, 0.8)
    g.reserve(bob, 0.8)  # bob's own dollar
    with pytest.raises(BudgetExceededError, match="user=alice"):
        g.reserve(alice, 0.8)
    g.reserve(CallScope(), 5.0)  # no user: the budget does not apply
    assert list(g.status()["key"]) == ["user=alice", "user=bob"]


# -- reserving and settling ------------------------------------------------------------------


def test_a_hard_budget_refuses_before_it_is_exceeded() -> None:
    events = Events()
    g = guard(Budget(name="team-day", limit_usd=1.0), event_log=events)
    first = g.reserve(CallScope(user_id="alice", model="gpt-4o"), 0.6)
    g.settle(first, 0.5)
    with pytest.raises(BudgetExceededError) as caught:
        g.reserve(CallScope(user_id="alice", model="gpt-4o"), 0.6)
    error = caught.value
    assert "team-day" in str(error) and error.fix and "limit" in str(error)
    assert (error.budget, error.limit_usd, error.spent_usd, error.reserved_usd) == \
        ("team-day", 1.0, 0.5, 0.6)
    [refusal] = events.budget("error")
    assert (refusal.name, refusal.value, refusal.threshold, refusal.cost_usd) == \
        ("team-day", 0.5, 1.0, 0.6)
    assert (refusal.user_id, refusal.request_model) == ("alice", "gpt-4o")
    assert refusal.attributes["period"] == "daily" and refusal.attributes["key"] == "global"
    assert g.status().loc[0, "reserved_usd"] == 0  # the refused call holds nothing
    g.reserve(CallScope(), 0.5)  # exactly up to the limit is allowed


def test_a_refusal_releases_what_other_budgets_reserved() -> None:
    g = guard(Budget(name="month", limit_usd=100, period="monthly"),
              Budget(name="alice", limit_usd=1, scope="user", match="alice"))
    with pytest.raises(BudgetExceededError, match="alice"):
        g.reserve(CallScope(user_id="alice"), 2.0)
    assert g.status()["reserved_usd"].tolist() == [0.0, 0.0]


def test_soft_budgets_never_refuse() -> None:
    alerts: list[BudgetAlert] = []
    g = guard(Budget(name="soft", limit_usd=1.0, hard=False), on_alert=alerts.append)
    for _ in range(5):
        g.settle(g.reserve(CallScope(), 0.6), 0.6)
    row = g.status().iloc[0]
    assert row["spent_usd"] == pytest.approx(3.0) and row["remaining_usd"] == 0
    assert row["share_used"] == pytest.approx(3.0)
    assert [(a.threshold, a.severity) for a in alerts] == [(0.8, "warning"), (1.0, "critical")]


def test_settling_lower_than_reserved_frees_the_difference() -> None:
    g = guard(Budget(name="b", limit_usd=1.0))
    hold = g.reserve(CallScope(), 0.9)
    with pytest.raises(BudgetExceededError):
        g.reserve(CallScope(), 0.2)  # 0.9 is still reserved
    g.settle(hold, 0.1)
    g.reserve(CallScope(), 0.9)  # 0.1 spent + 0.9 = the limit
    row = g.status().iloc[0]
    assert (row["spent_usd"], row["reserved_usd"]) == (pytest.approx(0.1), pytest.approx(0.9))


def test_an_unknown_cost_keeps_the_reservation_as_spent() -> None:
    g = guard(Budget(name="b", limit_usd=1.0))
    g.settle(g.reserve(CallScope(), 0.7), None)
    row = g.status().iloc[0]
    assert (row["spent_usd"], row["reserved_usd"]) == (pytest.approx(0.7), 0)


def test_release_drops_a_reservation_and_each_hold_counts_once() -> None:
    g = guard(Budget(name="b", limit_usd=1.0))
    hold = g.reserve(CallScope(), 0.9)
    g.release(hold)
    g.release(hold)
    settled = g.reserve(CallScope(), 0.9)
    g.settle(settled, 0.4)
    g.settle(settled, 0.4)  # ignored: settled already
    g.release(settled)  # no-op after settle
    row = g.status().iloc[0]
    assert (row["spent_usd"], row["reserved_usd"]) == (pytest.approx(0.4), 0)


def test_micro_dollars_do_not_drift() -> None:
    g = guard(Budget(name="b", limit_usd=1.0))
    for _ in range(10):
        g.settle(g.reserve(CallScope(), 0.1), 0.1)  # ten times 0.1 is exactly the limit
    with pytest.raises(BudgetExceededError):
        g.reserve(CallScope(), 0.000001)
    assert to_micros(0.07) == 70_000 and to_micros(1e-7) == 1


def test_bad_costs_are_refused() -> None:
    g = guard(Budget(name="b", limit_usd=1.0))
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="max_cost_usd"):
            g.reserve(CallScope(), bad)
    with pytest.raises(ConfigError, match="actual_cost_usd"):
        g.settle(g.reserve(CallScope(), 0.1), -0.5)


def test_threads_in_one_process_never_overspend() -> None:
    g = guard(Budget(name="b", limit_usd=10.0))

    def calls() -> None:
        for _ in range(100):
            try:
                hold = g.reserve(CallScope(), 0.37)
            except BudgetExceededError:
                continue
            g.settle(hold, 0.37)

    threads = [threading.Thread(target=calls) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    row = g.status().iloc[0]
    assert row["spent_usd"] == pytest.approx(0.37 * 27) and row["reserved_usd"] == 0


# -- thresholds ------------------------------------------------------------------------------


def test_thresholds_fire_once_per_period() -> None:
    events, clock, alerts = Events(), Clock(), list[BudgetAlert]()
    g = guard(Budget(name="b", limit_usd=10.0, timezone="America/New_York"), clock=clock,
              event_log=events, on_alert=alerts.append)
    spend = [5.0, 3.5, 1.0, 0.5]  # 5, 8.5 (80 % crossed), 9.5, 10 (100 % crossed)
    fired = [[(a.threshold, a.severity) for a in g.settle(g.reserve(CallScope(), c), c)]
             for c in spend]
    assert fired == [[], [(0.8, "warning")], [], [(1.0, "critical")]]
    warning, critical = events.budget()
    assert (warning.severity, warning.value, warning.threshold) == ("warning", 8.5, 8.0)
    assert (critical.severity, critical.threshold, critical.cost_usd) == ("critical", 10.0, 0.5)
    assert warning.attributes["share"] == 0.8 and warning.attributes["period"] == "daily"
    assert alerts[0].period_start.isoformat() == "2025-06-11T00:00:00-04:00"
    clock.now += timedelta(days=1)  # a new day: the thresholds fire again
    assert [a.threshold for a in g.settle(g.reserve(CallScope(), 9.0), 9.0)] == [0.8]


def test_one_settle_can_cross_several_thresholds() -> None:
    g = guard(Budget(name="b", limit_usd=1.0, thresholds=(0.5, 0.8, 1.0)))
    assert [a.threshold for a in g.settle(g.reserve(CallScope(), 1.0), 1.0)] == [0.5, 0.8, 1.0]


def test_two_guards_on_one_ledger_fire_each_threshold_once() -> None:
    clock, alerts = Clock(), list[BudgetAlert]()
    ledger = ledger_of(clock)
    budget = Budget(name="b", limit_usd=1.0, thresholds=(0.5,))
    first = guard(budget, ledger=ledger, clock=clock, on_alert=alerts.append)
    second = guard(budget, ledger=ledger, clock=clock, on_alert=alerts.append)
    first.settle(first.reserve(CallScope(), 0.3), 0.3)
    second.settle(second.reserve(CallScope(), 0.3), 0.3)  # 0.6: crosses 50 %
    first.settle(first.reserve(CallScope(), 0.1), 0.1)  # sees 0.7, but the flag is taken
    assert len(alerts) == 1


def test_a_failing_alert_callback_does_not_break_settling(caplog: Any) -> None:
    def broken(alert: BudgetAlert) -> None:
        raise RuntimeError("sink down")

    g = guard(Budget(name="b", limit_usd=1.0), on_alert=broken)
    assert len(g.settle(g.reserve(CallScope(), 1.0), 1.0)) == 2
    assert "on_alert" in caplog.text


def test_budget_events_reach_a_real_event_log(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events")
    g = guard(Budget(name="b", limit_usd=1.0), event_log=log)
    g.settle(g.reserve(CallScope(user_id="u"), 0.9), 0.9)
    with pytest.raises(BudgetExceededError):
        g.reserve(CallScope(user_id="u"), 0.5)
    log.close()
    with log.store() as store:
        rows = store.rows("SELECT severity, name, value, threshold FROM events "
                          "WHERE kind = 'budget' ORDER BY ts")
    assert [tuple(row) for row in rows] == [("warning", "b", 0.9, 0.8), ("error", "b", 0.9, 1.0)]


# -- period changes and seeding --------------------------------------------------------------


def test_a_new_period_starts_from_zero() -> None:
    clock = Clock(utc(2025, 6, 11, 3, 59))  # 23:59 in New York
    g = guard(Budget(name="b", limit_usd=1.0, timezone="America/New_York"), clock=clock)
    late = g.reserve(CallScope(), 0.9)
    clock.now += timedelta(minutes=2)  # past local midnight
    g.reserve(CallScope(), 0.9)  # a fresh day
    g.settle(late, 0.9)  # lands in the day it was reserved in
    assert g.status().loc[0, "spent_usd"] == 0
    yesterday = Account("b", "daily-2025-06-10", "global")
    assert g.ledger.balance(yesterday) == (900_000, 0)


def test_history_seeds_each_period_once() -> None:
    lookups: list[tuple[str, str, datetime, datetime]] = []

    def spent_lookup(budget: Budget, key: str, start: datetime, end: datetime) -> float:
        lookups.append((budget.name, key, start, end))
        return 0.75

    clock = Clock()
    ledger = ledger_of(clock)
    budget = Budget(name="b", limit_usd=1.0)
    g = guard(budget, ledger=ledger, clock=clock, spent_lookup=spent_lookup)
    g.reserve(CallScope(), 0.1)
    g.reserve(CallScope(), 0.1)
    with pytest.raises(BudgetExceededError) as caught:  # 0.75 seeded + 0.2 reserved
        g.reserve(CallScope(), 0.1)
    assert caught.value.spent_usd == 0.75
    restarted = guard(budget, ledger=ledger, clock=clock, spent_lookup=spent_lookup)
    restarted.status()  # another process on the same ledger: already seeded
    assert [(name, key) for name, key, *_ in lookups] == [("b", "global")]
    assert lookups[0][2:] == period_bounds("daily", NOON, "UTC")
    clock.now += timedelta(days=1)
    g.reserve(CallScope(), 0.1)
    assert len(lookups) == 2


def test_the_ledger_seeds_at_most_once() -> None:
    ledger, account = LocalLedger(), Account("b", "daily-2025-06-11", "global")
    assert ledger.seed(account, 5, 0.0) is True
    assert ledger.seed(account, 5, 0.0) is False
    assert ledger.balance(account) == (5, 0) and ledger.is_seeded(account)


def test_status_reports_every_budget() -> None:
    g = guard(Budget(name="all", limit_usd=10.0),
              Budget(name="alice", limit_usd=2.0, scope="user", match="alice",
                     period="weekly"))
    g.settle(g.reserve(CallScope(user_id="alice"), 1.0), 0.5)
    g.reserve(CallScope(user_id="alice"), 0.25)
    frame = g.status()
    assert list(frame.columns) == ["budget", "key", "period", "period_start", "period_end",
                                   "hard", "limit_usd", "spent_usd", "reserved_usd",
                                   "remaining_usd", "share_used"]
    alice = frame.set_index("budget").loc["alice"]
    assert (alice["key"], alice["spent_usd"], alice["reserved_usd"]) == ("user=alice", 0.5, 0.25)
    assert alice["remaining_usd"] == pytest.approx(1.25) and alice["share_used"] == 0.25
    assert alice["period_start"] == datetime(2025, 6, 9, tzinfo=ZoneInfo("UTC"))


# -- the registry ----------------------------------------------------------------------------


def test_registry_round_trip(tmp_path: Path) -> None:
    registry = BudgetRegistry(tmp_path / "ws" / "budgets.json")
    assert registry.list() == []
    daily = Budget(name="daily", limit_usd=5, thresholds=(0.5, 1.0))
    per_user = Budget(name="per-user", limit_usd=1, scope="user", match="*", hard=False,
                      period="monthly", timezone="Asia/Kolkata")
    registry.set(daily)
    registry.set(per_user)
    registry.set(Budget(name="daily", limit_usd=8))  # replaces by name
    again = BudgetRegistry(tmp_path / "ws" / "budgets.json").list()
    assert again == [Budget(name="daily", limit_usd=8), per_user]
    registry.remove("daily")
    assert registry.list() == [per_user]
    with pytest.raises(ConfigError, match="no budget named 'daily'"):
        registry.remove("daily")
    stored = json.loads((tmp_path / "ws" / "budgets.json").read_text())
    assert stored["budgets"][0]["thresholds"] == [0.8, 1.0]


def test_registry_rejects_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "budgets.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="malformed"):
        BudgetRegistry(path).list()
    path.write_text(json.dumps({"budgets": [{"name": "b", "limit_usd": -1}]}))
    with pytest.raises(ConfigError, match="limit_usd"):
        BudgetRegistry(path).list()
    path.write_text(json.dumps({"budgets": [{"name": "b", "limit_usd": 1, "perod": "daily"}]}))
    with pytest.raises(ConfigError, match="perod"):
        BudgetRegistry(path).list()


def test_concurrent_registry_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "budgets.json"

    def writer(n: int) -> None:
        registry = BudgetRegistry(path)  # a lock of its own, like another process
        for i in range(5):
            registry.set(Budget(name=f"b{n}-{i}", limit_usd=1 + i))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(BudgetRegistry(path).list()) == 40


def test_urls_lose_their_passwords() -> None:
    assert redact_url("redis://:hunter2@db:6379/0") == "redis://***@db:6379/0"
    assert redact_url("error at rediss://user:pw@h/1 now") == "error at rediss://***@h/1 now"
    assert redact_url("redis://db:6379/0") == "redis://db:6379/0"


def test_the_local_ledger_forgets_periods_a_while_after_they_end() -> None:
    now = [1_000_000.0]
    ledger = LocalLedger(keep_after_end_s=60, clock=lambda: now[0])
    old, new = Account("b", "daily-1", "global"), Account("b", "daily-2", "global")
    ledger.reserve(old, 5, None, period_end=now[0] + 10)
    now[0] += 69
    ledger.reserve(new, 1, None, period_end=now[0] + 10)
    assert ledger.balance(old) == (0, 5)  # ended 59 s ago: kept
    now[0] += 2
    ledger.reserve(Account("b", "daily-3", "global"), 1, None, period_end=now[0] + 10)
    assert ledger.balance(old) == (0, 0) and ledger.keys("b", "daily-2") == ["global"]


def test_the_guard_is_the_call_paths_budget_hook() -> None:
    g = guard(Budget(name="search", limit_usd=1.0, scope="tag", match="team=search"))
    hold = g.reserve_call(user_id="u", model="gpt-4o", agent=None, tags={"team": "search"},
                          max_cost_usd=0.75)
    assert hold.budgets == ("search",)
    with pytest.raises(BudgetExceededError, match="tag:team=search"):
        g.reserve_call(user_id="u", model="gpt-4o", agent=None, tags={"team": "search"},
                       max_cost_usd=0.5)
