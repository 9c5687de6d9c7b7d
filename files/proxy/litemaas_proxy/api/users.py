"""User management (LiteLLM's internal_user_endpoints): /user/new, info, update, delete."""

from __future__ import annotations

import uuid

from aiohttp import web

from litemaas_proxy import db
from litemaas_proxy.api.common import (
    MAX_PAGE,
    budget_columns,
    caller,
    caller_id,
    flush_pending_spend,
    int_query,
    pool,
    proxy_of,
    public_key_row,
    read_body,
    row_values,
    strip_password,
)
from litemaas_proxy.api.keys import create_key
from litemaas_proxy.api.routes import ADMIN, KEY, USER_ROW, Route, not_owner, scope
from litemaas_proxy.errors import DetailError, ProxyError, bad_request, json_response, not_found, validation_error
from litemaas_proxy.queries import keys as key_q
from litemaas_proxy.queries import users as q

# Fields of a /user/new body that go to the key it creates (auto_create_key).
KEY_FIELDS = ("models", "duration", "key_alias", "max_budget", "tpm_limit", "rpm_limit", "max_parallel_requests", "metadata", "budget_duration")


def team_ids(val: list) -> list:
    """``teams``: team ids, or objects with a team_id (as the portal sends them)."""
    teams = [t.get("team_id") if isinstance(t, dict) else t for t in val]
    if not all(isinstance(t, str) and t and "\x00" not in t for t in teams):
        raise bad_request(f"teams must be a list of team ids (or objects with a team_id). Received: {val!r}", "teams")
    return teams


def user_values(proxy, body: dict) -> dict:
    return row_values(proxy, body, db.USER_COLUMNS, {"teams": team_ids})


async def user_new(request: web.Request) -> web.Response:
    proxy = proxy_of(request)
    body = await read_body(request)
    user_id = body.get("user_id") or str(uuid.uuid4())
    if not isinstance(user_id, str):
        raise bad_request("user_id must be a string", "user_id")
    if not isinstance(body.get("auto_create_key", True), bool):
        raise bad_request(f"auto_create_key must be true or false. Received: {body['auto_create_key']!r}", "auto_create_key")
    values = user_values(proxy, body)
    values["user_id"] = user_id
    values.setdefault("user_role", "internal_user")
    default_period = proxy.settings.default_user_budget_duration
    if default_period and "budget_duration" not in values:
        values.update(budget_columns(proxy, default_period))
    async with pool(proxy).acquire() as conn:
        async with conn.transaction():
            if await q.exists(conn, user_id):
                raise ProxyError(409, f"User with id {user_id} already exists", "bad_request_error", "user_id")
            email = values.get("user_email")
            if email and await q.email_taken(conn, email):
                raise ProxyError(409, f"User with email {email} already exists", "bad_request_error", "user_email")
            row = await q.insert(conn, values)
            await q.add_to_teams(conn, user_id, row["teams"])
            plaintext = ""
            key_row: dict = {}
            if body.get("auto_create_key", True) is not False:
                key_body = {k: body[k] for k in KEY_FIELDS if body.get(k) is not None}
                key_body["user_id"] = user_id
                if body.get("team_id"):
                    key_body["team_id"] = body["team_id"]
                key_row = await create_key(proxy, conn, key_body, caller_id(request, caller(request)))
                plaintext = key_row["key"]
    out = dict(row)
    out.pop("password", None)
    out.update(key=plaintext, expires=key_row.get("expires"), token=key_row.get("token"), key_alias=key_row.get("key_alias"),
               duration=body.get("duration"), auto_create_key=body.get("auto_create_key", True))
    return json_response(out)


async def user_info(request: web.Request) -> web.Response:
    proxy = proxy_of(request)
    user_id = request.query.get("user_id")
    p = pool(proxy)
    own = scope(caller(request))
    if not user_id and own is not None:  # a key that is not an admin's: its own user (LiteLLM), if it has one
        if "user_id" not in own:
            raise not_owner("the list of users (this key belongs to no user)")
        user_id = own["user_id"]
    if not user_id:
        page = int_query(request, "page", 1, 1, MAX_PAGE)
        size = int_query(request, "page_size", 25, 1, 1000)
        rows = await q.page(p, size, (page - 1) * size)
        return json_response({"users": [strip_password(r) for r in rows]})
    row = await q.get(p, user_id)
    if row is None:
        raise not_found(f"User {user_id} not found", "user_id")
    keys = await key_q.of_user(p, user_id)
    teams = await q.teams_of(p, user_id, list(row["teams"] or []))
    return json_response({"user_id": user_id, "user_info": strip_password(row), "keys": [public_key_row(dict(k), drop_token=False) for k in keys],
                          "teams": [dict(t) for t in teams]})


async def user_update(request: web.Request) -> web.Response:
    proxy = proxy_of(request)
    body = await read_body(request)
    user_id, email = body.get("user_id"), body.get("user_email")
    if not user_id and not email:
        raise validation_error(["body"], "Value error, Either user id or user email must be provided", body)
    values = user_values(proxy, body)
    if "spend" in values:
        await flush_pending_spend(proxy)
    async with pool(proxy).acquire() as conn:
        async with conn.transaction():
            if user_id:
                existing = await q.get_for_update(conn, user_id=user_id)
            else:
                existing = await q.get_for_update(conn, email=email)
                user_id = existing["user_id"] if existing else str(uuid.uuid4())
            values.pop("user_id", None)
            if existing is None:
                values["user_id"] = user_id
                values.setdefault("user_role", "internal_user")
                row = await q.insert(conn, values)
            else:
                row = await q.update(conn, user_id, values)
            if "teams" in values:
                await q.add_to_teams(conn, user_id, values["teams"])
    await proxy.publish(f"user:{user_id}")
    return json_response({"user_id": user_id, "data": strip_password(row)})


async def user_delete(request: web.Request) -> web.Response:
    proxy = proxy_of(request)
    body = await read_body(request)
    ids = body.get("user_ids")
    if not isinstance(ids, list) or not ids:
        raise validation_error(["body", "user_ids"], "Field required", body, "missing")
    if not all(isinstance(i, str) for i in ids):
        raise bad_request(f"user_ids must be a list of strings. Received: {ids!r}", "user_ids")
    async with pool(proxy).acquire() as conn:
        async with conn.transaction():
            found = await q.existing_ids(conn, ids)
            for uid in ids:
                if uid not in found:
                    raise DetailError(404, {"error": f"User not found, passed user_id={uid}"})
            tokens = await key_q.tokens_of_users(conn, ids)
            if tokens:
                await key_q.archive(conn, tokens, caller_id(request, caller(request)))
            await q.remove_from_teams(conn, ids)
            deleted = await q.delete(conn, ids)
    for token in tokens:
        await proxy.publish(f"key:{token}")
    for uid in ids:
        await proxy.publish(f"user:{uid}")
    return json_response(deleted)


ROUTES = [
    Route("POST", "/user/new", user_new, ADMIN),
    Route("GET", "/user/info", user_info, KEY, targets=(("user_id", USER_ROW),), listing=True),
    Route("POST", "/user/update", user_update, ADMIN),
    Route("POST", "/user/delete", user_delete, ADMIN),
]
