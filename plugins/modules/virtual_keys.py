#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see LICENSE), a license compatible with the GNU General Public License version 3

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: virtual_keys
short_description: Create, update or remove many virtual keys at once (workshops)
version_added: 0.1.0
description:
  - The bulk form of M(rhpds.litemaas.virtual_key) for workshops and events, one task for hundreds or thousands of keys.
  - The keys are either listed in O(keys), or generated from O(count) and O(alias_pattern). The options of the key
    (O(models), O(max_budget), ...) given at the top level apply to every key; entries in O(keys) may override them.
  - Existing keys are found with a few paged list calls (not one call per key); keys are then created, updated or
    removed concurrently by a bounded pool of O(parallelism) workers. Only keys that differ are written, so a second
    run reports no change.
  - A failure of one key does not stop the others; the task fails at the end, naming every failed key, and the result
    still lists every key that succeeded (with the secrets of those created).
  - With O(state=absent) and O(alias_prefix), every key whose alias starts with the prefix is removed, however many there are.
  - Secrets of created keys are returned in RV(virtual_keys); Ansible then hides the task's output as with C(no_log).
author:
  - rhpds.litemaas maintainers (@rhpds)
extends_documentation_fragment:
  - rhpds.litemaas.proxy_api
  - rhpds.litemaas.key_options
attributes:
  check_mode:
    support: full
    description: Plans every key and returns the predicted actions without writing.
  diff_mode:
    support: full
    description: Shows the keys that change, before and after, without secrets.
options:
  keys:
    description:
      - The keys, each with its O(keys[].key_alias) and any key option that differs from the top-level ones.
      - Mutually exclusive with O(count).
    type: list
    elements: dict
    suboptions:
      key_alias:
        description: Alias of the key (unique on the proxy).
        type: str
        required: true
      models:
        description: As O(models).
        type: list
        elements: str
      max_budget:
        description: As O(max_budget).
        type: float
      budget_duration:
        description: As O(budget_duration).
        type: str
      tpm_limit:
        description: As O(tpm_limit).
        type: int
      rpm_limit:
        description: As O(rpm_limit).
        type: int
      max_parallel_requests:
        description: As O(max_parallel_requests).
        type: int
      duration:
        description: As O(duration).
        type: str
      expires:
        description: As O(expires).
        type: str
      user_id:
        description: As O(user_id).
        type: str
      team_id:
        description: As O(team_id).
        type: str
      metadata:
        description: As O(metadata); merged over the top-level O(metadata).
        type: dict
      blocked:
        description: As O(blocked).
        type: bool
      regenerate:
        description:
          - Rotate the secret of this key when it exists (its alias, options and spend stay); the new secret is
            returned in its result. Ignored when the key is created or with O(state=absent).
          - Use it for the keys whose secret was lost, so that a whole workshop is repaired in one call.
        type: bool
        default: false
  count:
    description:
      - Number of keys to manage, named by O(alias_pattern) with C(n) from O(start) to O(start) + O(count) - 1.
    type: int
  start:
    description:
      - First number used with O(count).
    type: int
    default: 1
  alias_pattern:
    description:
      - Python format string for the alias of key number C(n), for example C(virtkey-abc12-user{n}) or C(lab-{n:03d}).
      - Required with O(count).
    type: str
  user_id_pattern:
    description:
      - Python format string for the O(user_id) of key number C(n) (with O(count)), for example C(user{n}@example.com).
    type: str
  alias_prefix:
    description:
      - With O(state=absent), remove every key whose alias starts with this prefix (all pages of the key list are read).
      - With O(state=present) and O(exclusive=true), remove the keys with this prefix that are not in the desired set.
    type: str
  exclusive:
    description:
      - With O(state=present), also remove keys whose alias starts with O(alias_prefix) but that are not desired (for
        example after lowering O(count)).
    type: bool
    default: false
  state:
    description:
      - V(present) creates or updates the keys; V(absent) removes them (the listed or counted keys, and with
        O(alias_prefix) every key with the prefix).
    type: str
    choices: [present, absent]
    default: present
  parallelism:
    description:
      - Number of concurrent calls to the proxy (1 to 64).
    type: int
    default: 16
  validate_models:
    description:
      - Check every model named by the keys against the models the proxy serves, once, before any write.
    type: bool
    default: true
notes:
  - Belongs to the C(rhpds.litemaas.litemaas) action group.
seealso:
  - module: rhpds.litemaas.virtual_key
  - module: rhpds.litemaas.virtual_key_info
"""

EXAMPLES = r"""
- name: One key per workshop attendee
  rhpds.litemaas.virtual_keys:
    api_url: "{{ litemaas_proxy_url }}"
    api_key: "{{ litemaas_master_key }}"
    count: "{{ num_users }}"
    alias_pattern: "virtkey-{{ guid }}-user{n}"
    user_id_pattern: "user{n}-{{ guid }}"
    models: [granite-3-8b]
    max_budget: 10
    rpm_limit: 30
    duration: 2d
    metadata:
      guid: "{{ guid }}"
  register: litemaas_workshop_keys

- name: Keys for named people, one of them with a larger budget
  rhpds.litemaas.virtual_keys:
    models: [granite-3-8b]
    max_budget: 10
    keys:
      - key_alias: demo-alice
        user_id: alice
      - key_alias: demo-bob
        user_id: bob
        max_budget: 50

- name: Remove every key of the workshop, however many there are
  rhpds.litemaas.virtual_keys:
    alias_prefix: "virtkey-{{ guid }}-"
    state: absent
"""

RETURN = r"""
changed:
  description: Whether any key was (or would be) created, updated or removed.
  returned: always
  type: bool
virtual_keys:
  description: One entry per key handled, in the order given (removals by prefix follow).
  returned: always
  type: list
  elements: dict
  contains:
    key_alias:
      description: Alias of the key.
      type: str
    action:
      description: C(created), C(updated), C(regenerated), C(deleted), C(unchanged) or C(failed) (in check mode, what would be done).
      type: str
    changed:
      description: Whether this key changed.
      type: bool
    token:
      description: SHA-256 hex of the secret (unknown for keys not yet created in check mode).
      type: str
    expires:
      description: Expiry time (UTC, ISO 8601) or null.
      type: str
    user_id:
      description: Owner of the key.
      type: str
    key:
      description: The secret, only for keys created or regenerated by this run.
      type: str
    error:
      description: Why this key failed.
      type: str
counts:
  description: Number of keys per action.
  returned: always
  type: dict
  sample: {"created": 100, "updated": 0, "regenerated": 0, "deleted": 0, "unchanged": 0, "failed": 0}
msg:
  description: A one-line summary, naming the failed keys if any.
  returned: always
  type: str
diff:
  description: Keys that change, before and after (secrets removed), when run with C(--diff).
  returned: when diff mode is on
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rhpds.litemaas.plugins.module_utils.common import compose_argspec, exit_with_secrets, known_model_names
from ansible_collections.rhpds.litemaas.plugins.module_utils.diffs import redact
from ansible_collections.rhpds.litemaas.plugins.module_utils.key_options import (
    DIFF_FIELDS,
    KEY_OPTION_NAMES,
    KEY_OPTIONS_ARGSPEC,
    KeyOptionError,
    desired_key,
    execute_plan,
    plan_key,
    unknown_models,
)
from ansible_collections.rhpds.litemaas.plugins.module_utils.proxy_api import PROXY_API_ARGSPEC, ProxyApiError, ProxyClient

try:
    from concurrent.futures import ThreadPoolExecutor
except ImportError:  # pragma: no cover - Python 2 has no concurrent.futures
    ThreadPoolExecutor = None

ACTION_RESULT = {"create": "created", "update": "updated", "regenerate": "regenerated", "delete": "deleted", "none": "unchanged"}
# Beyond this many aliases, one paged read of all keys is cheaper than one lookup per alias.
PER_ALIAS_LOOKUP_MAX = 20
DELETE_BATCH = 100


class BulkSpecError(ValueError):
    pass


def key_entry_spec():
    spec = dict(key_alias=dict(type="str", required=True, no_log=False), regenerate=dict(type="bool", default=False))
    for name, opt in KEY_OPTIONS_ARGSPEC.items():
        spec[name] = dict(opt)
    return spec


def argument_spec():
    return compose_argspec(
        PROXY_API_ARGSPEC,
        KEY_OPTIONS_ARGSPEC,
        keys=dict(type="list", elements="dict", options=key_entry_spec(), no_log=False),
        count=dict(type="int"),
        start=dict(type="int", default=1),
        alias_pattern=dict(type="str"),
        user_id_pattern=dict(type="str"),
        alias_prefix=dict(type="str"),
        exclusive=dict(type="bool", default=False),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        parallelism=dict(type="int", default=16),
        validate_models=dict(type="bool", default=True),
    )


def expand_keys(params):
    """The desired keys as a list of (alias, options) from ``keys`` or ``count`` + patterns; top-level options are defaults."""
    defaults = dict((k, params.get(k)) for k in KEY_OPTION_NAMES if params.get(k) is not None)
    entries = []
    if params.get("count") is not None:
        pattern = params.get("alias_pattern")
        if not pattern or "{n" not in pattern:
            raise BulkSpecError("alias_pattern must contain {n} (for example virtkey-abc12-user{n}) when count is given")
        if params["count"] < 0:
            raise BulkSpecError("count cannot be negative. Received: %s" % params["count"])
        for n in range(params["start"], params["start"] + params["count"]):
            opts = dict(defaults)
            try:
                alias = pattern.format(n=n)
                if params.get("user_id_pattern"):
                    opts["user_id"] = params["user_id_pattern"].format(n=n)
            except (KeyError, IndexError, ValueError) as exc:
                raise BulkSpecError("Invalid alias_pattern or user_id_pattern: %s" % exc)
            entries.append((alias, opts))
    for item in params.get("keys") or []:
        opts = dict(defaults)
        for name in KEY_OPTION_NAMES:
            if item.get(name) is None:
                continue
            if name == "metadata" and defaults.get("metadata"):
                merged = dict(defaults["metadata"])
                merged.update(item["metadata"])
                opts["metadata"] = merged
            else:
                opts[name] = item[name]
        if opts.get("duration") is not None and item.get("expires") is not None:
            opts.pop("duration")
        if opts.get("expires") is not None and item.get("duration") is not None:
            opts.pop("expires")
        entries.append((item["key_alias"], opts))
    seen = set()
    for alias, _opts in entries:
        if alias in seen:
            raise BulkSpecError("Key alias '%s' is given more than once" % alias)
        seen.add(alias)
    return entries


def lookup_current(client, aliases, prefix, executor):
    """Map alias -> key for the desired aliases (and every key with ``prefix`` when given)."""
    if prefix is None and len(aliases) <= PER_ALIAS_LOOKUP_MAX:
        found = list(executor.map(client.find_key_by_alias, aliases))
        return dict((a, k) for a, k in zip(aliases, found) if k is not None)
    wanted = set(aliases)
    out = {}
    for key in client.list_all_keys(executor=executor):
        alias = key.get("key_alias")
        if alias is None:
            continue
        if alias in wanted or (prefix is not None and alias.startswith(prefix)):
            out[alias] = key
    return out


def compact(alias, action, info=None, secret=None, error=None):
    out = {"key_alias": alias, "action": action, "changed": action in ("created", "updated", "deleted", "regenerated")}
    info = info or {}
    for name in ("token", "expires", "user_id"):
        if info.get(name) is not None:
            out[name] = info[name]
    if secret:
        out["key"] = secret
    if error:
        out["error"] = error
    return out


def run(module, client, executor):
    p = module.params
    state = p["state"]
    if not (p.get("keys") or p.get("count") is not None or p.get("alias_prefix")):
        raise BulkSpecError("one of keys, count or alias_prefix is required")
    if p["exclusive"] and not p.get("alias_prefix"):
        raise BulkSpecError("exclusive requires alias_prefix")
    entries = expand_keys(p)
    wants = [desired_key(alias, opts) for alias, opts in entries]
    aliases = [w["key_alias"] for w in wants]
    prefix = p.get("alias_prefix") if (state == "absent" or p["exclusive"]) else None
    current = lookup_current(client, aliases, prefix, executor)

    rotate = set(item["key_alias"] for item in p.get("keys") or [] if item.get("regenerate"))
    plans = [(w["key_alias"], plan_key(w, current.get(w["key_alias"]), state=state, regenerate=w["key_alias"] in rotate)) for w in wants]
    if prefix is not None:
        wanted = set(aliases)
        for alias in sorted(a for a in current if a not in wanted):
            plans.append((alias, plan_key({"key_alias": alias}, current[alias], state="absent")))

    if state == "present" and p["validate_models"]:
        needed = set()
        for w, (_alias, plan) in zip(wants, plans):
            if w.get("models") and (plan["action"] == "create" or "models" in (plan["body"] or {})):
                needed.update(w["models"])
        if needed:
            unknown = unknown_models(sorted(needed), known_model_names(client.list_models()))
            if unknown:
                module.fail_json(msg="Unknown model(s): %s. Check the model names served by the proxy (model_info)." % ", ".join(unknown))

    results = [None] * len(plans)

    def do_one(index):
        alias, plan = plans[index]
        try:
            info, secret = execute_plan(client, plan, module.check_mode)
        except ProxyApiError as exc:
            return index, compact(alias, "failed", plan.get("before"), error=str(exc))
        return index, compact(alias, ACTION_RESULT[plan["action"]], info or plan.get("after") or plan.get("before"), secret)

    deletes = [i for i, (_a, plan) in enumerate(plans) if plan["action"] == "delete"]
    others = [i for i, (_a, plan) in enumerate(plans) if plan["action"] not in ("delete", "none")]
    for i, (alias, plan) in enumerate(plans):
        if plan["action"] == "none":
            results[i] = compact(alias, "unchanged", plan.get("before"))
    for index, res in executor.map(do_one, others):
        results[index] = res
    if deletes and not module.check_mode:
        for start in range(0, len(deletes), DELETE_BATCH):
            batch = deletes[start:start + DELETE_BATCH]
            try:
                client.delete_keys([plans[i][1]["before"]["token"] for i in batch])
                for i in batch:
                    results[i] = compact(plans[i][0], "deleted", plans[i][1]["before"])
            except ProxyApiError:
                # Find out which ones fail, one by one.
                for index, res in executor.map(do_one, batch):
                    results[index] = res
    elif deletes:
        for i in deletes:
            results[i] = compact(plans[i][0], "deleted", plans[i][1]["before"])

    counts = dict((name, 0) for name in ("created", "updated", "regenerated", "deleted", "unchanged", "failed"))
    for res in results:
        counts[res["action"]] = counts.get(res["action"], 0) + 1
    failed = [r for r in results if r["action"] == "failed"]
    changed = any(r["changed"] for r in results)
    summary = ", ".join("%d %s" % (n, name) for name, n in counts.items() if n) or "no keys"
    if module.check_mode:
        summary = "check mode: " + summary
    result = dict(changed=changed, virtual_keys=results, counts=counts, msg=summary)
    if module._diff:
        before, after = {}, {}
        for alias, plan in plans:
            if plan["action"] != "none":
                if plan.get("before"):
                    before[alias] = redact(dict((k, plan["before"].get(k)) for k in DIFF_FIELDS if k in plan["before"]))
                if plan.get("after"):
                    after[alias] = redact(dict((k, plan["after"].get(k)) for k in DIFF_FIELDS if k in plan["after"]))
        result["diff"] = {"before": before, "after": after}
    has_secret = any("key" in r for r in results)
    if failed:
        shown = "; ".join("%s: %s" % (r["key_alias"], r["error"]) for r in failed[:5])
        more = " (and %d more)" % (len(failed) - 5) if len(failed) > 5 else ""
        result["msg"] = "%d of %d keys failed (%s): %s%s" % (len(failed), len(results), summary, shown, more)
        module.fail_json(**result)
    exit_with_secrets(module, has_secret, **result)


class VirtualKeysModule(AnsibleModule):
    """ansible-core reports a list of dicts that is not one ("keys: a,b") with a first message that does not name the
    option; this puts the option's name and the expected shape in front."""

    def fail_json(self, msg=None, **kwargs):
        result = getattr(self, "validation_result", None)
        messages = list(result.errors.messages) if result is not None else []
        if messages and msg == messages[0] and msg.startswith("dictionary requested"):
            named = [m for m in messages if "option 'keys'" in m]
            if named:
                msg = "keys must be a list of dicts, one per key, each with at least key_alias (for example keys: [{key_alias: user1}]). %s" % named[0]
        super(VirtualKeysModule, self).fail_json(msg=msg, **kwargs)


def main():
    module = VirtualKeysModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        mutually_exclusive=[("keys", "count"), ("duration", "expires")],
        required_by={"count": ("alias_pattern",)},
    )
    parallelism = module.params["parallelism"]
    if not 1 <= parallelism <= 64:
        module.fail_json(msg="parallelism must be between 1 and 64. Received: %s" % parallelism)
    if ThreadPoolExecutor is None:
        module.fail_json(msg="This module needs Python 3 (concurrent.futures)")
    try:
        client = ProxyClient.from_module(module)
        with ThreadPoolExecutor(max_workers=parallelism) as executor:
            run(module, client, executor)
    except (ProxyApiError, KeyOptionError, BulkSpecError) as exc:
        module.fail_json(msg=str(exc))


if __name__ == "__main__":
    main()
