# -*- coding: utf-8 -*-
# Apache-2.0 (see LICENSE)
"""The options of one virtual key (``KEY_OPTIONS_ARGSPEC``, doc fragment ``rhpds.litemaas.key_options``)
and the pure logic that turns them into a plan: create, update (only the changed fields), regenerate,
or nothing. Shared by the ``virtual_key`` and ``virtual_keys`` modules.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible_collections.rhpds.litemaas.plugins.module_utils.diffs import make_diff, values_differ
from ansible_collections.rhpds.litemaas.plugins.module_utils.durations import (
    NEVER,
    DurationError,
    add_duration,
    duration_until,
    format_timestamp,
    normalize_duration,
    parse_timestamp,
    same_duration,
    same_instant,
    utcnow,
)

KEY_OPTIONS_ARGSPEC = dict(
    models=dict(type="list", elements="str"),
    max_budget=dict(type="float"),
    budget_duration=dict(type="str"),
    tpm_limit=dict(type="int"),
    rpm_limit=dict(type="int"),
    max_parallel_requests=dict(type="int"),
    duration=dict(type="str"),
    expires=dict(type="str"),
    user_id=dict(type="str"),
    team_id=dict(type="str"),
    metadata=dict(type="dict"),
    blocked=dict(type="bool"),
)

KEY_OPTION_NAMES = tuple(KEY_OPTIONS_ARGSPEC)
# Fields compared as they are (after normalisation); budget_duration by meaning ("monthly" is "1mo").
PLAIN_FIELDS = ("models", "max_budget", "budget_duration", "tpm_limit", "rpm_limit", "max_parallel_requests", "user_id", "team_id", "blocked")
# What a module returns about a key: never the secret.
PUBLIC_FIELDS = (
    "key_alias",
    "token",
    "key_name",
    "models",
    "max_budget",
    "spend",
    "budget_duration",
    "budget_reset_at",
    "tpm_limit",
    "rpm_limit",
    "max_parallel_requests",
    "user_id",
    "team_id",
    "metadata",
    "blocked",
    "expires",
    "created_at",
    "updated_at",
)
DIFF_FIELDS = ("key_alias",) + PLAIN_FIELDS + ("metadata", "expires")


class KeyOptionError(ValueError):
    """Invalid key options, found before any call is made."""


def desired_key(alias, options, now=None):
    """Validate and normalise the options the user gave (None = not given) into a desired-state dict.

    Returns a dict with only the given fields; ``duration`` and ``expires`` are kept apart because
    they are not compared like the others.
    """
    if not alias or not str(alias).strip():
        raise KeyOptionError("key_alias must be a non-empty string")
    want = {"key_alias": str(alias)}
    opts = dict((k, v) for k, v in options.items() if k in KEY_OPTION_NAMES and v is not None)
    for name in ("max_budget", "tpm_limit", "rpm_limit", "max_parallel_requests"):
        if name in opts and opts[name] < 0:
            raise KeyOptionError("%s cannot be negative for key '%s'. Received: %s" % (name, alias, opts[name]))
    if "duration" in opts and "expires" in opts:
        raise KeyOptionError("duration and expires are mutually exclusive for key '%s'" % alias)
    try:
        if "budget_duration" in opts:
            opts["budget_duration"] = normalize_duration(opts["budget_duration"], "budget_duration")
        if "duration" in opts:
            opts["duration"] = normalize_duration(opts["duration"], "duration")
        if "expires" in opts:
            if str(opts["expires"]).strip().lower() in NEVER:
                opts["expires"] = None
                want["never_expires"] = True
            else:
                try:
                    when = parse_timestamp(opts["expires"])
                    duration_until(when, now or utcnow())  # must lie in the future
                except DurationError as exc:
                    raise DurationError("Invalid expires: %s" % exc)
                opts["expires"] = format_timestamp(when)
    except DurationError as exc:
        raise KeyOptionError("%s (key '%s')" % (exc, alias))
    if "models" in opts:
        opts["models"] = [m for m in opts["models"] if m]
    want.update(opts)
    return want


def unknown_models(models, known):
    """Entries of ``models`` that are neither a model name, an access group, a wildcard nor a special name."""
    special = ("all-proxy-models", "all-team-models", "no-default-models")
    return [m for m in models or [] if m not in known and m not in special and "*" not in m]


def public_key(info):
    """The returned view of a key: documented fields only, no secret."""
    if not info:
        return {}
    out = dict((k, copy.deepcopy(info.get(k))) for k in PUBLIC_FIELDS if k in info)
    if "expires" in out and out["expires"] is not None:
        out["expires"] = format_timestamp(parse_timestamp(out["expires"]))
    return out


def create_body(want, now=None):
    body = dict((k, v) for k, v in want.items() if k in PLAIN_FIELDS or k in ("key_alias", "metadata"))
    if want.get("duration"):
        body["duration"] = want["duration"]
    elif want.get("expires"):
        body["duration"] = duration_until(want["expires"], now or utcnow())
    return body


def update_changes(want, current, now=None):
    """The /key/update fields needed to bring ``current`` to ``want`` (empty dict = nothing to do)."""
    changes = {}
    for name in PLAIN_FIELDS:
        if name == "budget_duration":
            if name in want and not same_duration(want[name], current.get(name)):
                changes[name] = want[name]
        elif name in want and values_differ(want[name], current.get(name)):
            changes[name] = want[name]
    if "metadata" in want and values_differ(want["metadata"], current.get("metadata") or {}):
        merged = dict(current.get("metadata") or {})
        merged.update(want["metadata"])
        changes["metadata"] = merged
    if want.get("never_expires"):
        if current.get("expires") is not None:
            changes["duration"] = "-1"
    elif want.get("expires") and not same_instant(want["expires"], current.get("expires")):
        changes["duration"] = duration_until(want["expires"], now or utcnow())
    return changes


def predicted(want, current, changes, now=None):
    """What the key will look like after the plan (for check mode and diffs)."""
    after = dict(current or {})
    now = now or utcnow()
    for name in PLAIN_FIELDS + ("key_alias",):
        if name in want:
            after[name] = want[name]
    if "metadata" in changes:
        after["metadata"] = changes["metadata"]
    elif current is None and "metadata" in want:
        after["metadata"] = want["metadata"]
    if current is None:
        if want.get("duration"):
            after["expires"] = format_timestamp(add_duration(now, want["duration"]))
        elif want.get("expires"):
            after["expires"] = want["expires"]
        else:
            after.setdefault("expires", None)
    elif changes.get("duration") == "-1":
        after["expires"] = None
    elif "duration" in changes:
        after["expires"] = want["expires"]
    return after


def plan_key(want, current, state="present", regenerate=False, now=None):
    """Decide what to do for one key. Returns a dict: action (create|update|regenerate|delete|none),
    body (for the call), before/after views (public fields)."""
    now = now or utcnow()
    if state == "absent":
        if current is None:
            return {"action": "none", "body": None, "before": None, "after": None}
        return {"action": "delete", "body": None, "before": public_key(current), "after": None}
    if current is None:
        body = create_body(want, now)
        return {"action": "create", "body": body, "before": None, "after": public_key(predicted(want, None, body, now))}
    changes = update_changes(want, current, now)
    action = "regenerate" if regenerate else ("update" if changes else "none")
    return {"action": action, "body": changes, "before": public_key(current), "after": public_key(predicted(want, current, changes, now))}


def key_diff(plan):
    return make_diff(plan.get("before"), plan.get("after"), DIFF_FIELDS)


def execute_plan(client, plan, check_mode):
    """Carry out a plan. Returns ``(info, secret)``: the key after the call and the new secret when one was minted."""
    action = plan["action"]
    if action == "none" or check_mode:
        return plan.get("after") if action != "none" else plan.get("before"), None
    if action == "create":
        resp = client.generate_key(plan["body"])
        return resp, resp.get("key")
    token = plan["before"]["token"]
    if action == "delete":
        client.delete_keys([token])
        return None, None
    info = None
    if plan["body"]:
        info = client.update_key(token, plan["body"])
    if action == "regenerate":
        resp = client.regenerate_key(token)
        return resp, resp.get("key")
    return info, None
