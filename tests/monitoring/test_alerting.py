"""Alert rules evaluated on constructed logs at a fixed ``now``, and the manager's memory:
one notification per change, re-sent once per cooldown, resolutions, and flapping held back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devora_lab.events import EventLog
from devora_lab.monitoring.alerting import AlertManager, Evaluation, evaluate_rule
from devora_lab.monitoring.rules import AlertConfig, parse_alert_config
from devora_lab.monitoring.sinks import Dispatcher

from .helpers import MINUTE, T0, Recorder, alert_rows, call, calls, write

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[EventLog]:
    event_log = EventLog(tmp_path / "events", roll_max_seconds=3600)
    yield event_log
    event_log.close()


def _config(*rules: dict[str, Any]) -> AlertConfig:
    return parse_alert_config({"rule": list(rules)})


def _evaluate(log: EventLog, rule: dict[str, Any], now: datetime = T0) -> list[Evaluation]:
    (parsed,) = _config(rule).rules
    with log.store() as store:
        return evaluate_rule(store, parsed, now)


def _verdicts(evaluations: list[Evaluation]) -> dict[str | None, bool | None]:
    return {ev.group: ev.firing for ev in evaluations}


ERRORS = {"name": "errors", "metric": "error_rate", "op": ">", "threshold": 0.1,
          "window": "15m"}


def _traffic(log: EventLog, end: datetime = T0) -> None:
    """In the 15 minutes before ``end``: gpt-4o 10 calls (3 errors, all by the coder),
    claude 10 calls (no errors, half by the planner); an hour before: 20 gpt-4o errors."""
    start = end - 14 * MINUTE
    write(log, calls(7, start, end, model="gpt-4o"))
    write(log, calls(3, start, end, model="gpt-4o", status="error"))
    write(log, calls(5, start, end, model="claude-sonnet-4", agent="planner"))
    write(log, calls(5, start, end, model="claude-sonnet-4"))
    write(log, calls(20, end - HOUR, end - 30 * MINUTE, model="gpt-4o", status="error"))


# -- threshold rules -----------------------------------------------------------------------


def test_a_threshold_rule_fires_on_its_window_only(log: EventLog) -> None:
    _traffic(log)
    (ev,) = _evaluate(log, ERRORS)
    assert ev.requests == 20 and ev.value == pytest.approx(0.15) and ev.firing is True
    assert ev.group is None and ev.threshold == 0.1
    assert "error_rate over 15m = 0.15 (> 0.1)" in ev.summary()
    assert _evaluate(log, {**ERRORS, "threshold": 0.2})[0].firing is False
    assert _evaluate(log, {**ERRORS, "op": "<=", "threshold": 0.15})[0].firing is True
    # an hour-long window sees the older errors too
    assert _evaluate(log, {**ERRORS, "window": "1h"})[0].value == pytest.approx(23 / 40)


def test_too_few_calls_give_no_verdict(log: EventLog) -> None:
    _traffic(log)
    (ev,) = _evaluate(log, {**ERRORS, "min_requests": 21})
    assert ev.firing is None and ev.requests == 20
    (empty,) = _evaluate(log, ERRORS, now=T0 + DAY)
    assert empty.firing is None and empty.requests == 0 and empty.value is None
    # min_requests = 0 lets "no traffic at all" fire
    silent = {"name": "silent", "metric": "requests", "op": "<", "threshold": 1,
              "min_requests": 0}
    assert _evaluate(log, silent, now=T0 + DAY)[0].firing is True


def test_a_by_rule_gives_one_verdict_per_group(log: EventLog) -> None:
    _traffic(log)
    verdicts = _verdicts(_evaluate(log, {**ERRORS, "by": "model"}))
    assert verdicts == {"gpt-4o": True, "claude-sonnet-4": False}
    by_agent = _evaluate(log, {**ERRORS, "by": "agent"})
    assert _verdicts(by_agent) == {"coder": True, "planner": False}
    assert {ev.group: ev.requests for ev in by_agent} == {"coder": 15, "planner": 5}


def test_calls_without_the_dimension_are_their_own_group(log: EventLog) -> None:
    write(log, calls(3, T0 - 10 * MINUTE, T0, agent=None, status="error"))
    write(log, calls(3, T0 - 10 * MINUTE, T0, agent="coder"))
    verdicts = _verdicts(_evaluate(log, {**ERRORS, "by": "agent"}))
    assert verdicts == {"(none)": True, "coder": False}


def test_filters_pick_the_calls(log: EventLog) -> None:
    _traffic(log)
    planner = _evaluate(log, {**ERRORS, "filters": {"agent": "planner"}})
    assert planner[0].requests == 5 and planner[0].firing is False
    gpt = _evaluate(log, {**ERRORS, "filters": {"model": ["gpt-4o", "other"]}})
    assert gpt[0].requests == 10 and gpt[0].value == pytest.approx(0.3)


# -- forecast rules --------------------------------------------------------------------------


def _day_cycle(log: EventLog, today: datetime, days: int, *, night: float = 10,
               peak: float = 100, weekend_peak: float | None = None, seed: int = 1) -> None:
    """``days`` days before ``today`` (a midnight): Poisson(night) calls between 03:00 and
    04:00 and Poisson(peak) between 15:00 and 16:00 (``weekend_peak`` on Sat/Sun)."""
    rng = np.random.default_rng(seed)
    events = []
    for back in range(1, days + 1):
        day = today - back * DAY
        busy = weekend_peak if weekend_peak is not None and day.weekday() >= 5 else peak
        for hour, mean in ((3, night), (15, busy)):
            start = day + hour * HOUR
            events += calls(int(rng.poisson(mean)), start, start + HOUR)
    write(log, events)


def _now_hour(log: EventLog, today: datetime, hour: int, count: int) -> datetime:
    """``count`` calls in ``hour``:00 to ``hour+1``:00 of ``today``; returns the hour's end."""
    start = today + hour * HOUR
    write(log, calls(count, start, start + HOUR))
    return start + HOUR


TODAY = datetime(2026, 3, 4, tzinfo=T0.tzinfo)  # a Wednesday
FORECAST = {"name": "traffic", "type": "forecast", "metric": "requests", "window": "1h",
            "history": "7d", "direction": "both"}


def test_forecast_respects_the_daily_cycle(log: EventLog) -> None:
    _day_cycle(log, TODAY, 7)
    night = _evaluate(log, FORECAST, now=_now_hour(log, TODAY, 3, 10))[0]
    afternoon = _evaluate(log, FORECAST, now=_now_hour(log, TODAY, 15, 100))[0]
    # the quiet night is compared with other nights, the busy afternoon with afternoons:
    # compared with each other one of them would look unusual
    assert night.firing is False and night.upper is not None and night.upper < 40
    assert afternoon.firing is False and afternoon.lower is not None and afternoon.lower > 40
    assert afternoon.lower < 100 < (afternoon.upper or 0)


def test_forecast_fires_on_a_spike(log: EventLog) -> None:
    _day_cycle(log, TODAY, 7)
    spike = _evaluate(log, {**FORECAST, "direction": "above"},
                      now=_now_hour(log, TODAY, 15, 500))[0]
    assert spike.firing is True and spike.value == 500
    assert "expected" in spike.summary() and "95% interval" in spike.summary()


def test_a_night_level_afternoon_fires_below_only_when_asked(log: EventLog) -> None:
    _day_cycle(log, TODAY, 7)
    now = _now_hour(log, TODAY, 15, 10)
    assert _evaluate(log, FORECAST, now=now)[0].firing is True
    assert _evaluate(log, {**FORECAST, "direction": "above"}, now=now)[0].firing is False


def test_weekends_are_compared_with_weekends(log: EventLog) -> None:
    saturday = datetime(2026, 3, 7, tzinfo=T0.tzinfo)
    _day_cycle(log, saturday, 20, weekend_peak=30)
    now = _now_hour(log, saturday, 15, 30)
    # 20 days of history: only the five weekend afternoons among them count
    separated = _evaluate(log, {**FORECAST, "history": "20d"}, now=now)[0]
    assert separated.firing is False and (separated.upper or 0) < 60
    # under two weeks there is no separation, and a normal Saturday looks like a slump
    assert _evaluate(log, {**FORECAST, "history": "10d"}, now=now)[0].firing is True
    # and a weekday afternoon of the log (Friday's) is judged against weekdays
    friday = _evaluate(log, {**FORECAST, "history": "20d"}, now=saturday - 8 * HOUR)[0]
    assert friday.firing is False and (friday.lower or 0) > 60


def test_fewer_than_five_comparable_windows_give_no_verdict(log: EventLog) -> None:
    _day_cycle(log, TODAY, 4)
    now = _now_hour(log, TODAY, 15, 500)
    # days before the log began are not windows of zero calls
    assert _evaluate(log, {**FORECAST, "history": "10d"}, now=now)[0].firing is None
    assert _evaluate(log, {**FORECAST, "history": "3d"}, now=now)[0].firing is None
    _day_cycle(log, TODAY - 4 * DAY, 1, seed=2)  # a fifth day of history
    assert _evaluate(log, {**FORECAST, "history": "10d"}, now=now)[0].firing is True


def test_forecast_by_group(log: EventLog) -> None:
    _day_cycle(log, TODAY, 6)
    write(log, [call(TODAY - back * DAY + 15 * HOUR + i * MINUTE, model="claude-sonnet-4")
                for back in range(1, 7) for i in range(20)])
    now = _now_hour(log, TODAY, 15, 300)
    write(log, calls(20, TODAY + 15 * HOUR, now, model="claude-sonnet-4"))
    verdicts = _verdicts(_evaluate(log, {**FORECAST, "history": "6d", "by": "model"}, now))
    assert verdicts == {"gpt-4o": True, "claude-sonnet-4": False}


# -- the manager: notify once per change ---------------------------------------------------------


def _manager(log: EventLog, state: Path, *rules: dict[str, Any]) -> tuple[AlertManager, Recorder]:
    recorder = Recorder()
    return AlertManager(_config(*rules), log, Dispatcher([recorder]), state), recorder


RULE = {**ERRORS, "window": "1h", "cooldown": "10m", "severity": "critical"}


def test_a_firing_alert_notifies_once_then_once_per_cooldown_then_resolves(
        log: EventLog, tmp_path: Path) -> None:
    write(log, calls(10, T0 - 10 * MINUTE, T0, status="error"))
    manager, recorder = _manager(log, tmp_path / "state", RULE)
    first = manager.check(now=T0)
    assert [n.name for n in first.fired] == ["errors"] and len(first.firing) == 1
    note = first.fired[0]
    assert note.state == "firing" and note.severity == "critical" and note.value == 1.0
    assert note.details["repeat"] is False and note.title == "FIRING critical: errors"
    again = manager.check(now=T0 + MINUTE)
    assert again.fired == [] and again.suppressed == [] and len(again.firing) == 1
    assert len(recorder.notes) == 1 and len(alert_rows(log)) == 1

    repeat = manager.check(now=T0 + 11 * MINUTE)  # the cooldown has passed: re-sent
    assert len(repeat.fired) == 1 and repeat.fired[0].details["repeat"] is True

    write(log, calls(200, T0 + 11 * MINUTE, T0 + 12 * MINUTE))
    resolved = manager.check(now=T0 + 12 * MINUTE)
    assert resolved.fired == [] and [n.state for n in resolved.resolved] == ["resolved"]
    assert "back to normal" in resolved.resolved[0].summary
    assert manager.check(now=T0 + 13 * MINUTE).resolved == []  # resolved once
    assert [n.state for n in recorder.notes] == ["firing", "firing", "resolved"]
    assert alert_rows(log) == [("errors", "firing", None, False),
                               ("errors", "firing", None, True),
                               ("errors", "resolved", None, False)]


def test_flapping_within_the_cooldown_is_written_but_not_sent(log: EventLog,
                                                               tmp_path: Path) -> None:
    manager, recorder = _manager(log, tmp_path / "state", RULE)
    write(log, calls(10, T0 - 10 * MINUTE, T0, status="error"))
    assert len(manager.check(now=T0).fired) == 1
    write(log, calls(200, T0, T0 + MINUTE))
    assert len(manager.check(now=T0 + 2 * MINUTE).resolved) == 1
    write(log, calls(100, T0 + 2 * MINUTE, T0 + 3 * MINUTE, status="error"))
    flap = manager.check(now=T0 + 4 * MINUTE)
    assert flap.fired == [] and flap.suppressed == ["errors|"] and len(flap.firing) == 1
    assert [n.state for n in recorder.notes] == ["firing", "resolved"]
    assert [row[1] for row in alert_rows(log)] == ["firing", "resolved", "firing"]
    # still firing once the cooldown of the first notification is over: sent as a repeat
    later = manager.check(now=T0 + 11 * MINUTE)
    assert len(later.fired) == 1 and later.fired[0].details["repeat"] is True


def test_no_verdict_changes_nothing(log: EventLog, tmp_path: Path) -> None:
    manager, recorder = _manager(log, tmp_path / "state", {**RULE, "min_requests": 5})
    write(log, calls(10, T0 - 10 * MINUTE, T0, status="error"))
    manager.check(now=T0)
    quiet = manager.check(now=T0 + 2 * HOUR)  # no calls in the window: neither ok nor firing
    assert quiet.resolved == [] and quiet.evaluations[0].firing is None
    assert manager.state()["errors|"]["status"] == "firing"
    assert len(recorder.notes) == 1


def test_a_group_that_disappears_resolves(log: EventLog, tmp_path: Path) -> None:
    rule = {**ERRORS, "by": "model"}
    manager, recorder = _manager(log, tmp_path / "state", rule)
    write(log, calls(5, T0 - 10 * MINUTE, T0, model="gpt-4o", status="error"))
    write(log, calls(5, T0 - 10 * MINUTE, T0, model="claude-sonnet-4"))
    first = manager.check(now=T0)
    assert [(n.name, n.group) for n in first.fired] == [("errors", "gpt-4o")]
    write(log, calls(5, T0 + 10 * MINUTE, T0 + 20 * MINUTE, model="claude-sonnet-4"))
    later = manager.check(now=T0 + 20 * MINUTE)  # gpt-4o has no calls left in the window
    assert [(n.state, n.group) for n in later.resolved] == [("resolved", "gpt-4o")]
    assert manager.state()["errors|gpt-4o"]["status"] == "ok"
    assert alert_rows(log)[-1] == ("errors", "resolved", "gpt-4o", False)
    assert manager.check(now=T0 + 21 * MINUTE).resolved == []
    assert len(recorder.notes) == 2


def test_alert_events_carry_the_verdict(log: EventLog, tmp_path: Path) -> None:
    manager, _ = _manager(log, tmp_path / "state", {**ERRORS, "by": "model"})
    write(log, calls(4, T0 - 10 * MINUTE, T0, model="gpt-4o", status="error"))
    manager.check(now=T0)
    with log.store() as store:
        row = store.rows("SELECT ts, name, severity, status, value, threshold, item_count, "
                         "attributes->>'dimension', attributes->>'metric' FROM events "
                         "WHERE kind = 'alert'")
    assert row == [(T0, "errors", "warning", "firing", 1.0, 0.1, 4, "model", "error_rate")]


def test_the_state_survives_a_new_manager(log: EventLog, tmp_path: Path) -> None:
    write(log, calls(10, T0 - 10 * MINUTE, T0, status="error"))
    first, sent_first = _manager(log, tmp_path / "state", RULE)
    first.check(now=T0)
    second, sent_second = _manager(log, tmp_path / "state", RULE)
    assert second.check(now=T0 + MINUTE).fired == []
    assert len(sent_first.notes) == 1 and sent_second.notes == []
    assert second.state()["errors|"]["rule"] == "errors"
    # a rule taken out of the file leaves no state behind
    third, _ = _manager(log, tmp_path / "state", {**RULE, "name": "renamed"})
    third.check(now=T0 + 2 * MINUTE)
    assert set(third.state()) == {"renamed|"}


def test_a_damaged_state_file_costs_at_most_a_repeat(log: EventLog, tmp_path: Path) -> None:
    write(log, calls(10, T0 - 10 * MINUTE, T0, status="error"))
    manager, recorder = _manager(log, tmp_path / "state", RULE)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "state.json").write_text("{not json")
    assert len(manager.check(now=T0).fired) == 1
    assert manager.check(now=T0 + MINUTE).fired == []
    assert len(recorder.notes) == 1


def test_concurrent_checks_notify_once(log: EventLog, tmp_path: Path) -> None:
    write(log, calls(10, T0 - 10 * MINUTE, T0, status="error"))
    managers = [_manager(log, tmp_path / "state", RULE) for _ in range(4)]
    start = threading.Barrier(len(managers))

    def run(manager: AlertManager) -> None:
        start.wait()
        manager.check(now=T0)

    threads = [threading.Thread(target=run, args=(m,)) for m, _ in managers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sum(len(recorder.notes) for _, recorder in managers) == 1
    assert len(alert_rows(log)) == 1
