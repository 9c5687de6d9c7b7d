from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from ansible_collections.rhpds.litemaas.plugins.module_utils import diffs, durations

UTC = timezone.utc


# The grammar itself (accepted and rejected values, the portal's words) is checked against the shared table in
# test_duration_grammar.py, together with the proxy.


def test_add_duration_months_are_calendar_months():
    start = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    assert durations.add_duration(start, "1mo") == datetime(2026, 2, 28, 12, 0, tzinfo=UTC)
    assert durations.add_duration(start, "13mo") == datetime(2027, 2, 28, 12, 0, tzinfo=UTC)
    assert durations.add_duration(start, "2d") == start + timedelta(days=2)


@pytest.mark.parametrize("text", ["2026-12-31T18:00:00Z", "2026-12-31T18:00:00+00:00", "2026-12-31T19:00:00+01:00", "2026-12-31 18:00:00",
                                  "2026-12-31T18:00:00.123456789Z"])
def test_parse_timestamp_forms(text):
    assert durations.parse_timestamp(text).replace(microsecond=0) == datetime(2026, 12, 31, 18, 0, tzinfo=UTC)


def test_same_instant_and_expiry():
    assert durations.same_instant("2026-12-31T18:00:00Z", "2026-12-31T18:01:00+00:00")
    assert not durations.same_instant("2026-12-31T18:00:00Z", "2026-12-31T18:03:00Z")
    assert durations.same_instant(None, None) and not durations.same_instant(None, "2026-12-31T18:00:00Z")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert durations.duration_until("2026-01-02T00:00:00Z", now) == "86400s"
    with pytest.raises(durations.DurationError, match="is not in the future"):
        durations.duration_until("2025-01-01T00:00:00Z", now)
    assert durations.is_expired("2025-12-31T23:59:59Z", now) and not durations.is_expired(None, now)


def test_values_differ_compares_only_given_fields():
    assert not diffs.values_differ({"a": 1}, {"a": 1.0, "b": 2})
    assert diffs.values_differ({"a": 1}, {"a": 2})
    assert not diffs.values_differ(["b", "a"], ["a", "b"])
    assert diffs.values_differ(["a"], ["a", "b"])
    assert diffs.values_differ(5, None)
    assert not diffs.values_differ(None, None)
    assert diffs.changed_fields({"x": 1, "y": [1, 2]}, {"x": 1, "y": [2, 3]}) == {"y": [1, 2]}


def test_make_diff_removes_secrets():
    diff = diffs.make_diff({"key": "sk-secret", "models": ["a"], "api_key": ""}, {"key": "sk-new", "models": ["b"], "nested": {"api_key": "x"}})
    assert diff["before"] == {"key": "<redacted>", "models": ["a"], "api_key": ""}
    assert diff["after"] == {"key": "<redacted>", "models": ["b"], "nested": {"api_key": "<redacted>"}}
    assert diffs.make_diff(None, {"a": 1, "b": 2}, fields=("a",)) == {"before": {}, "after": {"a": 1}}
