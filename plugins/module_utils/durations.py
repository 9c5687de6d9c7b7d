# -*- coding: utf-8 -*-
# Apache-2.0 (see LICENSE)
"""Durations (LiteLLM syntax ``<int><unit>``, units s m h d w mo, and the portal's daily/weekly/monthly/yearly) and timestamps."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re

# The grammar the proxy accepts too (both are checked against tests/data/durations.yaml): LiteLLM's <N><unit>
# with N a positive whole number and unit s, m, h, d, w or mo, or one of the portal's budget periods, any letter
# case; whitespace around the value is ignored, inside it is not.
DURATION_RE = re.compile(r"^(\d+)(mo|s|m|h|d|w)$")
MAX_COUNT = 999999999
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Named budget periods the portal sends: word -> (count, unit); "y" is a calendar year (no <N><unit> spelling).
NAMED_PERIODS = {"daily": (1, "d"), "weekly": (1, "w"), "monthly": (1, "mo"), "yearly": (1, "y")}
ACCEPTED = "a positive whole number followed by s, m, h, d, w or mo (for example 30d or 12h), or daily, weekly, monthly or yearly"
NEVER = ("never", "-1")
# Two expiry times closer than this are the same for idempotency purposes.
EXPIRY_TOLERANCE_SECONDS = 120

UTC = datetime.timezone.utc


class DurationError(ValueError):
    pass


def parse_duration(value, option="duration"):
    """Return the meaning ``(count, unit)`` of a duration, or raise ``DurationError`` naming the option and value."""
    text = "" if value is None else str(value)
    stripped = text.strip()
    if stripped.lower() in NAMED_PERIODS:
        return NAMED_PERIODS[stripped.lower()]
    match = DURATION_RE.match(stripped)
    if not match or int(match.group(1)) <= 0:
        raise DurationError("Invalid %s %r: expected %s" % (option, text, ACCEPTED))
    if int(match.group(1)) > MAX_COUNT:
        raise DurationError("Invalid %s %r: too long (at most %d of a unit); expected %s" % (option, text, MAX_COUNT, ACCEPTED))
    return int(match.group(1)), match.group(2)


def normalize_duration(value, option="duration"):
    """The duration as it will be sent (surrounding whitespace removed), after checking it; the proxy keeps it as given."""
    parse_duration(value, option)
    return str(value).strip()


def same_duration(a, b):
    """True when two durations (or None) mean the same period: ``monthly`` and ``1mo``, ``weekly`` and ``1w``."""
    if a is None or b is None:
        return a is None and b is None
    try:
        return parse_duration(a) == parse_duration(b)
    except DurationError:
        return str(a).strip() == str(b).strip()


def add_duration(start, value):
    """``start`` plus a duration, months and years by calendar (as LiteLLM does)."""
    count, unit = parse_duration(value)
    if unit == "y":
        count, unit = 12 * count, "mo"
    if unit != "mo":
        return start + datetime.timedelta(seconds=count * UNIT_SECONDS[unit])
    month_index = start.month - 1 + count
    year = start.year + month_index // 12
    month = month_index % 12 + 1
    day = min(start.day, _days_in_month(year, month))
    return start.replace(year=year, month=month, day=day)


def _days_in_month(year, month):
    nxt = datetime.date(year + (month // 12), month % 12 + 1, 1)
    return (nxt - datetime.timedelta(days=1)).day


def utcnow():
    return datetime.datetime.now(UTC)


def parse_timestamp(value):
    """Parse an ISO 8601 timestamp (``Z`` or offset; naive means UTC). None and "" give None."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime.datetime):
        dt = value
    else:
        text = str(value).strip()
        if text.endswith("Z") or text.endswith("z"):
            text = text[:-1] + "+00:00"
        text = text.replace(" ", "T", 1) if "T" not in text and " " in text else text
        # Python < 3.11 accepts only 0, 3 or 6 fractional digits.
        match = re.match(r"^(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)$", text)
        if match:
            text = "%s.%s%s" % (match.group(1), (match.group(2) + "000000")[:6], match.group(3))
        try:
            dt = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise DurationError("Invalid timestamp %r: expected ISO 8601, for example 2026-12-31T18:00:00Z" % (value,))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def format_timestamp(dt):
    return None if dt is None else dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def same_instant(a, b, tolerance=EXPIRY_TOLERANCE_SECONDS):
    """True when two timestamps (or None = never) are the same within the tolerance."""
    a, b = parse_timestamp(a), parse_timestamp(b)
    if a is None or b is None:
        return a is None and b is None
    return abs((a - b).total_seconds()) <= tolerance


def duration_until(target, now=None):
    """A LiteLLM duration string (whole seconds, at least 1) that makes a key expire at ``target``."""
    now = now or utcnow()
    seconds = int(round((parse_timestamp(target) - now).total_seconds()))
    if seconds < 1:
        raise DurationError("Expiry %s is not in the future" % format_timestamp(parse_timestamp(target)))
    return "%ds" % seconds


def is_expired(expires, now=None):
    dt = parse_timestamp(expires)
    return dt is not None and dt <= (now or utcnow())
