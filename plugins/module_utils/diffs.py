# -*- coding: utf-8 -*-
# Apache-2.0 (see LICENSE)
"""Compare desired and current objects on the fields the user gave; build before/after diffs without secrets."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

SECRET_FIELDS = frozenset(("key", "api_key", "secret", "password", "master_key", "lite_llm_key_value", "new_key"))
REDACTED = "<redacted>"


def normalize(value):
    """Normalise for comparison: numbers compare by value, lists whose items are all scalars as sets."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return dict((k, normalize(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        items = [normalize(v) for v in value]
        if all(isinstance(v, (str, float, int)) for v in items):
            return sorted(set(items), key=lambda x: (str(type(x)), x))
        return items
    return value


def values_differ(desired, current):
    """True when ``desired`` is not already satisfied by ``current``. Dicts compare as subsets:
    keys the user did not give are ignored (server-set fields)."""
    if isinstance(desired, dict):
        if not isinstance(current, dict):
            return True
        return any(values_differ(v, current.get(k)) for k, v in desired.items())
    return normalize(desired) != normalize(current)


def changed_fields(desired, current):
    """The subset of ``desired`` whose values differ from ``current`` (top level)."""
    current = current or {}
    return dict((k, v) for k, v in desired.items() if values_differ(v, current.get(k)))


def redact(obj, secret_fields=SECRET_FIELDS):
    """A deep copy with secret fields replaced, for diffs and messages."""
    if isinstance(obj, dict):
        return dict((k, REDACTED if k in secret_fields and v not in (None, "") else redact(v, secret_fields)) for k, v in obj.items())
    if isinstance(obj, list):
        return [redact(v, secret_fields) for v in obj]
    return copy.deepcopy(obj)


def make_diff(before, after, fields=None, secret_fields=SECRET_FIELDS):
    """``{before, after}`` restricted to ``fields`` (all when None), secrets removed. None means absent."""

    def pick(obj):
        if obj is None:
            return {}
        if fields is None:
            return redact(obj, secret_fields)
        return redact(dict((k, obj.get(k)) for k in fields if k in obj), secret_fields)

    return {"before": pick(before), "after": pick(after)}
