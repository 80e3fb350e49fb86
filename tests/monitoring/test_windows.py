"""Window names: rolling spans, calendar periods in a time zone (DST included), and junk."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from devora_lab.errors import ConfigError
from devora_lab.monitoring.windows import CALENDAR_WINDOWS, Window, parse_duration, parse_window

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
# zones whose midnights all exist (transitions at 02:00 or 03:00, half hours, none at all)
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata",
         "Pacific/Chatham", "America/St_Johns")
BERLIN = ZoneInfo("Europe/Berlin")
HOUR = timedelta(hours=1)

nows = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1),
                    timezones=st.just(timezone.utc))
units = st.sampled_from(sorted(UNITS))
zones = st.sampled_from(ZONES)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=timezone.utc)


def _local_midnight(moment: datetime | None, zone: ZoneInfo) -> date:
    """The local date of ``moment``, asserting that it is a local midnight."""
    assert moment is not None
    local = moment.astimezone(zone)
    assert (local.hour, local.minute, local.second, local.microsecond) == (0, 0, 0, 0), local
    return local.date()


# -- durations --------------------------------------------------------------------------------


@given(st.integers(1, 10**6), units, st.sampled_from(["", " ", "  "]))
def test_duration_round_trip(n: int, unit: str, space: str) -> None:
    assert parse_duration(f"{space}{n}{space}{unit}{space}") == timedelta(seconds=n * UNITS[unit])


@given(st.integers(1, 10**4), st.integers(1, 9), units)
def test_decimal_durations(whole: int, tenths: int, unit: str) -> None:
    got = parse_duration(f"{whole}.{tenths}{unit}").total_seconds()
    assert got == pytest.approx((whole + tenths / 10) * UNITS[unit], rel=1e-12)


@pytest.mark.parametrize("text", [
    "", "m", "15", "0m", "0.0h", "-5m", "+5m", "5 minutes", "5M", "1e3s", "5ms", "1.s", ".5h",
    "5m5s", "٣m", "0.0000001s", "99999999999999w", "nan s", "inf h"])
def test_junk_durations_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="not a duration"):
        parse_duration(text)


def test_a_duration_must_be_text() -> None:
    with pytest.raises(ConfigError):
        parse_duration(15)  # type: ignore[arg-type]


# -- rolling spans ----------------------------------------------------------------------------


@given(st.integers(1, 5000), units, nows)
def test_a_span_ends_now_and_lasts_its_duration(n: int, unit: str, now: datetime) -> None:
    window = parse_window(f"{n}{unit}", now=now)
    assert window.until == now
    assert window.since is not None and window.until is not None
    assert window.until - window.since == timedelta(seconds=n * UNITS[unit])
    assert window.seconds == n * UNITS[unit]
    assert window.label == f"{n}{unit}"
    assert window.until.tzinfo is not None and window.until.utcoffset() == timedelta(0)


@given(nows, zones)
def test_now_in_any_zone_comes_back_in_utc(now: datetime, zone: str) -> None:
    window = parse_window("6h", now=now.astimezone(ZoneInfo(zone)))
    assert window.until == now and window.until is not None
    assert window.until.utcoffset() == timedelta(0)


def test_names_are_case_and_space_insensitive() -> None:
    now = utc(2026, 3, 2, 10)
    assert parse_window(" 15m ", now=now) == Window(now - 15 * timedelta(minutes=1), now, "15m")
    assert parse_window("TODAY", now=now) == parse_window("today", now=now)
    assert parse_window("All") == Window(None, None, "all")


def test_without_now_the_window_ends_at_the_current_time() -> None:
    before = datetime.now(timezone.utc)
    window = parse_window("1h")
    after = datetime.now(timezone.utc)
    assert window.until is not None and before <= window.until <= after


def test_all_is_unbounded() -> None:
    window = parse_window("all", now=utc(2026, 3, 2))
    assert (window.since, window.until, window.seconds) == (None, None, None)


# -- calendar periods -------------------------------------------------------------------------


@given(nows, zones)
def test_today_starts_at_local_midnight_and_ends_now(now: datetime, name: str) -> None:
    zone = ZoneInfo(name)
    window = parse_window("today", now=now, tz=name)
    assert window.since is not None and window.since <= now == window.until
    assert _local_midnight(window.since, zone) == now.astimezone(zone).date()
    assert now - window.since < timedelta(hours=25)


@given(nows, zones)
def test_yesterday_ends_where_today_starts(now: datetime, name: str) -> None:
    zone = ZoneInfo(name)
    today = parse_window("today", now=now, tz=name)
    yesterday = parse_window("yesterday", now=now, tz=name)
    assert yesterday.until == today.since
    assert _local_midnight(yesterday.since, zone) == (
        now.astimezone(zone).date() - timedelta(days=1))
    assert yesterday.seconds is not None
    assert 23 * 3600 <= yesterday.seconds <= 25 * 3600


@given(nows, zones)
def test_weeks_start_on_local_mondays(now: datetime, name: str) -> None:
    zone = ZoneInfo(name)
    this_week = parse_window("this_week", now=now, tz=name)
    last_week = parse_window("last_week", now=now, tz=name)
    assert this_week.until == now
    monday = _local_midnight(this_week.since, zone)
    assert monday.weekday() == 0 and 0 <= (now.astimezone(zone).date() - monday).days < 7
    assert last_week.until == this_week.since
    assert _local_midnight(last_week.since, zone) == monday - timedelta(days=7)
    assert last_week.seconds is not None
    assert abs(last_week.seconds - 7 * 86_400) <= 3600  # 7 local days: one DST change at most


@given(nows, zones)
def test_months_start_on_the_local_first(now: datetime, name: str) -> None:
    zone = ZoneInfo(name)
    this_month = parse_window("this_month", now=now, tz=name)
    last_month = parse_window("last_month", now=now, tz=name)
    local = now.astimezone(zone).date()
    assert this_month.until == now
    assert _local_midnight(this_month.since, zone) == local.replace(day=1)
    assert last_month.until == this_month.since
    first = _local_midnight(last_month.since, zone)
    assert first.day == 1 and (first.year * 12 + first.month) + 1 == local.year * 12 + local.month


def test_berlin_days_around_the_clock_changes() -> None:
    # 2026-03-29: clocks go from 02:00 CET to 03:00 CEST; 2026-10-25: back from 03:00 to 02:00
    spring = parse_window("today", now=utc(2026, 3, 29, 12), tz="Europe/Berlin")
    assert spring.since == utc(2026, 3, 28, 23)  # midnight CET (+1)
    short = parse_window("yesterday", now=utc(2026, 3, 30, 10), tz="Europe/Berlin")
    assert (short.since, short.until) == (utc(2026, 3, 28, 23), utc(2026, 3, 29, 22))
    assert short.seconds == 23 * 3600
    long = parse_window("yesterday", now=utc(2026, 10, 26, 10), tz="Europe/Berlin")
    assert (long.since, long.until) == (utc(2026, 10, 24, 22), utc(2026, 10, 25, 23))
    assert long.seconds == 25 * 3600
    just_after_midnight = parse_window("today", now=utc(2026, 3, 29, 22, 30), tz="Europe/Berlin")
    assert just_after_midnight.since == utc(2026, 3, 29, 22)  # 00:30 CEST on the 30th


def test_berlin_week_and_month_across_the_spring_change() -> None:
    now = utc(2026, 4, 1, 9)  # a Wednesday
    this_week = parse_window("this_week", now=now, tz="Europe/Berlin")
    last_week = parse_window("last_week", now=now, tz="Europe/Berlin")
    assert this_week.since == utc(2026, 3, 29, 22)  # Monday 30 March, 00:00 CEST
    assert last_week == Window(utc(2026, 3, 22, 23), utc(2026, 3, 29, 22), "last_week")
    assert last_week.seconds == 7 * 86_400 - 3600
    last_month = parse_window("last_month", now=utc(2026, 4, 15), tz="Europe/Berlin")
    assert last_month == Window(utc(2026, 2, 28, 23), utc(2026, 3, 31, 22), "last_month")


def test_last_month_in_january_is_december() -> None:
    window = parse_window("last_month", now=utc(2026, 1, 5, 12))
    assert window == Window(utc(2025, 12, 1), utc(2026, 1, 1), "last_month")


def test_a_midnight_that_does_not_exist_starts_the_day_at_the_clock_change() -> None:
    # Havana moves its clocks from 00:00 to 01:00 (CST -5 to CDT -4) on 2026-03-08
    window = parse_window("today", now=utc(2026, 3, 8, 12), tz="America/Havana")
    assert window.since == utc(2026, 3, 8, 5)
    assert window.since.astimezone(ZoneInfo("America/Havana")).hour == 1


def test_the_zone_does_not_move_a_span() -> None:
    now = utc(2026, 3, 2, 10)
    assert parse_window("24h", now=now, tz="Europe/Berlin") == parse_window("24h", now=now)


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "fortnight", "last_year", "tomorrow", "24", "-1h",
                                  "this week", "today!", "0s", "9999999999w"])
def test_unknown_windows_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="window") as raised:
        parse_window(text, now=utc(2026, 3, 2))
    assert raised.value.fix is not None and "today" in raised.value.fix


def _looks_valid(text: str) -> bool:
    """What the grammar accepts: a calendar name, or a number of at least 1 µs and a unit."""
    name = text.strip().lower()
    span = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhdw])\s*", name)
    return name in CALENDAR_WINDOWS or (
        span is not None and float(span.group(1)) * UNITS[span.group(2)] >= 1e-6)


junk = st.one_of(st.text(max_size=20),
                 st.from_regex(r"[ 0-9.+\-eE]{0,5}[a-zA-Z_ ]{0,6}", fullmatch=True))


@given(junk)
def test_text_that_names_no_window_is_a_config_error(text: str) -> None:
    assume(not _looks_valid(text))
    with pytest.raises(ConfigError, match="window"):
        parse_window(text, now=utc(2026, 3, 2), tz="Europe/Berlin")


names = st.one_of(
    st.from_regex(r"[ \t]{0,2}[0-9]{1,4}(\.[0-9]{1,3})?[ \t]{0,2}[smhdwSMHDW][ \t]{0,2}",
                  fullmatch=True),
    st.sampled_from(CALENDAR_WINDOWS).map(str.upper), st.sampled_from(CALENDAR_WINDOWS))


@given(names)
def test_text_the_grammar_accepts_is_a_window(text: str) -> None:
    assume(_looks_valid(text))  # not zero
    now = utc(2026, 3, 2, 12)
    window = parse_window(text, now=now, tz="Europe/Berlin")
    assert window.label == text.strip().lower()
    if window.label != "all":
        assert window.since is not None and window.until is not None
        assert window.since < window.until <= now


def test_a_span_reaching_before_the_year_1_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="before the year 1"):
        parse_window("9999999d", now=utc(2026, 3, 2))
    with pytest.raises(ConfigError, match="before the year 1"):
        parse_window("1h", now=utc(1, 1, 1))


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "Europe", "Europe/", "a" * 300, "../UTC",
                                  "UTC\x00"])
def test_unknown_time_zones_are_config_errors(zone: str) -> None:
    with pytest.raises(ConfigError, match="time zone"):
        parse_window("today", now=utc(2026, 3, 2), tz=zone)


def test_a_naive_now_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="naive"):
        parse_window("1h", now=datetime(2026, 3, 2))


# -- Window ----------------------------------------------------------------------------------


@given(nows, st.integers(1, 10**7), st.integers(-(10**8), 10**8))
def test_shifting_keeps_the_length(since: datetime, seconds: int, shift: int) -> None:
    window = Window(since, since + timedelta(seconds=seconds), "x")
    moved = window.shifted(timedelta(seconds=shift))
    assert moved.seconds == seconds and moved.label == "x"
    assert moved.since == since + timedelta(seconds=shift)
    assert Window(None, since).shifted(HOUR) == Window(None, since + HOUR)
