"""Application state, startup/shutdown, background tasks and the aiohttp application."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Optional

import asyncpg
import orjson
from aiohttp import web

from litemaas_proxy import db, metrics
from litemaas_proxy.api import body_too_large, max_request_size, routes
from litemaas_proxy.api.routes import ADMIN, PUBLIC, check_targets, not_admin
from litemaas_proxy.auth import MASTER, KeyCache, LookupBatcher, credential_from_headers, hash_token, is_master
from litemaas_proxy.config import Settings
from litemaas_proxy.cors import Cors
from litemaas_proxy.errors import DetailError, ProxyError
from litemaas_proxy.fastredis import FastRedis
from litemaas_proxy.limits import Limiter
from litemaas_proxy.queries import models as model_queries
from litemaas_proxy.queries import spend as spend_queries
from litemaas_proxy.routing import Deployment, Router, config_model_id
from litemaas_proxy.sealed import ParamSealer, SealedValueError
from litemaas_proxy.spend import SpendWriter, reset_budgets
from litemaas_proxy.translate.messages import error_body
from litemaas_proxy.upstream import UpstreamClient

log = logging.getLogger("litemaas_proxy")
INVALIDATE_CHANNEL = "litemaas:invalidate"
CLOSE_TIMEOUT = 2.0  # seconds for each shutdown step after the final spend flush


class Proxy:
    """Everything a request handler needs; one per process."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.pool = None
        self.redis = None
        self.upstream: Optional[UpstreamClient] = None
        self.router = Router(settings.cooldown_time, settings.allowed_fails)
        # Reloads run one at a time: a slow reload that read the table before a change must not
        # overwrite the list of a later one (each reload starts its read after the previous finished).
        self.models_lock = asyncio.Lock()
        self.spend = SpendWriter(settings.spend_flush_interval, settings.spill_dir, memory_max=settings.spend_memory_max)
        self.spend.enabled = bool(settings.database_url)
        self.cors = Cors(settings.cors_allow_origins)
        self.sealer = ParamSealer(settings.salt_key or settings.master_key)
        self.unusable_models: dict = {}  # model name -> why it is not served (parameters sealed under another key)
        self.duplicate_aliases: dict = {}  # key alias -> number of keys holding it (a database LiteLLM wrote can have them)
        self.lookups = LookupBatcher(self._load_keys)
        self.cache = KeyCache(self.lookups.load, settings.key_cache_ttl, settings.key_stale_max)
        self.limiter: Optional[Limiter] = None
        self.fast_redis: Optional[FastRedis] = None
        self.config_deployments: list = []
        self.tasks: list = []
        self.stop_event = asyncio.Event()
        self.db_ready = asyncio.Event()
        self.started = time.time()

    # ------------------------------------------------------------ auth
    async def _load_keys(self, tokens: list) -> dict:
        """token -> (key, user, team, spend marks) for the keys found, in one query (LookupBatcher calls this)."""
        if self.pool is None:
            raise ProxyError(503, "Database not available yet, retry shortly.", "no_db_connection", "None")
        marks = {token: self.spend.mark("k", token) for token in tokens}
        try:
            if len(tokens) == 1:
                token = tokens[0]
                row = await db.fetch_auth(self.pool, token)
                rows = {} if row is None else {token: row}
            else:
                rows = await db.fetch_auth_many(self.pool, tokens)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise ProxyError(503, f"Database unavailable, cannot verify the key: {type(exc).__name__}", "no_db_connection", "None")
        out = {}
        for token, (key, user, team) in rows.items():
            out[token] = (key, user, team, {"k": marks[token], "u": self.spend.mark("u", key.get("user_id")),
                                            "t": self.spend.mark("t", key.get("team_id"))})
        return out

    async def authenticate(self, request: web.Request, allow_master: bool = True):
        entry = await self._caller(request, allow_master)
        request["litemaas_caller"] = entry  # for the access log
        return entry

    async def _caller(self, request: web.Request, allow_master: bool):
        presented = credential_from_headers(request.headers)
        master_key = self.settings.master_key
        if presented is None:
            if master_key is None:
                return MASTER
            raise ProxyError(401, "Authentication Error, No api key passed in.", "auth_error", "None")
        if master_key is not None and not presented.isascii():
            # Header bytes that are not ASCII (aiohttp keeps undecodable ones as surrogates): no key looks like that.
            raise ProxyError(401, "Authentication Error, the API key must be ASCII text.", "auth_error", "None")
        if master_key is None or (allow_master and is_master(presented, master_key)):
            return MASTER
        if not presented.startswith("sk-"):
            # The value is not repeated: it may be some other secret sent by mistake, and error bodies end up in logs.
            raise ProxyError(401, f"Authentication Error, LiteLLM Virtual Key expected. Received a value of {len(presented)} characters, "
                             "expected to start with 'sk-'.",
                             "auth_error", "None")
        token = hash_token(presented)
        entry = await self.cache.get(token)
        if entry is None:
            raise ProxyError(401, "Authentication Error, Invalid proxy server token passed. "
                             f"Received API Key = sk-...{presented[-4:]}, Key Hash (Token) ={token}. "
                             "Unable to find token in cache or `LiteLLM_VerificationTokenTable`", "token_not_found_in_db", "None")
        return entry

    # ------------------------------------------------------------ invalidation across replicas
    async def publish(self, message: str) -> None:
        self.apply_invalidation(message)
        if self.redis is not None:
            try:
                await self.redis.publish(INVALIDATE_CHANNEL, message)
            except Exception as exc:
                log.warning("could not publish cache invalidation (%s); other replicas catch up within %ss", exc, self.settings.key_cache_ttl)

    def apply_invalidation(self, message: str) -> None:
        kind, dummy, ident = message.partition(":")
        if kind == "key":
            self.cache.invalidate(ident)
        elif kind == "user":
            self.cache.invalidate_where("user_id", ident)
        elif kind == "team":
            self.cache.invalidate_where("team_id", ident)
        elif kind == "models":
            asyncio.get_running_loop().create_task(self.reload_models())
        else:
            self.cache.invalidate()

    async def _listen(self) -> None:
        # A dedicated connection; after a reconnect everything cached is reloaded (messages may have been missed).
        await self.fast_redis.subscribe_forever(INVALIDATE_CHANNEL, self.apply_invalidation, on_reconnect=self.cache.invalidate)

    # ------------------------------------------------------------ models
    def build_config_deployments(self) -> list:
        out = []
        for entry in self.settings.model_list:
            if not isinstance(entry, dict) or not entry.get("model_name"):
                continue
            info = dict(entry.get("model_info") or {})
            model_id = str(info.get("id") or config_model_id(entry))
            out.append(Deployment(model_id, str(entry["model_name"]), entry.get("litellm_params") or {}, info, False))
        return out

    async def reload_models(self) -> None:
        async with self.models_lock:
            rows = []
            if self.pool is not None:
                try:
                    rows = await model_queries.all_models(self.pool)
                except Exception as exc:
                    log.warning("could not load models from the database: %s", exc)
                    return
            deps = []
            unusable = {}
            for r in rows:
                try:
                    deps.append(Deployment(r["model_id"], r["model_name"], self.sealer.open(r["litellm_params"], r["model_name"]),
                                           r["model_info"] or {}, True))
                except SealedValueError as exc:  # never served with ciphertext as its parameters, never sealed again
                    unusable[r["model_name"]] = str(exc)
                    if self.unusable_models.get(r["model_name"]) != str(exc):
                        log.error("not serving database model %s: %s", r["model_id"], exc)
                except Exception as exc:  # one unusable row must not take the other models down
                    log.warning("skipping database model %s (%s): %s: %s", r["model_id"], r["model_name"], type(exc).__name__, exc)
            self.router.set_deployments(self.config_deployments, deps)
            self.unusable_models = unusable

    async def _poll_models(self) -> None:
        while not self.stop_event.is_set():
            await asyncio.sleep(self.settings.model_reload_interval)
            await self.reload_models()

    async def _budget_resets(self) -> None:
        """Budget resets, then the roll-up of spend into LiteLLM's daily tables (every day of this stint the first time)."""
        first_rollup = True
        while not self.stop_event.is_set():
            await asyncio.sleep(self.settings.budget_reset_interval)
            if self.pool is None:
                continue
            try:
                if await reset_budgets(self.pool, self.settings.budget_timezone):
                    await self.publish("all:")
            except Exception as exc:
                log.warning("budget reset failed: %s", exc)
            try:
                async with self.pool.acquire() as conn:
                    await spend_queries.roll_up_daily(conn, since_stint_start=first_rollup)
                first_rollup = False
            except Exception as exc:
                log.warning("daily spend roll-up failed: %s", exc)

    async def _connect_db(self) -> None:
        pool = await db.wait_for_db(self.settings.database_url, self.settings.db_pool_size, self.stop_event)
        if pool is None:
            return
        if self.stop_event.is_set() and self.pool is not None:  # stopping: the final flush connected by itself
            pool.terminate()
            return
        self.pool = pool
        self.spend.pool = pool
        try:
            self.duplicate_aliases = await db.duplicate_aliases(pool)
        except Exception as exc:  # a report only: never keeps the proxy from starting
            log.warning("could not look for duplicate key aliases: %s", exc)
        await self.seal_plain_models()
        await self.reload_models()
        self.db_ready.set()

    async def seal_plain_models(self) -> None:
        """Seal model parameters stored in plain text (rows written before sealing, or by a proxy without a key).
        Each update applies only if the row is unchanged, so replicas starting together do it once."""
        if self.sealer.box is None:
            return
        try:
            rows = await model_queries.all_params(self.pool)
            sealed = 0
            for r in rows:
                params = r["litellm_params"] or {}
                plain = self.sealer.plain_values(params) if isinstance(params, dict) else []
                if not plain:
                    continue
                sealed += await model_queries.replace_params(self.pool, r["model_id"], self.sealer.seal(params, only=plain), params)
            if sealed:
                log.info("sealed the parameters of %d model(s) stored in plain text", sealed)
        except Exception as exc:  # never keep the proxy from starting; the rows still load as they are
            log.warning("could not seal model parameters stored in plain text: %s", exc)

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.spend.open_journal()  # before the first request: every answer's spend is journaled
        self.config_deployments = self.build_config_deployments()
        self.router.set_deployments(self.config_deployments, [])
        self.upstream = UpstreamClient(self.settings.connect_timeout)
        if self.settings.redis_url:
            self.fast_redis = FastRedis(self.settings.redis_url)
            self.redis = self.fast_redis  # publish, readiness ping
            self.limiter = Limiter(self.fast_redis, self.settings.rate_limit_window, failure_mode=self.settings.redis_failure_mode,
                                   lease_ttl=self.settings.parallel_lease_ttl)
            self.tasks.append(asyncio.get_running_loop().create_task(self._listen()))
            self.tasks.append(asyncio.get_running_loop().create_task(self.limiter.keep_alive()))
        if self.settings.database_url:
            connect = asyncio.get_running_loop().create_task(self._connect_db())
            self.tasks.append(connect)
            try:  # usually ready at once; otherwise keep starting and connect in the background
                await asyncio.wait_for(asyncio.shield(connect), 5.0)
            except asyncio.TimeoutError:
                log.warning("database not reachable yet; serving health endpoints and retrying in the background")
        self.tasks.append(asyncio.get_running_loop().create_task(self.spend.run()))
        self.tasks.append(asyncio.get_running_loop().create_task(self._poll_models()))
        self.tasks.append(asyncio.get_running_loop().create_task(self._budget_resets()))

    async def stop(self) -> None:
        """Shutdown within a fixed budget whatever PostgreSQL and Redis do: the final spend flush gets
        ``shutdown_flush_timeout`` (the rest is spilled to disk), every later step CLOSE_TIMEOUT, and
        connections that do not close in time are dropped."""
        self.stop_event.set()
        budget = self.settings.shutdown_flush_timeout
        if self.pool is None and self.settings.database_url and self.spend.pending_records and budget > 0:
            # Not connected yet (the database came back between this process's retries): one try, within half the
            # budget, so the final flush writes what this process holds (adopted journals too) instead of leaving it
            # on a disk that may go with the pod.
            budget /= 2
            self.pool = self.spend.pool = await db.connect_once(self.settings.database_url, budget)
        await self.spend.stop(timeout=budget)
        tasks = self.tasks + list(self.lookups.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT)
            for task in tasks:
                if task.done() and not task.cancelled():
                    task.exception()  # retrieved: ended with an error while stopping, nothing to report
        if self.upstream is not None:
            await _within(self.upstream.close(), "upstream connections")
        if self.fast_redis is not None:
            await _within(self.fast_redis.close(), "Redis connections")
        if self.pool is not None and not await _within(self.pool.close(), "database connections"):
            self.pool.terminate()


async def _within(closing, what: str) -> bool:
    """Run ``closing`` for at most CLOSE_TIMEOUT seconds; past that it is cancelled and not waited for."""
    task = asyncio.ensure_future(closing)
    done, dummy = await asyncio.wait({task}, timeout=CLOSE_TIMEOUT)
    if not done:
        task.cancel()
        log.warning("%s did not close within %.0fs; dropping them", what, CLOSE_TIMEOUT)
        return False
    if task.exception() is not None:
        log.warning("closing %s failed: %s", what, task.exception())
        return False
    return True


def make_middleware(proxy: Proxy, levels: dict, declared: dict):
    """The application's one middleware: a browser's CORS preflight answered first (no key, no limits, no spend),
    then the route table's auth check (before the handler reads anything), then the handler, with every error
    turned into LiteLLM's error shape."""

    @web.middleware
    async def middleware(request: web.Request, handler):
        if request.method == "OPTIONS" and Cors.is_preflight(request):
            return proxy.cors.preflight(request)
        try:
            level = levels.get(request.match_info.route)
            if level is not None and level is not PUBLIC:
                request["litemaas_t0"] = time.monotonic()
                entry = await proxy.authenticate(request)
                if level is ADMIN and not entry.is_admin:
                    raise not_admin(request, entry)
                route = declared[request.match_info.route]
                if route.targets and not entry.is_admin:
                    await check_targets(request, route, entry)
            return await handler(request)
        except (ProxyError, DetailError) as exc:
            return error_response(request, declared, exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return error_response(request, declared, http_error(request, exc))
        except asyncio.CancelledError:
            raise
        except asyncpg.DataError as exc:
            # A value PostgreSQL cannot store (NUL character, number out of range, ...): the request is at fault.
            # The transaction around the write is rolled back, so nothing was stored.
            return ProxyError(400, f"Invalid value in the request: {exc}", "bad_request_error", "None").response()
        except Exception as exc:
            log.exception("unhandled error on %s %s", request.method, request.path)
            return ProxyError(500, f"Internal Server Error, {type(exc).__name__}: {exc}", "internal_server_error", "None").response()

    return middleware


def error_response(request: web.Request, declared: dict, exc) -> web.Response:
    """The error in the shape of the route's API: Anthropic's on the Messages routes, LiteLLM's everywhere else."""
    route = declared.get(request.match_info.route)
    if route is None:  # no route matched this method: the shape of the routes at this path
        route = next((r for r in declared.values() if r.path == request.path), None)
    if route is not None and route.errors == "anthropic" and isinstance(exc, ProxyError):
        return web.Response(status=exc.status, body=orjson.dumps(error_body(exc.status, exc.message)), content_type="application/json",
                            headers=exc.headers)
    return exc.response()


def http_error(request: web.Request, exc: web.HTTPException) -> ProxyError:
    """aiohttp's own errors (unknown route, wrong method, body too large, bad request line) in the LiteLLM error shape."""
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return body_too_large(request.client_max_size)
    if exc.status == 404:
        return ProxyError(404, f"Route not found: {request.method} {request.path}", "not_found_error", "None")
    if exc.status == 405:
        allowed = ", ".join(sorted(getattr(exc, "allowed_methods", ()) or ()))
        return ProxyError(405, f"Method Not Allowed: {request.method} {request.path}" + (f" (allowed: {allowed})" if allowed else ""),
                          "invalid_request_error", "None", {"Allow": allowed} if allowed else None)
    etype = "invalid_request_error" if exc.status < 500 else "internal_server_error"
    return ProxyError(exc.status, exc.text or exc.reason, etype, "None")


def create_app(settings: Settings, worker: Optional[metrics.Worker] = None) -> web.Application:
    from litemaas_proxy import guardrails, routing
    from litemaas_proxy.api import activity, data, health, keys, model_apis, models, openapi, passthrough, teams, users

    proxy = Proxy(settings)
    levels: dict = {}
    declared: dict = {}
    app = web.Application(middlewares=[make_middleware(proxy, levels, declared)], client_max_size=max_request_size(settings))
    app["proxy"] = proxy
    app.on_response_prepare.append(proxy.cors.on_prepare)
    app[routes.LEVEL_KEY] = levels
    app[routes.DECLARED_KEY] = declared
    routing.setup(proxy)
    guardrails.setup(app, proxy)
    routes.install(app, openapi.ROUTES)
    for module in (data, model_apis, keys, users, teams, models, activity, health):
        routes.install(app, module.ROUTES)
    passthrough.setup(app)
    passthrough_routes = passthrough.routes(settings)
    routes.install(app, passthrough_routes)
    # Every answer of the LLM (POST) and pass-through routes is counted, with the pod's numbers at /metrics.
    metrics.install(app, proxy, [r for r in data.ROUTES + model_apis.ROUTES if r.method == "POST"] + passthrough_routes, worker)

    async def on_startup(_app):
        await proxy.start()

    async def on_cleanup(_app):
        await proxy.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app
