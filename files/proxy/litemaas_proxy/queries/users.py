"""Queries on LiteLLM_UserTable (and the team memberships a user change touches)."""

from __future__ import annotations

from typing import Optional

from litemaas_proxy import db


async def exists(conn, user_id: str) -> bool:
    return bool(await conn.fetchval(f"SELECT 1 FROM {db.USER_TABLE} WHERE user_id = $1", user_id))


async def email_taken(conn, email: str) -> bool:
    return bool(await conn.fetchval(f"SELECT 1 FROM {db.USER_TABLE} WHERE lower(user_email) = lower($1)", email))


async def get(conn, user_id: str):
    return await conn.fetchrow(f"SELECT * FROM {db.USER_TABLE} WHERE user_id = $1", user_id)


async def get_for_update(conn, user_id: Optional[str] = None, email: Optional[str] = None):
    """The row locked for this transaction, by id or (when no id is given) by e-mail, case-insensitively."""
    if user_id:
        return await conn.fetchrow(f"SELECT * FROM {db.USER_TABLE} WHERE user_id = $1 FOR UPDATE", user_id)
    return await conn.fetchrow(f"SELECT * FROM {db.USER_TABLE} WHERE lower(user_email) = lower($1) FOR UPDATE", email)


async def page(conn, size: int, offset: int) -> list:
    return await conn.fetch(f"SELECT * FROM {db.USER_TABLE} ORDER BY created_at LIMIT {int(size)} OFFSET {int(offset)}")


async def insert(conn, values: dict) -> dict:
    return await db.insert_row(conn, db.USER_TABLE, db.USER_COLUMNS, values)


async def update(conn, user_id: str, values: dict) -> Optional[dict]:
    return await db.update_row(conn, db.USER_TABLE, db.USER_COLUMNS, "user_id", user_id, values)


async def existing_ids(conn, user_ids: list) -> set:
    return {r["user_id"] for r in await conn.fetch(f"SELECT user_id FROM {db.USER_TABLE} WHERE user_id = ANY($1::text[])", user_ids)}


async def delete(conn, user_ids: list) -> int:
    status = await conn.execute(f"DELETE FROM {db.USER_TABLE} WHERE user_id = ANY($1::text[])", user_ids)
    return int(status.split()[-1])


async def teams_of(conn, user_id: str, team_ids: list) -> list:
    """Teams the user is listed in (``teams`` column) or a member of (``members_with_roles``)."""
    return await conn.fetch(f"SELECT * FROM {db.TEAM_TABLE} WHERE team_id = ANY($1::text[]) OR members_with_roles @> $2::jsonb ORDER BY created_at",
                            team_ids, [{"user_id": user_id}])


async def add_to_teams(conn, user_id: str, team_ids: list, role: str = "user") -> None:
    """Add the user to ``members_with_roles`` of each existing team it is not a member of yet."""
    for team_id in team_ids:
        row = await conn.fetchrow(f"SELECT members_with_roles FROM {db.TEAM_TABLE} WHERE team_id = $1 FOR UPDATE", team_id)
        if row is None:
            continue
        members = list(row["members_with_roles"] or [])
        if not any(m.get("user_id") == user_id for m in members if isinstance(m, dict)):
            members.append({"role": role, "user_id": user_id, "user_email": None})
            await conn.execute(f"UPDATE {db.TEAM_TABLE} SET members_with_roles = $2::jsonb, updated_at = now() WHERE team_id = $1", team_id, members)


async def remove_from_teams(conn, user_ids: list) -> None:
    """Drop the users from ``members_with_roles`` of every team."""
    teams = await conn.fetch(f"SELECT team_id, members_with_roles FROM {db.TEAM_TABLE} WHERE members_with_roles @> ANY($1::jsonb[])",
                             [[{"user_id": u}] for u in user_ids])
    for team in teams:
        members = [m for m in team["members_with_roles"] if not (isinstance(m, dict) and m.get("user_id") in user_ids)]
        await conn.execute(f"UPDATE {db.TEAM_TABLE} SET members_with_roles = $2::jsonb WHERE team_id = $1", team["team_id"], members)
