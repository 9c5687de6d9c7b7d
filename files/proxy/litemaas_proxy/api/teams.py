"""Team management (LiteLLM's team_endpoints): /team/new, info, update, delete, list, block, unblock."""

from __future__ import annotations

import uuid

import asyncpg
from aiohttp import web

from litemaas_proxy import db
from litemaas_proxy.api.common import caller, caller_id, pool, proxy_of, public_key_row, read_body, row_values
from litemaas_proxy.api.routes import ADMIN, Route
from litemaas_proxy.errors import bad_request, json_response, not_found, validation_error
from litemaas_proxy.queries import keys as key_q
from litemaas_proxy.queries import teams as q


def members(val: list) -> list:
    """LiteLLM's ``members_with_roles``: a list of ``{"role": "admin"|"user", "user_id", "user_email"}`` objects."""
    if not isinstance(val, list):
        raise bad_request("members_with_roles must be a list", "members_with_roles")
    for item in val:
        if not isinstance(item, dict):
            raise bad_request(f"members_with_roles must hold objects like {{\"role\": \"user\", \"user_id\": \"...\"}}. Received: {item!r}",
                              "members_with_roles")
        if item.get("role") is not None and item["role"] not in ("admin", "user"):
            raise bad_request(f"members_with_roles role must be 'admin' or 'user'. Received: {item['role']!r}", "members_with_roles")
        for name in ("user_id", "user_email"):
            if item.get(name) is not None and not isinstance(item[name], str):
                raise bad_request(f"members_with_roles {name} must be a string. Received: {item[name]!r}", "members_with_roles")
    return val


def team_values(proxy, body: dict) -> dict:
    return row_values(proxy, body, db.TEAM_COLUMNS, {"members_with_roles": members})


async def team_new(request: web.Request) -> web.Response:
    proxy = proxy_of(request)
    body = await read_body(request)
    team_id = body.get("team_id") or str(uuid.uuid4())
    values = team_values(proxy, body)
    values["team_id"] = team_id
    members = list(values.get("members_with_roles") or [])
    me = caller_id(request, caller(request))
    if not any(isinstance(m, dict) and m.get("user_id") == me for m in members):
        members.append({"role": "admin", "user_id": me, "user_email": None})
    values["members_with_roles"] = members
    async with pool(proxy).acquire() as conn:
        if await q.exists(conn, team_id):
            raise bad_request(f"Team id = {team_id} already exists. Please use a different team id.", "team_id")
        try:
            row = await q.insert(conn, values)
        except asyncpg.UniqueViolationError:
            raise bad_request(f"Team id = {team_id} already exists. Please use a different team id.", "team_id")
    return json_response(dict(row))


async def team_info(request: web.Request) -> web.Response:
    proxy = proxy_of(request)
    team_id = request.query.get("team_id")
    if not team_id:
        raise validation_error(["query", "team_id"], "Field required", None, "missing")
    p = pool(proxy)
    row = await q.get(p, team_id)
    if row is None:
        raise not_found(f"Team not found, passed team_id={team_id}", "team_id")
    keys = await key_q.of_team(p, team_id)
    return json_response({"team_id": team_id, "team_info": dict(row), "keys": [public_key_row(dict(k), drop_token=False) for k in keys],
                          "team_memberships": []})


async def team_update(request: web.Request) -> web.Response:
    proxy = proxy_of(request)
    body = await read_body(request)
    team_id = body.get("team_id")
    if not team_id:
        raise validation_error(["body", "team_id"], "Field required", body, "missing")
    values = team_values(proxy, body)
    values.pop("team_id", None)
    async with pool(proxy).acquire() as conn:
        row = await q.update(conn, team_id, values)
    if row is None:
        raise not_found(f"Team not found, passed team_id={team_id}", "team_id")
    await proxy.publish(f"team:{team_id}")
    return json_response({"team_id": team_id, "data": row})


async def team_delete(request: web.Request) -> web.Response:
    proxy = proxy_of(request)
    body = await read_body(request)
    ids = body.get("team_ids")
    if not isinstance(ids, list) or not ids:
        raise validation_error(["body", "team_ids"], "Field required", body, "missing")
    if not all(isinstance(i, str) for i in ids):
        raise bad_request(f"team_ids must be a list of strings. Received: {ids!r}", "team_ids")
    async with pool(proxy).acquire() as conn:
        async with conn.transaction():
            found = await q.existing_ids(conn, ids)
            missing = [t for t in ids if t not in found]
            if missing:
                raise not_found(f"Team not found, passed team_id={missing[0]}", "team_ids")
            await key_q.detach_teams(conn, ids)
            await q.delete(conn, ids)
    for t in ids:
        await proxy.publish(f"team:{t}")
    return json_response({"deleted_teams": ids})


async def team_list(request: web.Request) -> web.Response:
    rows = await q.all_teams(pool(proxy_of(request)))
    return json_response([dict(r) for r in rows])


async def set_blocked(request: web.Request, blocked: bool) -> web.Response:
    proxy = proxy_of(request)
    body = await read_body(request)
    team_id = body.get("team_id")
    if not isinstance(team_id, str) or not team_id:
        raise validation_error(["body", "team_id"], "Field required" if team_id is None else "Input should be a valid string", team_id,
                               "missing" if team_id is None else "string_type")
    async with pool(proxy).acquire() as conn:
        row = await q.update(conn, team_id, {"blocked": blocked})
    if row is None:
        raise not_found(f"Team not found, passed team_id={team_id}", "team_id")
    await proxy.publish(f"team:{team_id}")
    return json_response(row)


async def team_block(request: web.Request) -> web.Response:
    return await set_blocked(request, True)


async def team_unblock(request: web.Request) -> web.Response:
    return await set_blocked(request, False)


ROUTES = [
    Route("POST", "/team/new", team_new, ADMIN),
    Route("GET", "/team/info", team_info, ADMIN),
    Route("POST", "/team/update", team_update, ADMIN),
    Route("POST", "/team/delete", team_delete, ADMIN),
    Route("GET", "/team/list", team_list, ADMIN),
    Route("POST", "/team/block", team_block, ADMIN),
    Route("POST", "/team/unblock", team_unblock, ADMIN),
]
