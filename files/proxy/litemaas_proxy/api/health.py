"""Health and information routes (no credential): /health/liveliness, /health/liveness, /health/readiness, /."""

from __future__ import annotations

from aiohttp import web

from litemaas_proxy import __version__, db
from litemaas_proxy.api.common import proxy_of
from litemaas_proxy.api.routes import PUBLIC, Route
from litemaas_proxy.errors import json_response

LITELLM_VERSION = "1.81.0"


async def liveliness(request: web.Request) -> web.Response:
    return json_response("I'm alive!")


async def readiness(request: web.Request) -> web.Response:
    proxy = proxy_of(request)
    status = {"status": "healthy", "db": "Not connected", "cache": None, "litellm_version": LITELLM_VERSION, "proxy_version": __version__,
              "success_callbacks": [], "use_aiohttp_transport": True}
    healthy = True
    if proxy.settings.database_url:
        if proxy.pool is None:
            healthy = False
            status["db"] = "Not connected"
        else:
            try:
                await db.ping(proxy.pool, timeout=2)
                status["db"] = "connected"
            except Exception as exc:
                healthy = False
                status["db"] = f"error: {type(exc).__name__}"
    if proxy.redis is not None:
        try:
            await proxy.redis.ping()
            status["cache"] = "redis"
        except Exception as exc:
            healthy = False
            status["cache"] = f"redis error: {type(exc).__name__}"
    status["spend_records_buffered"] = proxy.spend.pending_records
    # Reported, not fatal: keys with a shared alias and models whose parameters do not open keep the rest running.
    status["duplicate_key_aliases"] = proxy.duplicate_aliases
    status["unusable_models"] = proxy.unusable_models
    if not healthy:
        status["status"] = "unhealthy"
        return json_response(status, status=503)
    return json_response(status)


async def root(request: web.Request) -> web.Response:
    return json_response({"message": "LiteMaaS proxy", "version": __version__, "docs": "/health/readiness"})


ROUTES = [
    Route("GET", "/health/liveliness", liveliness, PUBLIC),
    Route("GET", "/health/liveness", liveliness, PUBLIC),
    Route("GET", "/health/readiness", readiness, PUBLIC),
    Route("GET", "/", root, PUBLIC),
]
