"""Reports on LiteLLM_SpendLogs (/spend/logs, /user/daily/activity). Writes are the spend writer's (spend.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Optional

import asyncpg

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


# LiteLLM's usage pages read its daily aggregate tables, which LiteLLM fills as it logs spend. The proxy keeps them:
# its own rows (id "litemaas-" + a hash of the stint, day and group) are recomputed from the spend logs written since
# this stint began, so a re-run changes nothing and rows LiteLLM wrote before the cut-over are never touched.
ROLLUP_LOCK_ID = 724_311_002
DAILY_TABLES = (('"LiteLLM_DailyUserSpend"', "user_id", 's."user"'), ('"LiteLLM_DailyTeamSpend"', "team_id", "s.team_id"))
DAILY_ROLLUP = """
INSERT INTO {table} AS d (id, {owner}, date, api_key, model, model_group, custom_llm_provider, prompt_tokens, completion_tokens, spend,
                          api_requests, successful_requests, failed_requests, updated_at)
SELECT 'litemaas-' || md5(concat_ws('|', $1::text, {source}, to_char(s."startTime", 'YYYY-MM-DD'), s.api_key, s.model, s.model_group,
                                    s.custom_llm_provider)),
       {source}, to_char(s."startTime", 'YYYY-MM-DD'), s.api_key, s.model, s.model_group, s.custom_llm_provider,
       sum(s.prompt_tokens), sum(s.completion_tokens), sum(s.spend), count(*),
       count(*) FILTER (WHERE s.status IS DISTINCT FROM 'failure'), count(*) FILTER (WHERE s.status = 'failure'), now()
FROM {spend} s WHERE s."startTime" >= $2 AND {source} IS NOT NULL
GROUP BY {source}, to_char(s."startTime", 'YYYY-MM-DD'), s.api_key, s.model, s.model_group, s.custom_llm_provider
ON CONFLICT (id) DO UPDATE SET prompt_tokens = EXCLUDED.prompt_tokens, completion_tokens = EXCLUDED.completion_tokens, spend = EXCLUDED.spend,
    api_requests = EXCLUDED.api_requests, successful_requests = EXCLUDED.successful_requests, failed_requests = EXCLUDED.failed_requests,
    updated_at = now()
WHERE (d.prompt_tokens, d.completion_tokens, d.spend, d.api_requests, d.failed_requests)
      IS DISTINCT FROM (EXCLUDED.prompt_tokens, EXCLUDED.completion_tokens, EXCLUDED.spend, EXCLUDED.api_requests, EXCLUDED.failed_requests)
"""


async def roll_up_daily(conn, since_stint_start: bool = False) -> int:
    """Recompute the proxy's rows of LiteLLM's daily user and team tables (when the database has them) for yesterday
    and today (UTC), or for every day of this stint with ``since_stint_start``; returns the rows written."""
    if await conn.fetchval("SELECT to_regclass('\"LiteLLM_DailyUserSpend\"') IS NULL OR to_regclass('\"LiteLLM_DailyTeamSpend\"') IS NULL"):
        return 0
    stint = await conn.fetchval(f"SELECT spend_rollup_from FROM {db.VERSION_TABLE} WHERE id = 1")
    if stint is None:
        return 0
    window = stint if since_stint_start else max(stint, await conn.fetchval("SELECT date_trunc('day', now()) - interval '1 day'"))
    written = 0
    async with conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", ROLLUP_LOCK_ID):
            return 0  # another replica is doing it right now
        for table, owner, source in DAILY_TABLES:
            try:
                status = await conn.execute(DAILY_ROLLUP.format(table=table, owner=owner, source=source, spend=db.SPEND_TABLE),
                                            stint.isoformat(), window)
            except asyncpg.UndefinedColumnError:  # a LiteLLM version with other daily columns: leave its tables alone
                return written
            written += int(status.split()[-1])
    return written
