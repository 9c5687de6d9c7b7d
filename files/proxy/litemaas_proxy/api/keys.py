"""Key management (LiteLLM's key_management_endpoints): /key/generate, update, delete, info, list, block, unblock, regenerate."""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Optional

import asyncpg
from aiohttp import web

from litemaas_proxy import db
from litemaas_proxy.api.common import (
    MAX_PAGE,
    budget_columns,
    caller,
    caller_id,
    coerce,
    flush_pending_spend,
    int_query,
    pool,
    proxy_of,
    public_key_row,
    query_filters,
    read_body,
    validate_models,
)
from litemaas_proxy.api.routes import ADMIN, KEY, KEY_ROW, USER_ROW, Route, scope_filters
from litemaas_proxy.auth import MASTER, abbreviate, generate_key, hash_if_needed, hash_token, is_master, key_name
from litemaas_proxy.durations import duration_after
from litemaas_proxy.errors import bad_request, json_response, not_found, validation_error
from litemaas_proxy.queries import keys as q
from litemaas_proxy.queries import teams as team_q
from litemaas_proxy.values import parse_on_off, parse_timestamp

UTC = timezone.utc
BLOCK_KEY_RE = re.compile(r"^(sk-[A-Za-z0-9_-]+|[a-fA-F0-9]{64})$")
METADATA_PROMOTED = ("model_rpm_limit", "model_tpm_limit", "tags", "guardrails", "prompts", "enforced_params", "rpm_limit_type", "tpm_limit_type")
ALIAS_TAKEN = "Key with alias '{}' already exists. Unique key aliases across all keys are required."


async def ensure_team(conn, team_id: Optional[str]) -> None:
    if team_id and not await team_q.exists(conn, team_id):
        raise bad_request(f"Team not found, passed team_id={team_id}. Create it with /team/new first.", "team_id")


def key_values(proxy, body: dict, updating: bool) -> dict:
    """Request body -> column values for LiteLLM_VerificationToken."""
    values: dict = {}
    for name in list(body):
        if name in ("key", "token", "new_key", "new_master_key"):
            continue
        val = coerce(body, name) if name in body else None
        if val is None and (not updating or name != "expires"):
            continue  # LiteLLM: null means "leave unchanged" (update) or "the default" (create)
        values[name] = val
    out: dict = {}
    now = datetime.now(UTC)
    for name, val in values.items():
        if name == "duration":
            if val is None or val == "-1":
                out["expires"] = None
            else:
                out["expires"] = duration_after(val, now)
        elif name == "expires":
            if val is None:
                if updating:
                    out["expires"] = None
            else:
                try:
                    out["expires"] = parse_timestamp(str(val) or "-")  # "" is no timestamp either
                except ValueError:
                    raise bad_request(f"Invalid expires {val!r}: expected an ISO 8601 timestamp", "expires")
        elif name == "budget_duration":
            out.update(budget_columns(proxy, val, now))
        elif name in METADATA_PROMOTED:
            continue
        elif name == "models":
            validate_models(proxy.router, val)
            out["models"] = val
        elif name in db.KEY_COLUMNS and name not in ("token", "key_name", "created_at", "updated_at", "budget_reset_at"):
            out[name] = val
    promoted = {n: body[n] for n in METADATA_PROMOTED if body.get(n) is not None}
    if promoted or "metadata" in out:
        meta = dict(out.get("metadata") or {})
        meta.update(promoted)
        out["metadata"] = meta
    if "key_alias" in out and out["key_alias"] is not None and not isinstance(out["key_alias"], str):
        raise bad_request("key_alias must be a string", "key_alias")
    return out


async def check_alias(conn, alias: Optional[str], own_token: Optional[str]) -> None:
    if alias is None:
        return
    other = await q.alias_owner(conn, alias)
    if other is not None and other != own_token:
        raise bad_request(ALIAS_TAKEN.format(alias), "key_alias")


def refuse_master_value(proxy, plaintext: str, param: str) -> None:
    if proxy.settings.master_key and is_master(plaintext, proxy.settings.master_key):
        raise bad_request("A virtual key cannot have the master key's value.", param)


async def get_key_row(conn, value: str) -> Optional[dict]:
    return await q.get(conn, hash_if_needed(value))


async def create_key(proxy, conn, body: dict, created_by: str) -> dict:
    """Insert a key from a /key/generate body (also used by /user/new's auto_create_key); returns the response."""
    defaults = {k: v for k, v in proxy.settings.default_key_params.items() if body.get(k) is None}
    if defaults:
        body = {**body, **defaults}
    plaintext = body.get("key")
    if plaintext is not None:
        if not isinstance(plaintext, str) or not plaintext.startswith("sk-"):
            raise bad_request(f"Invalid key format. LiteLLM Virtual Key must start with 'sk-'. Received: {plaintext}", "key")
        refuse_master_value(proxy, plaintext, "key")
    else:
        plaintext = generate_key()
    values = key_values(proxy, body, updating=False)
    await check_alias(conn, values.get("key_alias"), None)
    await ensure_team(conn, values.get("team_id"))
    token = hash_token(plaintext)
    values.update(token=token, key_name=key_name(plaintext), created_by=created_by, updated_by=created_by)
    values.setdefault("blocked", None)
    try:
        row = await q.insert(conn, values)
    except asyncpg.UniqueViolationError as exc:
        if "key_alias" in str(exc):
            raise bad_request(ALIAS_TAKEN.format(values.get("key_alias")), "key_alias")
        raise bad_request("A key with this value already exists.", "key")
    await proxy.publish(f"key:{token}")
    echo = {k: v for k, v in body.items() if k not in db.KEY_COLUMNS and k != "key"}
    resp = public_key_row(row, drop_token=False)
    resp.update(echo)
    resp.update(key=plaintext, token=token, token_id=token, expires=row["expires"], duration=body.get("duration"))
    for name in METADATA_PROMOTED:
        if name in body:
            resp[name] = body[name]
    return resp


async def key_generate(request: web.Request) -> web.Response:
    proxy = proxy_of(request)
    body = await read_body(request)
    async with pool(proxy).acquire() as conn:
        async with conn.transaction():
            resp = await create_key(proxy, conn, body, caller_id(request, caller(request)))
    return json_response(resp)


async def key_update(request: web.Request) -> web.Response:
    proxy = proxy_of(request)
    body = await read_body(request)
    key = body.get("key")
    if not key:
        raise validation_error(["body", "key"], "Field required", body, "missing")
    if not isinstance(key, str):
        raise bad_request("key must be a string", "key")
    if body.get("spend") is not None:
        await flush_pending_spend(proxy)
    async with pool(proxy).acquire() as conn:
        async with conn.transaction():
            row = await get_key_row(conn, key)
            if row is None:
                raise not_found(f"Key not found: {abbreviate(key)}", "key")
            values = key_values(proxy, body, updating=True)
            if "metadata" in values and "metadata" not in body:
                values["metadata"] = {**(row.get("metadata") or {}), **values["metadata"]}
            if "key_alias" in values:
                await check_alias(conn, values["key_alias"], row["token"])
            if values.get("team_id"):
                await ensure_team(conn, values["team_id"])
            values["updated_by"] = caller_id(request, caller(request))
            try:
                row = await q.update(conn, row["token"], values)
            except asyncpg.UniqueViolationError:
                raise bad_request(ALIAS_TAKEN.format(values.get("key_alias")), "key_alias")
    await proxy.publish(f"key:{row['token']}")
    out = public_key_row(row, drop_token=False)
    out["key"] = key
    return json_response(out)


async def key_delete(request: web.Request) -> web.Response:
    proxy = proxy_of(request)
    body = await read_body(request)
    keys, aliases = body.get("keys"), body.get("key_aliases")
    if not keys and not aliases:
        raise validation_error(["body"], "Value error, At least one of 'keys' or 'key_aliases' must be provided.", body)
    if (keys is not None and not isinstance(keys, list)) or (aliases is not None and not isinstance(aliases, list)):
        raise bad_request("keys and key_aliases must be lists", "keys")
    async with pool(proxy).acquire() as conn:
        async with conn.transaction():
            if keys:
                rows = await q.by_tokens(conn, [hash_if_needed(str(k)) for k in keys])
            else:
                rows = await q.by_aliases(conn, [str(a) for a in aliases])
            if not rows:
                raise not_found("No keys found", "keys")
            found = [r["token"] for r in rows]
            await q.archive(conn, found, caller_id(request, caller(request)))
    for token in found:
        await proxy.publish(f"key:{token}")
    return json_response({"deleted_keys": keys if keys else aliases})


async def key_info(request: web.Request) -> web.Response:
    """Any key may ask about itself (or about keys of its own user: routes.may_act_on); the master key about any key."""
    proxy = proxy_of(request)
    entry = caller(request)
    key = request.query.get("key")
    if key is None:
        if entry is MASTER:
            raise not_found("Key not found in database. Pass ?key=<key or hash>.", "key")
        passed = request.headers.get("x-litellm-api-key") or request.headers.get("Authorization", "")
        if passed.lower().startswith("bearer "):
            passed = passed[7:]
        row = await get_key_row(pool(proxy), entry.token)
        key = passed.strip()
    else:
        row = await get_key_row(pool(proxy), key)  # the route table's ownership rule has checked ?key= already
    if row is None:
        raise not_found("Key not found in database", "key")
    return json_response({"key": key, "info": public_key_row(row)})


async def key_list(request: web.Request) -> web.Response:
    proxy = proxy_of(request)
    page = int_query(request, "page", 1, 1, MAX_PAGE)
    size = int_query(request, "size", 10, 1, 100)
    filters = query_filters(request, q.LIST_FILTERS, "key_hash") + scope_filters(request, "token", "user_id")
    sort_by = request.query.get("sort_by") or "created_at"
    if sort_by not in db.KEY_COLUMNS:
        raise bad_request(f"Invalid sort_by {sort_by!r}", "sort_by")
    ascending = (request.query.get("sort_order") or "desc").lower() == "asc"
    total, rows = await q.page(pool(proxy), filters, request.query.get("status") == "deleted", sort_by, not ascending, size, (page - 1) * size)
    if parse_on_off(request.query.get("return_full_object"), default=False):
        keys = [dict(r) for r in rows]
    else:
        keys = [r["token"] for r in rows]
    return json_response({"keys": keys, "total_count": total, "current_page": page, "total_pages": max(1, math.ceil(total / size)) if total else 0})


async def set_blocked(request: web.Request, blocked: bool) -> web.Response:
    proxy = proxy_of(request)
    body = await read_body(request)
    key = body.get("key")
    if not isinstance(key, str) or not (3 <= len(key) <= 100) or not BLOCK_KEY_RE.match(key):
        raise bad_request("Invalid key format.", "key")
    async with pool(proxy).acquire() as conn:
        row = await get_key_row(conn, key)
        if row is None:
            raise not_found(f"Key not found: {abbreviate(key)}", "key")
        row = await q.update(conn, row["token"], {"blocked": blocked, "updated_by": caller_id(request, caller(request))})
    await proxy.publish(f"key:{row['token']}")
    return json_response(public_key_row(row, drop_token=False))


async def key_block(request: web.Request) -> web.Response:
    return await set_blocked(request, True)


async def key_unblock(request: web.Request) -> web.Response:
    return await set_blocked(request, False)


async def key_regenerate(request: web.Request) -> web.Response:
    proxy = proxy_of(request)
    body = await read_body(request)
    key = request.match_info.get("key") or body.get("key")
    if not isinstance(key, str) or not key:
        raise validation_error(["body", "key"], "Field required", body, "missing")
    new_key = body.get("new_key")
    if new_key is not None and (not isinstance(new_key, str) or not new_key.startswith("sk-")):
        raise bad_request(f"Invalid key format. LiteLLM Virtual Key must start with 'sk-'. Received: {new_key}", "new_key")
    if new_key is not None:
        refuse_master_value(proxy, new_key, "new_key")
    plaintext = new_key or generate_key()
    old_token = hash_token(key) if "sk" in key else key
    new_token = hash_token(plaintext)
    update_body = {k: v for k, v in body.items() if k not in ("key", "new_key")}
    async with pool(proxy).acquire() as conn:
        async with conn.transaction():
            row = await get_key_row(conn, old_token)
            if row is None:
                raise not_found(f"Key {abbreviate(key)} not found.", "key")
            values = key_values(proxy, update_body, updating=True)
            if "key_alias" in values:
                await check_alias(conn, values["key_alias"], old_token)
            values.update(token=new_token, key_name=key_name(plaintext), updated_by=caller_id(request, caller(request)),
                          rotation_count=(row.get("rotation_count") or 0) + 1, last_rotation_at=datetime.now(UTC))
            if new_token != old_token and await q.exists(conn, new_token):
                raise bad_request("A key with this value already exists.", "new_key")
            try:
                await q.rename_token(conn, old_token, new_token)
            except asyncpg.UniqueViolationError:
                raise bad_request("A key with this value already exists.", "new_key")
            values.pop("token")
            row = await q.update(conn, new_token, values)
    await proxy.publish(f"key:{old_token}")
    await proxy.publish(f"key:{new_token}")
    out = public_key_row(row, drop_token=False)
    out.update(key=plaintext, token=new_token, token_id=new_token)
    return json_response(out)


ROUTES = [
    Route("POST", "/key/generate", key_generate, ADMIN),
    Route("POST", "/key/update", key_update, ADMIN),
    Route("POST", "/key/delete", key_delete, ADMIN),
    Route("GET", "/key/info", key_info, KEY, targets=(("key", KEY_ROW),)),
    Route("GET", "/key/list", key_list, KEY, targets=(("user_id", USER_ROW), ("key_hash", KEY_ROW)), listing=True),
    Route("POST", "/key/block", key_block, ADMIN),
    Route("POST", "/key/unblock", key_unblock, ADMIN),
    Route("POST", "/key/regenerate", key_regenerate, ADMIN),
    Route("POST", "/key/{key}/regenerate", key_regenerate, ADMIN),
]
