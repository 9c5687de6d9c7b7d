"""PostgreSQL: schema (LiteLLM table names), idempotent migrations under an advisory lock, queries.

Long file: the five LiteLLM tables are declared column by column (about 150 lines), next to the migration that
compares them with a live database, which LiteLLM may have written.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone
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


def deleted_key_columns() -> dict:
    """The deleted-keys table of a database this proxy creates (LiteLLM's own has a text ``id`` without default)."""
    deleted = dict(KEY_COLUMNS)
    deleted["token"] = "TEXT NOT NULL"
    deleted["id"] = "BIGSERIAL PRIMARY KEY"
    deleted["deleted_at"] = "TIMESTAMPTZ NOT NULL DEFAULT now()"
    deleted["deleted_by"] = "TEXT"
    return deleted


VERSION_TABLE = '"LiteMaaS_SchemaVersion"'
VERSION_COLUMNS = {
    "id": "INTEGER PRIMARY KEY",
    "version": "INTEGER NOT NULL",
    "migrated_at": "TIMESTAMPTZ NOT NULL DEFAULT now()",
    # Spend logged from this moment on is rolled up into LiteLLM's daily tables (queries.spend.roll_up_daily); what
    # came before is LiteLLM's. Set when the row is first written (LiteLLM drops the table: a new stint starts).
    "spend_rollup_from": "TIMESTAMPTZ NOT NULL DEFAULT now()",
}

TABLES = ((KEY_TABLE, KEY_COLUMNS), (USER_TABLE, USER_COLUMNS), (TEAM_TABLE, TEAM_COLUMNS), (MODEL_TABLE, MODEL_COLUMNS),
          (SPEND_TABLE, SPEND_COLUMNS), (VERSION_TABLE, VERSION_COLUMNS))

# The key alias index is unique unless the table already holds duplicate aliases (LiteLLM enforces uniqueness only
# in its code, so a database it wrote can): then it is created without UNIQUE and the duplicates are reported.
ALIAS_INDEX = '"LiteLLM_VerificationToken_key_alias_key"'
INDEXES = {
    '"LiteLLM_VerificationToken_user_id_idx"': f"{KEY_TABLE} (user_id)",
    '"LiteLLM_VerificationToken_team_id_idx"': f"{KEY_TABLE} (team_id)",
    '"LiteLLM_ProxyModelTable_model_name_idx"': f"{MODEL_TABLE} (model_name)",
    '"LiteLLM_SpendLogs_startTime_idx"': f'{SPEND_TABLE} ("startTime")',
    '"LiteLLM_SpendLogs_api_key_idx"': f"{SPEND_TABLE} (api_key)",
    '"LiteLLM_SpendLogs_user_idx"': f'{SPEND_TABLE} ("user")',
    '"LiteLLM_UserTable_user_email_idx"': f"{USER_TABLE} (lower(user_email))",
    '"LiteLLM_UserTable_budget_reset_idx"': f"{USER_TABLE} (budget_reset_at)",
    '"LiteLLM_VerificationToken_budget_reset_idx"': f"{KEY_TABLE} (budget_reset_at)",
}


def bare(name: str) -> str:
    """A quoted identifier without its quotes, as the catalogs name it."""
    return name.strip('"')


def schema_statements(live: Optional[dict] = None, indexes: Iterable[str] = (), unique_alias: bool = True) -> list:
    """What is missing from the database. ``live`` maps each existing table (bare name) to its set of columns and
    ``indexes`` names the existing indexes; without them, the whole schema of an empty database. Only tables, columns
    and indexes that are absent are created: what LiteLLM declared stays exactly as LiteLLM declared it."""
    live = live or {}
    indexes = set(indexes)
    stmts = []
    for table, cols in TABLES + ((DELETED_KEY_TABLE, deleted_key_columns()),):
        have = live.get(bare(table))
        if have is None:
            stmts.append(_create(table, cols))
        elif table != DELETED_KEY_TABLE:  # an existing deleted-keys table is used as it is (queries.keys.archive)
            stmts.extend(_add_columns(table, {n: t for n, t in cols.items() if bare(n) not in have}))
    if bare(ALIAS_INDEX) not in indexes:
        kind = "UNIQUE INDEX" if unique_alias else "INDEX"
        stmts.append(f"CREATE {kind} IF NOT EXISTS {ALIAS_INDEX} ON {KEY_TABLE} (key_alias) WHERE key_alias IS NOT NULL")
    for name, target in INDEXES.items():
        if bare(name) not in indexes:
            stmts.append(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")
    return stmts


LIVE_COLUMNS_QUERY = """
SELECT table_name::text, array_agg(column_name::text) AS columns FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = ANY($1::text[]) GROUP BY table_name
"""
LIVE_INDEXES_QUERY = "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() AND tablename = ANY($1::text[])"
DUPLICATE_ALIASES_QUERY = f"""
SELECT key_alias, count(*) AS keys FROM {KEY_TABLE} WHERE key_alias IS NOT NULL GROUP BY key_alias HAVING count(*) > 1 ORDER BY key_alias
"""


async def live_schema(conn) -> tuple:
    """(table -> set of its columns, set of index names) of the proxy's tables as they are in the database."""
    tables = [bare(table) for table, dummy in TABLES] + [bare(DELETED_KEY_TABLE)]
    live = {r["table_name"]: set(r["columns"]) for r in await conn.fetch(LIVE_COLUMNS_QUERY, tables)}
    indexes = {r["indexname"] for r in await conn.fetch(LIVE_INDEXES_QUERY, tables)}
    return live, indexes


async def duplicate_aliases(conn) -> dict:
    """Key aliases held by more than one key -> how many keys hold each."""
    return {r["key_alias"]: r["keys"] for r in await conn.fetch(DUPLICATE_ALIASES_QUERY)}


# PostgreSQL's epoch for timestamps, and the range a Python datetime can hold (``infinity`` is clamped to it).
PG_EPOCH = datetime(2000, 1, 1)
_MIN_US = (datetime.min - PG_EPOCH) // timedelta(microseconds=1)
_MAX_US = (datetime.max - PG_EPOCH) // timedelta(microseconds=1)


def encode_timestamp(value: datetime) -> tuple:
    """A datetime for a ``timestamp without time zone`` column (LiteLLM's, holding UTC): an aware one is converted to
    UTC, a naive one is taken as UTC."""
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime for a timestamp column, got {type(value).__name__}: {value!r}")
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return ((value - PG_EPOCH) // timedelta(microseconds=1),)


def decode_timestamp(value: tuple) -> datetime:
    """A ``timestamp without time zone`` value (UTC) as an aware UTC datetime."""
    micros = min(max(value[0], _MIN_US), _MAX_US)
    return (PG_EPOCH + timedelta(microseconds=micros)).replace(tzinfo=timezone.utc)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads, schema="pg_catalog")
    # LiteLLM's tables use timestamp(3) without time zone holding UTC, the tables this proxy creates timestamptz:
    # both read as aware UTC datetimes and take aware (or naive UTC) ones.
    await conn.set_type_codec("timestamp", encoder=encode_timestamp, decoder=decode_timestamp, schema="pg_catalog", format="tuple")


async def create_pool(dsn: str, size: int = 10) -> asyncpg.Pool:
    # Session time zone UTC: now(), and comparisons between timestamp and timestamptz values, mean UTC.
    return await asyncpg.create_pool(dsn, min_size=1, max_size=max(2, size), init=_init_connection, command_timeout=30, timeout=5,
                                     server_settings={"application_name": "litemaas-proxy", "timezone": "UTC"})


async def migrate(pool: asyncpg.Pool) -> dict:
    """Create what is missing from the schema; return the duplicate key aliases (alias -> number of keys holding it).

    Serialized across replicas with a session advisory lock, and idempotent. It compares the live database with the
    schema on every start (two catalog queries) instead of trusting a version number, because LiteLLM drops on its
    first start whatever it does not declare (a column, the version table, indexes): after a round trip through
    LiteLLM they are added again. Nothing LiteLLM declared is altered."""
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
        try:
            live, indexes = await live_schema(conn)
            dups = await duplicate_aliases(conn) if bare(KEY_TABLE) in live else {}
            if dups:
                log.error("%d key alias(es) are held by more than one key: %s. The alias index stays non-unique until each "
                          "is renamed (/key/update key_alias); new aliases are still checked", len(dups),
                          ", ".join(f"{alias!r} ({n} keys)" for alias, n in list(dups.items())[:20]))
            elif bare(ALIAS_INDEX) in indexes and not await conn.fetchval(
                    "SELECT indisunique FROM pg_index WHERE indexrelid = to_regclass($1)", ALIAS_INDEX):
                indexes.discard(bare(ALIAS_INDEX))  # the duplicates are gone: make the index unique again
                await conn.execute(f"DROP INDEX IF EXISTS {ALIAS_INDEX}")
            stmts = schema_statements(live, indexes, unique_alias=not dups)
            async with conn.transaction():
                for stmt in stmts:
                    await conn.execute(stmt)
                await conn.execute(
                    f"INSERT INTO {VERSION_TABLE} (id, version) VALUES (1, $1) "
                    "ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, migrated_at = now()", SCHEMA_VERSION)
            if stmts:
                log.info("database schema at version %s (%d statement(s) applied)", SCHEMA_VERSION, len(stmts))
            return dups
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
    # List columns are never left NULL: LiteLLM declares some without a default, and its types refuse NULL for a list.
    values = {**values, **{n: [] for n, t in columns.items() if t.startswith("TEXT[]") and values.get(n) is None}}
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


async def connect_once(dsn: str, timeout: float) -> Optional[asyncpg.Pool]:
    """One try within ``timeout`` (a small pool for a final flush); None, and a warning, when the database does not answer."""
    try:
        return await asyncio.wait_for(create_pool(dsn, 2), timeout)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError) as exc:
        log.warning("database still not reachable (%s): the spend journal keeps what is not written for the next start", exc)
        return None
