"""Time windows: "the last 15 minutes", "yesterday", "this month", as a half-open interval.

Metrics, alert rules and the CLI all name windows the same way:

- a rolling span ending now: ``30s``, ``15m``, ``6h``, ``7d``, ``2w`` (a number and a unit);
- a calendar period in a time zone: ``today``, ``yesterday``, ``this_week``, ``last_week``
  (weeks start on Monday), ``this_month``, ``last_month``;
- ``all``: no bound at all.

``parse_window`` turns a name into a ``Window`` of aware UTC datetimes ``[since, until)``;
a calendar period that has not ended yet ends now, so its rate metrics divide by the time
that has really passed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from devora_lab.errors import ConfigError

__all__ = ["CALENDAR_WINDOWS", "Window", "parse_duration", "parse_window"]

_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION: Final = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([smhdw])\s*$")
CALENDAR_WINDOWS: Final = ("today", "yesterday", "this_week", "last_week", "this_month",
                           "last_month", "all")
_RESOLUTION: Final = timedelta(microseconds=1)
_FIX: Final = ("use a span such as 15m, 6h, 7d or 2w, or one of " + ", ".join(CALENDAR_WINDOWS))


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open interval ``[since, until)``; ``None`` leaves that side open."""

    since: datetime | None
    until: datetime | None
    label: str = ""

    @property
    def seconds(self) -> float | None:
        """Length in seconds, or None when a side is open."""
        if self.since is None or self.until is None:
            return None
        return (self.until - self.since).total_seconds()

    def shifted(self, delta: timedelta) -> Window:
        """The same window moved by ``delta`` (for "this hour last week" comparisons)."""
        return Window(None if self.since is None else self.since + delta,
                      None if self.until is None else self.until + delta, self.label)


def parse_duration(text: str) -> timedelta:
    """``"15m"`` → 15 minutes. Units: s, m, h, d, w; the number must be positive."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    try:
        span = timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)]) if match else None
    except OverflowError:  # more than timedelta holds (about 2.7 million years)
        span = None
    if span is None or span < _RESOLUTION:  # zero, or rounded to zero microseconds
        raise ConfigError(f"not a duration: {text!r}",
                          fix="write a positive number and a unit: 30s, 15m, 6h, 7d or 2w")
    return span


def parse_window(text: str, *, now: datetime | None = None, tz: str = "UTC") -> Window:
    """The window named ``text``, ending at ``now`` (default: the current time).

    Calendar periods are aligned in the IANA time zone ``tz``; the result is in UTC.
    """
    end = _aware(now) if now is not None else datetime.now(timezone.utc)
    name = text.strip().lower() if isinstance(text, str) else ""
    if name == "all":
        return Window(None, None, "all")
    try:
        if name in CALENDAR_WINDOWS:
            return _calendar(name, end, _zone(tz))
        return Window(end - _span(text, name), end, name)
    except OverflowError:  # the window would start before the year 1
        raise ConfigError(f"window {text!r} reaches before the year 1",
                          fix="use a later `now` or a shorter window") from None


def _span(text: str, name: str) -> timedelta:
    try:
        return parse_duration(name)
    except ConfigError:
        raise ConfigError(f"unknown window {text!r}", fix=_FIX) from None


def _calendar(name: str, now: datetime, zone: ZoneInfo) -> Window:
    local = now.astimezone(zone)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if name in ("today", "yesterday"):
        start = day if name == "today" else _local_midnight(day.date() - timedelta(days=1), zone)
        end = now if name == "today" else day
    elif name in ("this_week", "last_week"):
        monday = day.date() - timedelta(days=day.weekday())
        this_week = _local_midnight(monday, zone)
        start = this_week if name == "this_week" else _local_midnight(
            monday - timedelta(days=7), zone)
        end = now if name == "this_week" else this_week
    else:
        first = day.date().replace(day=1)
        this_month = _local_midnight(first, zone)
        previous = (first - timedelta(days=1)).replace(day=1)
        start = this_month if name == "this_month" else _local_midnight(previous, zone)
        end = now if name == "this_month" else this_month
    return Window(start.astimezone(timezone.utc), end.astimezone(timezone.utc), name)


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ConfigError(f"a naive datetime ({moment.isoformat()}) has no time zone",
                          fix="pass an aware datetime, e.g. datetime.now(timezone.utc)")
    return moment.astimezone(timezone.utc)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder, a name too long
        raise ConfigError(f"unknown time zone {name!r}",
                          fix="use an IANA name such as UTC or Europe/Berlin") from None
