"""HTTP routes, one module per resource, each a list of routes with their auth level (``routes.py``, the route table):

* the data plane: ``data`` (OpenAI-compatible handlers: ``data.chat_completions`` for ``POST /v1/chat/completions``,
  ``data.completions``, ``data.embeddings``, ``data.list_models``, ``data.get_model``), the relay they share
  (``relay``: ``LlmApi``, ``call_upstream``, ``relay_json``, ``relay_stream``), ``passthrough`` (``/docling/...``:
  ``passthrough.forward``), ``checks`` (what a request must pass) and ``context`` (one request's state);
* the management plane, LiteLLM's admin API: ``keys``, ``users``, ``teams``, ``models``, ``activity`` (spend logs and
  daily activity) and ``health`` (health checks, ``/``), sharing ``common`` (request fields, paging, the pool);
* ``openapi`` (``GET /openapi.json``).

Their SQL lives in ``litemaas_proxy.queries``. Shared here: the request body size limit. ``general_settings.max_request_size_mb`` in the config file (LiteLLM's
name) or the environment variable ``LITEMAAS_MAX_REQUEST_SIZE_MB`` sets it (default 64 MB); a larger JSON body gets
413 with the LiteLLM error shape. Pass-through routes stream their bodies and are not bound by it.
"""

from __future__ import annotations

from aiohttp import web

from litemaas_proxy.errors import ProxyError


def max_request_size(settings) -> int:
    """The request body limit in bytes (``Settings.max_request_size_mb``)."""
    return settings.max_request_bytes


def body_too_large(limit: int, size=None) -> ProxyError:
    got = f"{size} bytes" if size is not None else f"more than {limit} bytes"
    return ProxyError(413, f"Request body too large: {got}. The limit is {limit} bytes ({limit / 1048576:g} MB, "
                           "general_settings.max_request_size_mb).", "request_too_large", "None")


async def read_body_bytes(request: web.Request) -> bytes:
    """The whole body, refused early (before reading) when Content-Length already exceeds the limit."""
    limit = request.client_max_size
    if limit and request.content_length is not None and request.content_length > limit:
        raise body_too_large(limit, request.content_length)
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise body_too_large(limit)
