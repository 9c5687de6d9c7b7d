#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see LICENSE), a license compatible with the GNU General Public License version 3

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: virtual_key
short_description: Create, update, rotate or remove one virtual key on the LiteMaaS proxy
version_added: 0.1.0
description:
  - Manages one virtual key through the proxy's LiteLLM-compatible management API (C(/key/*)), so it works against the
    LiteMaaS proxy and against a LiteLLM proxy alike.
  - The key is identified by O(key_alias), which is unique on the proxy. A missing key is created; an existing one is
    updated on the fields that differ from what was given, and never replaced by a second key.
  - The secret (C(sk-...)) exists in clear only in the answer to the call that minted it, so it is returned only when
    the key was created or regenerated. Ansible then hides the task's output as with C(no_log); the registered variable
    still holds the secret.
author:
  - rhpds.litemaas maintainers (@rhpds)
extends_documentation_fragment:
  - rhpds.litemaas.proxy_api
  - rhpds.litemaas.key_options
attributes:
  check_mode:
    support: full
    description: Returns the predicted key and C(changed) without writing.
  diff_mode:
    support: full
    description: Shows the key's fields before and after, without secrets.
options:
  key_alias:
    description:
      - Alias that identifies the key. Aliases are unique on the proxy.
    type: str
    required: true
    aliases: [alias, name]
  state:
    description:
      - V(present) creates or updates the key; V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  regenerate:
    description:
      - Rotate the key's secret (C(/key/regenerate)) and return the new one. The old secret stops working.
      - Applies on every run where it is true; the task then always reports a change.
    type: bool
    default: false
  validate_models:
    description:
      - Check O(models) against the models the proxy serves (C(/model/info)) before creating or updating the key.
    type: bool
    default: true
notes:
  - Belongs to the C(rhpds.litemaas.litemaas) action group, so the connection options can be set once with C(module_defaults).
seealso:
  - module: rhpds.litemaas.virtual_keys
  - module: rhpds.litemaas.virtual_key_info
"""

EXAMPLES = r"""
- name: Give the workshop user a key for two models, 50 USD a month and 60 requests a minute
  rhpds.litemaas.virtual_key:
    api_url: "{{ litemaas_proxy_url }}"
    api_key: "{{ litemaas_master_key }}"
    key_alias: "virtkey-{{ guid }}"
    models: [granite-3-8b, llama-3-8b]
    max_budget: 50
    budget_duration: 1mo
    rpm_limit: 60
    duration: 30d
    user_id: "{{ requester_email }}"
    metadata:
      guid: "{{ guid }}"
  register: litemaas_key

- name: Publish the key only when it was just created
  ansible.builtin.set_fact:
    litemaas_user_key: "{{ litemaas_key.key }}"
  when: litemaas_key.key is defined
  no_log: true

- name: Extend the key to the end of the event
  rhpds.litemaas.virtual_key:
    key_alias: "virtkey-{{ guid }}"
    expires: "2026-12-31T18:00:00Z"

- name: Rotate the secret
  rhpds.litemaas.virtual_key:
    key_alias: "virtkey-{{ guid }}"
    regenerate: true
  register: litemaas_rotated

- name: Remove the key
  rhpds.litemaas.virtual_key:
    key_alias: "virtkey-{{ guid }}"
    state: absent
"""

RETURN = r"""
changed:
  description: Whether the key was (or, in check mode, would be) created, updated, rotated or removed.
  returned: always
  type: bool
action:
  description: What was done (or would be done in check mode).
  returned: always
  type: str
  sample: created
key:
  description:
    - The secret of the key. Only returned when the key was created or regenerated (not in check mode).
  returned: when created or regenerated
  type: str
  sample: sk-QWrxEynunsNpV1zT48HIrw
virtual_key:
  description: The key after the task (the prediction in check mode); empty when absent. Never contains the secret.
  returned: always
  type: dict
  contains:
    key_alias:
      description: Alias of the key.
      type: str
      sample: virtkey-abc12
    token:
      description: SHA-256 hex of the secret; identifies the key in management calls. Unknown before creation in check mode.
      type: str
    key_name:
      description: Abbreviated secret (C(sk-...) and its last four characters).
      type: str
    models:
      description: Models the key may use; empty means all.
      type: list
      elements: str
    max_budget:
      description: Spend limit in USD, or null.
      type: float
    spend:
      description: Current spend in USD.
      type: float
    budget_duration:
      description: Spend reset period.
      type: str
    budget_reset_at:
      description: Next spend reset.
      type: str
    tpm_limit:
      description: Tokens per minute.
      type: int
    rpm_limit:
      description: Requests per minute.
      type: int
    max_parallel_requests:
      description: Requests in flight at once.
      type: int
    user_id:
      description: Owner.
      type: str
    team_id:
      description: Team.
      type: str
    metadata:
      description: Metadata.
      type: dict
    blocked:
      description: Whether the key is blocked.
      type: bool
    expires:
      description: Expiry time (UTC, ISO 8601), or null for never.
      type: str
      sample: "2026-12-31T18:00:00Z"
    created_at:
      description: Creation time.
      type: str
    updated_at:
      description: Last update time.
      type: str
msg:
  description: A one-line summary.
  returned: always
  type: str
  sample: Created key virtkey-abc12
diff:
  description: Fields before and after (secrets removed), when run with C(--diff).
  returned: when diff mode is on
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rhpds.litemaas.plugins.module_utils.common import compose_argspec, exit_with_secrets, known_model_names
from ansible_collections.rhpds.litemaas.plugins.module_utils.key_options import (
    KEY_OPTIONS_ARGSPEC,
    KeyOptionError,
    desired_key,
    execute_plan,
    key_diff,
    plan_key,
    public_key,
    unknown_models,
)
from ansible_collections.rhpds.litemaas.plugins.module_utils.proxy_api import PROXY_API_ARGSPEC, ProxyApiError, ProxyClient

PAST = {"create": "Created", "update": "Updated", "regenerate": "Regenerated", "delete": "Deleted", "none": "Unchanged"}
FUTURE = {"create": "Would create", "update": "Would update", "regenerate": "Would regenerate", "delete": "Would delete", "none": "Unchanged"}
ACTION_RESULT = {"create": "created", "update": "updated", "regenerate": "regenerated", "delete": "deleted", "none": "unchanged"}


def argument_spec():
    return compose_argspec(
        PROXY_API_ARGSPEC,
        KEY_OPTIONS_ARGSPEC,
        key_alias=dict(type="str", required=True, aliases=["alias", "name"], no_log=False),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        regenerate=dict(type="bool", default=False),
        validate_models=dict(type="bool", default=True),
    )


def run(module, client):
    p = module.params
    want = desired_key(p["key_alias"], p)
    current = client.find_key_by_alias(want["key_alias"])
    plan = plan_key(want, current, state=p["state"], regenerate=p["regenerate"])
    action = plan["action"]
    models_written = action == "create" or "models" in (plan["body"] or {})
    if p["state"] == "present" and p["validate_models"] and want.get("models") and models_written:
        unknown = unknown_models(want["models"], known_model_names(client.list_models()))
        if unknown:
            names = ", ".join(unknown)
            module.fail_json(msg="Unknown model(s) for key '%s': %s. Check the model names served by the proxy (model_info)." % (want["key_alias"], names))
    info, secret = execute_plan(client, plan, module.check_mode)
    if action != "none" and not module.check_mode and action != "delete":
        # Read back what the proxy stored, so the result shows server-side values.
        info = client.find_key_by_alias(want["key_alias"]) or info
    result = dict(
        changed=action != "none",
        action=ACTION_RESULT[action],
        virtual_key=public_key(info) if p["state"] == "present" else {},
        msg="%s key %s" % ((FUTURE if module.check_mode else PAST)[action], want["key_alias"]),
    )
    if module._diff:
        result["diff"] = key_diff(plan)
    if secret:
        result["key"] = secret
    exit_with_secrets(module, bool(secret), **result)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True, mutually_exclusive=[("duration", "expires")])
    try:
        run(module, ProxyClient.from_module(module))
    except (ProxyApiError, KeyOptionError) as exc:
        module.fail_json(msg=str(exc))


if __name__ == "__main__":
    main()
