"""The caller's event stream of a relayed request: opening it, and ending it when the upstream stream fails after the
headers were sent (reported to the router and the metrics, nothing charged, the error told in-band). Shared by
``relay.relay_stream`` (OpenAI-shaped APIs) and ``model_apis.relay_stream`` (Responses, Messages)."""

from __future__ import annotations

from typing import Callable

import aiohttp
from aiohttp import web

from litemaas_proxy import metrics
from litemaas_proxy.api.context import RequestContext
from litemaas_proxy.errors import ProxyError
from litemaas_proxy.upstream import UpstreamTimeout

CLIENT_GONE = (ConnectionResetError, aiohttp.ClientConnectionResetError)


async def open_stream(ctx: RequestContext, headers: dict) -> web.StreamResponse:
    """The caller's event stream, sent with ``headers`` (the cost is known only at the end, so not among them)."""
    headers.pop("x-litellm-response-cost", None)
    headers["Cache-Control"] = "no-cache"
    headers["Content-Type"] = "text/event-stream"
    resp = web.StreamResponse(status=200, headers=headers)
    await resp.prepare(ctx.request)
    return resp


def stream_failure(exc: Exception, dep, model: str) -> ProxyError:
    """The error of an upstream stream that timed out (504) or broke off (502)."""
    if isinstance(exc, UpstreamTimeout):
        return ProxyError(504, f"Upstream model server timed out during the stream: {dep.api_base} (model={model})", "timeout", "None")
    return ProxyError(502, f"Upstream model server broke off the stream: {dep.api_base} (model={model}): {type(exc).__name__}",
                      "upstream_error", "None")


async def end_failed_stream(proxy, ctx: RequestContext, resp: web.StreamResponse, failure: ProxyError, event: bytes, client_gone: bool,
                            charge_nothing: Callable[[], None]) -> web.StreamResponse:
    """Headers are sent already: report the failure to the router and the metrics, record the request with nothing
    charged for its incomplete answer (``charge_nothing``), and tell a caller still there in-band (``event``)."""
    proxy.router.report_failure(ctx.deployment, str(failure.status), failure.message)
    metrics.failure(ctx.caller, ctx.model, ctx.route, failure.status)
    charge_nothing()
    if not client_gone:
        try:
            await resp.write(event)
            await resp.write_eof()
        except CLIENT_GONE:
            pass
    return resp
