"""Rate limits (RPM, TPM, max parallel requests) shared by all replicas through Redis.

One Lua script checks and increments every descriptor of a request (key, user, team) atomically,
so a request costs one Redis round trip before the upstream call. Windows are LiteLLM's: a fixed
60 s window per descriptor that starts at the first request after the previous one expired.
Nothing here is durable; a Redis FLUSHALL only resets the current windows.

While Redis is unreachable the failure mode decides (``LITEMAAS_REDIS_FAILURE_MODE`` or
``general_settings.redis_failure_mode``): ``open`` (default) admits requests unchecked, ``closed``
refuses every request that needs a limit check with a 503. Keys without limits are never checked.
Post-call updates that could not reach Redis are kept and applied once it is back.

Parallel slots are leases. A descriptor's slots are a hash: one field per proxy process (a random id
per process start) counting the slots it holds. Each process keeps ``litemaas:rl:alive:<id>`` alive
(set on every check that takes a slot and by a heartbeat every third of the lease TTL); a check counts
only the fields of processes still alive and deletes the others. So the slots of a process killed
in the middle of its requests are free again at most ``LITEMAAS_PARALLEL_LEASE_TTL`` seconds (default
30) after its last heartbeat, on every replica, while the count of live processes stays exact.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import datetime, timezone
from typing import Optional

from litemaas_proxy.config import redis_failure_mode
from litemaas_proxy.errors import ProxyError

log = logging.getLogger("litemaas_proxy.limits")

PREFIX = "litemaas:rl:"

# Post-call updates (tokens used, parallel slots released) are queued in-process and applied by the
# next check call of this process (or by a timer within ~20 ms), so a request costs ONE round trip.
#
# KEYS: per descriptor i: KEYS[2i-1] = window hash, KEYS[2i] = parallel counter; then per queued update j
#       KEYS[2n+2j-1] = window hash, KEYS[2n+2j] = parallel counter
# ARGV: window, n, per descriptor rpm, tpm, par (-1 = no limit), m, per update tokens, releases; then the
#       process id and the lease TTL (the last two arguments of both scripts)
APPLY_LUA = """
local ME = ARGV[#ARGV - 1]
local ALIVE = 'litemaas:rl:alive:'
local function apply(keys_base, argv_base, m)
  for j = 1, m do
    local wkey = KEYS[keys_base + 2 * j - 1]
    local pkey = KEYS[keys_base + 2 * j]
    local tokens = tonumber(ARGV[argv_base + 2 * j - 1])
    local rel = tonumber(ARGV[argv_base + 2 * j])
    if tokens > 0 and redis.call('EXISTS', wkey) == 1 then
      redis.call('HINCRBY', wkey, 't', tokens)
    end
    if rel > 0 then
      if redis.call('HINCRBY', pkey, ME, -rel) <= 0 then redis.call('HDEL', pkey, ME) end
    end
  end
end
"""

CHECK_LUA = APPLY_LUA + """
local function held(pkey)
  local v = redis.call('HGETALL', pkey)
  local total = 0
  for j = 1, #v, 2 do
    local c = tonumber(v[j + 1]) or 0
    if c > 0 and (v[j] == ME or redis.call('EXISTS', ALIVE .. v[j]) == 1) then
      total = total + c
    else
      redis.call('HDEL', pkey, v[j])
    end
  end
  return total
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local win = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local m = tonumber(ARGV[3 + 3 * n])
apply(2 * n, 3 + 3 * n, m)
local st = {}
for i = 1, n do
  local rpm = tonumber(ARGV[3 + (i - 1) * 3])
  local tpm = tonumber(ARGV[4 + (i - 1) * 3])
  local par = tonumber(ARGV[5 + (i - 1) * 3])
  local start, req, tok, reset = now, 0, 0, 1
  if rpm >= 0 or tpm >= 0 then
    local v = redis.call('HMGET', KEYS[2 * i - 1], 's', 'r', 't')
    local s = tonumber(v[1])
    if s and now - s < win then
      start = s; req = tonumber(v[2]) or 0; tok = tonumber(v[3]) or 0; reset = 0
    end
    if rpm >= 0 and req + 1 > rpm then return {0, i, 1, rpm, math.floor(start + win)} end
    if tpm >= 0 and tok + 1 > tpm then return {0, i, 2, tpm, math.floor(start + win)} end
  end
  local p = 0
  if par >= 0 then
    p = held(KEYS[2 * i])
    if p + 1 > par then return {0, i, 3, par, 0} end
  end
  st[i] = {rpm, tpm, par, start, req, tok, reset, p}
end
local out = {1}
local leased = false
for i = 1, n do
  local s = st[i]
  if s[1] >= 0 or s[2] >= 0 then
    if s[7] == 1 then
      redis.call('HSET', KEYS[2 * i - 1], 's', tostring(s[4]), 'r', 1, 't', 0)
    else
      redis.call('HINCRBY', KEYS[2 * i - 1], 'r', 1)
    end
    redis.call('EXPIRE', KEYS[2 * i - 1], win * 2)
  end
  if s[3] >= 0 then
    redis.call('HINCRBY', KEYS[2 * i], ME, 1)
    redis.call('EXPIRE', KEYS[2 * i], 3600)
    leased = true
  end
  table.insert(out, s[5] + 1)
  table.insert(out, s[6])
  table.insert(out, s[8] + 1)
end
if leased then redis.call('SET', ALIVE .. ME, 1, 'EX', tonumber(ARGV[#ARGV])) end
return out
"""

# ARGV: m, per update tokens, releases, process id, lease TTL
POST_LUA = APPLY_LUA + """
apply(0, 1, tonumber(ARGV[1]))
return 1
"""

# KEYS: the alive key of this process; ARGV: lease TTL
ALIVE_LUA = """
redis.call('SET', KEYS[1], 1, 'EX', tonumber(ARGV[1]))
return 1
"""

TYPE_NAMES = {1: "requests", 2: "tokens", 3: "max_parallel_requests"}


class Descriptor:
    """One rate-limited subject of a request: ('api_key', hash), ('user', id) or ('team', id)."""

    __slots__ = ("name", "value", "rpm", "tpm", "par")

    def __init__(self, name: str, value: str, rpm, tpm, par):
        self.name = name
        self.value = value
        self.rpm = -1 if rpm is None else int(rpm)
        self.tpm = -1 if tpm is None else int(tpm)
        self.par = -1 if par is None else int(par)


def descriptors_for(key: dict, user: Optional[dict], team: Optional[dict]) -> list:
    out = []
    for name, row, ident in (("api_key", key, "token"), ("user", user, "user_id"), ("team", team, "team_id")):
        if not row:
            continue
        rpm, tpm, par = row.get("rpm_limit"), row.get("tpm_limit"), row.get("max_parallel_requests")
        if rpm is None and tpm is None and par is None:
            continue
        out.append(Descriptor(name, row[ident], rpm, tpm, par))
    return out


def build_args(descs: list, window: int) -> tuple:
    keys, argv = [], [window, len(descs)]
    for d in descs:
        base = f"{PREFIX}{d.name}:{d.value}"
        keys.append(base + ":w")
        keys.append(base + ":l")
        argv.extend((d.rpm, d.tpm, d.par))
    return keys, argv


def _reset_text(reset_epoch: float) -> str:
    return datetime.fromtimestamp(reset_epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


class Limiter:
    """``client`` has ``async run_script(script, keys, args)`` (litemaas_proxy.fastredis.FastRedis)."""

    def __init__(self, client, window: int = 60, flush_delay: float = 0.02, failure_mode: str = "open", lease_ttl: int = 30):
        self.client = client
        self.window = window
        self.lease_ttl = int(lease_ttl)
        # This process's lease holder id: a new one per start, so a restarted process never inherits the slots of the dead one.
        self.holder = uuid.uuid4().hex[:16]
        self._tail = [self.holder, self.lease_ttl]
        self.flush_delay = flush_delay
        self.failure_mode = redis_failure_mode(failure_mode)  # Settings.redis_failure_mode
        self.pending: dict = {}
        # Parallel counters of requests admitted unchecked (mode "open", Redis down): their slot was never taken,
        # so their release must not be applied either. pkey -> count still to be skipped.
        self.unchecked: dict = {}
        self._warned_at = float("-inf")
        self._unwarned = 0
        self._timer = None
        self._flushing: Optional[asyncio.Task] = None

    async def _check(self, keys, args):
        return await self.client.run_script(CHECK_LUA, keys, args + self._tail)

    async def _post(self, keys, args):
        return await self.client.run_script(POST_LUA, keys, args + self._tail)

    async def keep_alive(self) -> None:
        """Renew this process's lease every third of its TTL, for as long as the process lives (its slots are counted
        while it does). Runs as a background task; a Redis outage only skips renewals."""
        while True:
            try:
                await self.client.run_script(ALIVE_LUA, [PREFIX + "alive:" + self.holder], [self.lease_ttl])
            except Exception as exc:
                self._warn("parallel-slot lease not renewed", exc)
            await asyncio.sleep(self.lease_ttl / 3)

    def _warn(self, what: str, exc: Exception) -> None:
        """Log a Redis outage at most every 5 s (every request hits it), with the count of repeats left out."""
        now = time.monotonic()
        if now - self._warned_at < 5.0:
            self._unwarned += 1
            return
        repeats, self._unwarned, self._warned_at = self._unwarned, 0, now
        log.warning("%s, Redis unavailable (failure mode %s): %s%s", what, self.failure_mode, exc,
                    f" ({repeats} more since the last message)" if repeats else "")

    def _requeue(self, keys: list, argv: list) -> None:
        """Put updates taken by ``_take_pending`` back (the script did not complete)."""
        for j in range(int(argv[0])):
            k = (keys[2 * j], keys[2 * j + 1])
            tokens, rel = int(argv[1 + 2 * j]), int(argv[2 + 2 * j])
            item = self.pending.get(k)
            if item is None:
                self.pending[k] = [tokens, rel]
            else:
                item[0] += tokens
                item[1] += rel

    def unavailable(self, exc: Exception) -> ProxyError:
        """The 503 of the ``closed`` failure mode."""
        return ProxyError(503, f"Rate limits cannot be checked: Redis is unavailable ({type(exc).__name__}). "
                          "The proxy is configured to refuse rate-limited requests meanwhile (redis failure mode 'closed'); retry shortly.",
                          "service_unavailable", "None", {"retry-after": "1"})

    def _take_pending(self) -> tuple:
        pending, self.pending = self.pending, {}
        keys, argv = [], [len(pending)]
        for (wkey, pkey), (tokens, rel) in pending.items():
            keys.append(wkey)
            keys.append(pkey)
            argv.append(tokens)
            argv.append(rel)
        return keys, argv

    async def check(self, descs: list, keys: list, argv: list) -> Optional[dict]:
        """Admit or raise 429. Returns the x-ratelimit-* headers. While Redis is unavailable: None (mode ``open``)
        or a 503 ProxyError (mode ``closed``)."""
        flushing = self._flushing
        if flushing is not None and not flushing.done():
            await asyncio.shield(flushing)  # rare: keep "tokens used" ahead of the next check even across a reconnect
        pkeys, pargv = self._take_pending() if self.pending else ([], [0])
        try:
            res = await self._check(keys=keys + pkeys, args=argv + pargv)
        except Exception as exc:
            if isinstance(exc, ConnectionError):
                self._requeue(pkeys, pargv)  # connection refused or lost: carry the queued updates to a later call
            if self.failure_mode == "closed":
                self._warn("request refused, rate limits cannot be checked", exc)
                raise self.unavailable(exc) from None
            self._warn("rate limit check skipped", exc)
            for i, d in enumerate(descs):
                if d.par >= 0:
                    self.unchecked[keys[2 * i + 1]] = self.unchecked.get(keys[2 * i + 1], 0) + 1
            return None
        if res[0] == 0:
            d = descs[int(res[1]) - 1]
            kind = TYPE_NAMES[int(res[2])]
            limit = int(res[3])
            reset_at = float(res[4]) or (time.time() + self.window)
            retry = max(1, int(reset_at - time.time() + 0.999)) if res[4] else self.window
            msg = (f"Rate limit exceeded for {d.name}: {d.value}. Limit type: {kind}. Current limit: {limit}, Remaining: 0. "
                   f"Limit resets at: {_reset_text(reset_at)}")
            headers = {"retry-after": str(retry), "rate_limit_type": kind, "reset_at": _reset_text(reset_at),
                       f"x-ratelimit-{d.name}-limit-{kind}": str(limit), f"x-ratelimit-{d.name}-remaining-{kind}": "0"}
            raise ProxyError(429, msg, "None", "None", headers)
        headers = {}
        for i, d in enumerate(descs):
            req, tok, par = int(res[1 + 3 * i]), int(res[2 + 3 * i]), int(res[3 + 3 * i])
            if d.rpm >= 0:
                headers[f"x-ratelimit-{d.name}-limit-requests"] = str(d.rpm)
                headers[f"x-ratelimit-{d.name}-remaining-requests"] = str(max(0, d.rpm - req))
            if d.tpm >= 0:
                headers[f"x-ratelimit-{d.name}-limit-tokens"] = str(d.tpm)
                headers[f"x-ratelimit-{d.name}-remaining-tokens"] = str(max(0, d.tpm - tok - 1))
            if d.par >= 0:
                headers[f"x-ratelimit-{d.name}-limit-max_parallel_requests"] = str(d.par)
                headers[f"x-ratelimit-{d.name}-remaining-max_parallel_requests"] = str(max(0, d.par - par))
        return headers

    def post(self, descs: list, keys: list, tokens: int, release: bool) -> None:
        """After the call: queue tokens for TPM windows and the release of parallel slots."""
        tokens = int(tokens)
        for i, d in enumerate(descs):
            count = tokens if (d.tpm >= 0 and tokens > 0) else 0
            rel = 1 if (release and d.par >= 0) else 0
            if rel and self.unchecked:
                skip = self.unchecked.get(keys[2 * i + 1])
                if skip:  # one of the requests admitted unchecked: it holds no slot
                    rel = 0
                    if skip > 1:
                        self.unchecked[keys[2 * i + 1]] = skip - 1
                    else:
                        del self.unchecked[keys[2 * i + 1]]
            if count or rel:
                k = (keys[2 * i], keys[2 * i + 1])
                item = self.pending.get(k)
                if item is None:
                    self.pending[k] = [count, rel]
                else:
                    item[0] += count
                    item[1] += rel
        if self.pending and self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.flush_delay, self._start_flush)

    def _start_flush(self) -> None:
        self._timer = None
        if self.pending:
            self._flushing = asyncio.get_running_loop().create_task(self.flush())

    async def flush(self) -> None:
        if not self.pending:
            return
        keys, argv = self._take_pending()
        try:
            await self._post(keys=keys, args=argv)
        except Exception as exc:
            if isinstance(exc, ConnectionError):
                # Keep them (a lost release would hold a parallel slot until its counter expires); counters are clamped at 0.
                self._requeue(keys, argv)
                self._warn("rate limit update deferred", exc)
            else:
                self._warn("rate limit update skipped", exc)
