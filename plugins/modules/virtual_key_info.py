#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see LICENSE), a license compatible with the GNU General Public License version 3

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: virtual_key_info
short_description: List virtual keys on the LiteMaaS proxy by alias, alias prefix, user or team
version_added: 0.1.0
description:
  - Reads keys through the proxy's LiteLLM-compatible C(/key/list), following every page (100 keys per call).
  - Exact filters (O(key_alias), O(user_id), O(team_id)) are applied by the proxy; O(alias_prefix) is applied to every page.
  - Never returns secrets (the proxy only stores their hashes).
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
  key_alias:
    description: Only the key with this alias.
    type: str
    aliases: [alias]
  alias_prefix:
    description: Only keys whose alias starts with this prefix.
    type: str
  user_id:
    description: Only keys of this user.
    type: str
  team_id:
    description: Only keys of this team.
    type: str
  page_size:
    description: Keys fetched per call (1 to 100).
    type: int
    default: 100
notes:
  - Belongs to the C(rhpds.litemaas.litemaas) action group.
seealso:
  - module: rhpds.litemaas.virtual_key
  - module: rhpds.litemaas.virtual_keys
"""

EXAMPLES = r"""
- name: Every key of a workshop
  rhpds.litemaas.virtual_key_info:
    alias_prefix: "virtkey-{{ guid }}-"
  register: litemaas_workshop

- name: Show how much the workshop spent
  ansible.builtin.debug:
    msg: "{{ litemaas_workshop.virtual_keys | map(attribute='spend') | sum }} USD"

- name: Keys of one user
  rhpds.litemaas.virtual_key_info:
    user_id: user1@example.com
"""

RETURN = r"""
virtual_keys:
  description: The matching keys, newest first. Same fields as RV(rhpds.litemaas.virtual_key#module:virtual_key).
  returned: always
  type: list
  elements: dict
  sample:
    - key_alias: virtkey-abc12-user1
      token: 3c3b8161176d04c56ab16199aeaea08562c32321ec1487c0bc890432890b7b50
      models: [granite-3-8b]
      spend: 0.42
      expires: "2026-12-31T18:00:00Z"
count:
  description: Number of keys returned.
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rhpds.litemaas.plugins.module_utils.common import compose_argspec
from ansible_collections.rhpds.litemaas.plugins.module_utils.key_options import public_key
from ansible_collections.rhpds.litemaas.plugins.module_utils.proxy_api import PROXY_API_ARGSPEC, ProxyApiError, ProxyClient


def select_keys(keys, alias_prefix=None):
    out = []
    for key in keys:
        alias = key.get("key_alias") or ""
        if alias_prefix is not None and not alias.startswith(alias_prefix):
            continue
        out.append(public_key(key))
    return out


def main():
    module = AnsibleModule(
        argument_spec=compose_argspec(
            PROXY_API_ARGSPEC,
            key_alias=dict(type="str", aliases=["alias"], no_log=False),
            alias_prefix=dict(type="str"),
            user_id=dict(type="str"),
            team_id=dict(type="str"),
            page_size=dict(type="int", default=100),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not 1 <= p["page_size"] <= 100:
        module.fail_json(msg="page_size must be between 1 and 100. Received: %s" % p["page_size"])
    filters = dict((k, p[k]) for k in ("key_alias", "user_id", "team_id") if p[k])
    try:
        client = ProxyClient.from_module(module)
        keys = select_keys(client.iter_keys(size=p["page_size"], **filters), p["alias_prefix"])
    except ProxyApiError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, virtual_keys=keys, count=len(keys))


if __name__ == "__main__":
    main()
