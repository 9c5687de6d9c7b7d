# -*- coding: utf-8 -*-
# Apache-2.0 (see LICENSE)
"""Pure logic of ``key_sync``: compare the portal's ``api_keys`` with the proxy's keys."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.rhpds.litemaas.plugins.module_utils.durations import format_timestamp, is_expired, parse_timestamp, utcnow

PORTAL_KEYS_SQL = (
    "SELECT id::text AS id, user_id::text AS user_id, name, key_hash, litellm_key_alias, expires_at, is_active FROM api_keys"
)
PORTAL_USERS_SQL = "SELECT id::text AS id, username, email FROM users"
DEACTIVATE_SQL = (
    "UPDATE api_keys SET is_active = false, revoked_at = now(), sync_status = 'synced', last_sync_at = now(), updated_at = now()"
    " WHERE id::text = ANY(%s)"
)
IMPORT_SQL = (
    "INSERT INTO api_keys (user_id, name, key_hash, key_prefix, litellm_key_alias, max_budget, tpm_limit, rpm_limit, budget_duration,"
    " max_parallel_requests, expires_at, is_active, sync_status, last_sync_at, metadata)"
    " VALUES (%s::uuid, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, true, 'synced', now(), %s::jsonb) ON CONFLICT (key_hash) DO NOTHING"
    " RETURNING id::text AS id"
)
# The portal lists a key with its models from api_key_models; a proxy key with no model list may use every model.
IMPORT_MODELS_SQL = (
    "INSERT INTO api_key_models (api_key_id, model_id) SELECT %s::uuid, id FROM models"
    " WHERE cardinality(%s::text[]) = 0 OR id = ANY(%s::text[]) ON CONFLICT DO NOTHING"
)


def owner_index(users):
    """Map every way a proxy key may name its owner (portal id, e-mail in lower case, user name) to the portal user id."""
    index = {}
    for user in users:
        for value in (user.get("username"), (user.get("email") or "").lower() or None, user.get("id")):
            if value:
                index[value] = user["id"]
    return index


def resolve_owner(index, user_id):
    if not user_id:
        return None
    return index.get(user_id) or index.get(user_id.lower())


def plan_sync(portal_keys, proxy_keys, users, deactivate=True, import_keys=False, alias_prefix=None, now=None):
    """Return ``(to_deactivate, to_import, skipped)``.

    ``to_deactivate``: active portal keys whose proxy token is gone or expired (or whose portal expiry passed).
    ``to_import``: live proxy keys unknown to the portal whose owner is a portal user (alias limited by ``alias_prefix``).
    ``skipped``: proxy keys that would be imported but name no portal user.
    """
    now = now or utcnow()
    by_token = dict((k.get("token"), k) for k in proxy_keys if k.get("token"))
    to_deactivate = []
    if deactivate:
        for row in portal_keys:
            if not row.get("is_active"):
                continue
            proxy = by_token.get(row.get("key_hash"))
            reason = None
            if proxy is None:
                reason = "gone from the proxy"
            elif is_expired(proxy.get("expires"), now):
                reason = "expired on the proxy"
            elif is_expired(row.get("expires_at"), now):
                reason = "expired in the portal"
            if reason:
                to_deactivate.append({"action": "deactivate", "id": row["id"], "name": row.get("name"), "user_id": row.get("user_id"), "reason": reason})
    to_import, skipped = [], []
    if import_keys:
        known = set(r.get("key_hash") for r in portal_keys)
        owners = owner_index(users)
        for key in proxy_keys:
            alias = key.get("key_alias") or ""
            if key.get("token") in known or (alias_prefix and not alias.startswith(alias_prefix)) or is_expired(key.get("expires"), now):
                continue
            owner = resolve_owner(owners, key.get("user_id"))
            entry = {"action": "import", "key_alias": alias or None, "token": key["token"], "proxy_user_id": key.get("user_id"), "user_id": owner}
            (to_import if owner else skipped).append(entry)
    return to_deactivate, to_import, skipped


def import_row(entry, key):
    """Values for ``IMPORT_SQL``. The secret is not known (the proxy keeps only its hash), so ``lite_llm_key_value`` stays empty."""
    import json

    expires = parse_timestamp(key.get("expires"))
    return (
        entry["user_id"],
        key.get("key_alias") or key.get("key_name") or key["token"][:12],
        key["token"],
        key.get("key_name") or "sk-...",
        key.get("key_alias"),
        key.get("max_budget"),
        key.get("tpm_limit"),
        key.get("rpm_limit"),
        key.get("budget_duration"),
        key.get("max_parallel_requests"),
        format_timestamp(expires) if expires else None,
        json.dumps({"imported_by": "rhpds.litemaas.key_sync", "proxy_user_id": key.get("user_id")}),
    )
