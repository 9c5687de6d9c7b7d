# -*- coding: utf-8 -*-
# Apache-2.0 (see LICENSE)
"""Client for the LiteMaaS portal (backend API and, where it has no API, its PostgreSQL database).

API calls authenticate with an HS256 JWT minted here from the portal's ``JWT_SECRET`` (the portal takes the
roles from the token and checks that ``userId`` is an active user), or with a static ``ltm_admin_`` key, which the
portal accepts for reads and model sync only. The connection argspec is ``PORTAL_API_ARGSPEC``, documented by
the ``rhpds.litemaas.portal_api`` doc fragment.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import hashlib
import hmac
import json
import time
import traceback

from ansible.module_utils.basic import env_fallback
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.six.moves.urllib.parse import urlencode
from ansible.module_utils.urls import Request

try:
    import psycopg2
    import psycopg2.extras

    HAS_PSYCOPG2 = True
    PSYCOPG2_IMPORT_ERROR = None
except ImportError:
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR = traceback.format_exc()

PORTAL_API_ARGSPEC = dict(
    portal_url=dict(type="str", fallback=(env_fallback, ["LITEMAAS_PORTAL_URL"])),
    portal_jwt_secret=dict(type="str", no_log=True, fallback=(env_fallback, ["LITEMAAS_PORTAL_JWT_SECRET"])),
    portal_jwt_user_id=dict(type="str", fallback=(env_fallback, ["LITEMAAS_PORTAL_JWT_USER_ID"])),
    portal_admin_key=dict(type="str", no_log=True, fallback=(env_fallback, ["LITEMAAS_PORTAL_ADMIN_KEY"])),
    portal_validate_certs=dict(type="bool", default=True, fallback=(env_fallback, ["LITEMAAS_PORTAL_VALIDATE_CERTS"])),
    portal_ca_path=dict(type="path", fallback=(env_fallback, ["LITEMAAS_PORTAL_CA_PATH"])),
    portal_db_url=dict(type="str", no_log=True, fallback=(env_fallback, ["LITEMAAS_PORTAL_DB_URL"])),
)

JWT_LIFETIME = 300
ROLE_ALIASES = {"adminReadonly": "admin-readonly", "admin_readonly": "admin-readonly"}


class PortalError(Exception):
    """A failed portal call; ``str()`` is one line (method, path, status, message)."""


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint_jwt(secret, claims, lifetime=JWT_LIFETIME, now=None):
    """An HS256 JSON Web Token over ``claims`` plus ``iat``/``exp`` (standard library only)."""
    now = int(now if now is not None else time.time())
    payload = dict(claims)
    payload.setdefault("iat", now)
    payload.setdefault("exp", now + int(lifetime))
    header = {"alg": "HS256", "typ": "JWT"}
    signing_input = "%s.%s" % (
        _b64url(json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")),
        _b64url(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")),
    )
    signature = hmac.new(secret.encode("utf-8"), signing_input.encode("ascii"), hashlib.sha256).digest()
    return "%s.%s" % (signing_input, _b64url(signature))


def admin_claims(user_id, username="rhpds.litemaas", email=None):
    return {"userId": user_id, "username": username, "email": email or "%s@localhost" % username, "roles": ["admin", "user"]}


def portal_message(raw):
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        data = json.loads(raw)
    except (ValueError, TypeError):
        return (raw or "").strip()[:500]
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err.get("code") or err)
        return str(data.get("message") or err or data)
    return str(data)


class PortalClient:
    """Portal backend API with a self-minted admin JWT (or the static admin key for reads and model sync)."""

    def __init__(self, url, jwt_secret=None, jwt_user_id=None, admin_key=None, validate_certs=True, ca_path=None, timeout=30.0):
        if not url:
            raise PortalError("portal_url is required for calls to the portal API")
        self.base_url = url.rstrip("/")
        if jwt_secret:
            if not jwt_user_id:
                raise PortalError("portal_jwt_user_id is required with portal_jwt_secret: the portal accepts a token only for an active user id")
            self.token = mint_jwt(jwt_secret, admin_claims(jwt_user_id))
        elif admin_key:
            self.token = admin_key
        else:
            raise PortalError("portal_jwt_secret (with portal_jwt_user_id) or portal_admin_key is required for calls to the portal API")
        self._session = Request(
            headers={"Authorization": "Bearer %s" % self.token, "Accept": "application/json", "User-Agent": "rhpds.litemaas"},
            validate_certs=validate_certs,
            ca_path=ca_path,
            timeout=timeout,
            use_netrc=False,
        )

    @classmethod
    def from_params(cls, p, timeout=30.0):
        return cls(
            p.get("portal_url"),
            jwt_secret=p.get("portal_jwt_secret"),
            jwt_user_id=p.get("portal_jwt_user_id"),
            admin_key=p.get("portal_admin_key"),
            validate_certs=p.get("portal_validate_certs", True),
            ca_path=p.get("portal_ca_path"),
            timeout=timeout,
        )

    def request(self, method, path, body=None, query=None):
        if query:
            path = "%s?%s" % (path, urlencode(sorted((k, v) for k, v in query.items() if v is not None)))
        data = json.dumps(body).encode("utf-8") if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            resp = self._session.open(method, self.base_url + path, data=data, headers=headers)
            raw = resp.read()
        except HTTPError as exc:
            try:
                raw = exc.read()
            except Exception:
                raw = b""
            raise PortalError("%s %s failed with HTTP %s: %s" % (method, path, exc.code, portal_message(raw) or exc.reason))
        except (URLError, OSError) as exc:
            raise PortalError("%s %s failed: cannot reach %s: %s" % (method, path, self.base_url, getattr(exc, "reason", exc)))
        if not raw:
            return {}
        try:
            return json.loads(raw.decode("utf-8", "replace"))
        except ValueError:
            return raw.decode("utf-8", "replace")

    def sync_models(self):
        return self.request("POST", "/api/v1/models/sync", {"forceUpdate": False, "markUnavailable": True})

    def find_user(self, username=None, email=None, user_id=None):
        if user_id:
            data = self.request("GET", "/api/v1/users", query={"search": user_id, "limit": 100})
        else:
            data = self.request("GET", "/api/v1/users", query={"search": username or email, "limit": 100})
        for user in (data or {}).get("data") or []:
            if (user_id and user.get("id") == user_id) or (username and user.get("username") == username) or (email and user.get("email") == email):
                return {"id": user.get("id"), "username": user.get("username"), "email": user.get("email"), "roles": list(user.get("roles") or [])}
        return None

    def set_roles(self, user_id, roles):
        return self.request("PATCH", "/api/v1/users/%s" % user_id, {"roles": list(roles)})


class PortalDB:
    """The portal's PostgreSQL database, for what its API cannot do (key sync) or when the API is not reachable."""

    def __init__(self, dsn):
        if not HAS_PSYCOPG2:
            raise PortalError("psycopg2 is required for portal_db_url")
        try:
            self.conn = psycopg2.connect(dsn, connect_timeout=10)
        except psycopg2.Error as exc:
            raise PortalError("Cannot connect to the portal database: %s" % str(exc).strip().splitlines()[0])

    def close(self):
        self.conn.close()

    def query(self, sql, args=None):
        try:
            with self.conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute(sql, args)
                return [dict(row) for row in cur.fetchall()] if cur.description else []
        except psycopg2.Error as exc:
            self.conn.rollback()
            raise PortalError("Portal database query failed: %s" % str(exc).strip().splitlines()[0])

    def execute(self, sql, args=None):
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.rowcount
        except psycopg2.Error as exc:
            self.conn.rollback()
            raise PortalError("Portal database update failed: %s" % str(exc).strip().splitlines()[0])

    def commit(self):
        self.conn.commit()

    def find_user(self, username=None, email=None, user_id=None):
        if user_id:
            rows = self.query("SELECT id::text AS id, username, email, roles FROM users WHERE id::text = %s", (user_id,))
        elif username:
            rows = self.query("SELECT id::text AS id, username, email, roles FROM users WHERE username = %s", (username,))
        else:
            rows = self.query("SELECT id::text AS id, username, email, roles FROM users WHERE lower(email) = lower(%s)", (email,))
        if not rows:
            return None
        row = rows[0]
        row["roles"] = list(row.get("roles") or [])
        return row

    def set_roles(self, user_id, roles):
        self.execute("UPDATE users SET roles = %s, updated_at = now() WHERE id::text = %s", (list(roles), user_id))
        self.commit()


def normalize_role(role):
    return ROLE_ALIASES.get(role, role)


def roles_after(current, role, state):
    """The user's roles after granting (present) or revoking (absent) ``role``; order kept, ``user`` always kept."""
    role = normalize_role(role)
    roles = [r for r in current if r]
    if state == "present":
        if role not in roles:
            roles.append(role)
        if "user" not in roles:
            roles.append("user")
    else:
        roles = [r for r in roles if r != role]
    return roles
