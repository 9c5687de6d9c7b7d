"""Reports on LiteLLM_SpendLogs (/spend/logs, /user/daily/activity). Writes are the spend writer's (spend.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from litemaas_proxy import db

# /spend/logs filters: query parameter -> column.
LOG_FILTERS = (("user_id", '"user"'), ("request_id", "request_id"), ("team_id", "team_id"))
# /user/daily/activity filters: query parameter -> column.
ACTIVITY_FILTERS = (("api_key", "s.api_key"), ("user_id", 's."user"'), ("model", "s.model_group"))


def _where(filters: list, start: Optional[datetime], end: Optional[datetime], time_column: str) -> tuple:
    where, args = [], []
    for col, value in filters:
        args.append(value)
        where.append(f"{col} = ${len(args)}")
    if start is not None:
        args.append(start)
        where.append(f"{time_column} >= ${len(args)}")
    if end is not None:
        args.append(end)
        where.append(f"{time_column} < ${len(args)}")
    return (" WHERE " + " AND ".join(where)) if where else "", args


async def daily_by_key(conn, filters: list, start: datetime, end: datetime) -> list:
    """Spend per (UTC day, api_key, user, model_group) in [start, end)."""
    clause, args = _where(filters, start, end, '"startTime"')
    return await conn.fetch(f'SELECT date_trunc(\'day\', "startTime" AT TIME ZONE \'UTC\')::date AS day, api_key, "user", model_group, '
                            f"sum(spend) AS spend FROM {db.SPEND_TABLE}{clause} GROUP BY 1, 2, 3, 4", *args)


async def latest(conn, filters: list, start: Optional[datetime], end: Optional[datetime], limit: int = 10000) -> list:
    clause, args = _where(filters, start, end, '"startTime"')
    return await conn.fetch(f'SELECT * FROM {db.SPEND_TABLE}{clause} ORDER BY "startTime" DESC LIMIT {int(limit)}', *args)


async def activity(conn, filters: list, start: datetime, end: datetime) -> list:
    """Usage per (UTC day, model group, api_key, provider) in [start, end), with the key's alias and team."""
    clause, args = _where(filters, start, end, 's."startTime"')
    return await conn.fetch(
        f"""SELECT (s."startTime" AT TIME ZONE 'UTC')::date AS day, s.model_group, s.api_key, s.custom_llm_provider,
                   sum(s.spend) AS spend, sum(s.prompt_tokens)::bigint AS prompt_tokens, sum(s.completion_tokens)::bigint AS completion_tokens,
                   sum(s.total_tokens)::bigint AS total_tokens, count(*) AS api_requests,
                   count(*) FILTER (WHERE s.status IS DISTINCT FROM 'failure') AS successful_requests,
                   count(*) FILTER (WHERE s.status = 'failure') AS failed_requests,
                   max(k.key_alias) AS key_alias, max(s.team_id) AS team_id
            FROM {db.SPEND_TABLE} s LEFT JOIN {db.KEY_TABLE} k ON k.token = s.api_key
            {clause} GROUP BY 1, 2, 3, 4 ORDER BY 1""", *args)
