"""Queries on LiteLLM_VerificationToken (virtual keys) and LiteLLM_DeletedVerificationToken (their archive)."""

from __future__ import annotations

from typing import Optional

from litemaas_proxy import db

# Filters /key/list accepts: query parameter -> column.
LIST_FILTERS = (("user_id", "user_id"), ("team_id", "team_id"), ("key_alias", "key_alias"), ("organization_id", "organization_id"),
                ("key_hash", "token"))


async def get(conn, token: str) -> Optional[dict]:
    return db.record(await conn.fetchrow(f"SELECT * FROM {db.KEY_TABLE} WHERE token = $1", token))


async def exists(conn, token: str) -> bool:
    return bool(await conn.fetchval(f"SELECT 1 FROM {db.KEY_TABLE} WHERE token = $1", token))


async def alias_owner(conn, alias: str) -> Optional[str]:
    """The token of the key with this alias, or None."""
    return await conn.fetchval(f"SELECT token FROM {db.KEY_TABLE} WHERE key_alias = $1", alias)


async def insert(conn, values: dict) -> dict:
    return await db.insert_row(conn, db.KEY_TABLE, db.KEY_COLUMNS, values)


async def update(conn, token: str, values: dict) -> Optional[dict]:
    return await db.update_row(conn, db.KEY_TABLE, db.KEY_COLUMNS, "token", token, values)


async def rename_token(conn, old_token: str, new_token: str):
    return await conn.fetchrow(f"UPDATE {db.KEY_TABLE} SET token = $2 WHERE token = $1 RETURNING token", old_token, new_token)


async def by_tokens(conn, tokens: list) -> list:
    return await conn.fetch(f"SELECT * FROM {db.KEY_TABLE} WHERE token = ANY($1::text[])", tokens)


async def by_aliases(conn, aliases: list) -> list:
    return await conn.fetch(f"SELECT * FROM {db.KEY_TABLE} WHERE key_alias = ANY($1::text[])", aliases)


async def of_user(conn, user_id: str) -> list:
    return await conn.fetch(f"SELECT * FROM {db.KEY_TABLE} WHERE user_id = $1 ORDER BY created_at", user_id)


async def of_team(conn, team_id: str) -> list:
    return await conn.fetch(f"SELECT * FROM {db.KEY_TABLE} WHERE team_id = $1 ORDER BY created_at", team_id)


async def tokens_of_users(conn, user_ids: list) -> list:
    return [r["token"] for r in await conn.fetch(f"SELECT token FROM {db.KEY_TABLE} WHERE user_id = ANY($1::text[])", user_ids)]


async def detach_teams(conn, team_ids: list) -> None:
    await conn.execute(f"UPDATE {db.KEY_TABLE} SET team_id = NULL WHERE team_id = ANY($1::text[])", team_ids)


ARCHIVE_COLUMNS_QUERY = """
SELECT table_name::text, column_name::text, column_default IS NOT NULL OR is_identity = 'YES' AS has_default
FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ANY($1::text[])
"""


async def archive(conn, tokens: list, deleted_by: str) -> None:
    """Move the keys to the deleted-keys table (as LiteLLM does), in the caller's transaction.

    The columns copied are those both tables have as they are now: LiteLLM's deleted-keys table mirrors its own key
    columns (not the ones this proxy adds) and has a required text ``id`` without default, which gets a UUID."""
    rows = await conn.fetch(ARCHIVE_COLUMNS_QUERY, [db.bare(db.KEY_TABLE), db.bare(db.DELETED_KEY_TABLE)])
    live = {r["column_name"] for r in rows if r["table_name"] == db.bare(db.KEY_TABLE)}
    archived = {r["column_name"]: r["has_default"] for r in rows if r["table_name"] == db.bare(db.DELETED_KEY_TABLE)}
    cols = ", ".join(c for c in db.KEY_COLUMNS if c in live and c in archived)
    extra_cols, extra_values = ["deleted_by"], ["$2"]
    if archived.get("id") is False:
        extra_cols.append("id")
        extra_values.append("gen_random_uuid()::text")
    await conn.execute(f"INSERT INTO {db.DELETED_KEY_TABLE} ({cols}, {', '.join(extra_cols)}) SELECT {cols}, {', '.join(extra_values)} "
                       f"FROM {db.KEY_TABLE} WHERE token = ANY($1::text[])", tokens, deleted_by)
    await conn.execute(f"DELETE FROM {db.KEY_TABLE} WHERE token = ANY($1::text[])", tokens)


async def page(conn, filters: list, deleted: bool, sort_by: str, descending: bool, size: int, offset: int) -> tuple:
    """(total count, rows of one page) of live or deleted keys; ``filters`` are (column, value) pairs, ``sort_by`` a key column."""
    if sort_by not in db.KEY_COLUMNS:
        raise ValueError(f"not a key column: {sort_by!r}")
    table = db.DELETED_KEY_TABLE if deleted else db.KEY_TABLE
    clause = (" WHERE " + " AND ".join(f"{col} = ${i + 1}" for i, (col, dummy) in enumerate(filters))) if filters else ""
    args = [value for dummy, value in filters]
    order = "DESC" if descending else "ASC"
    total = await conn.fetchval(f"SELECT count(*) FROM {table}{clause}", *args)
    rows = await conn.fetch(f"SELECT * FROM {table}{clause} ORDER BY {sort_by} {order}, token LIMIT {int(size)} OFFSET {int(offset)}", *args)
    return total, rows
