# -*- coding: utf-8 -*-
# Apache-2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Connection options of the LiteMaaS portal (module_utils/portal_api.py PORTAL_API_ARGSPEC).
    DOCUMENTATION = r"""
options:
  portal_url:
    description:
      - Base URL of the LiteMaaS portal backend (or of the portal's route, which forwards C(/api)), for example
        C(https://litemaas.apps.example.com).
      - If not set, the value of E(LITEMAAS_PORTAL_URL) is used.
    type: str
  portal_jwt_secret:
    description:
      - The portal's C(JWT_SECRET). The module mints a short-lived HS256 token with roles C(admin) and C(user) for
        O(portal_jwt_user_id); the portal accepts it for every admin call.
      - If not set, the value of E(LITEMAAS_PORTAL_JWT_SECRET) is used.
    type: str
  portal_jwt_user_id:
    description:
      - Id (UUID) of an active portal user the minted token speaks for; audit records name this user.
      - If not set, the value of E(LITEMAAS_PORTAL_JWT_USER_ID) is used.
    type: str
  portal_admin_key:
    description:
      - A static portal admin key (C(ltm_admin_...), from the portal's C(ADMIN_API_KEYS)). The portal accepts it for
        reads and for model sync, not for other writes. Used when O(portal_jwt_secret) is not given.
      - If not set, the value of E(LITEMAAS_PORTAL_ADMIN_KEY) is used.
    type: str
  portal_validate_certs:
    description:
      - Whether to verify the portal's TLS certificate.
      - If not set, the value of E(LITEMAAS_PORTAL_VALIDATE_CERTS) is used.
    type: bool
    default: true
  portal_ca_path:
    description:
      - PEM file of the CA that signed the portal's certificate.
      - If not set, the value of E(LITEMAAS_PORTAL_CA_PATH) is used.
    type: path
  portal_db_url:
    description:
      - PostgreSQL URL of the portal database (C(postgresql://user:password@host:5432/litemaas_db)), used where the
        portal has no API. Needs the C(psycopg2) Python library on the host that runs the module.
      - If not set, the value of E(LITEMAAS_PORTAL_DB_URL) is used.
    type: str
requirements:
  - psycopg2 (only when O(portal_db_url) is used)
"""
