"""PostgreSQL: schema (LiteLLM table names), idempotent migrations under an advisory lock, queries."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Iterable, Optional

import asyncpg
import orjson

log = logging.getLogger("litemaas_proxy.db")

# Any constant works; all replicas must use the same one.
MIGRATION_LOCK_ID = 724_311_001
SCHEMA_VERSION = 1

KEY_TABLE = '"LiteLLM_VerificationToken"'
USER_TABLE = '"LiteLLM_UserTable"'
TEAM_TABLE = '"LiteLLM_TeamTable"'
MODEL_TABLE = '"LiteLLM_ProxyModelTable"'
SPEND_TABLE = '"LiteLLM_SpendLogs"'
DELETED_KEY_TABLE = '"LiteLLM_DeletedVerificationToken"'

# Column name -> SQL type. The order is the order of the CREATE TABLE statement.
KEY_COLUMNS = {
    "token": "TEXT PRIMARY KEY",
    "key_name": "TEXT",
    "key_alias": "TEXT",
    "soft_budget_cooldown": "BOOLEAN NOT NULL DEFAULT FALSE",
    "spend": "DOUBLE PRECISION NOT NULL DEFAULT 0",
    "expires": "TIMESTAMPTZ",
    "models": "TEXT[] NOT NULL DEFAULT '{}'",
    "aliases": "JSONB NOT NULL DEFAULT '{}'",
    "config": "JSONB NOT NULL DEFAULT '{}'",
    "user_id": "TEXT",
    "team_id": "TEXT",
    "permissions": "JSONB NOT NULL DEFAULT '{}'",
    "max_parallel_requests": "INTEGER",
    "metadata": "JSONB NOT NULL DEFAULT '{}'",
    "blocked": "BOOLEAN",
    "tpm_limit": "BIGINT",
    "rpm_limit": "BIGINT",
    "max_budget": "DOUBLE PRECISION",
    "budget_duration": "TEXT",
    "budget_reset_at": "TIMESTAMPTZ",
    "allowed_cache_controls": "TEXT[] NOT NULL DEFAULT '{}'",
    "allowed_routes": "TEXT[] NOT NULL DEFAULT '{}'",
    "model_spend": "JSONB NOT NULL DEFAULT '{}'",
    "model_max_budget": "JSONB NOT NULL DEFAULT '{}'",
    "soft_budget": "DOUBLE PRECISION",
    "budget_id": "TEXT",
    "organization_id": "TEXT",
    "object_permission_id": "TEXT",
    "router_settings": "JSONB",
    "created_at": "TIMESTAMPTZ NOT NULL DEFAULT now()",
    "created_by": "TEXT",
    "updated_at": "TIMESTAMPTZ NOT NULL DEFAULT now()",
    "updated_by": "TEXT",
    "rotation_count": "INTEGER NOT NULL DEFAULT 0",
    "auto_rotate": "BOOLEAN NOT NULL DEFAULT FALSE",
    "rotation_interval": "TEXT",
    "last_rotation_at": "TIMESTAMPTZ",
    "key_rotation_at": "TIMESTAMPTZ",
}

USER_COLUMNS = {
    "user_id": "TEXT PRIMARY KEY",
    "user_alias": "TEXT",
    "team_id": "TEXT",
    "sso_user_id": "TEXT",
    "organization_id": "TEXT",
    "password": "TEXT",
    "teams": "TEXT[] NOT NULL DEFAULT '{}'",
    "user_role": "TEXT",
    "max_budget": "DOUBLE PRECISION",
    "spend": "DOUBLE PRECISION NOT NULL DEFAULT 0",
    "user_email": "TEXT",
    "models": "TEXT[] NOT NULL DEFAULT '{}'",
    "metadata": "JSONB NOT NULL DEFAULT '{}'",
    "max_parallel_requests": "INTEGER",
    "tpm_limit": "BIGINT",
    "rpm_limit": "BIGINT",
    "budget_duration": "TEXT",
    "budget_reset_at": "TIMESTAMPTZ",
    "allowed_cache_controls": "TEXT[] NOT NULL DEFAULT '{}'",
    "model_spend": "JSONB NOT NULL DEFAULT '{}'",
    "model_max_budget": "JSONB NOT NULL DEFAULT '{}'",
    "created_at": "TIMESTAMPTZ NOT NULL DEFAULT now()",
    "updated_at": "TIMESTAMPTZ NOT NULL DEFAULT now()",
}

TEAM_COLUMNS = {
    "team_id": "TEXT PRIMARY KEY",
    "team_alias": "TEXT",
    "organization_id": "TEXT",
    "admins": "TEXT[] NOT NULL DEFAULT '{}'",
    "members": "TEXT[] NOT NULL DEFAULT '{}'",
    "members_with_roles": "JSONB NOT NULL DEFAULT '[]'",
    "metadata": "JSONB NOT NULL DEFAULT '{}'",
    "max_budget": "DOUBLE PRECISION",
    "spend": "DOUBLE PRECISION NOT NULL DEFAULT 0",
    "models": "TEXT[] NOT NULL DEFAULT '{}'",
    "max_parallel_requests": "INTEGER",
    "tpm_limit": "BIGINT",
    "rpm_limit": "BIGINT",
    "budget_duration": "TEXT",
    "budget_reset_at": "TIMESTAMPTZ",
    "blocked": "BOOLEAN NOT NULL DEFAULT FALSE",
    "model_spend": "JSONB NOT NULL DEFAULT '{}'",
    "model_max_budget": "JSONB NOT NULL DEFAULT '{}'",
    "created_at": "TIMESTAMPTZ NOT NULL DEFAULT now()",
    "updated_at": "TIMESTAMPTZ NOT NULL DEFAULT now()",
}

MODEL_COLUMNS = {
    "model_id": "TEXT PRIMARY KEY",
    "model_name": "TEXT NOT NULL",
    "litellm_params": "JSONB NOT NULL DEFAULT '{}'",
    "model_info": "JSONB NOT NULL DEFAULT '{}'",
    "created_at": "TIMESTAMPTZ NOT NULL DEFAULT now()",
    "created_by": "TEXT",
    "updated_at": "TIMESTAMPTZ NOT NULL DEFAULT now()",
    "updated_by": "TEXT",
}

SPEND_COLUMNS = {
    "request_id": "TEXT PRIMARY KEY",
    "call_type": "TEXT NOT NULL DEFAULT ''",
    "api_key": "TEXT NOT NULL DEFAULT ''",
    "spend": "DOUBLE PRECISION NOT NULL DEFAULT 0",
    "total_tokens": "INTEGER NOT NULL DEFAULT 0",
    "prompt_tokens": "INTEGER NOT NULL DEFAULT 0",
    "completion_tokens": "INTEGER NOT NULL DEFAULT 0",
    '"startTime"': "TIMESTAMPTZ NOT NULL",
    '"endTime"': "TIMESTAMPTZ NOT NULL",
    '"completionStartTime"': "TIMESTAMPTZ",
    "model": "TEXT NOT NULL DEFAULT ''",
    "model_id": "TEXT",
    "model_group": "TEXT",
    "custom_llm_provider": "TEXT",
    "api_base": "TEXT",
    '"user"': "TEXT",
    "metadata": "JSONB NOT NULL DEFAULT '{}'",
    "cache_hit": "TEXT",
    "cache_key": "TEXT",
    "request_tags": "JSONB NOT NULL DEFAULT '[]'",
    "team_id": "TEXT",
    "organization_id": "TEXT",
    "end_user": "TEXT",
    "requester_ip_address": "TEXT",
    "status": "TEXT",
    "session_id": "TEXT",
}


def _create(table: str, columns: dict) -> str:
    return f"CREATE TABLE IF NOT EXISTS {table} (" + ", ".join(f"{name} {sqltype}" for name, sqltype in columns.items()) + ")"


def _add_columns(table: str, columns: dict) -> list:
    out = []
    for name, sqltype in columns.items():
        if "PRIMARY KEY" in sqltype:
            continue
        out.append(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {sqltype}")
    return out


def schema_statements() -> list:
    stmts = [
        'CREATE TABLE IF NOT EXISTS "LiteMaaS_SchemaVersion" '
        "(id INTEGER PRIMARY KEY, version INTEGER NOT NULL, migrated_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    ]
    for table, cols in ((KEY_TABLE, KEY_COLUMNS), (USER_TABLE, USER_COLUMNS), (TEAM_TABLE, TEAM_COLUMNS), (MODEL_TABLE, MODEL_COLUMNS),
                        (SPEND_TABLE, SPEND_COLUMNS)):
        stmts.append(_create(table, cols))
        stmts.extend(_add_columns(table, cols))
    deleted = dict(KEY_COLUMNS)
    deleted["token"] = "TEXT NOT NULL"
    deleted["id"] = "BIGSERIAL PRIMARY KEY"
    deleted["deleted_at"] = "TIMESTAMPTZ NOT NULL DEFAULT now()"
    deleted["deleted_by"] = "TEXT"
    stmts.append(_create(DELETED_KEY_TABLE, deleted))
    stmts += [
        f'CREATE UNIQUE INDEX IF NOT EXISTS "LiteLLM_VerificationToken_key_alias_key" ON {KEY_TABLE} (key_alias) WHERE key_alias IS NOT NULL',
        f'CREATE INDEX IF NOT EXISTS "LiteLLM_VerificationToken_user_id_idx" ON {KEY_TABLE} (user_id)',
        f'CREATE INDEX IF NOT EXISTS "LiteLLM_VerificationToken_team_id_idx" ON {KEY_TABLE} (team_id)',
        f'CREATE INDEX IF NOT EXISTS "LiteLLM_ProxyModelTable_model_name_idx" ON {MODEL_TABLE} (model_name)',
        f'CREATE INDEX IF NOT EXISTS "LiteLLM_SpendLogs_startTime_idx" ON {SPEND_TABLE} ("startTime")',
        f'CREATE INDEX IF NOT EXISTS "LiteLLM_SpendLogs_api_key_idx" ON {SPEND_TABLE} (api_key)',
        f'CREATE INDEX IF NOT EXISTS "LiteLLM_SpendLogs_user_idx" ON {SPEND_TABLE} ("user")',
        f'CREATE INDEX IF NOT EXISTS "LiteLLM_UserTable_user_email_idx" ON {USER_TABLE} (lower(user_email))',
        f'CREATE INDEX IF NOT EXISTS "LiteLLM_UserTable_budget_reset_idx" ON {USER_TABLE} (budget_reset_at)',
        f'CREATE INDEX IF NOT EXISTS "LiteLLM_VerificationToken_budget_reset_idx" ON {KEY_TABLE} (budget_reset_at)',
    ]
    return stmts


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads, schema="pg_catalog")


async def create_pool(dsn: str, size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(dsn, min_size=1, max_size=max(2, size), init=_init_connection, command_timeout=30, timeout=5,
                                     server_settings={"application_name": "litemaas-proxy"})


async def migrate(pool: asyncpg.Pool) -> None:
    """Create or upgrade the schema. Serialized across replicas with a session advisory lock; idempotent."""
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
        try:
            current = None
            exists = await conn.fetchval("SELECT to_regclass('\"LiteMaaS_SchemaVersion\"') IS NOT NULL")
            if exists:
                current = await conn.fetchval('SELECT version FROM "LiteMaaS_SchemaVersion" WHERE id = 1')
            if current is not None and current >= SCHEMA_VERSION:
                return
            async with conn.transaction():
                for stmt in schema_statements():
                    await conn.execute(stmt)
                await conn.execute(
                    'INSERT INTO "LiteMaaS_SchemaVersion" (id, version) VALUES (1, $1) '
                    "ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, migrated_at = now()", SCHEMA_VERSION)
            log.info("database schema migrated to version %s", SCHEMA_VERSION)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)


def record(row: Optional[asyncpg.Record], drop: Iterable[str] = ()) -> Optional[dict]:
    if row is None:
        return None
    out = dict(row)
    for name in drop:
        out.pop(name, None)
    return out


# ---------------------------------------------------------------- auth lookup (cache miss path)

AUTH_QUERY = f"""
SELECT row_to_json(k.*)::jsonb AS key,
       (SELECT row_to_json(u.*)::jsonb FROM {USER_TABLE} u WHERE u.user_id = k.user_id) AS "user",
       (SELECT row_to_json(t.*)::jsonb FROM {TEAM_TABLE} t WHERE t.team_id = k.team_id) AS team
FROM {KEY_TABLE} k WHERE k.token = $1
"""


async def fetch_auth(pool: asyncpg.Pool, token: str) -> Optional[tuple]:
    row = await pool.fetchrow(AUTH_QUERY, token)
    if row is None:
        return None
    return row["key"], row["user"], row["team"]


AUTH_MANY_QUERY = f"""
SELECT k.token,
       row_to_json(k.*)::jsonb AS key,
       (SELECT row_to_json(u.*)::jsonb FROM {USER_TABLE} u WHERE u.user_id = k.user_id) AS "user",
       (SELECT row_to_json(t.*)::jsonb FROM {TEAM_TABLE} t WHERE t.team_id = k.team_id) AS team
FROM {KEY_TABLE} k WHERE k.token = ANY($1::text[])
"""


async def fetch_auth_many(pool: asyncpg.Pool, tokens: list) -> dict:
    """Several keys in one query: token -> (key, user, team); tokens not found are absent."""
    rows = await pool.fetch(AUTH_MANY_QUERY, tokens)
    return {row["token"]: (row["key"], row["user"], row["team"]) for row in rows}


async def ping(pool: asyncpg.Pool, timeout: float = 2.0) -> None:
    """Raise unless PostgreSQL answers within ``timeout`` seconds (readiness)."""
    await pool.fetchval("SELECT 1", timeout=timeout)


# ---------------------------------------------------------------- generic helpers

def _cast(column: str, columns: dict) -> str:
    sqltype = columns[column].split()[0]
    return f"::{sqltype}" if sqltype in ("TEXT[]", "JSONB") else ""


async def insert_row(conn, table: str, columns: dict, values: dict) -> dict:
    names = [n for n in values if n in columns]
    cols = ", ".join(names)
    params = ", ".join(f"${i + 1}{_cast(n, columns)}" for i, n in enumerate(names))
    row = await conn.fetchrow(f"INSERT INTO {table} ({cols}) VALUES ({params}) RETURNING *", *[values[n] for n in names])
    return dict(row)


async def update_row(conn, table: str, columns: dict, pk: str, pk_value: Any, values: dict) -> Optional[dict]:
    names = [n for n in values if n in columns and n != pk]
    if not names:
        row = await conn.fetchrow(f"SELECT * FROM {table} WHERE {pk} = $1", pk_value)
        return record(row)
    sets = ", ".join(f"{n} = ${i + 2}{_cast(n, columns)}" for i, n in enumerate(names))
    if "updated_at" in columns and "updated_at" not in names:
        sets += ", updated_at = now()"
    row = await conn.fetchrow(f"UPDATE {table} SET {sets} WHERE {pk} = $1 RETURNING *", pk_value, *[values[n] for n in names])
    return record(row)


async def wait_for_db(dsn: str, size: int, stop: asyncio.Event, delay: float = 1.0) -> Optional[asyncpg.Pool]:
    while not stop.is_set():
        pool = None
        try:
            pool = await create_pool(dsn, size)
            await migrate(pool)
            return pool
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError) as exc:
            if pool is not None:
                pool.terminate()
            log.warning("database not ready (%s); retrying in %.1fs", exc, delay)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, 10.0)
    return None
