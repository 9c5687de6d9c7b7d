#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see LICENSE), a license compatible with the GNU General Public License version 3

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: portal_user
short_description: Grant or revoke the LiteMaaS portal admin roles of a user
version_added: 0.1.0
description:
  - Adds or removes the portal role C(admin) or C(admin-readonly) (also written C(adminReadonly)) of an existing portal
    user, keeping the user's other roles. The role C(user) is always kept.
  - Uses the portal database when O(portal_db_url) is given (an C(UPDATE) of C(users.roles)), otherwise the portal API
    (C(PATCH /api/v1/users/{id}) with a token minted from O(portal_jwt_secret)).
  - Portal users are created by their first login; a user who has never logged in cannot be found.
  - The portal puts the roles in the login token, so the user sees a change at the next login.
author:
  - rhpds.litemaas maintainers (@rhpds)
extends_documentation_fragment:
  - rhpds.litemaas.portal_api
attributes:
  check_mode:
    support: full
    description: Returns the predicted roles and C(changed) without writing.
  diff_mode:
    support: full
    description: Shows the roles before and after.
options:
  username:
    description: Portal user name (the OpenShift or OIDC user name).
    type: str
  email:
    description: E-mail of the user (compared without case).
    type: str
  user_id:
    description: Portal user id (UUID).
    type: str
  role:
    description: The role to grant or revoke.
    type: str
    choices: [admin, admin-readonly, adminReadonly]
    default: admin
  state:
    description: V(present) grants the role, V(absent) revokes it.
    type: str
    choices: [present, absent]
    default: present
  request_timeout:
    description: Seconds to wait for each portal API response.
    type: float
    default: 30
"""

EXAMPLES = r"""
- name: Make the event lead a portal admin
  rhpds.litemaas.portal_user:
    email: lead@example.com
    role: admin
    portal_db_url: "{{ litemaas_portal_db_url }}"

- name: Read-only admin through the portal API
  rhpds.litemaas.portal_user:
    username: auditor
    role: adminReadonly
    portal_url: https://litemaas.apps.example.com
    portal_jwt_secret: "{{ litemaas_portal_jwt_secret }}"
    portal_jwt_user_id: "{{ litemaas_portal_service_user_id }}"

- name: Revoke
  rhpds.litemaas.portal_user:
    username: former-lead
    role: admin
    state: absent
"""

RETURN = r"""
changed:
  description: Whether the roles were (or would be) changed.
  returned: always
  type: bool
portal_user:
  description: The user after the task (prediction in check mode).
  returned: always
  type: dict
  contains:
    id:
      description: Portal user id.
      type: str
    username:
      description: User name.
      type: str
    email:
      description: E-mail.
      type: str
    roles:
      description: Portal roles.
      type: list
      elements: str
      sample: [user, admin]
msg:
  description: One-line summary.
  returned: always
  type: str
diff:
  description: Roles before and after, when run with C(--diff).
  returned: when diff mode is on
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.rhpds.litemaas.plugins.module_utils.common import compose_argspec
from ansible_collections.rhpds.litemaas.plugins.module_utils.portal_api import (
    HAS_PSYCOPG2,
    PORTAL_API_ARGSPEC,
    PSYCOPG2_IMPORT_ERROR,
    PortalClient,
    PortalDB,
    PortalError,
    normalize_role,
    roles_after,
)


def main():
    module = AnsibleModule(
        argument_spec=compose_argspec(
            PORTAL_API_ARGSPEC,
            username=dict(type="str"),
            email=dict(type="str"),
            user_id=dict(type="str"),
            role=dict(type="str", default="admin", choices=["admin", "admin-readonly", "adminReadonly"]),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            request_timeout=dict(type="float", default=30.0),
        ),
        required_one_of=[("username", "email", "user_id")],
        mutually_exclusive=[("username", "email", "user_id")],
        supports_check_mode=True,
    )
    p = module.params
    if p["portal_db_url"] and not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)
    who = p["username"] or p["email"] or p["user_id"]
    backend = None
    try:
        backend = PortalDB(p["portal_db_url"]) if p["portal_db_url"] else PortalClient.from_params(p, timeout=p["request_timeout"])
        user = backend.find_user(username=p["username"], email=p["email"], user_id=p["user_id"])
        if user is None:
            module.fail_json(msg="Portal user '%s' not found (portal users are created at their first login)" % who)
        role = normalize_role(p["role"])
        new_roles = roles_after(user["roles"], role, p["state"])
        changed = new_roles != user["roles"]
        if changed and not module.check_mode:
            backend.set_roles(user["id"], new_roles)
    except PortalError as exc:
        module.fail_json(msg=str(exc))
    finally:
        if isinstance(backend, PortalDB):
            backend.close()
    after = dict(user, roles=new_roles)
    if changed:
        msg = ("Would %s role %s for %s" if module.check_mode else "%s role %s for %s") % (
            ("grant" if p["state"] == "present" else "revoke") if module.check_mode else ("Granted" if p["state"] == "present" else "Revoked"),
            role,
            who,
        )
    else:
        msg = "Role %s of %s is already %s" % (role, who, "granted" if p["state"] == "present" else "absent")
    result = dict(changed=changed, portal_user=after, msg=msg)
    if module._diff:
        result["diff"] = {"before": {"roles": user["roles"]}, "after": {"roles": new_roles}}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
