"""Authenticated pass-through routes, configured per model (e.g. Docling document conversion).

A deployment whose provider is ``docling`` (``model: docling/...`` or ``custom_llm_provider: docling``) serves
``/docling/...``; any deployment can name another prefix with ``litellm_params.passthrough_prefix``.
``POST /docling/v1/convert/source`` is forwarded to ``<api_base>/v1/convert/source`` (an ``api_base`` that
ends in ``/v1`` is not doubled), with the method, query string, body and content type unchanged and the
deployment's ``api_key`` instead of the caller's key.

The caller's key must be allowed one of the models served at the prefix (header ``x-litemaas-model`` picks
one when several are); the key's blocked/expiry/budget checks and RPM/parallel limits apply; tokens are not
counted. Request and response bodies are streamed, never read whole into memory, so uploads are not bound
by the proxy's JSON body limit. Prefixes are registered when the proxy starts: ``/docling`` always, plus
every ``passthrough_prefix`` of the config file's models and of ``general_settings.passthrough_prefixes``.

The handler of every prefix is :func:`forward` (the prefix read from the matched route); :func:`relay` tries the
deployments, :func:`stream_back` streams the answer. :func:`routes` is the module's route table, one entry per
configured prefix (built from the settings, since the prefixes are configuration); :func:`setup` gives the
application the HTTP session the relay uses.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from datetime import timezone

import aiohttp
from aiohttp import web

from litemaas_proxy import metrics
from litemaas_proxy.api.checks import check_key_state, check_model_access
from litemaas_proxy.api.common import proxy_of
from litemaas_proxy.api.context import RequestContext, check_limits, record_spend, release_limits
from litemaas_proxy.api.routes import KEY, Route
from litemaas_proxy.errors import ProxyError
from litemaas_proxy.routing import passthrough_prefix_of

log = logging.getLogger("litemaas_proxy.passthrough")
UTC = timezone.utc
DEFAULT_PREFIXES = ("/docling",)
CALL_TYPE = "pass_through_endpoint"
# Not forwarded upstream: hop-by-hop headers, the caller's credentials, and what aiohttp sets itself.
DROP_REQUEST = frozenset({"host", "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
                          "transfer-encoding", "upgrade", "authorization", "x-litellm-api-key", "api-key", "x-api-key", "content-length",
                          "expect", "cookie", "x-litemaas-model"})
DROP_RESPONSE = frozenset({"connection", "keep-alive", "transfer-encoding", "upgrade", "content-length", "server", "date", "set-cookie"})
TAIL = "/{tail:.*}"  # the route of a prefix: prefix + TAIL
SESSION_KEY = web.AppKey("litemaas_passthrough_session", list)  # [] or [the session], made on first use
_SEGMENT = re.compile(r"^(?:v\d+(?:alpha\d*|beta\d*)?|[A-Za-z_-]{1,40})$")


def route_label(prefix: str, tail: str) -> str:
    """A bounded metrics label for a pass-through path: ids (task ids, file names) become ``{id}``."""
    parts = [p if _SEGMENT.match(p) else "{id}" for p in tail.split("/")[:4] if p]
    return prefix + "/" + "/".join(parts)


def configured_prefixes(settings) -> list:
    out = list(DEFAULT_PREFIXES)
    for entry in settings.model_list or []:
        if isinstance(entry, dict):
            prefix = passthrough_prefix_of(entry.get("litellm_params") or {}, entry.get("model_info") or {}, "")
            if prefix:
                out.append(prefix)
    for prefix in settings.passthrough_prefixes or []:
        out.append("/" + str(prefix).strip("/"))
    seen = []
    for p in out:
        if p != "/" and p not in seen:
            seen.append(p)
    return seen


def upstream_url(api_base: str, tail: str, query: str) -> str:
    base = api_base.rstrip("/")
    if base.endswith("/v1") and (tail == "v1" or tail.startswith("v1/")):
        base = base[:-3]
    url = f"{base}/{tail}"
    return f"{url}?{query}" if query else url


def routes(settings) -> list:
    """The pass-through routes (any valid key allowed one of the prefix's models), one per configured prefix."""
    return [Route("*", prefix + TAIL, forward, KEY) for prefix in configured_prefixes(settings)]


def setup(app: web.Application) -> None:
    """The application's pass-through HTTP session: made on first use (it streams request bodies, which the LLM
    client does not need), closed with the application."""
    app[SESSION_KEY] = []

    async def close_session(_app) -> None:
        sessions = _app[SESSION_KEY]
        while sessions:
            await sessions.pop().close()

    app.on_cleanup.append(close_session)


def session(app: web.Application, settings) -> aiohttp.ClientSession:
    sessions = app[SESSION_KEY]
    if not sessions:
        connector = aiohttp.TCPConnector(limit=settings.upstream_connections, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=30)
        sessions.append(aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",), auto_decompress=False))
    return sessions[0]


def prefix_of(request: web.Request) -> str:
    """The configured prefix of the matched route (``/docling`` for ``/docling/{tail:.*}``)."""
    canonical = request.match_info.route.resource.canonical  # "/docling/{tail}"
    return canonical[: canonical.rindex("/{tail}")]


def pick_model(proxy, entry, prefix: str, request: web.Request) -> str:
    """The model the caller uses at ``prefix``: the one header ``x-litemaas-model`` names, else the first it may use."""
    router = proxy.router
    names = router.passthrough.get(prefix) or []
    if not names:
        raise ProxyError(404, f"No model serves the pass-through route {prefix}/ on this proxy", "not_found_error", "None")
    wanted = request.headers.get("x-litemaas-model")
    if wanted:
        if wanted not in names:
            raise ProxyError(400, f"Model {wanted} does not serve {prefix}/. Models there: {names}", "invalid_request_error", "model")
        check_model_access(entry, wanted, router)
        return wanted
    first_error = None
    for name in names:
        try:
            check_model_access(entry, name, router)
            return name
        except ProxyError as exc:
            first_error = first_error or exc
    raise first_error


def record(proxy, ctx: RequestContext, dep, status_code: int) -> None:
    """Queue the spend-log row (no tokens, no cost) of this request."""
    status = "success" if status_code < 400 else "failure"
    record_spend(proxy, ctx, dep, 0, 0, 0.0, status, {"status": status_code, "route": ctx.route})


async def forward(request: web.Request) -> web.StreamResponse:
    """Every pass-through route: check the key and its limits, relay the request to a deployment of the prefix."""
    proxy = proxy_of(request)
    prefix = prefix_of(request)
    tail = request.match_info.get("tail", "")
    ctx = RequestContext(request, CALL_TYPE, tail, route_label(prefix, tail))
    entry = ctx.caller
    check_key_state(proxy, entry, time.time())
    model = pick_model(proxy, entry, prefix, request)
    request["litemaas_model"] = ctx.model = model
    deps = proxy.router.candidates(model)
    if not deps:
        raise ProxyError(404, f"No deployment for model={model}", "not_found_error", "model")
    await check_limits(proxy, ctx)
    try:
        return await relay(proxy, ctx, deps)
    finally:
        release_limits(proxy, ctx)


async def relay(proxy, ctx: RequestContext, deps: list) -> web.StreamResponse:
    """Send the request to the deployments in order until one answers; only a refused connection moves on."""
    router, settings = proxy.router, proxy.settings
    request, model, tail = ctx.request, ctx.model, ctx.upstream_path
    headers = {k: v for k, v in request.headers.items() if k.lower() not in DROP_REQUEST}
    if request.content_length is not None:
        headers["Content-Length"] = str(request.content_length)
    has_body = request.body_exists
    last_error = None
    for dep in deps[: 1 + settings.num_retries]:
        if dep.api_key:
            headers["Authorization"] = f"Bearer {dep.api_key}"
            headers["X-Api-Key"] = dep.api_key
        else:
            headers.pop("Authorization", None)
            headers.pop("X-Api-Key", None)
        url = upstream_url(dep.api_base, tail, request.query_string)
        timeout = aiohttp.ClientTimeout(total=dep.timeout or settings.request_timeout, sock_connect=settings.connect_timeout)
        router.acquire(dep)
        try:
            upstream = await session(request.app, settings).request(request.method, url, data=request.content if has_body else None,
                                                                    headers=headers, timeout=timeout, allow_redirects=False)
        except aiohttp.ClientConnectorError as exc:
            # Nothing of the body has been read yet: another deployment may take the request.
            router.release(dep)
            router.report_failure(dep, "connection", f"{type(exc).__name__}: {exc}")
            last_error = ProxyError(503, f"Pass-through upstream unavailable: {dep.api_base} (model={model}): {exc}", "upstream_unavailable", "None")
            continue
        except asyncio.TimeoutError:
            router.release(dep)
            router.report_failure(dep, "timeout")
            last_error = ProxyError(504, f"Pass-through upstream timed out after {timeout.total}s: {dep.api_base} (model={model})", "timeout",
                                    "None")
            break
        except aiohttp.ClientError as exc:
            router.release(dep)
            router.report_failure(dep, "connection", f"{type(exc).__name__}: {exc}")
            last_error = ProxyError(502, f"Pass-through upstream failed: {dep.api_base} (model={model}): {type(exc).__name__}: {exc}",
                                    "upstream_error", "None")
            break
        except BaseException:  # cancelled: keep the in-flight count right
            router.release(dep)
            raise
        try:
            return await stream_back(proxy, ctx, dep, upstream)
        finally:
            upstream.release()
            router.release(dep)
    metrics.failure(ctx.caller, model, ctx.route, last_error.status)
    record(proxy, ctx, deps[0], last_error.status)
    raise last_error


async def stream_back(proxy, ctx: RequestContext, dep, upstream) -> web.StreamResponse:
    """The upstream answer streamed back as it comes: status, headers (less hop-by-hop ones) and body."""
    router = proxy.router
    request, model = ctx.request, ctx.model
    ctx.deployment = dep
    status = upstream.status
    if status >= 500:
        router.report_failure(dep, str(status), f"HTTP {status}")
    else:
        router.report_success(dep, model)
    resp = web.StreamResponse(status=status, reason=upstream.reason)
    for k, v in upstream.headers.items():
        if k.lower() not in DROP_RESPONSE:
            resp.headers.add(k, v)
    resp.headers["x-litellm-model-id"] = dep.id
    resp.headers["x-litellm-model-group"] = dep.model_name
    if upstream.content_length is not None:
        resp.content_length = upstream.content_length
    await resp.prepare(request)
    try:
        async for chunk in upstream.content.iter_chunked(65536):
            await resp.write(chunk)
        await resp.write_eof()
    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
        pass  # the caller went away
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        router.report_failure(dep, "connection", f"{type(exc).__name__}: {exc}")
        status = 502
    if status < 400:
        metrics.success(ctx.caller, model, ctx.route, 0, 0, 0.0, ctx.elapsed())
    else:
        metrics.failure(ctx.caller, model, ctx.route, status)
    record(proxy, ctx, dep, status)
    return resp
