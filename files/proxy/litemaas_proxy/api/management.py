"""Management plane: LiteLLM-compatible key, user, team, model, spend and health endpoints."""

from __future__ import annotations

import logging
import math
import re
import uuid
from datetime import date, datetime, timedelta, timezone
from typing import Any, Optional

import asyncpg
import orjson
from aiohttp import web

from litemaas_proxy import __version__, db
from litemaas_proxy.api import read_body_bytes
from litemaas_proxy.auth import MASTER, abbreviate, generate_key, hash_if_needed, hash_token, is_master, key_name
from litemaas_proxy.durations import DurationError, check_duration, duration_after, next_budget_reset
from litemaas_proxy.errors import DetailError, ProxyError, bad_request, json_response, not_found, validation_error

log = logging.getLogger("litemaas_proxy.management")
UTC = timezone.utc
LITELLM_VERSION = "1.81.0"
BLOCK_KEY_RE = re.compile(r"^(sk-[A-Za-z0-9_-]+|[a-fA-F0-9]{64})$")
SPECIAL_MODELS = {"*", "all-proxy-models", "all-team-models", "no-default-models"}

# field -> kind for the shared key/user/team request fields
NUMERIC_FLOAT = {"max_budget", "soft_budget", "spend"}
NUMERIC_INT = {"tpm_limit", "rpm_limit", "max_parallel_requests"}
LIST_FIELDS = {"models", "allowed_cache_controls", "allowed_routes", "teams", "admins", "members"}
DICT_FIELDS = {"metadata", "aliases", "config", "permissions", "model_max_budget", "router_settings", "model_rpm_limit", "model_tpm_limit",
               "model_aliases"}
BOOL_FIELDS = {"blocked", "auto_rotate", "auto_create_key", "send_invite_email"}
DURATION_FIELDS = {"budget_duration", "duration", "rotation_interval"}
STR_FIELDS = {"key_alias", "user_id", "team_id", "user_email", "user_alias", "user_role", "team_alias", "budget_id", "organization_id"}
STR_LIST_FIELDS = {"models", "allowed_cache_controls", "allowed_routes"}  # stored as TEXT[]
INT_MAX = {"max_parallel_requests": 2**31 - 1}  # INTEGER column; the others are BIGINT
BIGINT_MAX = 2**63 - 1
MAX_PAGE = 1_000_000
MAX_REPORT_DAYS = 3660  # about ten years of per-day rows
METADATA_PROMOTED = ("model_rpm_limit", "model_tpm_limit", "tags", "guardrails", "prompts", "enforced_params", "rpm_limit_type", "tpm_limit_type")


# ---------------------------------------------------------------------------- helpers

async def read_body(request: web.Request) -> dict:
    raw = await read_body_bytes(request)
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProxyError(400, f"Invalid JSON payload: {exc}", "invalid_request_error", "None")
    if not isinstance(data, dict):
        raise validation_error(["body"], "Input should be a valid dictionary or object to extract fields from", data, "model_attributes_type")
    return data


def coerce(body: dict, name: str) -> Any:
    """Validate and normalise one request field; raises a clear 400 on bad input."""
    value = body[name]
    if value is None:
        return None
    if name in NUMERIC_FLOAT:
        try:
            out = float(value)
            if isinstance(value, bool) or math.isnan(out) or math.isinf(out):
                raise ValueError
        except (TypeError, ValueError):
            raise bad_request(f"{name} must be a number. Received: {value!r}", name)
        if out < 0:
            raise bad_request(f"{name} cannot be negative. Received: {value}", name)
        return out
    if name in NUMERIC_INT:
        try:
            if isinstance(value, bool):
                raise ValueError
            out = float(value)
            if out != int(out):
                raise ValueError
            out = int(out)
        except (TypeError, ValueError, OverflowError):
            raise bad_request(f"{name} must be an integer. Received: {value!r}", name)
        if out < 0:
            raise bad_request(f"{name} cannot be negative. Received: {value}", name)
        limit = INT_MAX.get(name, BIGINT_MAX)
        if out > limit:
            raise bad_request(f"{name} must be at most {limit}. Received: {value}", name)
        return out
    if name in LIST_FIELDS:
        if not isinstance(value, list):
            raise bad_request(f"{name} must be a list. Received: {value!r}", name)
        if name in STR_LIST_FIELDS and not all(isinstance(v, str) and "\x00" not in v for v in value):
            raise bad_request(f"{name} must be a list of strings. Received: {value!r}", name)
        return value
    if name in DICT_FIELDS:
        if not isinstance(value, dict):
            raise bad_request(f"{name} must be an object. Received: {value!r}", name)
        if name == "model_max_budget":
            check_model_max_budget(value)
        return value
    if name in BOOL_FIELDS:
        if not isinstance(value, bool):
            raise bad_request(f"{name} must be true or false. Received: {value!r}", name)
        return value
    if name in DURATION_FIELDS:
        if name == "duration" and str(value) == "-1":
            return "-1"
        try:
            check_duration(value)
        except DurationError as exc:
            raise bad_request(f"Invalid {name}: {exc}", name)
        return value
    if name in STR_FIELDS:
        if not isinstance(value, str):
            raise bad_request(f"{name} must be a string. Received: {value!r}", name)
        if "\x00" in value:
            raise bad_request(f"{name} must not contain NUL characters", name)
    return value


def check_model_max_budget(value: dict) -> None:
    """``{model: {budget_limit: number >= 0, time_period: duration}}``, as LiteLLM and the portal send it."""
    for model, spec in value.items():
        where = f"model_max_budget.{model}"
        if not isinstance(spec, dict):
            raise bad_request(f"{where} must be an object with budget_limit and time_period. Received: {spec!r}", "model_max_budget")
        limit = spec.get("budget_limit")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float)) or not math.isfinite(limit) or limit < 0):
            raise bad_request(f"{where}.budget_limit must be a number that is not negative. Received: {limit!r}", "model_max_budget")
        period = spec.get("time_period")
        if period is not None:
            try:
                check_duration(period)
            except DurationError as exc:
                raise bad_request(f"Invalid {where}.time_period: {exc}", "model_max_budget")


def caller_id(request: web.Request, entry) -> str:
    changed_by = request.headers.get("litellm-changed-by")
    if changed_by:
        return changed_by
    return entry.key.get("user_id") or "default_user_id"


def public_key_row(row: dict, drop_token: bool = True) -> dict:
    out = dict(row)
    if drop_token:
        out.pop("token", None)
    out.setdefault("litellm_budget_table", None)
    return out


def parse_bool(value: Optional[str]) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


def int_query(request: web.Request, name: str, default: int, minimum: int = 1, maximum: Optional[int] = None) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise validation_error(["query", name], "Input should be a valid integer, unable to parse string as an integer", raw, "int_parsing")
    if value < minimum:
        raise validation_error(["query", name], f"Input should be greater than or equal to {minimum}", raw, "greater_than_equal")
    if maximum is not None and value > maximum:
        raise validation_error(["query", name], f"Input should be less than or equal to {maximum}", raw, "less_than_equal")
    return value


def parse_date(value: Optional[str], name: str) -> Optional[date]:
    if not value:
        return None
    try:
        out = date.fromisoformat(value[:10])
    except ValueError:
        raise bad_request(f"Invalid {name} {value!r}: expected YYYY-MM-DD", name)
    if out >= date.max:
        raise bad_request(f"Invalid {name} {value!r}: must be before {date.max.isoformat()}", name)
    return out


def check_range(start: Optional[date], end: Optional[date]) -> None:
    if start and end and (end - start).days > MAX_REPORT_DAYS:
        raise bad_request(f"Date range too long: {start} to {end}; at most {MAX_REPORT_DAYS} days per request", "end_date")


def setup(app: web.Application, proxy) -> None:
    router = proxy.router

    def pool():
        if proxy.pool is None:
            if not proxy.settings.database_url:
                raise ProxyError(500, "DB not connected. Set DATABASE_URL to use the management API.", "no_db_connection", "None")
            raise ProxyError(500, "DB not connected. Retry shortly; the proxy is still connecting to its database.", "no_db_connection", "None")
        return proxy.pool

    def validate_models(models: list) -> None:
        known = set(router.model_names()) | router.access_groups()
        unknown = [m for m in models if not isinstance(m, str) or (m not in known and m not in SPECIAL_MODELS and "*" not in m)]
        if unknown:
            raise bad_request(f"Unknown model(s) in models: {unknown}. Available models: {sorted(router.model_names())}", "models")

    async def flush_pending_spend() -> None:
        """Setting spend (e.g. a reset to 0) must not be undone by this replica's not-yet-written spend."""
        try:
            await proxy.spend.flush_all()
        except Exception as exc:
            log.warning("could not flush pending spend before a spend update: %s", exc)

    async def ensure_team(conn, team_id: Optional[str]) -> None:
        if team_id and await conn.fetchval(f"SELECT 1 FROM {db.TEAM_TABLE} WHERE team_id = $1", team_id) is None:
            raise bad_request(f"Team not found, passed team_id={team_id}. Create it with /team/new first.", "team_id")

    def key_values(body: dict, updating: bool) -> dict:
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
                        exp = datetime.fromisoformat(str(val).replace("Z", "+00:00"))
                    except ValueError:
                        raise bad_request(f"Invalid expires {val!r}: expected an ISO 8601 timestamp", "expires")
                    out["expires"] = exp if exp.tzinfo else exp.replace(tzinfo=UTC)
            elif name == "budget_duration":
                out["budget_duration"] = val
                out["budget_reset_at"] = next_budget_reset(val, now, proxy.settings.budget_timezone) if val else None
            elif name in METADATA_PROMOTED:
                continue
            elif name == "models":
                validate_models(val)
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
        other = await conn.fetchval(f"SELECT token FROM {db.KEY_TABLE} WHERE key_alias = $1", alias)
        if other is not None and other != own_token:
            raise bad_request(f"Key with alias '{alias}' already exists. Unique key aliases across all keys are required.", "key_alias")

    async def create_key(conn, body: dict, created_by: str) -> dict:
        defaults = {k: v for k, v in proxy.settings.default_key_params.items() if body.get(k) is None}
        if defaults:
            body = {**body, **defaults}
        plaintext = body.get("key")
        if plaintext is not None:
            if not isinstance(plaintext, str) or not plaintext.startswith("sk-"):
                raise bad_request(f"Invalid key format. LiteLLM Virtual Key must start with 'sk-'. Received: {plaintext}", "key")
            refuse_master_value(plaintext, "key")
        else:
            plaintext = generate_key()
        values = key_values(body, updating=False)
        await check_alias(conn, values.get("key_alias"), None)
        await ensure_team(conn, values.get("team_id"))
        token = hash_token(plaintext)
        values.update(token=token, key_name=key_name(plaintext), created_by=created_by, updated_by=created_by)
        values.setdefault("blocked", None)
        try:
            row = await db.insert_row(conn, db.KEY_TABLE, db.KEY_COLUMNS, values)
        except asyncpg.UniqueViolationError as exc:
            if "key_alias" in str(exc):
                raise bad_request(f"Key with alias '{values.get('key_alias')}' already exists. Unique key aliases across all keys are required.",
                                  "key_alias")
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

    def refuse_master_value(plaintext: str, param: str) -> None:
        if proxy.settings.master_key and is_master(plaintext, proxy.settings.master_key):
            raise bad_request("A virtual key cannot have the master key's value.", param)

    async def get_key_row(conn, value: str) -> Optional[dict]:
        return db.record(await conn.fetchrow(f"SELECT * FROM {db.KEY_TABLE} WHERE token = $1", hash_if_needed(value)))

    # ------------------------------------------------------------------ keys
    async def key_generate(request):
        entry = await proxy.require_admin(request)
        body = await read_body(request)
        async with pool().acquire() as conn:
            async with conn.transaction():
                resp = await create_key(conn, body, caller_id(request, entry))
        return json_response(resp)

    async def key_update(request):
        entry = await proxy.require_admin(request)
        body = await read_body(request)
        key = body.get("key")
        if not key:
            raise validation_error(["body", "key"], "Field required", body, "missing")
        if not isinstance(key, str):
            raise bad_request("key must be a string", "key")
        if body.get("spend") is not None:
            await flush_pending_spend()
        async with pool().acquire() as conn:
            async with conn.transaction():
                row = await get_key_row(conn, key)
                if row is None:
                    raise not_found(f"Key not found: {abbreviate(key)}", "key")
                values = key_values(body, updating=True)
                if "metadata" in values and "metadata" not in body:
                    values["metadata"] = {**(row.get("metadata") or {}), **values["metadata"]}
                if "key_alias" in values:
                    await check_alias(conn, values["key_alias"], row["token"])
                if values.get("team_id"):
                    await ensure_team(conn, values["team_id"])
                values["updated_by"] = caller_id(request, entry)
                try:
                    row = await db.update_row(conn, db.KEY_TABLE, db.KEY_COLUMNS, "token", row["token"], values)
                except asyncpg.UniqueViolationError:
                    raise bad_request(f"Key with alias '{values.get('key_alias')}' already exists. Unique key aliases across all keys are required.",
                                      "key_alias")
        await proxy.publish(f"key:{row['token']}")
        out = public_key_row(row, drop_token=False)
        out["key"] = key
        return json_response(out)

    async def key_delete(request):
        entry = await proxy.require_admin(request)
        body = await read_body(request)
        keys, aliases = body.get("keys"), body.get("key_aliases")
        if not keys and not aliases:
            raise validation_error(["body"], "Value error, At least one of 'keys' or 'key_aliases' must be provided.", body)
        if (keys is not None and not isinstance(keys, list)) or (aliases is not None and not isinstance(aliases, list)):
            raise bad_request("keys and key_aliases must be lists", "keys")
        async with pool().acquire() as conn:
            async with conn.transaction():
                if keys:
                    tokens = [hash_if_needed(str(k)) for k in keys]
                    rows = await conn.fetch(f"SELECT * FROM {db.KEY_TABLE} WHERE token = ANY($1::text[])", tokens)
                else:
                    rows = await conn.fetch(f"SELECT * FROM {db.KEY_TABLE} WHERE key_alias = ANY($1::text[])", [str(a) for a in aliases])
                if not rows:
                    raise not_found("No keys found", "keys")
                found = [r["token"] for r in rows]
                await archive_keys(conn, found, caller_id(request, entry))
        for token in found:
            await proxy.publish(f"key:{token}")
        return json_response({"deleted_keys": keys if keys else aliases})

    async def archive_keys(conn, tokens: list, deleted_by: str) -> None:
        cols = ", ".join(c for c in db.KEY_COLUMNS)
        await conn.execute(f"INSERT INTO {db.DELETED_KEY_TABLE} ({cols}, deleted_by) SELECT {cols}, $2 FROM {db.KEY_TABLE} WHERE token = ANY($1::text[])",
                           tokens, deleted_by)
        await conn.execute(f"DELETE FROM {db.KEY_TABLE} WHERE token = ANY($1::text[])", tokens)

    async def key_info(request):
        entry = await proxy.authenticate(request)
        key = request.query.get("key")
        if key is None:
            if entry is MASTER:
                raise not_found("Key not found in database. Pass ?key=<key or hash>.", "key")
            passed = request.headers.get("x-litellm-api-key") or request.headers.get("Authorization", "")
            if passed.lower().startswith("bearer "):
                passed = passed[7:]
            row = await get_key_row(pool(), entry.token)
            key = passed.strip()
        else:
            row = await get_key_row(pool(), key)
            if row is not None and not entry.is_admin and row["token"] != entry.token and row.get("user_id") != entry.key.get("user_id"):
                raise ProxyError(403, "You are not allowed to access this key's info. Your key is not the owner of this key.", "auth_error", "key")
        if row is None:
            raise not_found("Key not found in database", "key")
        return json_response({"key": key, "info": public_key_row(row)})

    async def key_list(request):
        await proxy.require_admin(request)
        page = int_query(request, "page", 1, 1, MAX_PAGE)
        size = int_query(request, "size", 10, 1, 100)
        where, args = [], []
        for qname, col in (("user_id", "user_id"), ("team_id", "team_id"), ("key_alias", "key_alias"), ("organization_id", "organization_id"),
                           ("key_hash", "token")):
            val = request.query.get(qname)
            if val:
                args.append(hash_if_needed(val) if qname == "key_hash" else val)
                where.append(f"{col} = ${len(args)}")
        table = db.DELETED_KEY_TABLE if request.query.get("status") == "deleted" else db.KEY_TABLE
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        sort_by = request.query.get("sort_by") or "created_at"
        if sort_by not in db.KEY_COLUMNS:
            raise bad_request(f"Invalid sort_by {sort_by!r}", "sort_by")
        order = "ASC" if (request.query.get("sort_order") or "desc").lower() == "asc" else "DESC"
        p = pool()
        total = await p.fetchval(f"SELECT count(*) FROM {table}{clause}", *args)
        rows = await p.fetch(f"SELECT * FROM {table}{clause} ORDER BY {sort_by} {order}, token LIMIT {size} OFFSET {(page - 1) * size}", *args)
        if parse_bool(request.query.get("return_full_object")):
            keys = [dict(r) for r in rows]
        else:
            keys = [r["token"] for r in rows]
        return json_response({"keys": keys, "total_count": total, "current_page": page, "total_pages": max(1, math.ceil(total / size)) if total else 0})

    async def key_block(request, blocked: bool):
        entry = await proxy.require_admin(request)
        body = await read_body(request)
        key = body.get("key")
        if not isinstance(key, str) or not (3 <= len(key) <= 100) or not BLOCK_KEY_RE.match(key):
            raise bad_request("Invalid key format.", "key")
        async with pool().acquire() as conn:
            row = await get_key_row(conn, key)
            if row is None:
                raise not_found(f"Key not found: {abbreviate(key)}", "key")
            row = await db.update_row(conn, db.KEY_TABLE, db.KEY_COLUMNS, "token", row["token"], {"blocked": blocked, "updated_by": caller_id(request, entry)})
        await proxy.publish(f"key:{row['token']}")
        return json_response(public_key_row(row, drop_token=False))

    async def key_regenerate(request):
        entry = await proxy.require_admin(request)
        body = await read_body(request)
        key = request.match_info.get("key") or body.get("key")
        if not isinstance(key, str) or not key:
            raise validation_error(["body", "key"], "Field required", body, "missing")
        new_key = body.get("new_key")
        if new_key is not None and (not isinstance(new_key, str) or not new_key.startswith("sk-")):
            raise bad_request(f"Invalid key format. LiteLLM Virtual Key must start with 'sk-'. Received: {new_key}", "new_key")
        if new_key is not None:
            refuse_master_value(new_key, "new_key")
        plaintext = new_key or generate_key()
        old_token = hash_token(key) if "sk" in key else key
        new_token = hash_token(plaintext)
        update_body = {k: v for k, v in body.items() if k not in ("key", "new_key")}
        async with pool().acquire() as conn:
            async with conn.transaction():
                row = await get_key_row(conn, old_token)
                if row is None:
                    raise not_found(f"Key {abbreviate(key)} not found.", "key")
                values = key_values(update_body, updating=True)
                if "key_alias" in values:
                    await check_alias(conn, values["key_alias"], old_token)
                values.update(token=new_token, key_name=key_name(plaintext), updated_by=caller_id(request, entry),
                              rotation_count=(row.get("rotation_count") or 0) + 1, last_rotation_at=datetime.now(UTC))
                if new_token != old_token and await conn.fetchval(f"SELECT 1 FROM {db.KEY_TABLE} WHERE token = $1", new_token):
                    raise bad_request("A key with this value already exists.", "new_key")
                try:
                    row = await conn.fetchrow(f"UPDATE {db.KEY_TABLE} SET token = $2 WHERE token = $1 RETURNING token", old_token, new_token)
                except asyncpg.UniqueViolationError:
                    raise bad_request("A key with this value already exists.", "new_key")
                values.pop("token")
                row = await db.update_row(conn, db.KEY_TABLE, db.KEY_COLUMNS, "token", new_token, values)
        await proxy.publish(f"key:{old_token}")
        await proxy.publish(f"key:{new_token}")
        out = public_key_row(row, drop_token=False)
        out.update(key=plaintext, token=new_token, token_id=new_token)
        return json_response(out)

    # ------------------------------------------------------------------ users
    def user_values(body: dict, updating: bool) -> dict:
        out: dict = {}
        now = datetime.now(UTC)
        for name in list(body):
            if name not in db.USER_COLUMNS and name != "budget_duration":
                continue
            val = coerce(body, name) if name in body else None
            if val is None:
                continue  # null: unchanged (update) or the default (create)
            if name == "budget_duration":
                out["budget_duration"] = val
                out["budget_reset_at"] = next_budget_reset(val, now, proxy.settings.budget_timezone) if val else None
            elif name == "models":
                validate_models(val)
                out["models"] = val
            elif name == "teams":
                teams = [t.get("team_id") if isinstance(t, dict) else t for t in val]
                if not all(isinstance(t, str) and t and "\x00" not in t for t in teams):
                    raise bad_request(f"teams must be a list of team ids (or objects with a team_id). Received: {val!r}", "teams")
                out["teams"] = teams
            elif name in ("created_at", "updated_at", "budget_reset_at"):
                continue
            else:
                out[name] = val
        return out

    async def add_user_to_teams(conn, user_id: str, teams: list, role: str = "user") -> None:
        for team_id in teams:
            row = await conn.fetchrow(f"SELECT members_with_roles FROM {db.TEAM_TABLE} WHERE team_id = $1 FOR UPDATE", team_id)
            if row is None:
                continue
            members = list(row["members_with_roles"] or [])
            if not any(m.get("user_id") == user_id for m in members if isinstance(m, dict)):
                members.append({"role": role, "user_id": user_id, "user_email": None})
                await conn.execute(f"UPDATE {db.TEAM_TABLE} SET members_with_roles = $2::jsonb, updated_at = now() WHERE team_id = $1", team_id, members)

    async def user_new(request):
        entry = await proxy.require_admin(request)
        body = await read_body(request)
        user_id = body.get("user_id") or str(uuid.uuid4())
        if not isinstance(user_id, str):
            raise bad_request("user_id must be a string", "user_id")
        if not isinstance(body.get("auto_create_key", True), bool):
            raise bad_request(f"auto_create_key must be true or false. Received: {body['auto_create_key']!r}", "auto_create_key")
        values = user_values(body, updating=False)
        values["user_id"] = user_id
        values.setdefault("user_role", "internal_user")
        default_period = proxy.settings.default_user_budget_duration
        if default_period and "budget_duration" not in values:
            values["budget_duration"] = default_period
            values["budget_reset_at"] = next_budget_reset(default_period, None, proxy.settings.budget_timezone)
        async with pool().acquire() as conn:
            async with conn.transaction():
                if await conn.fetchval(f"SELECT 1 FROM {db.USER_TABLE} WHERE user_id = $1", user_id):
                    raise ProxyError(409, f"User with id {user_id} already exists", "bad_request_error", "user_id")
                email = values.get("user_email")
                if email and await conn.fetchval(f"SELECT 1 FROM {db.USER_TABLE} WHERE lower(user_email) = lower($1)", email):
                    raise ProxyError(409, f"User with email {email} already exists", "bad_request_error", "user_email")
                row = await db.insert_row(conn, db.USER_TABLE, db.USER_COLUMNS, values)
                await add_user_to_teams(conn, user_id, row["teams"])
                plaintext = ""
                key_row: dict = {}
                if body.get("auto_create_key", True) is not False:
                    key_body = {k: body[k] for k in ("models", "duration", "key_alias", "max_budget", "tpm_limit", "rpm_limit", "max_parallel_requests",
                                                     "metadata", "budget_duration") if body.get(k) is not None}
                    key_body["user_id"] = user_id
                    if body.get("team_id"):
                        key_body["team_id"] = body["team_id"]
                    key_row = await create_key(conn, key_body, caller_id(request, entry))
                    plaintext = key_row["key"]
        out = dict(row)
        out.pop("password", None)
        out.update(key=plaintext, expires=key_row.get("expires"), token=key_row.get("token"), key_alias=key_row.get("key_alias"),
                   duration=body.get("duration"), auto_create_key=body.get("auto_create_key", True))
        return json_response(out)

    async def user_info(request):
        await proxy.require_admin(request)
        user_id = request.query.get("user_id")
        p = pool()
        if not user_id:
            page = int_query(request, "page", 1, 1, MAX_PAGE)
            size = int_query(request, "page_size", 25, 1, 1000)
            rows = await p.fetch(f"SELECT * FROM {db.USER_TABLE} ORDER BY created_at LIMIT {size} OFFSET {(page - 1) * size}")
            return json_response({"users": [strip_password(r) for r in rows]})
        row = await p.fetchrow(f"SELECT * FROM {db.USER_TABLE} WHERE user_id = $1", user_id)
        if row is None:
            raise not_found(f"User {user_id} not found", "user_id")
        keys = await p.fetch(f"SELECT * FROM {db.KEY_TABLE} WHERE user_id = $1 ORDER BY created_at", user_id)
        teams = await p.fetch(f"SELECT * FROM {db.TEAM_TABLE} WHERE team_id = ANY($1::text[]) OR members_with_roles @> $2::jsonb ORDER BY created_at",
                              list(row["teams"] or []), [{"user_id": user_id}])
        return json_response({"user_id": user_id, "user_info": strip_password(row), "keys": [public_key_row(dict(k), drop_token=False) for k in keys],
                              "teams": [dict(t) for t in teams]})

    def strip_password(row) -> dict:
        out = dict(row)
        out.pop("password", None)
        return out

    async def user_update(request):
        await proxy.require_admin(request)
        body = await read_body(request)
        user_id, email = body.get("user_id"), body.get("user_email")
        if not user_id and not email:
            raise validation_error(["body"], "Value error, Either user id or user email must be provided", body)
        values = user_values(body, updating=True)
        if "spend" in values:
            await flush_pending_spend()
        async with pool().acquire() as conn:
            async with conn.transaction():
                if user_id:
                    existing = await conn.fetchrow(f"SELECT * FROM {db.USER_TABLE} WHERE user_id = $1 FOR UPDATE", user_id)
                else:
                    existing = await conn.fetchrow(f"SELECT * FROM {db.USER_TABLE} WHERE lower(user_email) = lower($1) FOR UPDATE", email)
                    user_id = existing["user_id"] if existing else str(uuid.uuid4())
                values.pop("user_id", None)
                if existing is None:
                    values["user_id"] = user_id
                    values.setdefault("user_role", "internal_user")
                    row = await db.insert_row(conn, db.USER_TABLE, db.USER_COLUMNS, values)
                else:
                    row = await db.update_row(conn, db.USER_TABLE, db.USER_COLUMNS, "user_id", user_id, values)
                if "teams" in values:
                    await add_user_to_teams(conn, user_id, values["teams"])
        await proxy.publish(f"user:{user_id}")
        return json_response({"user_id": user_id, "data": strip_password(row)})

    async def user_delete(request):
        entry = await proxy.require_admin(request)
        body = await read_body(request)
        ids = body.get("user_ids")
        if not isinstance(ids, list) or not ids:
            raise validation_error(["body", "user_ids"], "Field required", body, "missing")
        if not all(isinstance(i, str) for i in ids):
            raise bad_request(f"user_ids must be a list of strings. Received: {ids!r}", "user_ids")
        async with pool().acquire() as conn:
            async with conn.transaction():
                found = {r["user_id"] for r in await conn.fetch(f"SELECT user_id FROM {db.USER_TABLE} WHERE user_id = ANY($1::text[])", ids)}
                for uid in ids:
                    if uid not in found:
                        raise DetailError(404, {"error": f"User not found, passed user_id={uid}"})
                tokens = [r["token"] for r in await conn.fetch(f"SELECT token FROM {db.KEY_TABLE} WHERE user_id = ANY($1::text[])", ids)]
                if tokens:
                    await archive_keys(conn, tokens, caller_id(request, entry))
                teams = await conn.fetch(f"SELECT team_id, members_with_roles FROM {db.TEAM_TABLE} WHERE members_with_roles @> ANY($1::jsonb[])",
                                         [[{"user_id": u}] for u in ids])
                for team in teams:
                    members = [m for m in team["members_with_roles"] if not (isinstance(m, dict) and m.get("user_id") in ids)]
                    await conn.execute(f"UPDATE {db.TEAM_TABLE} SET members_with_roles = $2::jsonb WHERE team_id = $1", team["team_id"], members)
                deleted = await conn.execute(f"DELETE FROM {db.USER_TABLE} WHERE user_id = ANY($1::text[])", ids)
        for token in tokens:
            await proxy.publish(f"key:{token}")
        for uid in ids:
            await proxy.publish(f"user:{uid}")
        return json_response(int(deleted.split()[-1]))

    # ------------------------------------------------------------------ teams
    def team_values(body: dict, updating: bool) -> dict:
        out: dict = {}
        now = datetime.now(UTC)
        for name in list(body):
            if name not in db.TEAM_COLUMNS and name not in ("budget_duration",):
                continue
            val = coerce(body, name)
            if val is None:
                continue  # null: unchanged (update) or the default (create)
            if name == "budget_duration":
                out["budget_duration"] = val
                out["budget_reset_at"] = next_budget_reset(val, now, proxy.settings.budget_timezone) if val else None
            elif name == "models":
                validate_models(val)
                out["models"] = val
            elif name == "members_with_roles":
                if not isinstance(val, list):
                    raise bad_request("members_with_roles must be a list", name)
                out[name] = val
            elif name in ("created_at", "updated_at", "budget_reset_at"):
                continue
            else:
                out[name] = val
        return out

    async def team_new(request):
        entry = await proxy.require_admin(request)
        body = await read_body(request)
        team_id = body.get("team_id") or str(uuid.uuid4())
        values = team_values(body, updating=False)
        values["team_id"] = team_id
        members = list(values.get("members_with_roles") or [])
        me = caller_id(request, entry)
        if not any(isinstance(m, dict) and m.get("user_id") == me for m in members):
            members.append({"role": "admin", "user_id": me, "user_email": None})
        values["members_with_roles"] = members
        async with pool().acquire() as conn:
            if await conn.fetchval(f"SELECT 1 FROM {db.TEAM_TABLE} WHERE team_id = $1", team_id):
                raise bad_request(f"Team id = {team_id} already exists. Please use a different team id.", "team_id")
            try:
                row = await db.insert_row(conn, db.TEAM_TABLE, db.TEAM_COLUMNS, values)
            except asyncpg.UniqueViolationError:
                raise bad_request(f"Team id = {team_id} already exists. Please use a different team id.", "team_id")
        return json_response(dict(row))

    async def team_info(request):
        await proxy.require_admin(request)
        team_id = request.query.get("team_id")
        if not team_id:
            raise validation_error(["query", "team_id"], "Field required", None, "missing")
        p = pool()
        row = await p.fetchrow(f"SELECT * FROM {db.TEAM_TABLE} WHERE team_id = $1", team_id)
        if row is None:
            raise not_found(f"Team not found, passed team_id={team_id}", "team_id")
        keys = await p.fetch(f"SELECT * FROM {db.KEY_TABLE} WHERE team_id = $1 ORDER BY created_at", team_id)
        return json_response({"team_id": team_id, "team_info": dict(row), "keys": [public_key_row(dict(k), drop_token=False) for k in keys],
                              "team_memberships": []})

    async def team_update(request):
        await proxy.require_admin(request)
        body = await read_body(request)
        team_id = body.get("team_id")
        if not team_id:
            raise validation_error(["body", "team_id"], "Field required", body, "missing")
        values = team_values(body, updating=True)
        values.pop("team_id", None)
        async with pool().acquire() as conn:
            row = await db.update_row(conn, db.TEAM_TABLE, db.TEAM_COLUMNS, "team_id", team_id, values)
        if row is None:
            raise not_found(f"Team not found, passed team_id={team_id}", "team_id")
        await proxy.publish(f"team:{team_id}")
        return json_response({"team_id": team_id, "data": row})

    async def team_delete(request):
        await proxy.require_admin(request)
        body = await read_body(request)
        ids = body.get("team_ids")
        if not isinstance(ids, list) or not ids:
            raise validation_error(["body", "team_ids"], "Field required", body, "missing")
        if not all(isinstance(i, str) for i in ids):
            raise bad_request(f"team_ids must be a list of strings. Received: {ids!r}", "team_ids")
        async with pool().acquire() as conn:
            async with conn.transaction():
                found = {r["team_id"] for r in await conn.fetch(f"SELECT team_id FROM {db.TEAM_TABLE} WHERE team_id = ANY($1::text[])", ids)}
                missing = [t for t in ids if t not in found]
                if missing:
                    raise not_found(f"Team not found, passed team_id={missing[0]}", "team_ids")
                await conn.execute(f"UPDATE {db.KEY_TABLE} SET team_id = NULL WHERE team_id = ANY($1::text[])", ids)
                await conn.execute(f"DELETE FROM {db.TEAM_TABLE} WHERE team_id = ANY($1::text[])", ids)
        for t in ids:
            await proxy.publish(f"team:{t}")
        return json_response({"deleted_teams": ids})

    async def team_list(request):
        await proxy.require_admin(request)
        rows = await pool().fetch(f"SELECT * FROM {db.TEAM_TABLE} ORDER BY created_at")
        return json_response([dict(r) for r in rows])

    async def team_block(request, blocked: bool):
        await proxy.require_admin(request)
        body = await read_body(request)
        team_id = body.get("team_id")
        if not isinstance(team_id, str) or not team_id:
            raise validation_error(["body", "team_id"], "Field required" if team_id is None else "Input should be a valid string", team_id,
                                   "missing" if team_id is None else "string_type")
        async with pool().acquire() as conn:
            row = await db.update_row(conn, db.TEAM_TABLE, db.TEAM_COLUMNS, "team_id", team_id, {"blocked": blocked})
        if row is None:
            raise not_found(f"Team not found, passed team_id={team_id}", "team_id")
        await proxy.publish(f"team:{team_id}")
        return json_response(row)

    # ------------------------------------------------------------------ models
    def normalise_model(body: dict, existing: Optional[dict] = None) -> tuple:
        params = body.get("litellm_params")
        info = body.get("model_info")
        if params is not None and not isinstance(params, dict):
            raise bad_request("litellm_params must be an object", "litellm_params")
        if info is not None and not isinstance(info, dict):
            raise bad_request("model_info must be an object", "model_info")
        merged_params = proxy.sealer.open((existing or {}).get("litellm_params") or {})
        merged_params.update({k: v for k, v in (params or {}).items() if v is not None})
        merged_info = dict((existing or {}).get("model_info") or {})
        merged_info.update({k: v for k, v in (info or {}).items() if v is not None})
        if not merged_params.get("model") or not isinstance(merged_params.get("model"), str):
            raise bad_request("litellm_params.model is required (e.g. 'openai/<served-model-name>')", "litellm_params")
        for name in ("input_cost_per_token", "output_cost_per_token", "rpm", "tpm", "timeout"):
            if merged_params.get(name) is not None:
                try:
                    val = float(merged_params[name])
                except (TypeError, ValueError):
                    raise bad_request(f"litellm_params.{name} must be a number", "litellm_params")
                if val < 0:
                    raise bad_request(f"litellm_params.{name} cannot be negative", "litellm_params")
        for name in ("api_base", "api_key", "custom_llm_provider", "passthrough_prefix"):
            val = merged_params.get(name)
            if val is not None and (not isinstance(val, str) or any(ord(c) < 32 or ord(c) == 127 for c in val)):
                raise bad_request(f"litellm_params.{name} must be a string without control characters", "litellm_params")
        api_key = merged_params.get("api_key")
        if api_key is not None and not all(32 <= ord(c) < 127 for c in api_key):
            raise bad_request("litellm_params.api_key must be printable ASCII (it is sent in an HTTP header)", "litellm_params")
        for name in ("mode", "base_model", "passthrough_prefix"):
            val = merged_info.get(name)
            if val is not None and not isinstance(val, str):
                raise bad_request(f"model_info.{name} must be a string", "model_info")
        groups = merged_info.get("access_groups")
        if groups is not None and not (isinstance(groups, list) and all(isinstance(g, str) for g in groups)):
            raise bad_request("model_info.access_groups must be a list of strings", "model_info")
        if "id" in merged_info and (not isinstance(merged_info["id"], str) or not merged_info["id"]):
            raise bad_request("model_info.id must be a non-empty string", "model_info")
        for name in ("input_cost_per_token", "output_cost_per_token"):
            if name in merged_params:
                merged_info[name] = merged_params[name]
        merged_info["db_model"] = True
        return merged_params, merged_info

    def model_row_out(row: dict) -> dict:
        out = dict(row)
        out["litellm_params"] = {k: v for k, v in proxy.sealer.open(row.get("litellm_params") or {}).items() if k != "api_key"}
        info = dict(row.get("model_info") or {})
        info["id"] = row["model_id"]
        out["model_info"] = info
        return out

    async def model_changed():
        await proxy.reload_models()
        await proxy.publish("models:")

    async def model_new(request):
        entry = await proxy.require_admin(request)
        body = await read_body(request)
        name = body.get("model_name")
        if not name or not isinstance(name, str):
            raise bad_request("model_name is required", "model_name")
        params, info = normalise_model(body)
        model_id = str(info.get("id") or uuid.uuid4())
        info["id"] = model_id
        if model_id in router.config_ids:
            raise bad_request(f"Model id {model_id} is defined in the config file", "model_info")
        me = caller_id(request, entry)
        async with pool().acquire() as conn:
            try:
                row = await db.insert_row(conn, db.MODEL_TABLE, db.MODEL_COLUMNS,
                                          {"model_id": model_id, "model_name": name, "litellm_params": proxy.sealer.seal(params), "model_info": info,
                                           "created_by": me, "updated_by": me})
            except asyncpg.UniqueViolationError:
                raise bad_request(f"Model with id={model_id} already exists", "model_info")
        await model_changed()
        return json_response(model_row_out(row))

    async def model_update_common(request, entry, model_id: Optional[str], body: dict):
        if not model_id:
            raise bad_request("model_info.id is required", "model_info")
        if not isinstance(model_id, str):
            raise bad_request(f"model_info.id must be a string. Received: {model_id!r}", "model_info")
        if model_id in router.config_ids:
            raise bad_request("Can't edit model. Model in config. Store model in db via /model/new. to edit.", "model_info")
        async with pool().acquire() as conn:
            async with conn.transaction():
                existing = await conn.fetchrow(f"SELECT * FROM {db.MODEL_TABLE} WHERE model_id = $1 FOR UPDATE", model_id)
                if existing is None:
                    raise not_found(f"Model not found, passed model_id={model_id}", "model_id")
                params, info = normalise_model(body, dict(existing))
                info["id"] = model_id
                values = {"litellm_params": proxy.sealer.seal(params), "model_info": info, "updated_by": caller_id(request, entry)}
                if body.get("model_name"):
                    values["model_name"] = str(body["model_name"])
                row = await db.update_row(conn, db.MODEL_TABLE, db.MODEL_COLUMNS, "model_id", model_id, values)
        await model_changed()
        return json_response(model_row_out(row))

    async def model_patch(request):
        entry = await proxy.require_admin(request)
        body = await read_body(request)
        return await model_update_common(request, entry, request.match_info["model_id"], body)

    async def model_update(request):
        entry = await proxy.require_admin(request)
        body = await read_body(request)
        info = body.get("model_info") or {}
        return await model_update_common(request, entry, info.get("id") if isinstance(info, dict) else None, body)

    async def model_delete(request):
        await proxy.require_admin(request)
        body = await read_body(request)
        model_id = body.get("id")
        if not model_id:
            raise validation_error(["body", "id"], "Field required", body, "missing")
        if not isinstance(model_id, str):
            raise bad_request(f"id must be a string. Received: {model_id!r}", "id")
        if model_id in router.config_ids:
            raise bad_request(f"Model with id={model_id} is defined in the config file and cannot be deleted through the API", "id")
        status = await pool().execute(f"DELETE FROM {db.MODEL_TABLE} WHERE model_id = $1", str(model_id))
        if status.endswith(" 0"):
            raise bad_request(f"Model with id={model_id} not found in db", "id")
        await model_changed()
        return json_response({"message": f"Model: {model_id} deleted successfully"})

    async def model_info(request):
        from litemaas_proxy.api.data import may_use_model

        entry = await proxy.authenticate(request)
        wanted = request.query.get("litellm_model_id")
        out = []
        for name, deps in router.groups.items():
            if not may_use_model(entry, name, router):
                continue
            for dep in deps:
                if wanted and dep.id != wanted:
                    continue
                out.append(dep.as_model_info())
        if wanted and not out:
            raise bad_request(f"Model id = {wanted} not found on litellm proxy", "litellm_model_id")
        return json_response({"data": out})

    async def model_group_info(request):
        from litemaas_proxy.api.data import may_use_model

        entry = await proxy.authenticate(request)
        out = []
        for name, deps in router.groups.items():
            if not may_use_model(entry, name, router):
                continue
            out.append({"model_group": name, "providers": sorted({d.provider for d in deps}), "mode": deps[0].mode,
                        "input_cost_per_token": deps[0].input_cost, "output_cost_per_token": deps[0].output_cost,
                        "tpm": deps[0].tpm, "rpm": deps[0].rpm})
        return json_response({"data": out})

    # ------------------------------------------------------------------ spend / activity
    async def spend_logs(request):
        await proxy.require_admin(request)
        where, args = [], []
        api_key = request.query.get("api_key")
        if api_key:
            args.append(hash_if_needed(api_key))
            where.append(f"api_key = ${len(args)}")
        for qname, col in (("user_id", '"user"'), ("request_id", "request_id"), ("team_id", "team_id")):
            if request.query.get(qname):
                args.append(request.query[qname])
                where.append(f"{col} = ${len(args)}")
        start = parse_date(request.query.get("start_date"), "start_date")
        end = parse_date(request.query.get("end_date"), "end_date")
        check_range(start, end)
        if start:
            args.append(datetime.combine(start, datetime.min.time(), UTC))
            where.append(f'"startTime" >= ${len(args)}')
        if end:
            args.append(datetime.combine(end + timedelta(days=1), datetime.min.time(), UTC))
            where.append(f'"startTime" < ${len(args)}')
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        p = pool()
        summarize = request.query.get("summarize", "true").lower() != "false"
        if start and end and summarize:
            rows = await p.fetch(f'SELECT date_trunc(\'day\', "startTime" AT TIME ZONE \'UTC\')::date AS day, api_key, "user", model_group, '
                                 f"sum(spend) AS spend FROM {db.SPEND_TABLE}{clause} GROUP BY 1, 2, 3, 4", *args)
            days: dict = {}
            d = start
            while d <= end:
                days[d] = {"startTime": d.isoformat(), "spend": 0.0, "users": {}, "models": {}}
                d += timedelta(days=1)
            for r in rows:
                item = days.setdefault(r["day"], {"startTime": r["day"].isoformat(), "spend": 0.0, "users": {}, "models": {}})
                item["spend"] += r["spend"]
                if r["user"]:
                    item["users"][r["user"]] = item["users"].get(r["user"], 0.0) + r["spend"]
                if r["model_group"]:
                    item["models"][r["model_group"]] = item["models"].get(r["model_group"], 0.0) + r["spend"]
                item[r["api_key"]] = item.get(r["api_key"], 0.0) + r["spend"]
            return json_response(list(days.values()))
        rows = await p.fetch(f'SELECT * FROM {db.SPEND_TABLE}{clause} ORDER BY "startTime" DESC LIMIT 10000', *args)
        return json_response([dict(r) for r in rows])

    def empty_metrics() -> dict:
        return {"spend": 0.0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "api_requests": 0, "successful_requests": 0,
                "failed_requests": 0, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}

    def add_metrics(m: dict, r) -> None:
        m["spend"] += r["spend"]
        m["prompt_tokens"] += r["prompt_tokens"]
        m["completion_tokens"] += r["completion_tokens"]
        m["total_tokens"] += r["total_tokens"]
        m["api_requests"] += r["api_requests"]
        m["successful_requests"] += r["successful_requests"]
        m["failed_requests"] += r["failed_requests"]

    async def daily_activity(request):
        await proxy.require_admin(request)
        start = parse_date(request.query.get("start_date"), "start_date")
        end = parse_date(request.query.get("end_date"), "end_date")
        if not start or not end:
            raise bad_request("Please provide start_date and end_date", "start_date")
        check_range(start, end)
        page = int_query(request, "page", 1, 1, MAX_PAGE)
        page_size = int_query(request, "page_size", 50, 1, 1000)
        args: list = [datetime.combine(start, datetime.min.time(), UTC), datetime.combine(end + timedelta(days=1), datetime.min.time(), UTC)]
        where = ['s."startTime" >= $1', 's."startTime" < $2']
        for qname, col in (("api_key", "s.api_key"), ("user_id", 's."user"'), ("model", "s.model_group")):
            val = request.query.get(qname)
            if val:
                args.append(hash_if_needed(val) if qname == "api_key" else val)
                where.append(f"{col} = ${len(args)}")
        rows = await pool().fetch(
            f"""SELECT (s."startTime" AT TIME ZONE 'UTC')::date AS day, s.model_group, s.api_key, s.custom_llm_provider,
                       sum(s.spend) AS spend, sum(s.prompt_tokens)::bigint AS prompt_tokens, sum(s.completion_tokens)::bigint AS completion_tokens,
                       sum(s.total_tokens)::bigint AS total_tokens, count(*) AS api_requests,
                       count(*) FILTER (WHERE s.status IS DISTINCT FROM 'failure') AS successful_requests,
                       count(*) FILTER (WHERE s.status = 'failure') AS failed_requests,
                       max(k.key_alias) AS key_alias, max(s.team_id) AS team_id
                FROM {db.SPEND_TABLE} s LEFT JOIN {db.KEY_TABLE} k ON k.token = s.api_key
                WHERE {' AND '.join(where)} GROUP BY 1, 2, 3, 4 ORDER BY 1""", *args)
        by_day: dict = {}
        total = empty_metrics()
        for r in rows:
            add_metrics(total, r)
            day = by_day.setdefault(r["day"], {"date": r["day"].isoformat(), "metrics": empty_metrics(),
                                               "breakdown": {"models": {}, "model_groups": {}, "api_keys": {}, "providers": {}, "mcp_servers": {},
                                                             "entities": {}}})
            add_metrics(day["metrics"], r)
            bd = day["breakdown"]
            model = r["model_group"] or ""
            meta = {"key_alias": r["key_alias"], "team_id": r["team_id"]}
            for section, name in (("models", model), ("model_groups", model), ("providers", r["custom_llm_provider"] or "openai")):
                item = bd[section].setdefault(name, {"metrics": empty_metrics(), "metadata": {}, "api_key_breakdown": {}})
                add_metrics(item["metrics"], r)
                kb = item["api_key_breakdown"].setdefault(r["api_key"], {"metrics": empty_metrics(), "metadata": meta})
                add_metrics(kb["metrics"], r)
            kitem = bd["api_keys"].setdefault(r["api_key"], {"metrics": empty_metrics(), "metadata": meta})
            add_metrics(kitem["metrics"], r)
        days = [by_day[d] for d in sorted(by_day)]
        total_pages = max(1, math.ceil(len(days) / page_size))
        results = days[(page - 1) * page_size: page * page_size]
        metadata = {"total_spend": total["spend"], "total_prompt_tokens": total["prompt_tokens"], "total_completion_tokens": total["completion_tokens"],
                    "total_tokens": total["total_tokens"], "total_api_requests": total["api_requests"],
                    "total_successful_requests": total["successful_requests"], "total_failed_requests": total["failed_requests"],
                    "total_cache_read_input_tokens": 0, "total_cache_creation_input_tokens": 0,
                    "page": page, "total_pages": total_pages, "has_more": page < total_pages}
        return json_response({"results": results, "metadata": metadata})

    # ------------------------------------------------------------------ health
    async def liveliness(request):
        return json_response("I'm alive!")

    async def readiness(request):
        status = {"status": "healthy", "db": "Not connected", "cache": None, "litellm_version": LITELLM_VERSION, "proxy_version": __version__,
                  "success_callbacks": [], "use_aiohttp_transport": True}
        healthy = True
        if proxy.settings.database_url:
            if proxy.pool is None:
                healthy = False
                status["db"] = "Not connected"
            else:
                try:
                    await proxy.pool.fetchval("SELECT 1", timeout=2)
                    status["db"] = "connected"
                except Exception as exc:
                    healthy = False
                    status["db"] = f"error: {type(exc).__name__}"
        if proxy.redis is not None:
            try:
                await proxy.redis.ping()
                status["cache"] = "redis"
            except Exception as exc:
                healthy = False
                status["cache"] = f"redis error: {type(exc).__name__}"
        status["spend_records_buffered"] = len(proxy.spend.buffer)
        if not healthy:
            status["status"] = "unhealthy"
            return json_response(status, status=503)
        return json_response(status)

    async def root(request):
        return json_response({"message": "LiteMaaS proxy", "version": __version__, "docs": "/health/readiness"})

    r = app.router
    r.add_post("/key/generate", key_generate)
    r.add_post("/key/update", key_update)
    r.add_post("/key/delete", key_delete)
    r.add_get("/key/info", key_info)
    r.add_get("/key/list", key_list)
    r.add_post("/key/block", lambda req: key_block(req, True))
    r.add_post("/key/unblock", lambda req: key_block(req, False))
    r.add_post("/key/regenerate", key_regenerate)
    r.add_post("/key/{key}/regenerate", key_regenerate)
    r.add_post("/user/new", user_new)
    r.add_get("/user/info", user_info)
    r.add_post("/user/update", user_update)
    r.add_post("/user/delete", user_delete)
    r.add_post("/team/new", team_new)
    r.add_get("/team/info", team_info)
    r.add_post("/team/update", team_update)
    r.add_post("/team/delete", team_delete)
    r.add_get("/team/list", team_list)
    r.add_post("/team/block", lambda req: team_block(req, True))
    r.add_post("/team/unblock", lambda req: team_block(req, False))
    r.add_post("/model/new", model_new)
    r.add_post("/model/update", model_update)
    r.add_patch("/model/{model_id}/update", model_patch)
    r.add_post("/model/delete", model_delete)
    r.add_get("/model/info", model_info)
    r.add_get("/v1/model/info", model_info)
    r.add_get("/model_group/info", model_group_info)
    r.add_get("/spend/logs", spend_logs)
    r.add_get("/user/daily/activity", daily_activity)
    r.add_get("/health/liveliness", liveliness)
    r.add_get("/health/liveness", liveliness)
    r.add_get("/health/readiness", readiness)
    r.add_get("/", root)
