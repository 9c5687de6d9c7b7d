"""Spend: cost per request, and the journaled, batched, durable writer to PostgreSQL.

Every finished request becomes one record. Before the client gets the last byte of its answer the record
is appended to this worker's journal file with one ``write()`` (it survives a kill -9 of the process: the
page cache belongs to the kernel) and to an in-memory buffer. A background task writes the buffer in one
statement (spend log rows + key/user/team spend increments) every flush interval and then deletes the
journal segments whose records are all committed. Rows are idempotent by request_id, so a record written
twice (a retried batch, a journal replayed after a kill that came between commit and delete) counts once.

The journal is a series of segment files ``litemaas-spend-*.jsonl`` in the spill directory, each held
with an exclusive ``flock`` by the process writing it. A lock is released by the kernel when its process
dies, however it dies, so any worker that can take the lock of a segment knows its writer is gone and
adopts it: at start and then every flush interval, every worker of every replica sharing the directory
does. Worker ids therefore need not be stable across restarts: a journal of a worker that no longer
exists is adopted like any other.

While the database is unreachable records stay journaled and are retried. At most ``memory_max`` records
are held in memory (plus the segment being written and the one being flushed); older complete segments
are evicted and read back from disk when their turn comes. Nothing durable is kept in Redis.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
import uuid
from datetime import datetime, timezone
from typing import Optional

import orjson

from litemaas_proxy import db, journal
from litemaas_proxy.durations import next_budget_reset
from litemaas_proxy.journal import Segment

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


class SpendWriter:
    def __init__(self, interval: float = 1.0, spill_dir: str = "/tmp", batch_size: int = 5000, memory_max: int = 10000):
        self.pool = None
        self.interval = interval
        self.spill_dir = spill_dir
        self.batch_size = batch_size
        self.memory_max = max(1, memory_max)
        self.segment_max = max(1, self.memory_max // 4)
        # Pending records, oldest first: sealed and adopted segments, then the one being written (``current``).
        self.segments: list = []
        self.current = Segment(None, None, True)
        self.segments.append(self.current)
        self.in_memory = 0
        # Running totals of spend seen by this process and of spend written by it, per key/user/team.
        self.added: dict = {}
        self.flushed: dict = {}
        self.failures = 0
        self.written = 0
        self.journal = False
        self._wake = asyncio.Event()
        self._stopping = False
        self._lock = asyncio.Lock()
        self._warned_at = float("-inf")
        self.enabled = True

    # ---- counts (readiness, /metrics)
    @property
    def pending_records(self) -> int:
        """Records not yet committed to the database (in memory or on disk only)."""
        return sum(seg.count - seg.done for seg in self.segments)

    @property
    def on_disk_records(self) -> int:
        """Pending records held only in journal files (evicted by the memory cap, or adopted and not read yet)."""
        return sum(seg.count - seg.done for seg in self.segments if seg.records is None)

    # ---- journal files
    def open_journal(self) -> bool:
        """Start journaling into the spill directory and adopt the journals of dead processes. Without a writable
        directory the proxy still runs, with spend held in memory only (as without a journal), and says so."""
        if not self.enabled:
            return False
        try:
            os.makedirs(self.spill_dir, exist_ok=True)
            probe = Segment(None, None, True)
            journal.open_file(self.spill_dir, probe)
            os.unlink(probe.path)
            os.close(probe.fd)
        except OSError as exc:
            log.error("spend journal disabled, %s is not writable (%s): spend is held in memory until written, and a kill -9 loses "
                      "what is not written yet", self.spill_dir, exc)
            return False
        self.journal = True
        self.adopt()
        return True

    def _rotate(self) -> None:
        """Seal the segment being written (it is flushed and deleted later) and start a new one. The new one gets its
        file with its first record: with nothing pending there is no journal file."""
        if not self.current.count:
            return
        self.current = Segment(None, None, True)
        self.segments.append(self.current)

    def adopt(self) -> int:
        """Take over the journal files whose writer is dead (their lock is free); their records are read when their turn comes."""
        found = journal.orphans(self.spill_dir, {seg.path for seg in self.segments})
        self.segments[-1:-1] = found
        if found:
            self._wake.set()
        return len(found)

    def _load(self, seg: Segment) -> None:
        records = journal.read_segment(seg)
        if seg.own and len(records) != seg.count:
            log.warning("spend journal %s holds %d readable records, %d were written", seg.path, len(records), seg.count)
        seg.records = records
        seg.count = len(records)
        seg.done = min(seg.done, seg.count)
        self.in_memory += len(records)

    def _retire(self, seg: Segment) -> None:
        """All records of a sealed segment are committed: delete its file (before releasing its lock)."""
        self.segments.remove(seg)
        self.in_memory -= len(seg.records or ())
        journal.delete(seg)

    def _shed(self) -> None:
        """Memory cap: evict complete segments, newest first (the oldest is read back first); they stay on disk."""
        for seg in reversed(self.segments[1:-1]):
            if self.in_memory <= self.memory_max:
                break
            if seg.evictable():
                self.in_memory -= len(seg.records)
                seg.records = None
        if self.in_memory > self.memory_max:
            self._warn("spend memory cap reached but nothing can be evicted (no journal directory, or journal writes failing)", None)

    def _warn(self, what: str, exc: Optional[Exception]) -> None:
        now = time.monotonic()
        if now - self._warned_at >= 5.0:
            self._warned_at = now
            log.error("%s%s", what, f": {exc}" if exc else "")

    # ---- hot path
    def add(self, rec: tuple, token: Optional[str], user_id: Optional[str], team_id: Optional[str]) -> None:
        if not self.enabled:
            return  # no database configured: like LiteLLM without a DB, spend is not tracked
        seg = self.current
        try:
            if seg.fd is None:
                if not self.journal or seg.count:
                    raise OSError(errno.EBADF, "no journal file")
                journal.open_file(self.spill_dir, seg)
            os.write(seg.fd, journal.record_line(rec))
        except OSError as exc:
            seg.unwritten += 1
            if self.journal:
                self._warn("spend journal write failed; the record is held in memory only", exc)
        seg.records.append(rec)
        seg.count += 1
        self.in_memory += 1
        cost = rec[3]
        if cost:
            for ident in (("k", token), ("u", user_id), ("t", team_id)):
                if ident[1]:
                    self.added[ident] = self.added.get(ident, 0.0) + cost
        if seg.count >= self.segment_max:  # a full segment: start the next one, and write without waiting for the interval
            self._rotate()
            if self.in_memory > self.memory_max:
                self._shed()
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

    async def _flush_segment(self, seg: Segment) -> None:
        if seg.records is None:
            self._load(seg)
        while seg.done < seg.count:
            batch = seg.records[seg.done: seg.done + self.batch_size]
            await self.pool.fetchval(FLUSH_SQL, *self._columns(batch))
            seg.done += len(batch)
            self.written += len(batch)
            if seg.own:  # adopted records were never counted as added by this process
                for rec in batch:
                    cost = rec[3]
                    if cost:
                        for ident in (("k", rec[2] or None), ("u", rec[14]), ("t", rec[15])):
                            if ident[1]:
                                self.flushed[ident] = self.flushed.get(ident, 0.0) + cost

    async def flush_all(self) -> None:
        """Write every pending record: the segment being written is sealed first, then segments go oldest first,
        each deleted once all its records are committed."""
        async with self._lock:  # one writer at a time: a segment is deleted only after its records are committed
            if self.pool is None:
                return
            self._rotate()
            while self.segments[0] is not self.current:
                seg = self.segments[0]
                await self._flush_segment(seg)
                self._retire(seg)

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
            if self.journal:
                self.adopt()
            try:
                await self.flush_all()
                self.failures = 0
                delay = self.interval
            except Exception as exc:
                self.failures += 1
                delay = min(self.interval * (2 ** min(self.failures, 4)), 15.0)
                log.warning("spend flush failed (%d records pending, %d of them on disk only; retry in %.1fs): %s",
                            self.pending_records, self.on_disk_records, delay, exc)

    async def stop(self, timeout: float = 10.0) -> None:
        """Final flush (SIGTERM). What cannot be written within ``timeout`` stays in the journal for the next start.

        The flush is abandoned, not awaited, when the deadline passes: with an unresponsive database even
        cancelling a query can wait on the network, and shutdown must end within its budget regardless.
        Records of an abandoned batch stay journaled too; replaying them is harmless (rows are idempotent)."""
        self._stopping = True
        self._wake.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.pending_records and self.pool is not None and deadline - loop.time() > 0:
            flush = loop.create_task(self.flush_all())
            done, dummy = await asyncio.wait({flush}, timeout=deadline - loop.time())
            if not done:
                flush.cancel()
                log.warning("final spend flush did not finish within %.1fs", timeout)
                break
            if flush.exception() is not None:
                log.warning("final spend flush failed: %s", flush.exception())
                await asyncio.sleep(max(0.0, min(0.5, deadline - loop.time())))
        self.close()

    def close(self) -> None:
        """Release the journal: pending records stay in their files (the next start, or another worker, replays them);
        records that never reached a file are spilled to one now."""
        left = self.pending_records
        memory_only = []
        for seg in self.segments:
            if seg.unwritten and seg.records is not None:
                memory_only.extend(seg.records[seg.done:])
            if seg.fd is not None:
                if seg.count == seg.done or (seg.own and seg.unwritten):
                    journal.delete(seg)
                else:
                    os.close(seg.fd)
        self.segments = []
        if memory_only:
            self.spill(memory_only)
        if left:
            log.error("database unreachable at shutdown: %d spend records written to the journal in %s are replayed at the next start",
                      left, self.spill_dir)

    def spill(self, records: list) -> Optional[str]:
        path = os.path.join(self.spill_dir, f"litemaas-spend-spill-{uuid.uuid4().hex}.jsonl")
        try:
            with open(path, "wb") as fh:
                fh.write(b"".join(journal.record_line(rec) for rec in records))
        except OSError as exc:
            log.error("could not spill %d spend records to %s: %s", len(records), path, exc)
            return None
        return path


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
