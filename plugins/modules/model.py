#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see LICENSE), a license compatible with the GNU General Public License version 3

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: model
short_description: Register, update or remove a model deployment on the LiteMaaS proxy
version_added: 0.1.0
description:
  - Manages a model deployment through the proxy's LiteLLM-compatible C(/model/new), C(/model/{id}/update) and
    C(/model/delete).
  - A deployment is identified by O(model_name) plus O(api_base) (several deployments may share a name and are then
    load-balanced). Only the given fields of O(litellm_params) and O(model_info) are compared; an update sends only
    what differs.
  - Prices (C(input_cost_per_token), C(output_cost_per_token)) and capabilities (C(mode), C(max_tokens),
    C(supports_vision), ...) go in O(model_info).
  - The upstream key (O(model_api_key)) is never returned by the proxy, so it cannot be compared; it is sent when the
    deployment is created, and on later runs only with O(update_api_key=true).
  - Optionally asks the LiteMaaS portal to sync its model list afterwards (O(portal_sync)).
author:
  - rhpds.litemaas maintainers (@rhpds)
extends_documentation_fragment:
  - rhpds.litemaas.proxy_api
  - rhpds.litemaas.portal_api
attributes:
  check_mode:
    support: full
    description: Returns the predicted deployment and C(changed) without writing.
  diff_mode:
    support: full
    description: Shows the deployment before and after, without secrets.
options:
  model_name:
    description: Public model name that clients send as C(model).
    type: str
    required: true
    aliases: [name]
  model:
    description:
      - Upstream model as C(<provider>/<model>), for example C(openai/granite-3-8b). Required to create.
    type: str
  api_base:
    description:
      - URL of the upstream OpenAI-compatible server, for example C(http://granite.models.svc:8080/v1).
      - With O(state=absent) and no O(api_base), every deployment named O(model_name) is removed.
    type: str
  model_api_key:
    description: API key of the upstream server.
    type: str
    aliases: [upstream_api_key]
  update_api_key:
    description: Send O(model_api_key) on updates too (it cannot be compared, so the task then always reports a change).
    type: bool
    default: false
  litellm_params:
    description:
      - Further upstream parameters (C(rpm), C(tpm), C(timeout), C(max_retries), ...). Secrets in it (C(api_key)) are
        hidden from logs and handled like O(model_api_key).
    type: dict
    default: {}
  model_info:
    description:
      - Prices and capabilities, for example C(mode), C(max_tokens), C(input_cost_per_token), C(output_cost_per_token),
        C(supports_vision), C(supports_function_calling), C(access_groups).
    type: dict
    default: {}
  state:
    description: V(present) registers or updates the deployment; V(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
  portal_sync:
    description:
      - After a change, call the portal's C(POST /api/v1/models/sync) so its model list follows (needs O(portal_url)
        and O(portal_jwt_secret) or O(portal_admin_key)).
    type: bool
    default: false
notes:
  - Belongs to the C(rhpds.litemaas.litemaas) action group.
  - Models from the proxy's configuration file cannot be changed through the API; the proxy refuses such updates.
seealso:
  - module: rhpds.litemaas.model_info
"""

EXAMPLES = r"""
- name: Serve Granite from the model server, with prices
  rhpds.litemaas.model:
    model_name: granite-3-8b
    model: openai/granite-3-8b-instruct
    api_base: http://granite-predictor.models.svc:8080/v1
    model_api_key: "{{ granite_token }}"
    litellm_params:
      rpm: 600
    model_info:
      mode: chat
      max_tokens: 8192
      input_cost_per_token: 0.0000002
      output_cost_per_token: 0.0000006
      supports_function_calling: true
    portal_sync: true
    portal_url: https://litemaas.apps.example.com
    portal_admin_key: "{{ litemaas_portal_admin_key }}"

- name: Remove every deployment of a model
  rhpds.litemaas.model:
    model_name: old-model
    state: absent
"""

RETURN = r"""
changed:
  description: Whether a deployment was (or would be) created, updated or removed.
  returned: always
  type: bool
action:
  description: C(created), C(updated), C(deleted) or C(unchanged).
  returned: always
  type: str
model:
  description: The deployment after the task (prediction in check mode), without secrets; empty when absent.
  returned: always
  type: dict
  contains:
    model_name:
      description: Public name.
      type: str
    id:
      description: Deployment id on the proxy (unknown before creation in check mode).
      type: str
    litellm_params:
      description: Upstream parameters (secrets removed).
      type: dict
    model_info:
      description: Prices and capabilities.
      type: dict
deleted:
  description: Ids of the deployments removed.
  returned: when O(state=absent)
  type: list
  elements: str
portal_sync:
  description: The portal's answer to the model sync.
  returned: when O(portal_sync=true) and something changed
  type: dict
msg:
  description: One-line summary.
  returned: always
  type: str
diff:
  description: Before and after, without secrets, when run with C(--diff).
  returned: when diff mode is on
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rhpds.litemaas.plugins.module_utils.common import compose_argspec
from ansible_collections.rhpds.litemaas.plugins.module_utils.diffs import make_diff
from ansible_collections.rhpds.litemaas.plugins.module_utils.models import (
    SECRET_PARAMS,
    desired_params,
    matching_deployments,
    plan_model,
    public_model,
)
from ansible_collections.rhpds.litemaas.plugins.module_utils.portal_api import PORTAL_API_ARGSPEC, PortalClient, PortalError
from ansible_collections.rhpds.litemaas.plugins.module_utils.proxy_api import PROXY_API_ARGSPEC, ProxyApiError, ProxyClient

ACTION_RESULT = {"create": "created", "update": "updated", "delete": "deleted", "none": "unchanged"}


def argument_spec():
    return compose_argspec(
        PROXY_API_ARGSPEC,
        PORTAL_API_ARGSPEC,
        model_name=dict(type="str", required=True, aliases=["name"]),
        model=dict(type="str"),
        api_base=dict(type="str"),
        model_api_key=dict(type="str", no_log=True, aliases=["upstream_api_key"]),
        update_api_key=dict(type="bool", default=False, no_log=False),
        litellm_params=dict(type="dict", default={}),
        model_info=dict(type="dict", default={}),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        portal_sync=dict(type="bool", default=False),
    )


def run(module, client):
    p = module.params
    extra = dict(p["litellm_params"] or {})
    secrets = dict((k, extra.pop(k)) for k in list(extra) if k in SECRET_PARAMS and extra[k] is not None)
    for value in secrets.values():
        module.no_log_values.add(str(value))
    if p["model_api_key"]:
        secrets["api_key"] = p["model_api_key"]
    params = desired_params(p["model"], p["api_base"], extra)
    entries = client.list_models()
    found = matching_deployments(entries, p["model_name"], p["api_base"])
    result = {}
    if p["state"] == "absent":
        deleted = []
        for entry in found:
            if not module.check_mode:
                client.delete_model(entry["model_info"]["id"])
            deleted.append(entry["model_info"]["id"])
        action = "delete" if found else "none"
        result.update(deleted=deleted, model={})
        diff = {"before": [public_model(e) for e in found], "after": []}
    else:
        if len(found) > 1:
            module.warn("%d deployments of %s match; updating the first (id %s)" % (len(found), p["model_name"], found[0]["model_info"]["id"]))
        current = found[0] if found else None
        try:
            plan = plan_model(p["model_name"], params, p["model_info"], current, secret_params=secrets, update_secrets=p["update_api_key"])
        except ValueError as exc:
            module.fail_json(msg=str(exc))
        action = plan["action"]
        model = plan["after"]
        if not module.check_mode and action == "create":
            resp = client.create_model(plan["body"])
            new_id = (resp.get("model_info") or {}).get("id") or resp.get("model_id")
            model = public_model(_find_by_id(client, new_id) or resp)
        elif not module.check_mode and action == "update":
            client.update_model(current["model_info"]["id"], plan["body"])
            model = public_model(_find_by_id(client, current["model_info"]["id"]) or current)
        result["model"] = model
        diff = make_diff(plan["before"], plan["after"])
    changed = action != "none"
    if changed and p["portal_sync"] and not module.check_mode:
        try:
            result["portal_sync"] = PortalClient.from_params(p, timeout=p["request_timeout"]).sync_models()
        except PortalError as exc:
            module.fail_json(msg="The model was %s, but the portal sync failed: %s" % (ACTION_RESULT[action], exc), changed=True, **result)
    result.update(changed=changed, action=ACTION_RESULT[action])
    verb = ("Would %s" % action if action != "none" else "Unchanged") if module.check_mode else ACTION_RESULT[action].capitalize()
    result["msg"] = "%s model %s" % (verb, p["model_name"])
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


def _find_by_id(client, model_id):
    if not model_id:
        return None
    for entry in client.list_models():
        if (entry.get("model_info") or {}).get("id") == model_id:
            return entry
    return None


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        run(module, ProxyClient.from_module(module))
    except ProxyApiError as exc:
        module.fail_json(msg=str(exc))


if __name__ == "__main__":
    main()
