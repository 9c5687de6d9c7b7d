"""Queries on LiteLLM_TeamTable."""

from __future__ import annotations

from typing import Optional

from litemaas_proxy import db


async def exists(conn, team_id: str) -> bool:
    return bool(await conn.fetchval(f"SELECT 1 FROM {db.TEAM_TABLE} WHERE team_id = $1", team_id))


async def get(conn, team_id: str):
    return await conn.fetchrow(f"SELECT * FROM {db.TEAM_TABLE} WHERE team_id = $1", team_id)


async def all_teams(conn) -> list:
    return await conn.fetch(f"SELECT * FROM {db.TEAM_TABLE} ORDER BY created_at")


async def insert(conn, values: dict) -> dict:
    return await db.insert_row(conn, db.TEAM_TABLE, db.TEAM_COLUMNS, values)


async def update(conn, team_id: str, values: dict) -> Optional[dict]:
    return await db.update_row(conn, db.TEAM_TABLE, db.TEAM_COLUMNS, "team_id", team_id, values)


async def existing_ids(conn, team_ids: list) -> set:
    return {r["team_id"] for r in await conn.fetch(f"SELECT team_id FROM {db.TEAM_TABLE} WHERE team_id = ANY($1::text[])", team_ids)}


async def delete(conn, team_ids: list) -> None:
    await conn.execute(f"DELETE FROM {db.TEAM_TABLE} WHERE team_id = ANY($1::text[])", team_ids)
