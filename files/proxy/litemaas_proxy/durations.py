"""The one duration grammar of the proxy, and what a duration means for key expiry and budget resets.

Accepted (surrounding whitespace ignored, nothing else):
- LiteLLM's ``<N><unit>`` with N a positive whole number and unit ``s``, ``m``, ``h``, ``d``, ``w`` or ``mo``
  (``30s``, ``12h``, ``30d``, ``1w``, ``1mo``);
- the LiteMaaS portal's budget periods ``daily``, ``weekly``, ``monthly``, ``yearly`` (any letter case).

The same table of inputs is checked against the collection's modules (tests/data/durations.yaml).
Values are stored and returned exactly as given; only their meaning is computed here.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Any, NamedTuple, Optional

UTC = timezone.utc
_GRAMMAR = re.compile(r"^(\d+)(mo|[smhdw])$")
MAX_COUNT = 999_999_999
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Portal word -> (count, unit). "y" is a calendar year; it has no <N><unit> spelling (LiteLLM has none).
NAMED = {"daily": (1, "d"), "weekly": (1, "w"), "monthly": (1, "mo"), "yearly": (1, "y")}
ACCEPTED = "a positive whole number followed by s, m, h, d, w or mo (e.g. '30d', '1mo'), or daily, weekly, monthly, yearly"


class DurationError(ValueError):
    pass


class Duration(NamedTuple):
    count: int
    unit: str  # s m h d w mo y


def parse_duration(value: Any) -> Duration:
    """The meaning of a duration string, or DurationError naming the value and what is accepted."""
    if not isinstance(value, str):
        raise DurationError(f"Invalid duration {value!r}: expected a string, {ACCEPTED}")
    text = value.strip()
    named = NAMED.get(text.lower())
    if named:
        return Duration(*named)
    match = _GRAMMAR.match(text)
    if not match or int(match.group(1)) == 0:
        raise DurationError(f"Invalid duration {value!r}: expected {ACCEPTED}")
    if int(match.group(1)) > MAX_COUNT:
        raise DurationError(f"Invalid duration {value!r}: too long (at most {MAX_COUNT} of a unit); expected {ACCEPTED}")
    return Duration(int(match.group(1)), match.group(2))


def _add_months(moment: datetime, months: int) -> datetime:
    month0 = moment.month - 1 + months
    year = moment.year + month0 // 12
    month = month0 % 12 + 1
    if year > 9999:
        raise OverflowError("date out of range")
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def _checked(fn, value):
    try:
        return fn()
    except (OverflowError, ValueError) as exc:
        if isinstance(exc, DurationError):
            raise
        raise DurationError(f"Invalid duration {value!r}: too long; expected {ACCEPTED}") from None


def duration_after(value: Any, now: Optional[datetime] = None) -> datetime:
    """``now + duration``, exact (not aligned): a key's expiry. Months and years are calendar ones."""
    now = now or datetime.now(UTC)
    count, unit = parse_duration(value)

    def compute():
        if unit == "mo":
            return _add_months(now, count)
        if unit == "y":
            return _add_months(now, 12 * count)
        return now + timedelta(seconds=count * _SECONDS[unit])
    return _checked(compute, value)


def _local_midnight(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def next_budget_reset(value: Any, now: Optional[datetime] = None, zone: tzinfo = UTC) -> datetime:
    """When a budget with this period next resets, calendar-aligned in ``zone``, as LiteLLM aligns them:
    daily/1d -> next midnight; weekly/1w/7d -> next Monday; monthly/1mo/30d -> the 1st of next month;
    yearly -> 1 January; Nd -> today's midnight + N days; Nw -> today's midnight + N weeks; Nmo -> the 1st,
    N months on; Nh/Nm/Ns -> the next multiple of that many seconds since the epoch."""
    now = now or datetime.now(UTC)
    count, unit = parse_duration(value)

    def compute():
        today = now.astimezone(zone).date()
        if unit == "y":
            return _local_midnight(date(today.year + count, 1, 1), zone)
        if unit == "mo" or (unit == "d" and count == 30):
            months = count if unit == "mo" else 1
            month0 = today.month - 1 + months
            return _local_midnight(date(today.year + month0 // 12, month0 % 12 + 1, 1), zone)
        if (unit == "d" and count == 7) or (unit == "w" and count == 1):
            return _local_midnight(today + timedelta(days=7 - today.weekday()), zone)
        if unit in ("d", "w"):
            return _local_midnight(today + timedelta(days=count * (7 if unit == "w" else 1)), zone)
        step = count * _SECONDS[unit]
        return datetime.fromtimestamp((int(now.timestamp()) // step + 1) * step, UTC)
    return _checked(compute, value)


def check_duration(value: Any) -> Duration:
    """Parse and make sure both meanings (expiry and reset) can be computed: the check request handlers use."""
    meaning = parse_duration(value)
    duration_after(value)
    next_budget_reset(value)
    return meaning


def parse_timezone(value: Any, setting: str) -> tzinfo:
    """A time zone name (``UTC``, ``Europe/Paris``) for budget resets; DurationError naming the setting otherwise."""
    if value in (None, ""):
        return UTC
    name = str(value).strip()
    if name.upper() in ("UTC", "Z", "GMT"):
        return UTC
    try:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, ImportError):
        raise DurationError(f"Invalid {setting} {value!r}: expected a time zone name such as 'UTC' or 'Europe/Paris'") from None
