"""Spend: cost per request, and the batched, durable writer to PostgreSQL.

Every finished request becomes one record in an in-memory buffer. A background task writes the
buffer in one statement (spend log rows + key/user/team spend increments) every flush interval.
Rows are idempotent by request_id, so a retried batch never double-counts. While the database is
unreachable records stay buffered and are retried; at shutdown whatever cannot be written is
spilled to a JSON-lines file that the next start (of any replica with the same spill directory)
replays. Nothing durable is kept in Redis.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import uuid
from datetime import datetime, timezone
from typing import Optional

import orjson

from litemaas_proxy import db
from litemaas_proxy.durations import next_budget_reset
from litemaas_proxy.values import parse_timestamp

log = logging.getLogger("litemaas_proxy.spend")
UTC = timezone.utc


def compute_cost(dep, prompt_tokens: int, completion_tokens: int) -> float:
    return prompt_tokens * dep.input_cost + completion_tokens * dep.output_cost


FLUSH_SQL = f"""
WITH src AS (
  SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::int[], $6::int[], $7::int[], $8::timestamptz[],
                       $9::timestamptz[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[],
                       $17::text[], $18::text[], $19::text[])
    AS s(request_id, call_type, api_key, spend, total_tokens, prompt_tokens, completion_tokens, start_time, end_time, model, model_id,
         model_group, provider, api_base, usr, team_id, metadata, status, end_user)
), ins AS (
  INSERT INTO {db.SPEND_TABLE} (request_id, call_type, api_key, spend, total_tokens, prompt_tokens, completion_tokens, "startTime", "endTime",
                                "completionStartTime", model, model_id, model_group, custom_llm_provider, api_base, "user", team_id, metadata,
                                status, end_user)
  SELECT request_id, call_type, api_key, spend, total_tokens, prompt_tokens, completion_tokens, start_time, end_time, end_time, model, model_id,
         model_group, provider, api_base, usr, team_id, metadata::jsonb, status, end_user FROM src
  ON CONFLICT (request_id) DO NOTHING
  RETURNING api_key, spend, "user", team_id
), k AS (
  UPDATE {db.KEY_TABLE} t SET spend = t.spend + a.total
  FROM (SELECT api_key, sum(spend) AS total FROM ins WHERE api_key <> '' GROUP BY api_key) a WHERE t.token = a.api_key
), u AS (
  UPDATE {db.USER_TABLE} t SET spend = t.spend + a.total
  FROM (SELECT "user", sum(spend) AS total FROM ins WHERE "user" IS NOT NULL GROUP BY "user") a WHERE t.user_id = a."user"
), tm AS (
  UPDATE {db.TEAM_TABLE} t SET spend = t.spend + a.total
  FROM (SELECT team_id, sum(spend) AS total FROM ins WHERE team_id IS NOT NULL GROUP BY team_id) a WHERE t.team_id = a.team_id
)
SELECT count(*) FROM ins
"""

FIELDS = ("request_id", "call_type", "api_key", "spend", "total_tokens", "prompt_tokens", "completion_tokens", "start_time", "end_time", "model",
          "model_id", "model_group", "provider", "api_base", "user", "team_id", "metadata", "status", "end_user")


class SpendWriter:
    def __init__(self, interval: float = 1.0, spill_dir: str = "/tmp", batch_size: int = 5000):
        self.pool = None
        self.interval = interval
        self.spill_dir = spill_dir
        self.batch_size = batch_size
        self.buffer: list = []
        # Running totals of spend seen by this process and of spend written by it, per key/user/team.
        self.added: dict = {}
        self.flushed: dict = {}
        self.failures = 0
        self.written = 0
        self._wake = asyncio.Event()
        self._stopping = False
        self._spill_files: list = []
        self._lock = asyncio.Lock()
        self.enabled = True

    # ---- hot path
    def add(self, rec: tuple, token: Optional[str], user_id: Optional[str], team_id: Optional[str]) -> None:
        if not self.enabled:
            return  # no database configured: like LiteLLM without a DB, spend is not tracked
        self.buffer.append(rec)
        cost = rec[3]
        if cost:
            for ident in (("k", token), ("u", user_id), ("t", team_id)):
                if ident[1]:
                    self.added[ident] = self.added.get(ident, 0.0) + cost
        if len(self.buffer) >= self.batch_size:
            self._wake.set()

    def mark(self, kind: str, ident: Optional[str]) -> float:
        return self.flushed.get((kind, ident), 0.0) if ident else 0.0

    def pending(self, kind: str, ident: Optional[str], mark: float) -> float:
        """Spend of this process not yet visible in a DB row read when ``mark`` was taken."""
        if not ident:
            return 0.0
        return self.added.get((kind, ident), 0.0) - mark

    # ---- background
    @staticmethod
    def _columns(batch: list) -> list:
        cols = [list(c) for c in zip(*batch)]
        return cols

    async def flush_once(self) -> int:
        if not self.buffer or self.pool is None:
            return 0
        batch = self.buffer[: self.batch_size]
        cols = self._columns(batch)
        await self.pool.fetchval(FLUSH_SQL, *cols)
        del self.buffer[: len(batch)]
        for rec in batch:
            cost = rec[3]
            if cost:
                for ident in (("k", rec[2] or None), ("u", rec[14]), ("t", rec[15])):
                    if ident[1]:
                        self.flushed[ident] = self.flushed.get(ident, 0.0) + cost
        self.written += len(batch)
        return len(batch)

    async def flush_all(self) -> None:
        async with self._lock:  # one writer at a time: a batch is removed from the buffer only after it is committed
            while self.buffer:
                await self.flush_once()

    async def run(self) -> None:
        delay = self.interval
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            if self._stopping:
                break
            try:
                await self.flush_all()
                self.failures = 0
                delay = self.interval
                self._remove_replayed_spills()
            except Exception as exc:
                self.failures += 1
                delay = min(self.interval * (2 ** min(self.failures, 4)), 15.0)
                log.warning("spend flush failed (%d records buffered, retry in %.1fs): %s", len(self.buffer), delay, exc)

    async def stop(self, timeout: float = 10.0) -> None:
        """Final flush (SIGTERM). What cannot be written within ``timeout`` is spilled to disk.

        The flush is abandoned, not awaited, when the deadline passes: with an unresponsive database even
        cancelling a query can wait on the network, and shutdown must end within its budget regardless.
        Records of an abandoned batch are spilled too; replaying them is harmless (rows are idempotent)."""
        self._stopping = True
        self._wake.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.buffer and self.pool is not None and deadline - loop.time() > 0:
            flush = loop.create_task(self.flush_all())
            done, dummy = await asyncio.wait({flush}, timeout=deadline - loop.time())
            if not done:
                flush.cancel()
                log.warning("final spend flush did not finish within %.1fs", timeout)
                break
            if flush.exception() is not None:
                log.warning("final spend flush failed: %s", flush.exception())
                await asyncio.sleep(max(0.0, min(0.5, deadline - loop.time())))
        if self.buffer:
            self.spill()
        else:
            self._remove_replayed_spills()

    # ---- spill files
    def spill(self) -> Optional[str]:
        if not self.buffer:
            return None
        path = os.path.join(self.spill_dir, f"litemaas-spend-{uuid.uuid4().hex}.jsonl")
        with open(path, "wb") as fh:
            for rec in self.buffer:
                fh.write(orjson.dumps(dict(zip(FIELDS, rec))) + b"\n")
        log.error("database unreachable at shutdown: %d spend records written to %s; they are replayed at the next start", len(self.buffer), path)
        self.buffer = []
        return path

    def load_spills(self) -> int:
        count = 0
        for path in sorted(glob.glob(os.path.join(self.spill_dir, "litemaas-spend-*.jsonl"))):
            claimed = path + ".replaying"
            try:
                os.rename(path, claimed)  # claim it so that only one process replays it
            except OSError:
                continue
            with open(claimed, "rb") as fh:
                for line in fh:
                    if line.strip():
                        data = orjson.loads(line)
                        for name in ("start_time", "end_time"):
                            data[name] = parse_timestamp(data[name])
                        self.buffer.append(tuple(data[f] for f in FIELDS))
                        count += 1
            self._spill_files.append(claimed)
        if count:
            log.info("replaying %d spilled spend records", count)
        return count

    def _remove_replayed_spills(self) -> None:
        if self._spill_files and not self.buffer:
            for path in self._spill_files:
                try:
                    os.unlink(path)
                except OSError:
                    pass
            self._spill_files = []


def make_record(request_id: str, call_type: str, token: Optional[str], cost: float, prompt: int, completion: int, start: datetime, end: datetime,
                model: str, dep, user_id: Optional[str], team_id: Optional[str], metadata: dict, status: str, end_user: Optional[str]) -> tuple:
    return (request_id, call_type, token or "", cost, prompt + completion, prompt, completion, start, end, dep.upstream_model if dep else model,
            dep.id if dep else None, model, dep.provider if dep else None, dep.api_base if dep else None, user_id, team_id,
            orjson.dumps(metadata).decode(), status, end_user)


async def reset_budgets(pool, zone=timezone.utc) -> int:
    """Zero the spend of keys, users and teams whose budget_reset_at has passed and schedule the next reset
    (aligned in ``zone``, the budget time zone)."""
    changed = 0
    now = datetime.now(UTC)
    for table, pk in ((db.KEY_TABLE, "token"), (db.USER_TABLE, "user_id"), (db.TEAM_TABLE, "team_id")):
        async with pool.acquire() as conn:
            async with conn.transaction():
                rows = await conn.fetch(
                    f"SELECT {pk} AS id, budget_duration FROM {table} WHERE budget_reset_at <= now() AND budget_duration IS NOT NULL FOR UPDATE SKIP LOCKED")
                for row in rows:
                    try:
                        nxt = next_budget_reset(row["budget_duration"], now, zone)
                    except ValueError:
                        nxt = None
                    await conn.execute(f"UPDATE {table} SET spend = 0, budget_reset_at = $2 WHERE {pk} = $1", row["id"], nxt)
                    changed += 1
    return changed
