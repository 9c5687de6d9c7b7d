"""Virtual keys: hashing, request credentials, and the in-process key cache (TTL + cross-replica invalidation)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from typing import Awaitable, Callable, Optional

from litemaas_proxy.errors import ProxyError
from litemaas_proxy.values import epoch

ADMIN_ROLES = ("proxy_admin",)
NEGATIVE_TTL = 2.0
STALE_RETRY = 1.0
STALE = float("-inf")
MAX_ENTRIES = 20000


def hash_token(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def hash_if_needed(value: str) -> str:
    """LiteLLM: ``sk-`` values are hashed, anything else is taken as the hash already."""
    return hash_token(value) if value.startswith("sk-") else value


def generate_key() -> str:
    return "sk-" + secrets.token_urlsafe(16)


def key_name(key: str) -> str:
    return "sk-..." + key[-4:]


def abbreviate(key: str) -> str:
    return "sk-..." + key[-4:] if key.startswith("sk-") else key


def parse_ts(value) -> Optional[float]:
    """Timestamp (datetime or ISO string from row_to_json) -> epoch seconds (the one parser: values.epoch)."""
    return epoch(value)


def credential_from_headers(headers) -> Optional[str]:
    """Where LiteLLM reads the key from, first match wins. Raises on a malformed Authorization header."""
    value = headers.get("x-litellm-api-key")
    if value:
        return value[7:].strip() if value[:7].lower() == "bearer " else value.strip()
    value = headers.get("Authorization")
    if value:
        low = value[:7].lower()
        if low == "bearer ":
            return value[7:].strip()
        if low[:6] == "basic ":
            return value[6:].strip()
        raise ProxyError(401, "Authentication Error, Malformed API Key passed in. Ensure Key has `Bearer ` prefix.", "auth_error", "None")
    value = headers.get("API-Key") or headers.get("x-api-key")
    if value:
        return value.strip()
    return None


class AuthEntry:
    """A resolved key with its user and team rows, as cached in-process."""

    __slots__ = ("token", "key", "user", "team", "loaded_at", "expires_ts", "spend_marks", "is_admin", "descriptors", "limit_args", "stale_since")

    def __init__(self, token: str, key: dict, user: Optional[dict], team: Optional[dict], loaded_at: float):
        self.token = token
        self.key = key
        self.user = user
        self.team = team
        self.loaded_at = loaded_at
        self.expires_ts = parse_ts(key.get("expires"))
        self.spend_marks: dict = {}
        self.is_admin = bool(user and user.get("user_role") in ADMIN_ROLES)
        self.descriptors = None
        self.limit_args = None
        self.stale_since: Optional[float] = None  # first failed reload while the database was unreachable


class MasterEntry:
    """The master key: proxy admin, no limits."""

    is_admin = True
    token = None
    key = {"user_id": "default_user_id", "team_id": None, "models": [], "metadata": {}}
    user = None
    team = None


MASTER = MasterEntry()


class KeyCache:
    """token -> AuthEntry with a short TTL; misses are loaded once even under concurrency."""

    def __init__(self, loader: Callable[[str], Awaitable[Optional[tuple]]], ttl: float = 10.0, max_stale: float = 300.0):
        self.loader = loader
        self.ttl = ttl
        self.max_stale = max_stale  # how long a cached key is served while the database cannot confirm it
        self.entries: dict = {}
        self.missing: dict = {}
        self.inflight: dict = {}

    # Invalidation marks entries stale instead of dropping them: the next use reloads them, and if the
    # database is unreachable at that moment the stale entry is served (stale-if-error).
    def invalidate(self, token: Optional[str] = None) -> None:
        if token is None:
            for entry in self.entries.values():
                entry.loaded_at = STALE
            self.missing.clear()
        else:
            entry = self.entries.get(token)
            if entry is not None:
                entry.loaded_at = STALE
            self.missing.pop(token, None)

    def invalidate_where(self, field: str, value: str) -> None:
        """Mark entries whose user or team matches stale (user/team changes)."""
        for entry in self.entries.values():
            if entry.key.get(field) == value:
                entry.loaded_at = STALE

    def _prune(self) -> None:
        """Bound memory: forget the least recently loaded half of the entries."""
        ordered = sorted(self.entries.items(), key=lambda item: item[1].loaded_at)
        for token, dummy in ordered[: len(ordered) // 2]:
            del self.entries[token]
        self.missing.clear()

    async def get(self, token: str) -> Optional[AuthEntry]:
        now = time.monotonic()
        entry = self.entries.get(token)
        if entry is not None and now - entry.loaded_at < self.ttl:
            return entry
        miss = self.missing.get(token)
        if miss is not None and now - miss < NEGATIVE_TTL:
            return None
        task = self.inflight.get(token)
        if task is None:
            # The load runs as its own task: a waiter that goes away (client disconnect) cancels neither
            # the lookup nor the other requests waiting for the same key.
            task = asyncio.get_running_loop().create_task(self._load(token, entry, now))
            self.inflight[token] = task
            task.add_done_callback(lambda done: self._loaded(token, done))
        return await asyncio.shield(task)

    def _loaded(self, token: str, task: asyncio.Task) -> None:
        if self.inflight.get(token) is task:
            del self.inflight[token]
        if not task.cancelled():
            task.exception()  # retrieved, even if every waiter went away

    async def _load(self, token: str, entry: Optional[AuthEntry], now: float) -> Optional[AuthEntry]:
        try:
            row = await self.loader(token)
        except Exception:
            if entry is None:
                raise
            # Stale-if-error: the database is unreachable; keep serving the last known state for at most
            # max_stale seconds (spend is buffered meanwhile) and retry the load every STALE_RETRY seconds.
            if entry.stale_since is None:
                entry.stale_since = now
            if now - entry.stale_since >= self.max_stale:
                raise
            entry.loaded_at = time.monotonic() - self.ttl + STALE_RETRY
            return entry
        if row is None:
            self.missing[token] = time.monotonic()
            self.entries.pop(token, None)
            return None
        if len(self.entries) >= MAX_ENTRIES:
            self._prune()
        result = AuthEntry(token, row[0], row[1], row[2], time.monotonic())
        if len(row) > 3:
            result.spend_marks = row[3]
        self.entries[token] = result
        self.missing.pop(token, None)
        return result


class LookupBatcher:
    """Key lookups that miss the cache share database queries.

    Misses that arrive in the same event-loop turn go into one query, and while ``max_inflight``
    queries are running new misses wait and go together into the next one (a query frees its slot
    when it ends). A burst of first requests with many different keys (a workshop starting) then
    costs a few queries of up to ``max_batch`` keys each instead of one query per key, while a
    single miss on a quiet proxy is looked up at once. KeyCache already makes concurrent misses of
    one key a single lookup. ``lookups`` and ``batches`` count what was asked.
    """

    def __init__(self, fetch_many: Callable[[list], Awaitable[dict]], max_batch: int = 256, max_inflight: int = 2):
        self.fetch_many = fetch_many
        self.max_batch = max_batch
        self.max_inflight = max(1, max_inflight)
        self.pending: dict = {}
        self.scheduled = False
        self.inflight = 0
        self.lookups = 0
        self.batches = 0
        self.tasks: set = set()

    def load(self, token: str) -> asyncio.Future:
        fut = self.pending.get(token)
        if fut is None:
            fut = self.pending[token] = asyncio.get_running_loop().create_future()
            self._schedule()
        return fut

    def _schedule(self) -> None:
        if self.pending and not self.scheduled and self.inflight < self.max_inflight:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self.scheduled = False
        loop = asyncio.get_running_loop()
        while self.pending and self.inflight < self.max_inflight:
            items = list(self.pending.items())[:self.max_batch]
            for token, dummy in items:
                del self.pending[token]
            self.inflight += 1
            task = loop.create_task(self._run(dict(items)))
            self.tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        self.inflight -= 1
        if not task.cancelled():
            self._schedule()

    async def _run(self, batch: dict) -> None:
        self.lookups += len(batch)
        self.batches += 1
        try:
            rows = await self.fetch_many(list(batch))
        except asyncio.CancelledError:  # shutdown
            for fut in batch.values():
                fut.cancel()
            raise
        except Exception as exc:  # every waiter gets the error
            for fut in batch.values():
                if not fut.done():
                    fut.set_exception(exc)
                    fut.exception()  # retrieved: a waiter that went away must not leave a warning behind
            return
        for token, fut in batch.items():
            if not fut.done():
                fut.set_result(rows.get(token))


def is_master(presented: str, master_key: Optional[str]) -> bool:
    return master_key is not None and hmac.compare_digest(presented.encode(), master_key.encode())
