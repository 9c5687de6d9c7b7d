"""A stand-in of the LiteMaaS portal backend (Fastify, Node: it cannot run here) for the two endpoints the docs and the
models role call, behaving as the real backend 0.4.0 does (../shared/reference/litemaas-portal.md §1.3, §2.1,
§2.3 "Models", §3 and the ``models`` table of §4):

- ``GET /api/v1/health``: the full check. ``database``: ``SELECT 1`` on the portal's database (``DATABASE_URL``);
  ``litellm``: ``GET {LITELLM_API_URL}/health/liveness`` (any 2xx is healthy, the body may be plain text); ``auth``: the
  admin keys and the JWT secret are configured. Answers ``{status, timestamp, checks: {database, litellm, auth}}``,
  503 when any check is unhealthy.
- ``POST /api/v1/models/sync`` body ``{forceUpdate?: bool, markUnavailable?: bool}`` (``models:write``): authenticated
  as the backend does (``Authorization: [Bearer ]<token>``; an ``ltm_admin_`` key must be one of ``ADMIN_API_KEYS``;
  anything else is an HS256 JWT of ``JWT_SECRET`` whose ``userId`` is an active user; 401 ``{"error":"[object
  Object]"}`` otherwise, 403 without the ``admin`` role). It reads ``GET {LITELLM_API_URL}/model/info`` with the master
  key in ``x-litellm-api-key``, keeps only the models in ``"LiteLLM_ProxyModelTable"`` when ``LITELLM_DATABASE_URL``
  is set, upserts them into the ``models`` table (``id`` = ``model_name``, ``litellm_model_id`` = ``model_info.id``),
  marks the available rows missing from the proxy unavailable (``markUnavailable``, default true) and answers
  ``{success, totalModels, newModels, updatedModels, unavailableModels, errors, syncedAt}``.

Every request is also recorded in ``calls`` as (path, ``Authorization`` header, JSON body), so a test can tell which
credential a role sent. What it leaves out: retries (the backend retries a failed proxy call 3 times, 1 s and 2 s
apart) and every other route (404 as Fastify answers).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import Optional

import psycopg2
import psycopg2.extras

UNAUTHORIZED = {"error": "[object Object]"}  # the backend's 401 body (an error-handler bug, §2.1)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def admin_keys_of(fake, namespace: str) -> list:
    """``ADMIN_API_KEYS`` as the backend gets them: Secret ``backend-secret`` of ``namespace`` on the in-memory API
    server ``fake`` (none while it does not exist), split at commas."""
    secret = fake.objects.get(("secrets", namespace, "backend-secret"))
    value = ((secret or {}).get("data") or {}).get("ADMIN_API_KEYS")
    return base64.b64decode(value).decode().split(",") if value else []


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PortalBackend:
    """``PortalBackend(database_url, litellm_api_url, litellm_api_key, admin_api_keys=[...]).start()``; ``.url``;
    ``.stop()``. ``admin_api_keys`` may also be a callable returning them (read at each request: the keys a deploy
    wrote into Secret ``backend-secret``); ``.litellm_api_url``, ``.litellm_api_key`` and ``.litellm_database_url`` may
    be changed while it runs (another proxy)."""

    def __init__(self, database_url: str, litellm_api_url: str, litellm_api_key: str, admin_api_keys=(), jwt_secret: str = "",
                 litellm_database_url: Optional[str] = None):
        self.database_url, self.litellm_api_url, self.litellm_api_key = database_url, litellm_api_url, litellm_api_key
        self.admin_api_keys, self.jwt_secret, self.litellm_database_url = admin_api_keys, jwt_secret, litellm_database_url
        self.calls: list = []  # (path, Authorization header, body)
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                backend.calls.append((self.path, self.headers.get("Authorization"), None))
                if self.path.split("?")[0] == "/api/v1/health":
                    self._send(*backend.health())
                else:
                    self._not_found("GET")

            def do_POST(self):  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                backend.calls.append((self.path, self.headers.get("Authorization"), body))
                if self.path.split("?")[0] != "/api/v1/models/sync":
                    return self._not_found("POST")
                if raw and "application/json" not in (self.headers.get("Content-Type") or ""):
                    return self._send(415, {"statusCode": 415, "code": "FST_ERR_CTP_INVALID_MEDIA_TYPE", "error": "Unsupported Media Type",
                                            "message": f"Unsupported Media Type: {self.headers.get('Content-Type')}"})
                if isinstance(body, str):
                    return self._send(400, {"statusCode": 400, "code": "FST_ERR_CTP_INVALID_JSON_BODY", "error": "Bad Request",
                                            "message": "Body is not valid JSON but content-type is set to 'application/json'"})
                status, answer = backend.authorize(self.headers.get("Authorization"))
                if status != 200:
                    return self._send(status, answer)
                try:
                    self._send(*backend.sync(body))
                except psycopg2.Error as exc:
                    self._send(500, {"error": {"code": "SYNC_FAILED", "message": f"Model synchronization failed: {str(exc).strip()}"}})

            def _not_found(self, method):
                self._send(404, {"message": f"Route {method}:{self.path} not found", "error": "Not Found", "statusCode": 404})

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> PortalBackend:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ---------------------------------------------------------------- the portal's database and the proxy

    def _sql(self, dsn: str, query: str, args=None):
        conn = psycopg2.connect(dsn, connect_timeout=5)
        try:
            with conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute(query, args)
                return cur.fetchall() if cur.description else cur.rowcount
        finally:
            conn.close()

    def _litellm(self, path: str) -> tuple:
        """(status, body) of a GET on the proxy with the master key as the backend sends it; status 0 when unreachable."""
        req = urllib.request.Request(self.litellm_api_url.rstrip("/") + path, method="GET",
                                     headers={"x-litellm-api-key": self.litellm_api_key, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            return 0, str(getattr(exc, "reason", exc))
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode("utf-8", "replace")

    # ---------------------------------------------------------------- GET /api/v1/health

    def health(self) -> tuple:
        checks = {}
        try:
            self._sql(self.database_url, "SELECT 1")
            checks["database"] = "healthy"
        except psycopg2.Error:
            checks["database"] = "unhealthy"
        status, dummy = self._litellm("/health/liveness")
        checks["litellm"] = "healthy" if 200 <= status < 300 else "unhealthy"
        checks["auth"] = "healthy" if self._admin_keys() or self.jwt_secret else "unhealthy"
        healthy = all(v == "healthy" for v in checks.values())
        return (200 if healthy else 503), {"status": "healthy" if healthy else "unhealthy", "timestamp": _now(), "checks": checks}

    # ---------------------------------------------------------------- authentication (fastify.authenticate, RBAC)

    def _admin_keys(self) -> list:
        keys = self.admin_api_keys() if callable(self.admin_api_keys) else self.admin_api_keys
        return [k.strip() for k in keys or [] if k.strip()]

    def authorize(self, header: Optional[str]) -> tuple:
        token = (header or "").strip()
        if token[:7].lower() == "bearer ":
            token = token[7:].strip()
        if not token:
            return 401, UNAUTHORIZED
        if token.startswith("ltm_admin_"):
            known = [k for k in self._admin_keys() if k.startswith("ltm_admin_")]
            return (200, None) if any(hmac.compare_digest(token, k) for k in known) else (401, UNAUTHORIZED)
        roles = self._jwt_roles(token)
        if roles is None:
            return 401, UNAUTHORIZED
        if "admin" not in roles:
            return 403, {"error": {"code": "FORBIDDEN", "message": "Insufficient permissions: models:write required"}}
        return 200, None

    def _jwt_roles(self, token: str) -> Optional[list]:
        """The roles of a valid HS256 JWT of ``jwt_secret`` whose user exists and is active (roles from the token)."""
        parts = token.split(".")
        if not self.jwt_secret or len(parts) != 3:
            return None
        try:
            header, claims = json.loads(_b64url(parts[0])), json.loads(_b64url(parts[1]))
            signature = _b64url(parts[2])
        except ValueError:
            return None
        expected = hmac.new(self.jwt_secret.encode(), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        if header.get("alg") != "HS256" or not hmac.compare_digest(signature, expected):
            return None
        if not isinstance(claims, dict) or (claims.get("exp") is not None and claims["exp"] < time.time()):
            return None
        try:
            active = self._sql(self.database_url, "SELECT 1 FROM users WHERE id::text = %s AND is_active", (str(claims.get("userId")),))
        except psycopg2.Error:
            return None
        return list(claims.get("roles") or []) if active else None

    # ---------------------------------------------------------------- POST /api/v1/models/sync

    def sync(self, body) -> tuple:
        body = {} if body is None else body
        if not isinstance(body, dict):
            return 400, {"statusCode": 400, "code": "FST_ERR_VALIDATION", "error": "Bad Request", "message": "body must be object"}
        for name in ("forceUpdate", "markUnavailable"):
            if name in body and not isinstance(body[name], bool):
                return 400, {"statusCode": 400, "code": "FST_ERR_VALIDATION", "error": "Bad Request", "message": f"body/{name} must be boolean"}
        force, mark = body.get("forceUpdate", False), body.get("markUnavailable", True)
        status, info = self._litellm("/model/info")
        if status != 200 or not isinstance(info, dict) or not isinstance(info.get("data"), list):
            return 500, {"error": {"code": "SYNC_FAILED", "message": f"Model synchronization failed: GET /model/info answered {status}: {info}"}}
        models = [m for m in info["data"] if isinstance(m, dict) and m.get("model_name")]
        if self.litellm_database_url:
            in_table = {r["model_name"] for r in self._sql(self.litellm_database_url, 'SELECT model_name FROM "LiteLLM_ProxyModelTable"')}
            models = [m for m in models if m["model_name"] in in_table]
        result = {"success": True, "totalModels": len(models), "newModels": 0, "updatedModels": 0, "unavailableModels": 0, "errors": []}
        for model in models:
            try:
                outcome = self._upsert(model, force)
            except psycopg2.Error as exc:
                result["errors"].append(f"{model['model_name']}: {str(exc).strip()}")
                continue
            if outcome == "new":
                result["newModels"] += 1
            elif outcome == "updated":
                result["updatedModels"] += 1
        if mark:
            names = [m["model_name"] for m in models]
            result["unavailableModels"] = self._sql(
                self.database_url, "UPDATE models SET availability = 'unavailable', updated_at = now() WHERE availability = 'available' AND NOT (id = ANY(%s))",
                (names,))
        result["success"] = not result["errors"]
        result["syncedAt"] = _now()
        return 200, result

    def _upsert(self, model: dict, force: bool) -> str:
        """Insert or update one model's row: ``new``, ``updated`` or ``unchanged`` (unless ``force``)."""
        params, info = model.get("litellm_params") or {}, model.get("model_info") or {}
        backend_model = str(params.get("model") or "")
        row = {"name": model["model_name"], "provider": params.get("custom_llm_provider") or backend_model.partition("/")[0] or None,
               "api_base": params.get("api_base"), "litellm_model_id": info.get("id"),
               "backend_model_name": backend_model.partition("/")[2] or backend_model or None, "availability": "available"}
        conn = psycopg2.connect(self.database_url, connect_timeout=5)
        try:
            with conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute("SELECT * FROM models WHERE id = %s FOR UPDATE", (model["model_name"],))
                found = cur.fetchone()
                columns = list(row)
                if found is None:
                    cur.execute(f"INSERT INTO models (id, {', '.join(columns)}, metadata) VALUES (%s, {', '.join(['%s'] * len(columns))}, %s)",
                                [model["model_name"], *row.values(), json.dumps(model)])
                    return "new"
                if not force and all(found.get(c) == v for c, v in row.items()):
                    return "unchanged"
                cur.execute(f"UPDATE models SET {', '.join(c + ' = %s' for c in columns)}, metadata = %s, updated_at = now() WHERE id = %s",
                            [*row.values(), json.dumps(model), model["model_name"]])
                return "updated"
        finally:
            conn.close()
