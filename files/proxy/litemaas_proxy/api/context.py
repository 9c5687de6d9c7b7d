"""The state of one data-plane request, carried from the route guard to the spend record.

A :class:`RequestContext` holds the caller (key, user and team rows), the model asked for, the deployment
that answers, timing, the rate-limit descriptors and headers, and the tokens used; the data plane
(``data.py``) and the pass-through routes (``passthrough.py``) hand it from step to step instead of long
lists of positional arguments. The helpers below are the steps both share.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from typing import Optional

from aiohttp import web

from litemaas_proxy import metrics
from litemaas_proxy.auth import MASTER, hash_token
from litemaas_proxy.errors import ProxyError
from litemaas_proxy.limits import build_args, descriptors_for
from litemaas_proxy.spend import make_record

UTC = timezone.utc


class RequestContext:
    __slots__ = ("request", "caller", "route", "call_type", "upstream_path", "t0", "start", "model", "body", "stream", "wants_usage",
                 "deployment", "limit_headers", "descriptors", "tokens", "guard")

    def __init__(self, request: web.Request, call_type: str, upstream_path: str = "", route: Optional[str] = None):
        self.request = request
        self.caller = request["litemaas_caller"]  # set by the route guard
        self.route = route or request.path  # the metrics label
        self.call_type = call_type
        self.upstream_path = upstream_path
        self.t0 = request.get("litemaas_t0") or time.monotonic()
        self.start = datetime.now(UTC)
        self.model: Optional[str] = None
        self.body: dict = {}
        self.stream = False
        self.wants_usage = False
        self.deployment = None
        self.limit_headers: Optional[dict] = None
        self.descriptors = None  # set once the limiter admitted the request: post() must follow
        self.tokens = 0
        self.guard = None

    def elapsed(self) -> float:
        return time.monotonic() - self.t0


async def check_limits(proxy, ctx: RequestContext) -> None:
    """RPM/TPM/parallel limits of the key, its user and team (shared in Redis); sets the limit headers."""
    entry = ctx.caller
    if entry is MASTER or proxy.limiter is None:
        return
    if entry.descriptors is None:
        entry.descriptors = descriptors_for(entry.key, entry.user, entry.team)
        entry.limit_args = build_args(entry.descriptors, proxy.limiter.window) if entry.descriptors else None
    descs = entry.descriptors
    if descs:
        keys, argv = entry.limit_args
        try:
            ctx.limit_headers = await proxy.limiter.check(descs, keys, argv)
        except ProxyError as exc:
            metrics.rate_limited(entry, ctx.model, ctx.route, exc)
            raise
        ctx.descriptors = descs


def release_limits(proxy, ctx: RequestContext) -> None:
    """After the response: count the tokens used and free the parallel-request slot."""
    if ctx.descriptors:
        proxy.limiter.post(ctx.descriptors, ctx.caller.limit_args[0], ctx.tokens, True)


def record_spend(proxy, ctx: RequestContext, dep, prompt: int, completion: int, cost: float, status: str, meta: dict,
                 end_user: Optional[str] = None) -> None:
    """Queue the spend-log row of this request (written in batches by the spend writer). The master key's rows
    carry its hash, as LiteLLM's do."""
    entry = ctx.caller
    if entry is MASTER:
        master_key = proxy.settings.master_key
        token, user_id, team_id = hash_token(master_key) if master_key else "", "default_user_id", None
    else:
        token, user_id, team_id = entry.token, entry.key.get("user_id"), entry.key.get("team_id")
        if entry.key.get("key_alias"):
            meta["user_api_key_alias"] = entry.key["key_alias"]
    rec = make_record(uuid.uuid4().hex, ctx.call_type, token, cost, prompt, completion, ctx.start, datetime.now(UTC), ctx.model, dep,
                      user_id, team_id, meta, status, end_user)
    proxy.spend.add(rec, token if entry is not MASTER else None, user_id if entry is not MASTER else None, team_id)
