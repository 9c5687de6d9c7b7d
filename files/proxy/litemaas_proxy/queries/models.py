"""Queries on LiteLLM_ProxyModelTable (models added through the API; ``litellm_params`` are stored sealed)."""

from __future__ import annotations

from typing import Optional

from litemaas_proxy import db


async def all_models(conn) -> list:
    return await conn.fetch(f"SELECT model_id, model_name, litellm_params, model_info FROM {db.MODEL_TABLE} ORDER BY created_at, model_id")


async def all_params(conn) -> list:
    return await conn.fetch(f"SELECT model_id, litellm_params FROM {db.MODEL_TABLE}")


async def replace_params(conn, model_id: str, new_params: dict, old_params: dict) -> bool:
    """Set ``litellm_params`` only if the row still holds ``old_params`` (replicas racing do it once)."""
    status = await conn.execute(f"UPDATE {db.MODEL_TABLE} SET litellm_params = $2 WHERE model_id = $1 AND litellm_params = $3",
                                model_id, new_params, old_params)
    return status.endswith(" 1")


async def get_for_update(conn, model_id: str):
    return await conn.fetchrow(f"SELECT * FROM {db.MODEL_TABLE} WHERE model_id = $1 FOR UPDATE", model_id)


async def insert(conn, values: dict) -> dict:
    return await db.insert_row(conn, db.MODEL_TABLE, db.MODEL_COLUMNS, values)


async def update(conn, model_id: str, values: dict) -> Optional[dict]:
    return await db.update_row(conn, db.MODEL_TABLE, db.MODEL_COLUMNS, "model_id", model_id, values)


async def delete(conn, model_id: str) -> bool:
    status = await conn.execute(f"DELETE FROM {db.MODEL_TABLE} WHERE model_id = $1", model_id)
    return not status.endswith(" 0")
