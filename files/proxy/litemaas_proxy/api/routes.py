"""The route table: every route of the proxy with the credential it needs, and the one place that checks it.

Each API module exports ``ROUTES``, a plain list of :class:`Route` (method, path, handler, auth level).
:func:`install` registers them and remembers each aiohttp route's level; the application's one middleware
(``app.make_middleware``) authenticates the caller *before* the handler runs, so no handler reads a body from
a caller that is not allowed, and no handler checks credentials itself. The handler finds the caller in
``request["litemaas_caller"]`` (the access log reads it there too).

Levels:

* ``PUBLIC``: no credential (health, ``/``, ``/openapi.json``, ``/metrics`` unless configured otherwise);
* ``KEY``: any valid virtual key or the master key (data plane, pass-through, self-service info routes);
* ``ADMIN``: the master key or a key of a ``proxy_admin`` user (the management plane).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable

from aiohttp import web

from litemaas_proxy.errors import ProxyError

PUBLIC = "public"
KEY = "key"
ADMIN = "admin"
LEVELS = (PUBLIC, KEY, ADMIN)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str  # GET, POST, PATCH, or * (pass-through: every method)
    path: str  # aiohttp path template
    handler: Handler
    auth: str  # PUBLIC, KEY or ADMIN

    def __post_init__(self):
        if self.auth not in LEVELS:
            raise ValueError(f"route {self.method} {self.path}: auth level {self.auth!r} is not one of {LEVELS}")


TABLE_KEY = web.AppKey("litemaas_routes", list)
LEVEL_KEY = web.AppKey("litemaas_route_levels", dict)


def install(app: web.Application, routes: list) -> None:
    """Register ``routes`` on ``app`` and remember the level of every aiohttp route they create (GET adds HEAD)."""
    if TABLE_KEY not in app:
        app[TABLE_KEY] = []
    if LEVEL_KEY not in app:
        app[LEVEL_KEY] = {}
    levels = app[LEVEL_KEY]
    for route in routes:
        if route.method == "GET":
            added = app.router.add_get(route.path, route.handler)
        else:
            added = app.router.add_route(route.method, route.path, route.handler)
        for aio_route in added.resource:
            levels.setdefault(aio_route, route.auth)
        app[TABLE_KEY].append(route)


def table(app: web.Application) -> list:
    """The declared routes of ``app``, in registration order."""
    return list(app.get(TABLE_KEY) or [])


def not_admin(request: web.Request, entry) -> ProxyError:
    """The refusal of a valid key that is not a proxy admin on an ADMIN route (LiteLLM's words)."""
    user_id = entry.key.get("user_id") or "None"
    masked = user_id[:3] + "..." if len(user_id) > 3 else user_id
    role = (entry.user or {}).get("user_role") or "internal_user"
    return ProxyError(401, "Authentication Error, Only proxy admin can be used to generate, delete, update info for new keys/users/teams. "
                      f"Route={request.path}. Your role={role}. Your user_id={masked}", "auth_error", "None")
