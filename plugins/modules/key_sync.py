#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see LICENSE), a license compatible with the GNU General Public License version 3

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: key_sync
short_description: Reconcile the LiteMaaS portal's API keys with the proxy's virtual keys
version_added: 0.1.0
description:
  - Reads every key on the proxy (paged C(/key/list)) and the portal's C(api_keys) table (the portal has no API for
    this), then
  - marks inactive the active portal keys whose token is gone from the proxy or expired (O(deactivate)), and
  - optionally makes live proxy keys that the portal does not know (for example workshop keys created with
    M(rhpds.litemaas.virtual_keys)) visible in the portal for their owner (O(import_keys)). The owner is the portal user
    whose id, e-mail or user name equals the key's C(user_id), with the key's models that the portal knows (all of
    them for a key without a model list). The portal cannot show the secret of an imported key.
  - In check mode, every difference is listed and nothing is written.
author:
  - rhpds.litemaas maintainers (@rhpds)
extends_documentation_fragment:
  - rhpds.litemaas.proxy_api
  - rhpds.litemaas.portal_api
attributes:
  check_mode:
    support: full
    description: Lists every difference and the counts without writing.
  diff_mode:
    support: none
    description: The differences are returned in RV(differences).
options:
  deactivate:
    description: Mark inactive the active portal keys whose proxy key is gone or expired.
    type: bool
    default: true
  import_keys:
    description: Add live proxy keys unknown to the portal to C(api_keys) for their owner.
    type: bool
    default: false
  alias_prefix:
    description: With O(import_keys), only keys whose alias starts with this prefix.
    type: str
notes:
  - Needs O(portal_db_url) and the C(psycopg2) library.
seealso:
  - module: rhpds.litemaas.virtual_keys
"""

EXAMPLES = r"""
- name: What would change? (check mode lists every difference)
  rhpds.litemaas.key_sync:
    portal_db_url: "{{ litemaas_portal_db_url }}"
    import_keys: true
    alias_prefix: "virtkey-{{ guid }}-"
  check_mode: true
  register: litemaas_key_drift

- name: Reconcile
  rhpds.litemaas.key_sync:
    portal_db_url: "{{ litemaas_portal_db_url }}"
"""

RETURN = r"""
changed:
  description: Whether portal keys were (or would be) deactivated or imported.
  returned: always
  type: bool
counts:
  description: Numbers of keys.
  returned: always
  type: dict
  contains:
    proxy_keys:
      description: Keys on the proxy.
      type: int
    portal_keys:
      description: Rows in the portal's C(api_keys).
      type: int
    deactivated:
      description: Portal keys marked inactive (or that would be).
      type: int
    imported:
      description: Proxy keys added to the portal (or that would be).
      type: int
    skipped_no_owner:
      description: Proxy keys not imported because no portal user matches their C(user_id).
      type: int
differences:
  description: Every difference found, with the action taken (or that would be taken in check mode).
  returned: always
  type: list
  elements: dict
  sample:
    - {action: deactivate, id: 6f1c..., name: my key, user_id: 2b7e..., reason: gone from the proxy}
    - {action: import, key_alias: virtkey-abc12-user1, token: 3c3b..., user_id: 2b7e..., proxy_user_id: user1@example.com}
msg:
  description: One-line summary.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.rhpds.litemaas.plugins.module_utils.common import compose_argspec
from ansible_collections.rhpds.litemaas.plugins.module_utils.keysync import (
    DEACTIVATE_SQL,
    IMPORT_MODELS_SQL,
    IMPORT_SQL,
    PORTAL_KEYS_SQL,
    PORTAL_USERS_SQL,
    import_row,
    plan_sync,
)
from ansible_collections.rhpds.litemaas.plugins.module_utils.portal_api import HAS_PSYCOPG2, PORTAL_API_ARGSPEC, PSYCOPG2_IMPORT_ERROR, PortalDB, PortalError
from ansible_collections.rhpds.litemaas.plugins.module_utils.proxy_api import PROXY_API_ARGSPEC, ProxyApiError, ProxyClient

try:
    from concurrent.futures import ThreadPoolExecutor
except ImportError:  # pragma: no cover
    ThreadPoolExecutor = None


def main():
    module = AnsibleModule(
        argument_spec=compose_argspec(
            PROXY_API_ARGSPEC,
            PORTAL_API_ARGSPEC,
            deactivate=dict(type="bool", default=True),
            import_keys=dict(type="bool", default=False, no_log=False),
            alias_prefix=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not p["portal_db_url"]:
        module.fail_json(msg="portal_db_url is required: the portal has no API for its api_keys table")
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)
    db = None
    try:
        client = ProxyClient.from_module(module)
        if ThreadPoolExecutor is not None:
            with ThreadPoolExecutor(max_workers=8) as executor:
                proxy_keys = client.list_all_keys(executor=executor)
        else:
            proxy_keys = list(client.iter_keys())
        db = PortalDB(p["portal_db_url"])
        portal_keys = db.query(PORTAL_KEYS_SQL)
        users = db.query(PORTAL_USERS_SQL) if p["import_keys"] else []
        to_deactivate, to_import, skipped = plan_sync(
            portal_keys, proxy_keys, users, deactivate=p["deactivate"], import_keys=p["import_keys"], alias_prefix=p["alias_prefix"]
        )
        if not module.check_mode and (to_deactivate or to_import):
            if to_deactivate:
                db.execute(DEACTIVATE_SQL, ([d["id"] for d in to_deactivate],))
            by_token = dict((k["token"], k) for k in proxy_keys if k.get("token"))
            for entry in to_import:
                key = by_token[entry["token"]]
                rows = db.query(IMPORT_SQL, import_row(entry, key))
                if rows:
                    models = list(key.get("models") or [])
                    db.execute(IMPORT_MODELS_SQL, (rows[0]["id"], models, models))
            db.commit()
    except (ProxyApiError, PortalError) as exc:
        module.fail_json(msg=str(exc))
    finally:
        if db is not None:
            db.close()
    counts = dict(
        proxy_keys=len(proxy_keys),
        portal_keys=len(portal_keys),
        deactivated=len(to_deactivate),
        imported=len(to_import),
        skipped_no_owner=len(skipped),
    )
    changed = bool(to_deactivate or to_import)
    prefix = "Would deactivate" if module.check_mode else "Deactivated"
    msg = "%s %d portal key(s), %s %d proxy key(s)" % (prefix, counts["deactivated"], "would import" if module.check_mode else "imported", counts["imported"])
    if skipped:
        msg += "; %d proxy key(s) name no portal user" % len(skipped)
    module.exit_json(changed=changed, counts=counts, differences=to_deactivate + to_import, msg=msg)


if __name__ == "__main__":
    main()
