"""What the management handlers share: reading and checking request fields, paging, dates, the database pool.

``coerce`` validates one request field of the key/user/team bodies and turns bad input into a 400 that names
the field (LiteLLM's error shape); nothing here writes to the database.
"""

from __future__ import annotations

import logging
import math
from datetime import date, datetime, timezone
from typing import Any, Optional

import orjson
from aiohttp import web

from litemaas_proxy.api import read_body_bytes
from litemaas_proxy.auth import hash_if_needed
from litemaas_proxy.durations import DurationError, check_duration, next_budget_reset
from litemaas_proxy.errors import ProxyError, bad_request, validation_error

log = logging.getLogger("litemaas_proxy.management")
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


def proxy_of(request: web.Request):
    return request.app["proxy"]


def caller(request: web.Request):
    """The authenticated caller (set by the route guard before the handler runs)."""
    return request["litemaas_caller"]


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


def strip_password(row) -> dict:
    out = dict(row)
    out.pop("password", None)
    return out


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


def pool(proxy):
    """The database pool, or a 500 saying why the management API cannot work yet."""
    if proxy.pool is None:
        if not proxy.settings.database_url:
            raise ProxyError(500, "DB not connected. Set DATABASE_URL to use the management API.", "no_db_connection", "None")
        raise ProxyError(500, "DB not connected. Retry shortly; the proxy is still connecting to its database.", "no_db_connection", "None")
    return proxy.pool


def validate_models(router, models: list) -> None:
    known = set(router.model_names()) | router.access_groups()
    unknown = [m for m in models if not isinstance(m, str) or (m not in known and m not in SPECIAL_MODELS and "*" not in m)]
    if unknown:
        raise bad_request(f"Unknown model(s) in models: {unknown}. Available models: {sorted(router.model_names())}", "models")


def budget_columns(proxy, period: str, now: Optional[datetime] = None) -> dict:
    """The columns a budget period sets: the period as given and its next calendar-aligned reset."""
    return {"budget_duration": period, "budget_reset_at": next_budget_reset(period, now, proxy.settings.budget_timezone)}


def query_filters(request: web.Request, filters: tuple, hashed: str) -> list:
    """(column, value) for each (query parameter, column) of ``filters`` that the request gives; the parameter
    ``hashed`` may carry a key or its hash and is matched as the hash."""
    out = []
    for qname, col in filters:
        val = request.query.get(qname)
        if val:
            out.append((col, hash_if_needed(val) if qname == hashed else val))
    return out


def row_values(proxy, body: dict, columns: dict, checks: Optional[dict] = None) -> dict:
    """A /user or /team request body -> column values: each field coerced (``coerce``), ``budget_duration`` with its
    next reset, ``models`` checked against the router; ``checks`` maps a resource's own fields to a function that
    checks and normalises the value. Server-set columns and fields that are not columns are left out."""
    out: dict = {}
    now = datetime.now(timezone.utc)
    for name in list(body):
        if name not in columns and name != "budget_duration":
            continue
        val = coerce(body, name)
        if val is None:
            continue  # null: unchanged (update) or the default (create)
        if name == "budget_duration":
            out.update(budget_columns(proxy, val, now))
        elif name == "models":
            validate_models(proxy.router, val)
            out["models"] = val
        elif name in ("created_at", "updated_at", "budget_reset_at"):
            continue
        elif checks and name in checks:
            out[name] = checks[name](val)
        else:
            out[name] = val
    return out


async def flush_pending_spend(proxy) -> None:
    """Setting spend (e.g. a reset to 0) must not be undone by this replica's not-yet-written spend."""
    try:
        await proxy.spend.flush_all()
    except Exception as exc:
        log.warning("could not flush pending spend before a spend update: %s", exc)
