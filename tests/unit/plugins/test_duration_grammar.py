"""One duration grammar: the proxy and the modules against the same table (tests/data/durations.yaml).

A value that one side accepts and the other rejects, or that they read differently, fails here.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "files" / "proxy"))

from ansible_collections.rhpds.litemaas.plugins.module_utils import durations as module_durations  # noqa: E402

from litemaas_proxy import durations as proxy_durations  # noqa: E402

TABLE = yaml.safe_load((REPO / "tests" / "data" / "durations.yaml").read_text())
ACCEPTED = TABLE["accepted"]
REJECTED = TABLE["rejected"]
UTC = timezone.utc


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_the_table_covers_every_unit_and_every_portal_word():
    units = {row["unit"] for row in ACCEPTED}
    assert units == {"s", "m", "h", "d", "w", "mo", "y"}
    words = {row["input"].strip().lower() for row in ACCEPTED if not row["input"].strip()[0].isdigit()}
    assert words == {"daily", "weekly", "monthly", "yearly"}


@pytest.mark.parametrize("row", ACCEPTED, ids=lambda r: repr(r["input"]))
def test_both_sides_read_the_same_meaning(row):
    meaning = (row["count"], row["unit"])
    assert tuple(proxy_durations.parse_duration(row["input"])) == meaning
    assert tuple(module_durations.parse_duration(row["input"])) == meaning


@pytest.mark.parametrize("row", ACCEPTED, ids=lambda r: repr(r["input"]))
def test_both_sides_compute_the_same_expiry(row):
    start = ts(TABLE["expires_from"])
    assert proxy_durations.duration_after(row["input"], start) == ts(row["expires"])
    assert module_durations.add_duration(start, row["input"]) == ts(row["expires"])


@pytest.mark.parametrize("row", ACCEPTED, ids=lambda r: repr(r["input"]))
def test_proxy_budget_reset_is_calendar_aligned(row):
    assert proxy_durations.next_budget_reset(row["input"], ts(TABLE["resets_from"])) == ts(row["resets"])


@pytest.mark.parametrize("value", REJECTED + [None, 30, 1.5, ["1d"]], ids=repr)
def test_both_sides_reject_the_same_values(value):
    with pytest.raises(proxy_durations.DurationError) as proxy_err:
        proxy_durations.check_duration(value)
    with pytest.raises(module_durations.DurationError) as module_err:
        module_durations.parse_duration(value, "budget_duration")
    # Both messages name the value and say what is accepted.
    if isinstance(value, str):
        assert repr(value) in str(proxy_err.value)
        assert repr(value) in str(module_err.value)
    for err in (proxy_err.value, module_err.value):
        assert "daily, weekly, monthly" in str(err) and "mo" in str(err)
    assert "budget_duration" in str(module_err.value)


def test_same_meaning_is_no_change_for_the_modules():
    assert module_durations.same_duration("monthly", "1mo")
    assert module_durations.same_duration("Weekly", "1w")
    assert module_durations.same_duration("daily", " 1d ")
    assert not module_durations.same_duration("yearly", "12mo")  # a calendar year resets on 1 January
    assert not module_durations.same_duration("7d", "1w")  # same reset, but different spellings of a different meaning
    assert not module_durations.same_duration(None, "1d")


@pytest.mark.parametrize("now,expected", [
    ("2026-12-06T22:30:00Z", "2026-12-06T23:00:00Z"),  # 23:30 in Paris: next midnight there is 23:00 UTC
    ("2026-12-06T23:30:00Z", "2026-12-07T23:00:00Z"),  # 00:30 on the 7th in Paris
])
def test_daily_reset_in_another_time_zone(now, expected):
    zone = proxy_durations.parse_timezone("Europe/Paris", "LITEMAAS_BUDGET_TIMEZONE")
    assert proxy_durations.next_budget_reset("daily", ts(now), zone) == ts(expected)


def test_monthly_and_yearly_resets_in_another_time_zone():
    zone = proxy_durations.parse_timezone("America/New_York", "LITEMAAS_BUDGET_TIMEZONE")
    now = ts("2026-12-31T23:00:00Z")  # 18:00 on 31 December in New York
    assert proxy_durations.next_budget_reset("monthly", now, zone) == ts("2027-01-01T05:00:00Z")
    assert proxy_durations.next_budget_reset("yearly", now, zone) == ts("2027-01-01T05:00:00Z")
    assert proxy_durations.next_budget_reset("weekly", now, zone) == ts("2027-01-04T05:00:00Z")  # Monday 4 January


def test_unknown_time_zone_names_the_setting():
    with pytest.raises(proxy_durations.DurationError, match="Invalid LITEMAAS_BUDGET_TIMEZONE 'Mars/Olympus'"):
        proxy_durations.parse_timezone("Mars/Olympus", "LITEMAAS_BUDGET_TIMEZONE")


def test_the_openapi_document_describes_the_same_grammar():
    """/openapi.json's Duration pattern (what the fuzzing generates from) agrees with the table."""
    import re

    document = yaml.safe_load((REPO / "files" / "proxy" / "litemaas_proxy" / "openapi.yaml").read_text())
    pattern = re.compile(document["components"]["schemas"]["Duration"]["pattern"])
    assert [row["input"] for row in ACCEPTED if not pattern.search(row["input"])] == []
    assert [value for value in REJECTED if pattern.search(value)] == []
