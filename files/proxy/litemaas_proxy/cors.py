"""CORS: pages on other origins (the portal's Chat Playground) may call the proxy from a browser, as LiteLLM's proxy allows.

* A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) on any path is answered 204 by the
  application's middleware before anything else runs: no key is needed, and nothing counts against limits or spend.
  It allows every method and the headers the browser asks for, for ``MAX_AGE`` seconds.
* Every other answer to a request that carries ``Origin`` gets ``Access-Control-Allow-Origin`` and
  ``Access-Control-Expose-Headers`` (the answer's own headers, so a page can read ``x-litellm-*`` and the
  rate-limit headers). They are added when the answer is prepared (``on_response_prepare``), so errors (401, 429,
  5xx) and streamed answers carry them too, and the browser shows the proxy's own error message.
* ``cors_allow_origins`` (``LITEMAAS_CORS_ALLOW_ORIGINS``) is ``*`` by default: any origin, answered with ``*``.
  A list of origins allows only those; the origin is then echoed, with ``Vary: Origin``. A request from another
  origin is still answered (CORS is enforced by the browser), without the headers that would let a page read it;
  its preflight gets 403.

Credentials (cookies) are not allowed: pages send the key in ``Authorization``, which needs none.
"""

from __future__ import annotations

from typing import Optional

from aiohttp import web

from litemaas_proxy.config import ANY_ORIGIN as ANY
from litemaas_proxy.errors import ProxyError

ALLOW_METHODS = "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
MAX_AGE = "600"
# Headers a page can always read (CORS-safelisted) and headers that are about the connection, not the answer.
NOT_EXPOSED = frozenset(("cache-control", "content-language", "content-length", "content-type", "expires", "last-modified", "pragma",
                         "date", "server", "connection", "keep-alive", "transfer-encoding", "vary", "set-cookie", "allow"))


class Cors:
    def __init__(self, origins: tuple):
        self.any = ANY in origins
        self.origins = frozenset(origins)

    def allow_origin(self, origin: str) -> Optional[str]:
        """The Access-Control-Allow-Origin value for ``origin``, or None when it is not allowed."""
        if self.any:
            return ANY
        return origin if origin.lower() in self.origins else None

    @staticmethod
    def is_preflight(request: web.Request) -> bool:
        return request.method == "OPTIONS" and "Origin" in request.headers and "Access-Control-Request-Method" in request.headers

    def preflight(self, request: web.Request) -> web.Response:
        origin = request.headers["Origin"]
        allowed = self.allow_origin(origin)
        if allowed is None:
            return ProxyError(403, f"CORS: origin {origin!r} is not allowed. Allowed origins: {', '.join(sorted(self.origins))} "
                                   "(cors_allow_origins, LITEMAAS_CORS_ALLOW_ORIGINS).", "auth_error", "Origin").response()
        headers = {"Access-Control-Allow-Origin": allowed, "Access-Control-Allow-Methods": ALLOW_METHODS, "Access-Control-Max-Age": MAX_AGE}
        asked = request.headers.get("Access-Control-Request-Headers")
        if asked:
            headers["Access-Control-Allow-Headers"] = asked
        if allowed != ANY:
            headers["Vary"] = "Origin"
        return web.Response(status=204, headers=headers)

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        """Add the CORS headers to every answer to a browser request (errors and streams included)."""
        origin = request.headers.get("Origin")
        if origin is None or "Access-Control-Allow-Methods" in response.headers:
            return  # not a browser's cross-origin request, or a preflight answer (complete already)
        allowed = self.allow_origin(origin)
        if allowed is None:
            response.headers.popall("Access-Control-Allow-Origin", None)  # e.g. copied from a pass-through upstream
            return
        response.headers["Access-Control-Allow-Origin"] = allowed
        if allowed != ANY:
            vary = response.headers.get("Vary")
            if not vary:
                response.headers["Vary"] = "Origin"
            elif "origin" not in vary.lower():
                response.headers["Vary"] = vary + ", Origin"
        exposed = sorted({n.lower() for n in response.headers if not n.lower().startswith("access-control-")} - NOT_EXPOSED)
        if exposed:
            response.headers["Access-Control-Expose-Headers"] = ", ".join(exposed)
