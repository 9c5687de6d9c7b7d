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

Tenants: one ownership rule (:func:`may_act_on`) for every ``KEY`` route that reads or lists rows of keys and
users. A key may act on itself; a key with a ``user_id`` on the rows of that user (its other keys, its spend, its
user row); nothing else. The master key and proxy admins act on everything. A route declares the query parameters
that name a tenant's row (``targets``): the middleware checks each one given against the rule (:func:`check_targets`)
before the handler runs, and refuses with 403. A route that lists rows (``listing``) is given only the caller's:
its handler adds :func:`scope` to its filters. tests/proxy/test_isolation.py walks every ``KEY`` route of this
table with keys of different tenants.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable, Optional

from aiohttp import web

from litemaas_proxy.api.common import pool, proxy_of
from litemaas_proxy.auth import abbreviate, hash_if_needed
from litemaas_proxy.errors import ProxyError
from litemaas_proxy.queries import keys as key_queries

PUBLIC = "public"
KEY = "key"
ADMIN = "admin"
LEVELS = (PUBLIC, KEY, ADMIN)
KEY_ROW = "key row"  # the parameter is a key (sk-...) or its hash
USER_ROW = "user row"  # the parameter is a user_id

ERROR_SHAPES = ("openai", "anthropic")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str  # GET, POST, PATCH, or * (pass-through: every method)
    path: str  # aiohttp path template
    handler: Handler
    auth: str  # PUBLIC, KEY or ADMIN
    targets: tuple = ()  # (query parameter, KEY_ROW or USER_ROW): parameters naming a tenant's row, checked before the handler
    listing: bool = False  # lists rows of keys, users or spend: a caller that is not an admin gets only its own (scope())
    errors: str = "openai"  # the error shape: "openai" (LiteLLM's {"error": {...}}) or "anthropic" ({"type": "error", "error": {...}})

    def __post_init__(self):
        if self.auth not in LEVELS:
            raise ValueError(f"route {self.method} {self.path}: auth level {self.auth!r} is not one of {LEVELS}")
        if self.errors not in ERROR_SHAPES:
            raise ValueError(f"route {self.method} {self.path}: error shape {self.errors!r} is not one of {ERROR_SHAPES}")
        for param, kind in self.targets:
            if kind not in (KEY_ROW, USER_ROW):
                raise ValueError(f"route {self.method} {self.path}: target {param!r} is of kind {kind!r}, not {KEY_ROW!r} or {USER_ROW!r}")


TABLE_KEY = web.AppKey("litemaas_routes", list)
LEVEL_KEY = web.AppKey("litemaas_route_levels", dict)
DECLARED_KEY = web.AppKey("litemaas_declared_routes", dict)  # aiohttp route -> Route


def install(app: web.Application, routes: list) -> None:
    """Register ``routes`` on ``app`` and remember the level of every aiohttp route they create (GET adds HEAD)."""
    if TABLE_KEY not in app:
        app[TABLE_KEY] = []
    if LEVEL_KEY not in app:
        app[LEVEL_KEY] = {}
    if DECLARED_KEY not in app:
        app[DECLARED_KEY] = {}
    levels, declared = app[LEVEL_KEY], app[DECLARED_KEY]
    for route in routes:
        if route.method == "GET":
            added = app.router.add_get(route.path, route.handler)
        else:
            added = app.router.add_route(route.method, route.path, route.handler)
        for aio_route in added.resource:
            levels.setdefault(aio_route, route.auth)
            declared.setdefault(aio_route, route)
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


# ---------------------------------------------------------------------------- tenants: the one ownership rule

NOT_OWNER = "You are not allowed to access {what}: a key may act only on itself, and a key of a user on that user's keys and spend."


def may_act_on(entry, token: Optional[str] = None, user_id: Optional[str] = None) -> bool:
    """Whether ``entry`` (the caller) may act on a row of key ``token`` owned by ``user_id`` (or on user ``user_id``)."""
    if entry.is_admin:
        return True
    if token is not None and token == entry.token:
        return True
    own_user = entry.key.get("user_id")
    return own_user is not None and user_id is not None and user_id == own_user


def scope(entry) -> Optional[dict]:
    """The rows a caller that is not an admin may list: ``{"user_id": ...}`` (a key of a user) or ``{"token": ...}``
    (a key without a user: itself only); None for the master key and proxy admins (everything)."""
    if entry.is_admin:
        return None
    own_user = entry.key.get("user_id")
    return {"user_id": own_user} if own_user is not None else {"token": entry.token}


def scope_filters(request: web.Request, token_column: str, user_column: str) -> list:
    """The (column, value) filters a listing handler adds so that a caller that is not an admin sees only its own rows."""
    own = scope(request["litemaas_caller"])
    if own is None:
        return []
    return [(user_column, own["user_id"])] if "user_id" in own else [(token_column, own["token"])]


def not_owner(what: str) -> ProxyError:
    return ProxyError(403, NOT_OWNER.format(what=what), "auth_error", "None")


async def check_targets(request: web.Request, route: Route, entry) -> None:
    """Refuse (403) a request whose query names a key or user the caller may not act on; before the handler runs.
    A key that does not exist is refused the same way (its absence is not revealed)."""
    if entry.is_admin:
        return
    for param, kind in route.targets:
        value = request.query.get(param)
        if not value:
            continue
        if kind == USER_ROW:
            if not may_act_on(entry, user_id=value):
                raise not_owner(f"user {value}")
            continue
        token = hash_if_needed(value)
        if token == entry.token:
            continue
        owner = None
        if entry.key.get("user_id") is not None:
            row = await key_queries.get(pool(proxy_of(request)), token)
            owner = row.get("user_id") if row is not None else None
        if not may_act_on(entry, token=None, user_id=owner):
            raise not_owner(f"key {abbreviate(value)}")
