#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see LICENSE), a license compatible with the GNU General Public License version 3

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: model_info
short_description: List the model deployments served by the LiteMaaS proxy
version_added: 0.1.0
description:
  - Reads the proxy's LiteLLM-compatible C(/model/info) and returns the deployments, without upstream secrets.
author:
  - rhpds.litemaas maintainers (@rhpds)
extends_documentation_fragment:
  - rhpds.litemaas.proxy_api
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing changes.
options:
  model_name:
    description: Only deployments with this public name.
    type: str
    aliases: [name]
  id:
    description: Only the deployment with this id.
    type: str
notes:
  - Belongs to the C(rhpds.litemaas.litemaas) action group.
seealso:
  - module: rhpds.litemaas.model
"""

EXAMPLES = r"""
- name: Every model the proxy serves
  rhpds.litemaas.model_info:
  register: litemaas_models

- name: Names only
  ansible.builtin.debug:
    msg: "{{ litemaas_models.models | map(attribute='model_name') | unique | list }}"
"""

RETURN = r"""
models:
  description: The deployments.
  returned: always
  type: list
  elements: dict
  contains:
    model_name:
      description: Public name.
      type: str
    id:
      description: Deployment id.
      type: str
    litellm_params:
      description: Upstream parameters (secrets removed).
      type: dict
    model_info:
      description: Prices and capabilities.
      type: dict
model_names:
  description: The distinct public names, sorted.
  returned: always
  type: list
  elements: str
count:
  description: Number of deployments returned.
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rhpds.litemaas.plugins.module_utils.common import compose_argspec
from ansible_collections.rhpds.litemaas.plugins.module_utils.models import public_model
from ansible_collections.rhpds.litemaas.plugins.module_utils.proxy_api import PROXY_API_ARGSPEC, ProxyApiError, ProxyClient


def main():
    module = AnsibleModule(
        argument_spec=compose_argspec(PROXY_API_ARGSPEC, model_name=dict(type="str", aliases=["name"]), id=dict(type="str")),
        supports_check_mode=True,
    )
    p = module.params
    try:
        entries = ProxyClient.from_module(module).list_models()
    except ProxyApiError as exc:
        module.fail_json(msg=str(exc))
    models = [public_model(e) for e in entries]
    if p["model_name"]:
        models = [m for m in models if m["model_name"] == p["model_name"]]
    if p["id"]:
        models = [m for m in models if m["id"] == p["id"]]
    module.exit_json(changed=False, models=models, model_names=sorted(set(m["model_name"] for m in models)), count=len(models))


if __name__ == "__main__":
    main()
