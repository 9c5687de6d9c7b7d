"""Tenants: a key sees and changes only its own rows (docs/reliability.md, "Isolation matrix").

The rule (litemaas_proxy/api/routes.py): a key may act on itself; a key with a user on the rows of that user; nothing
else; the master key and proxy admins on everything. The matrix below is walked for every route of the route table
whose level is ``key`` and every key/user/spend management route: callers {key without a user, key of user A, key of
user B} x targets {own key, another key without a user, another user's key, another user}. A route of level ``key``
missing from the matrix fails ``test_every_key_route_is_in_the_matrix``.

The expected answer comes from the fixture's own record of who owns what (``Tenants.owns``), not from the proxy's code.
"""

from __future__ import annotations

import json
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime as dt
from datetime import timezone
from pathlib import Path
from typing import Optional

import psycopg2
import pytest

from tests.proxy.conftest import chat, uid, wait_for
from tests.support.proxy import http_json

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "files" / "proxy"))

from litemaas_proxy.api import routes  # noqa: E402
from litemaas_proxy.auth import hash_token  # noqa: E402

TODAY = dt.now(timezone.utc).date().isoformat()
RULE = "a key may act only on itself, and a key of a user on that user's keys and spend."

# ---------------------------------------------------------------------------- the matrix
# kind: "self"  the route acts as the caller and names no tenant row (data plane, model lists, pass-through, metrics)
#       "read"  reads one row named by a query parameter: ``key`` (a key) and/or ``user`` (a user id)
#       "list"  lists rows; each caller gets exactly its own; its filters naming others are refused
#       "write" management writes: only the master key and proxy admins; refused for every key here, nothing changes
SELF = "self"


@dataclass(frozen=True)
class Case:
    kind: str
    key_param: Optional[str] = None  # query parameter naming a key (read/list)
    user_param: Optional[str] = None  # query parameter naming a user (read/list)
    query: str = ""  # fixed query parameters
    body: Optional[str] = None  # writes: JSON template with {key}, {user}, {marker}
    why: str = ""


MATRIX = {
    ("GET", "/key/info"): Case("read", key_param="key"),
    ("GET", "/user/info"): Case("read", user_param="user_id"),
    ("GET", "/key/list"): Case("list", key_param="key_hash", user_param="user_id", query="return_full_object=true&size=100"),
    ("GET", "/spend/logs"): Case("list", key_param="api_key", user_param="user_id", query="summarize=false"),
    ("GET", "/user/daily/activity"): Case("list", key_param="api_key", user_param="user_id", query=f"start_date={TODAY}&end_date={TODAY}"),
    ("POST", "/key/generate"): Case("write", body='{"user_id": "{user}", "key_alias": "{marker}"}'),
    ("POST", "/key/update"): Case("write", body='{"key": "{key}", "max_budget": 0, "key_alias": "{marker}"}'),
    ("POST", "/key/delete"): Case("write", body='{"keys": ["{key}"]}'),
    ("POST", "/key/block"): Case("write", body='{"key": "{key}"}'),
    ("POST", "/key/unblock"): Case("write", body='{"key": "{key}"}'),
    ("POST", "/key/regenerate"): Case("write", body='{"key": "{key}", "new_key": "sk-{marker}"}'),
    ("POST", "/key/{key}/regenerate"): Case("write", body='{"new_key": "sk-{marker}"}'),
    ("POST", "/user/new"): Case("write", body='{"user_id": "{marker}"}'),
    ("POST", "/user/update"): Case("write", body='{"user_id": "{user}", "max_budget": 0}'),
    ("POST", "/user/delete"): Case("write", body='{"user_ids": ["{user}"]}'),
}
# Routes of level key that name no tenant's row: what they answer depends on the caller's own key only.
for _path in ("/v1/chat/completions", "/chat/completions", "/v1/completions", "/completions", "/v1/embeddings", "/embeddings",
              "/openai/deployments/{deployment}/chat/completions", "/openai/deployments/{deployment}/completions",
              "/openai/deployments/{deployment}/embeddings", "/engines/{engine}/chat/completions"):
    MATRIX[("POST", _path)] = Case(SELF, why="data plane: spend and limits of the caller's key")
for _path in ("/v1/models", "/models", "/v1/models/{model_id:.+}", "/models/{model_id:.+}", "/model/info", "/v1/model/info",
              "/model_group/info"):
    MATRIX[("GET", _path)] = Case(SELF, why="models the caller's key may use")
for _path in ("/v1/responses", "/responses", "/v1/messages", "/v1/messages/count_tokens", "/v1/audio/transcriptions", "/v1/audio/translations",
              "/rerank", "/v1/rerank", "/v2/rerank", "/score", "/v1/score", "/tokenize", "/detokenize", "/v2/embed"):
    MATRIX[("POST", _path)] = Case(SELF, why="data plane: spend and limits of the caller's key")
# A stored response is the creating key's: its id names that key, another key's id answers 404 (tests/proxy/test_agent_apis.py).
MATRIX[("GET", "/v1/responses/{response_id}")] = Case(SELF, why="a response the caller's key created")
MATRIX[("POST", "/v1/responses/{response_id}/cancel")] = Case(SELF, why="a response the caller's key created")
MATRIX[("*", "/docling/{tail:.*}")] = Case(SELF, why="pass-through: spend of the caller's key")
for _path in ("/metrics", "/metrics/"):
    MATRIX[("GET", _path)] = Case(SELF, why="process metrics (key level only with require_auth_for_metrics_endpoint)")
MANAGEMENT_MODULES = ("litemaas_proxy.api.keys", "litemaas_proxy.api.users", "litemaas_proxy.api.activity")


def app_table(config: Optional[dict] = None, tmp_path=None) -> list:
    from tests.proxy.test_routes import build_app

    return routes.table(build_app(config, tmp_path))


def test_every_key_route_is_in_the_matrix(tmp_path):
    table = app_table() + app_table({"litellm_settings": {"require_auth_for_metrics_endpoint": True}}, tmp_path)
    missing = sorted({(r.method, r.path) for r in table
                      if (r.auth == routes.KEY or r.handler.__module__ in MANAGEMENT_MODULES) and (r.method, r.path) not in MATRIX})
    assert not missing, f"routes without an entry in the isolation matrix (tests/proxy/test_isolation.py MATRIX): {missing}"
    for r in table:
        case = MATRIX.get((r.method, r.path))
        if case is None:
            continue
        # The matrix and the route table agree: reads and lists are key-level with their targets declared, writes admin-only.
        declared = dict(r.targets)
        if case.kind == SELF:
            assert r.auth in (routes.KEY, routes.PUBLIC) and not r.targets and not r.listing, r
        elif case.kind == "write":
            assert r.auth == routes.ADMIN, f"{r.method} {r.path} is a write a key could call on its own rows: add its cases"
        else:
            assert r.auth == routes.KEY and r.listing == (case.kind == "list" or r.path == "/user/info"), r
            expected = {p: k for p, k in ((case.key_param, routes.KEY_ROW), (case.user_param, routes.USER_ROW)) if p}
            assert declared == expected, f"{r.method} {r.path}: declared targets {declared}, matrix {expected}"


# ---------------------------------------------------------------------------- the tenants


@dataclass
class Tenants:
    keys: dict  # name -> plaintext
    user_of: dict  # key name -> user id or None
    users: dict  # "A"/"B" -> user id
    aliases: dict = field(default_factory=dict)  # name -> alias

    def token(self, name: str) -> str:
        return hash_token(self.keys[name])

    def owns(self, caller: str, key: Optional[str] = None, user: Optional[str] = None) -> bool:
        """The rule, from what the fixture created: own key; or the caller's user's key or user."""
        if key is not None and key == caller:
            return True
        mine = self.user_of[caller]
        if mine is None:
            return False
        return (key is not None and self.user_of[key] == mine) or (user is not None and self.users[user] == mine)

    def own_tokens(self, caller: str) -> set:
        mine = self.user_of[caller]
        return {self.token(n) for n in self.keys if n == caller or (mine is not None and self.user_of[n] == mine)}


@pytest.fixture(scope="module")
def tenants(proxy) -> Tenants:
    users = {"A": uid("iso-user-a"), "B": uid("iso-user-b")}
    for user in users.values():
        assert proxy.admin("POST", "/user/new", {"user_id": user, "auto_create_key": False})[0] == 200
    plan = {"N": None, "N2": None, "A1": users["A"], "A2": users["A"], "B1": users["B"]}
    t = Tenants({}, plan, users)
    for name, user in plan.items():
        alias = uid(f"iso-{name}")
        body = {"key_alias": alias, "models": ["stub-model"], "metadata": {"tenant": name}}
        if user:
            body["user_id"] = user
        status, data = proxy.admin("POST", "/key/generate", body)
        assert status == 200, data
        t.keys[name], t.aliases[name] = data["key"], alias
    for name in plan:  # one spend row each
        status, data, dummy = chat(proxy, t.keys[name])
        assert status == 200, data
    tokens = [t.token(n) for n in plan]
    wait_for(lambda: count(proxy.dsn, 'SELECT count(*) FROM "LiteLLM_SpendLogs" WHERE api_key = ANY(%s)', tokens) == len(tokens),
             message="the spend rows of the tenants' keys")
    return t


def count(dsn: str, sql: str, *args) -> int:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchone()[0]
    finally:
        conn.close()


def snapshot(dsn: str, t: Tenants) -> str:
    """Every row a refused call could have touched: the tenants' keys, users, spend, deleted keys, and anything marked."""
    tokens = [t.token(n) for n in t.keys]
    users = list(t.users.values())
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            out = []
            for sql, args in (
                ('SELECT row_to_json(k)::text FROM "LiteLLM_VerificationToken" k WHERE token = ANY(%s) OR key_alias LIKE %s '
                 'OR user_id = ANY(%s) ORDER BY token', (tokens, "iso-marker-%", users)),
                ('SELECT row_to_json(u)::text FROM "LiteLLM_UserTable" u WHERE user_id = ANY(%s) OR user_id LIKE %s ORDER BY user_id',
                 (users, "iso-marker-%")),
                ('SELECT count(*)::text FROM "LiteLLM_SpendLogs" WHERE api_key = ANY(%s)', (tokens,)),
                ('SELECT count(*)::text FROM "LiteLLM_DeletedVerificationToken" WHERE token = ANY(%s)', (tokens,)),
            ):
                cur.execute(sql, args)
                out.extend(r[0] for r in cur.fetchall())
            return "\n".join(out)
    finally:
        conn.close()


def call(proxy, method: str, path: str, key: str, body=None) -> tuple:
    status, data, dummy = http_json(method, proxy.url + path, body, {"Authorization": f"Bearer {key}"})
    return status, data


def refused_message(kind: str, value: str) -> str:
    what = f"key sk-...{value[-4:]}" if kind == "key" and value.startswith("sk-") else f"{kind} {value}"
    return f"You are not allowed to access {what}: {RULE}"


def assert_refused(status, data, kind: str, value: str, where: str) -> None:
    assert status == 403, f"{where}: {status} {data}"
    assert data == {"error": {"message": refused_message(kind, value), "type": "auth_error", "param": "None", "code": "403"}}, where


CALLERS = ("N", "A1", "B1")


def targets_of(t: Tenants, caller: str) -> dict:
    """own key, another key without a user, another user's key, another user (and the caller's own user when it has one)."""
    other_user = {"N": "A", "A1": "B", "B1": "A"}[caller]
    out = {"own key": ("key", caller), "other no-user key": ("key", "N2" if caller == "N" else "N"),
           "other user's key": ("key", {"A": "A1", "B": "B1"}[other_user]), "other user": ("user", other_user)}
    if caller == "A1":
        out["own user's other key"] = ("key", "A2")
    if t.user_of[caller]:
        out["own user"] = ("user", "A" if caller == "A1" else "B")
    return out


# ---------------------------------------------------------------------------- reads


@pytest.mark.parametrize("caller", CALLERS)
def test_reads_follow_the_rule(proxy, tenants, caller):
    t = tenants
    before = snapshot(proxy.dsn, t)
    checked = 0
    for (method, path), case in MATRIX.items():
        if case.kind not in ("read", "list"):
            continue
        for label, (kind, name) in targets_of(t, caller).items():
            param = case.key_param if kind == "key" else case.user_param
            if param is None:
                continue
            value = t.keys[name] if kind == "key" and path == "/key/info" else t.token(name) if kind == "key" else t.users[name]
            query = "&".join(q for q in (case.query, f"{param}={value}") if q)
            status, data = call(proxy, method, f"{path}?{query}", t.keys[caller])
            where = f"{caller} {method} {path} on {label} ({param}={value})"
            allowed = t.owns(caller, key=name) if kind == "key" else t.owns(caller, user=name)
            if not allowed:
                assert_refused(status, data, kind, value, where)
            else:
                assert status == 200, f"{where}: {status} {data}"
                assert_holds(path, data, t, {t.token(name)} if kind == "key" else {t.token(n) for n in t.keys if t.user_of[n] == t.users[name]},
                             where, user=t.users[name] if kind == "user" else None)
            checked += 1
    assert checked >= 16
    assert snapshot(proxy.dsn, t) == before


def assert_holds(path: str, data, t: Tenants, tokens: set, where: str, user: Optional[str] = None) -> None:
    """The answer of ``path`` holds exactly the rows of ``tokens`` among the tenants' keys (and nothing of other tenants)."""
    everyone = {t.token(n): n for n in t.keys}
    if path == "/key/info":
        (token,) = tokens
        assert data["info"]["key_alias"] == t.aliases[everyone[token]], where
        assert "token" not in data["info"], where
        return
    if path == "/user/info":
        assert data["user_id"] == user and data["user_info"]["user_id"] == user, where
        assert {k["token"] for k in data["keys"]} == tokens, where
        return
    if path == "/key/list":
        got = {k["token"] for k in data["keys"]}
    elif path == "/spend/logs":
        got = {r["api_key"] for r in data}
    else:
        got = set()
        for day in data["results"]:
            got |= set(day["breakdown"]["api_keys"])
    assert got == tokens, f"{where}: rows of {sorted(everyone.get(g, 'an unknown key') for g in got)}, expected {sorted(everyone[x] for x in tokens)}"


@pytest.mark.parametrize("caller", CALLERS)
def test_listings_hold_only_the_callers_rows(proxy, tenants, caller):
    t = tenants
    for (method, path), case in MATRIX.items():
        if case.kind != "list":
            continue
        status, data = call(proxy, method, f"{path}?{case.query}", t.keys[caller])
        assert status == 200, f"{caller} {path}: {status} {data}"
        assert_holds(path, data, t, t.own_tokens(caller), f"{caller} {path} without a filter")
        if path == "/key/list":
            assert data["total_count"] == len(t.own_tokens(caller)), data
    # A key that does not exist is refused as another tenant's is: its absence is not revealed.
    status, data = call(proxy, "GET", "/key/info?key=sk-no-such-key-0042", t.keys[caller])
    assert_refused(status, data, "key", "sk-no-such-key-0042", f"{caller} /key/info on a key that does not exist")
    # /user/info without user_id: the caller's own user; a key without a user has none to show.
    status, data = call(proxy, "GET", "/user/info", t.keys[caller])
    if t.user_of[caller] is None:
        assert status == 403, data
        assert data["error"]["message"] == f"You are not allowed to access the list of users (this key belongs to no user): {RULE}", data
    else:
        assert status == 200 and data["user_id"] == t.user_of[caller], data
        assert {k["token"] for k in data["keys"]} == t.own_tokens(caller), data


def test_the_master_key_and_a_proxy_admin_see_every_tenant(proxy, tenants):
    t = tenants
    admin_user = uid("iso-admin")
    assert proxy.admin("POST", "/user/new", {"user_id": admin_user, "user_role": "proxy_admin", "auto_create_key": False})[0] == 200
    status, data = proxy.admin("POST", "/key/generate", {"user_id": admin_user})
    assert status == 200, data
    for key in (proxy.master_key, data["key"]):
        everyone = {t.token(n) for n in t.keys}
        status, logs = call(proxy, "GET", "/spend/logs?summarize=false", key)
        assert status == 200 and everyone <= {r["api_key"] for r in logs}, logs
        for name in t.keys:
            status, info = call(proxy, "GET", f"/key/info?key={t.keys[name]}", key)
            assert status == 200 and info["info"]["key_alias"] == t.aliases[name], info
        status, data_b = call(proxy, "GET", f"/user/info?user_id={t.users['B']}", key)
        assert status == 200 and {k["token"] for k in data_b["keys"]} == {t.token("B1")}, data_b


# ---------------------------------------------------------------------------- writes


@pytest.mark.parametrize("caller", CALLERS)
def test_writes_are_refused_and_change_nothing(proxy, tenants, caller):
    t = tenants
    before = snapshot(proxy.dsn, t)
    checked = 0
    for (method, path), case in MATRIX.items():
        if case.kind != "write":
            continue
        for label, (kind, name) in targets_of(t, caller).items():
            marker = "iso-marker-" + uuid.uuid4().hex[:8]
            key = t.keys[name] if kind == "key" else t.keys[caller]
            user = t.users[name] if kind == "user" else (t.user_of[name] or t.users["A"])
            body = json.loads(case.body.replace("{key}", key).replace("{user}", user).replace("{marker}", marker))
            status, data = call(proxy, method, path.replace("{key}", key), t.keys[caller], body)
            where = f"{caller} {method} {path} on {label}"
            assert status == 401, f"{where}: {status} {data}"
            assert data["error"]["type"] == "auth_error" and data["error"]["message"].startswith(
                "Authentication Error, Only proxy admin can be used to generate, delete, update info for new keys/users/teams."), where
            checked += 1
    assert checked >= 10 * 4
    assert snapshot(proxy.dsn, t) == before
    # Every key still works as before.
    for name in t.keys:
        assert call(proxy, "GET", "/key/info", t.keys[name])[0] == 200
