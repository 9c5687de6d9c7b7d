"""HTTP routes: ``data`` (OpenAI-compatible data plane) and ``management`` (LiteLLM admin API).

Shared here: the request body size limit. ``general_settings.max_request_size_mb`` in the config file (LiteLLM's
name) or the environment variable ``LITEMAAS_MAX_REQUEST_SIZE_MB`` sets it (default 64 MB); a larger JSON body gets
413 with the LiteLLM error shape. Pass-through routes stream their bodies and are not bound by it.
"""

from __future__ import annotations

import os

from aiohttp import web

from litemaas_proxy.errors import ProxyError

DEFAULT_MAX_REQUEST_SIZE_MB = 64.0


def max_request_size(settings, env=None) -> int:
    """The request body limit in bytes: config file first, then the environment, then the default."""
    env = os.environ if env is None else env
    general = (getattr(settings, "raw_config", None) or {}).get("general_settings") or {}
    for raw in (general.get("max_request_size_mb"), env.get("LITEMAAS_MAX_REQUEST_SIZE_MB")):
        if raw is None or raw == "":
            continue
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"max_request_size_mb must be a number of megabytes, got {raw!r}")
        if value <= 0:
            raise ValueError(f"max_request_size_mb must be greater than 0, got {raw!r}")
        return int(value * 1024 * 1024)
    return int(DEFAULT_MAX_REQUEST_SIZE_MB * 1024 * 1024)


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
