"""Security of the proxy, against the real process with PostgreSQL, Redis and the stub upstream.

- No plaintext secret (virtual key, master key) in any column of any table, in Redis, or in the proxy's debug log.
- The management API refuses virtual keys and wrong master keys on every route, with no side effect.
- A key reaches only its models (chat, completions, embeddings, model lists, pass-through), team restrictions too.
- Expired, blocked and over-budget keys (key, user, team) are refused on every data route: nothing forwarded, nothing charged.
- Keys are compared structurally in constant time: looked up by SHA-256 hash, the master key through hmac.compare_digest.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import re
import sys
import uuid
import warnings
from datetime import datetime, timedelta, timezone

import psycopg2
import pytest
import redis
import requests

from tests.proxy.conftest import db_value, new_key, uid, wait_for
from tests.support.proxy import INPUT_COST, OUTPUT_COST, PROXY_SRC, http_json, stub_models

MASTER_KEY = "sk-security-master-" + uuid.uuid4().hex
HEX64 = re.compile(r"^[0-9a-f]{64}$")
PKG = PROXY_SRC / "litemaas_proxy"
TODAY = datetime.now(timezone.utc).date().isoformat()


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.fixture(scope="module")
def sec(proxy_factory, stub_upstream):
    """A proxy of its own (own database, debug logging and access log, its own master key) with chat, embedding and pass-through models."""
    models = stub_models(stub_upstream.url) + [
        {"model_name": "Docling", "litellm_params": {"model": "openai/docling-serve", "custom_llm_provider": "docling",
                                                     "api_base": stub_upstream.base_url, "api_key": "sk-docling-upstream"},
         "model_info": {"mode": "chat", "id": "sec-docling-1"}},
    ]
    return proxy_factory(database="security_proxy", models=models, master_key=MASTER_KEY,
                         env={"LITELLM_LOG": "DEBUG", "LITEMAAS_ACCESS_LOG": "1", "SEC_UPSTREAM_SECRET": "upstream-secret-" + uuid.uuid4().hex})


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def call(p, route: str, key: str, model: str, headers: dict = None):
    """One data-plane request of the given kind; returns (status, body)."""
    hdrs = {**bearer(key), **(headers or {})}
    if route == "chat":
        body = {"model": model, "messages": [{"role": "user", "content": "two words"}]}
        status, data, dummy = http_json("POST", p.url + "/v1/chat/completions", body, hdrs)
    elif route == "stream":
        body = {"model": model, "messages": [{"role": "user", "content": "two words"}], "stream": True}
        status, data, dummy = http_json("POST", p.url + "/v1/chat/completions", body, hdrs)
    elif route == "completions":
        status, data, dummy = http_json("POST", p.url + "/v1/completions", {"model": model, "prompt": "two words"}, hdrs)
    elif route == "embeddings":
        status, data, dummy = http_json("POST", p.url + "/v1/embeddings", {"model": model, "input": "two words"}, hdrs)
    elif route == "docling":
        status, data, dummy = http_json("POST", p.url + "/docling/v1/convert/source", {"http_sources": []}, hdrs)
    else:
        raise ValueError(route)
    return status, data


def assert_litellm_error(data, status: int):
    assert isinstance(data, dict) and set(data) == {"error"}, data
    err = data["error"]
    assert {"message", "type", "param", "code"} <= set(err), data
    assert err["code"] == str(status), data


def dump_database(dsn: str) -> dict:
    """Every row of every table in every non-system schema, every column cast to text: {table: [row text, ...]}."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT table_schema, table_name, array_agg(column_name::text ORDER BY ordinal_position) FROM information_schema.columns "
                        "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') GROUP BY 1, 2 ORDER BY 1, 2")
            tables = cur.fetchall()
            out = {}
            for schema, table, columns in tables:
                cols = ", ".join(f'"{c}"::text' for c in columns)
                cur.execute(f'SELECT {cols} FROM "{schema}"."{table}"')
                out[f"{schema}.{table}"] = ["\x1f".join("" if v is None else v for v in row) for row in cur.fetchall()]
            return out
    finally:
        conn.close()


def dump_redis(url: str) -> list:
    """Every key and value in every Redis database, as text."""
    out = []
    base = redis.Redis.from_url(url)
    dbs = [int(name[2:]) for name in base.info("keyspace")] or [0]
    for n in dbs:
        r = redis.Redis.from_url(url, db=n)
        for key in r.scan_iter(count=1000):
            kind = r.type(key).decode()
            if kind == "string":
                value = [r.get(key)]
            elif kind == "hash":
                value = [x for kv in r.hgetall(key).items() for x in kv]
            elif kind == "list":
                value = r.lrange(key, 0, -1)
            elif kind == "set":
                value = list(r.smembers(key))
            elif kind == "zset":
                value = [m for m, dummy in r.zrange(key, 0, -1, withscores=True)]
            elif kind == "stream":
                value = [repr(e).encode() for e in r.xrange(key)]
            else:
                value = []
            out.append(key.decode(errors="replace") + "=" + " ".join((v or b"").decode(errors="replace") for v in value))
    return out


def flushed(p, token: str, count: int) -> bool:
    return db_value(p.dsn, 'SELECT count(*) FROM "LiteLLM_SpendLogs" WHERE api_key = %s', token) >= count


# --------------------------------------------------------------------------------------------------------------------
# No plaintext secret at rest or in the log


def test_no_plaintext_key_in_database_redis_or_log(sec, redis_server, pg_server, stub_upstream):
    secrets = {"master": MASTER_KEY}
    # Keys of every origin: generated, custom, regenerated (generated and custom new value), user/new's automatic key.
    gen = sec.admin("POST", "/key/generate", {"key_alias": uid("sec-gen"), "rpm_limit": 1000, "tpm_limit": 100000, "max_parallel_requests": 5})[1]
    secrets["generated"] = gen["key"]
    secrets["custom"] = "sk-custom-" + uuid.uuid4().hex
    status, custom = sec.admin("POST", "/key/generate", {"key": secrets["custom"], "key_alias": uid("sec-custom"), "rpm_limit": 1000})
    assert status == 200 and custom["key"] == secrets["custom"]
    secrets["to-regenerate"] = new_key(sec, key_alias=uid("sec-regen"))
    status, regen = sec.admin("POST", "/key/regenerate", {"key": secrets["to-regenerate"]})
    assert status == 200
    secrets["regenerated"] = regen["key"]
    secrets["regenerated-custom"] = "sk-newcustom-" + uuid.uuid4().hex
    status, regen2 = sec.admin("POST", f"/key/{secrets['regenerated']}/regenerate", {"new_key": secrets["regenerated-custom"]})
    assert status == 200 and regen2["key"] == secrets["regenerated-custom"]
    user = uid("sec-user")
    status, user_new = sec.admin("POST", "/user/new", {"user_id": user, "max_budget": 10, "rpm_limit": 1000})
    assert status == 200 and user_new["key"].startswith("sk-")
    secrets["user-auto"] = user_new["key"]
    team = uid("sec-team")
    assert sec.admin("POST", "/team/new", {"team_id": team, "rpm_limit": 1000})[0] == 200
    secrets["team"] = new_key(sec, team_id=team, user_id=user)
    secrets["deleted"] = new_key(sec, key_alias=uid("sec-del"))
    # An upstream key given to /model/new as an environment reference: only the reference is stored.
    model = uid("sec-dbmodel")
    status, dummy = sec.admin("POST", "/model/new", {"model_name": model, "litellm_params": {
        "model": "openai/stub-model", "api_base": stub_upstream.url, "api_key": "os.environ/SEC_UPSTREAM_SECRET",
        "input_cost_per_token": INPUT_COST, "output_cost_per_token": OUTPUT_COST}, "model_info": {"mode": "chat"}})
    assert status == 200
    upstream_secret = sec.env()["SEC_UPSTREAM_SECRET"]
    secrets["upstream-env"] = upstream_secret

    # Use them: every data route, both credential headers, management calls that take the key as a parameter.
    live = [secrets[n] for n in ("generated", "custom", "regenerated-custom", "user-auto", "team")]
    for key in live:
        for route, name in (("chat", "stub-model"), ("stream", "stub-model"), ("completions", "granite-3-8b"), ("embeddings", "stub-embed"),
                            ("docling", None)):
            assert call(sec, route, key, name)[0] == 200, (route, key[-4:])
        assert http_json("POST", sec.url + "/v1/chat/completions", {"model": "stub-model", "messages": [{"role": "user", "content": "hi"}]},
                         {"x-litellm-api-key": key})[0] == 200
        assert http_json("GET", sec.url + "/v1/models", headers=bearer(key))[0] == 200
        assert http_json("GET", sec.url + "/key/info", headers=bearer(key))[0] == 200
        assert sec.admin("GET", f"/key/info?key={key}")[0] == 200
        assert sec.admin("GET", f"/spend/logs?api_key={key}&summarize=false")[0] == 200
        status, data = sec.admin("GET", f"/user/daily/activity?start_date={TODAY}&end_date={TODAY}&api_key={key}")
        assert status == 200, data
    status, data, dummy = http_json("POST", sec.url + "/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": "hi"}]},
                                    bearer(secrets["generated"]))
    assert status == 200, data
    assert stub_upstream.stats()["recent"][-1]["headers"].get("authorization") == f"Bearer {upstream_secret}"  # the reference was resolved
    assert sec.admin("POST", "/key/update", {"key": secrets["generated"], "metadata": {"note": "updated"}})[0] == 200
    assert sec.admin("POST", "/key/block", {"key": secrets["custom"]})[0] == 200
    assert call(sec, "chat", secrets["custom"], "stub-model")[0] == 401
    assert sec.admin("POST", "/key/unblock", {"key": secrets["custom"]})[0] == 200
    assert sec.admin("POST", "/key/delete", {"keys": [secrets["deleted"]]})[0] == 200
    # Old (regenerated) and unknown keys are refused; a near miss of a real key must not be logged either.
    secrets["near-miss"] = secrets["generated"][:-1] + ("A" if secrets["generated"][-1] != "A" else "B")
    for wrong in (secrets["to-regenerate"], secrets["regenerated"], secrets["deleted"], secrets["near-miss"]):
        assert call(sec, "chat", wrong, "stub-model")[0] == 401
    for header in ("Authorization", "x-litellm-api-key"):
        value = f"Bearer {MASTER_KEY}" if header == "Authorization" else MASTER_KEY
        assert http_json("GET", sec.url + "/key/list", headers={header: value})[0] == 200
        assert http_json("POST", sec.url + "/v1/chat/completions", {"model": "stub-model", "messages": [{"role": "user", "content": "hi"}]},
                         {header: value})[0] == 200
    # A request that fails inside the proxy is logged with a traceback at debug level: it must not carry the key either.
    assert requests.post(sec.url + "/v1/chat/completions", data=b"{not json", headers=bearer(secrets["generated"]), timeout=30).status_code == 400
    wait_for(lambda: flushed(sec, sha(secrets["team"]), 6), message="spend of the last key written")

    tokens = {name: sha(value) for name, value in secrets.items() if name not in ("master", "upstream-env")}

    # ---- PostgreSQL: every column of every table
    tables = dump_database(sec.dsn)
    assert "public.LiteLLM_VerificationToken" in tables and "public.LiteLLM_SpendLogs" in tables, sorted(tables)
    text = "\n".join(f"{t}: {row}" for t, rows in tables.items() for row in rows)
    for name, value in secrets.items():
        assert value not in text, f"plaintext {name} secret stored in the database"
    # Only hashes: each live key is stored as its SHA-256 hex, and every token column holds 64 hex digits.
    for name in ("generated", "custom", "regenerated-custom", "user-auto", "team"):
        assert tokens[name] in text, name
    assert db_value(sec.dsn, 'SELECT count(*) FROM "LiteLLM_DeletedVerificationToken" WHERE token = %s', tokens["deleted"]) == 1
    conn = psycopg2.connect(sec.dsn)
    try:
        with conn.cursor() as cur:
            for table in ("LiteLLM_VerificationToken", "LiteLLM_DeletedVerificationToken"):
                cur.execute(f'SELECT token FROM "{table}"')
                assert all(HEX64.match(t) for (t,) in cur.fetchall()), table
            cur.execute('SELECT DISTINCT api_key FROM "LiteLLM_SpendLogs"')
            assert all(HEX64.match(t) for (t,) in cur.fetchall())
    finally:
        conn.close()

    # ---- Redis: every key and value
    entries = dump_redis(redis_server.url)
    blob = "\n".join(entries)
    for name, value in secrets.items():
        assert value not in blob, f"plaintext {name} secret in Redis"
    assert any(tokens["generated"] in e for e in entries), "the rate-limit counters of a limited key are in Redis, by hash"

    # ---- The proxy's log, at debug level
    log = sec.log_path.read_text(errors="replace")
    assert "DEBUG" in log or "INFO" in log, "the proxy wrote no log at all"
    # The access log names every request, by key alias and path only: no query string, a key in the path masked.
    assert f"POST /key/sk-...{secrets['regenerated'][-4:]}/regenerate 200 " in log
    assert re.search(r"GET /key/info 200 \d+B [\d.]+ms key=master ", log)
    assert re.search(rf"POST /v1/chat/completions 200 \d+B [\d.]+ms key={re.escape(gen['key_alias'])} user=- model=stub-model", log)
    assert re.search(r"POST /docling/v1/convert/source 200 .* model=Docling", log)
    assert "?key=" not in log and "api_key=" not in log
    for name, value in secrets.items():
        assert value not in log, f"plaintext {name} secret in the proxy log"
    # ... and the servers' own logs (PostgreSQL logs failed statements; the proxy sends keys only as bound hashes).
    for server_log in (pg_server.data_dir / "postgres.log", redis_server.data_dir / "redis.log"):
        text = server_log.read_text(errors="replace")
        for name, value in secrets.items():
            assert value not in text, f"plaintext {name} secret in {server_log.name}"


def test_upstream_key_of_a_database_model_is_never_returned(sec, stub_upstream):
    """A literal upstream key given to /model/new is stored sealed (LITELLM_SALT_KEY, else the master key) and is sent
    upstream, but never comes back through the API or the log, and is not in the database in plain text."""
    upstream = "sk-literal-upstream-" + uuid.uuid4().hex
    name = uid("sec-literal")
    body = {"model_name": name, "litellm_params": {"model": "openai/stub-model", "api_base": stub_upstream.url, "api_key": upstream},
            "model_info": {"mode": "chat"}}
    status, created = sec.admin("POST", "/model/new", body)
    assert status == 200
    model_id = created["model_info"]["id"]
    status, updated = sec.admin("POST", "/model/update", {"model_info": {"id": model_id}, "litellm_params": {"rpm": 1000}})
    assert status == 200
    status, patched, dummy = http_json("PATCH", sec.url + f"/model/{model_id}/update", {"litellm_params": {"tpm": 100000}}, bearer(MASTER_KEY))
    assert status == 200
    key = new_key(sec, models=[name])
    status, data, dummy = http_json("POST", sec.url + "/v1/chat/completions", {"model": name, "messages": [{"role": "user", "content": "hi"}]},
                                    bearer(key))
    assert status == 200
    assert stub_upstream.stats()["recent"][-1]["headers"].get("authorization") == f"Bearer {upstream}"
    seen = [created, updated, patched]
    for path in ("/model/info", "/v1/model/info", "/model_group/info", "/v1/models", f"/model/info?litellm_model_id={model_id}"):
        for cred in (MASTER_KEY, key):
            status, data, dummy = http_json("GET", sec.url + path, headers=bearer(cred))
            assert status == 200
            seen.append(data)
    text = repr(seen)
    assert name in text and upstream not in text
    assert upstream not in sec.log_path.read_text(errors="replace")
    assert upstream not in db_value(sec.dsn, 'SELECT litellm_params::text FROM "LiteLLM_ProxyModelTable" WHERE model_id = %s', model_id)


# --------------------------------------------------------------------------------------------------------------------
# Management API: virtual keys and wrong master keys are refused everywhere


@functools.lru_cache(maxsize=1)
def app_routes() -> tuple:
    """(method, path template, module, handler name, auth level) for every route of the proxy's route table
    (the application is built, not started), checked to cover every route of its aiohttp router."""
    if str(PROXY_SRC) not in sys.path:
        sys.path.insert(0, str(PROXY_SRC))
    from litemaas_proxy.api import routes
    from litemaas_proxy.app import create_app
    from litemaas_proxy.config import load_settings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # aiohttp's advice on plain-function handlers
        app = create_app(load_settings(None, env={}))
    assert set(app[routes.LEVEL_KEY]) == set(app.router.routes()), "a route outside the route table"
    return tuple((r.method, r.path, r.handler.__module__, r.handler.__name__, r.auth) for r in routes.table(app))


MANAGEMENT_MODULES = {f"litemaas_proxy.api.{m}" for m in ("keys", "users", "teams", "models", "activity", "health")}
# Routes a virtual key may call for itself, as in LiteLLM: its own key, user and spend, and the models it may use
# (what each shows to which key: tests/proxy/test_isolation.py).
SELF_SERVICE = {"key_info", "key_list", "user_info", "spend_logs", "daily_activity", "model_info", "model_group_info"}


def management_routes() -> list:
    return sorted({(m, path, name) for m, path, module, name, auth in app_routes() if module in MANAGEMENT_MODULES and auth != "public"})


@pytest.fixture(scope="module")
def victims(sec):
    """Objects a successful management call would change."""
    team, user = uid("victim-team"), uid("victim-user")
    assert sec.admin("POST", "/team/new", {"team_id": team})[0] == 200
    assert sec.admin("POST", "/user/new", {"user_id": user, "auto_create_key": False})[0] == 200
    key = new_key(sec, key_alias=uid("victim-key"), user_id=user)
    status, model = sec.admin("POST", "/model/new", {"model_name": uid("victim-model"), "litellm_params": {"model": "openai/stub-model",
                                                                                                           "api_base": "http://127.0.0.1:9/v1"}})
    assert status == 200
    return {"team": team, "user": user, "key": key, "model": model["model_info"]["id"]}


def request_for(method: str, path: str, v: dict) -> tuple:
    """A request to each management route that would change or reveal something if it were accepted."""
    marker = uid("must-not-exist")
    bodies = {
        "/key/generate": {"key_alias": marker, "key": "sk-" + marker},
        "/key/update": {"key": v["key"], "max_budget": 0, "key_alias": marker},
        "/key/delete": {"keys": [v["key"]]},
        "/key/block": {"key": v["key"]},
        "/key/unblock": {"key": v["key"]},
        "/key/regenerate": {"key": v["key"], "new_key": "sk-" + marker},
        "/key/{key}/regenerate": {"new_key": "sk-" + marker},
        "/user/new": {"user_id": marker},
        "/user/update": {"user_id": v["user"], "max_budget": 0},
        "/user/delete": {"user_ids": [v["user"]]},
        "/team/new": {"team_id": marker},
        "/team/update": {"team_id": v["team"], "max_budget": 0},
        "/team/delete": {"team_ids": [v["team"]]},
        "/team/block": {"team_id": v["team"]},
        "/team/unblock": {"team_id": v["team"]},
        "/model/new": {"model_name": marker, "litellm_params": {"model": "openai/x", "api_base": "http://127.0.0.1:9/v1"}},
        "/model/update": {"model_info": {"id": v["model"]}, "litellm_params": {"api_base": "http://127.0.0.1:8/v1"}},
        "/model/{model_id}/update": {"litellm_params": {"api_base": "http://127.0.0.1:8/v1"}},
        "/model/delete": {"id": v["model"]},
    }
    queries = {
        "/key/info": f"?key={v['key']}",
        "/key/list": "?return_full_object=true",
        "/user/info": f"?user_id={v['user']}",
        "/team/info": f"?team_id={v['team']}",
        "/team/list": "",
        "/model/info": "",
        "/v1/model/info": "",
        "/model_group/info": "",
        "/spend/logs": "?summarize=false",
        "/user/daily/activity": f"?start_date={TODAY}&end_date={TODAY}",
    }
    url_path = path.replace("{key}", v["key"]).replace("{model_id}", v["model"])
    if method == "GET":
        assert path in queries, f"no test request for GET {path}: add one"
        return url_path + queries[path], None
    assert path in bodies, f"no test request for {method} {path}: add one"
    return url_path, bodies[path]


def test_every_management_route_is_listed():
    routes = management_routes()
    paths = {p for dummy, p, dummy in routes}
    # The enumeration really comes from the router: the portal's calls are all there.
    assert {"/key/generate", "/key/delete", "/user/new", "/team/new", "/model/new", "/spend/logs", "/user/daily/activity"} <= paths
    assert len(routes) >= 29


def test_management_refuses_virtual_keys_and_wrong_master_keys(sec, victims):
    plain = new_key(sec, key_alias=uid("plain"))
    own_user_key = new_key(sec, user_id=uid("someone"))
    wrong = {
        "virtual key": plain,
        "virtual key of a user": own_user_key,
        "empty": "",
        "wrong master key": "sk-" + uuid.uuid4().hex,
        "prefix of the master key": MASTER_KEY[:-1],
        "master key with a suffix": MASTER_KEY + "x",
        "master key, other case": MASTER_KEY.upper(),
        "hash of the master key": sha(MASTER_KEY),
        "master key without sk-": MASTER_KEY[3:],
    }
    wait_for(lambda: sec.admin("GET", "/health/readiness")[1]["spend_records_buffered"] == 0, message="spend written")
    before = dump_database(sec.dsn)
    routes = management_routes()
    checked = 0
    for method, path, name in routes:
        url_path, body = request_for(method, path, victims)
        variants = [("missing", {})]
        for label, cred in wrong.items():
            variants.append((label + " (Bearer)", {"Authorization": f"Bearer {cred}"}))
            variants.append((label + " (x-litellm-api-key)", {"x-litellm-api-key": cred}))
        for label, headers in variants:
            if name in SELF_SERVICE and label.startswith("virtual key"):
                continue  # allowed for itself; its limits are checked in test_self_service_routes_show_only_what_the_key_owns
            status, data, dummy = http_json(method, sec.url + url_path, body, headers)
            assert status in (401, 403), f"{method} {path} with {label}: {status} {data}"
            assert_litellm_error(data, status)
            checked += 1
    assert checked >= len(routes) * 17
    # No side effect at all: the whole database is unchanged (spend logs included: refused calls are not recorded).
    after = dump_database(sec.dsn)
    assert after == before


def test_management_checks_the_caller_before_reading_the_body(sec, victims):
    # Without a valid master key, a body that is not JSON still gets 401: the body is never looked at first.
    checked = 0
    for method, path, dummy in management_routes():
        if method not in ("POST", "PATCH", "PUT", "DELETE"):
            continue
        url_path, dummy = request_for(method, path, victims)
        for headers in ({}, {"Authorization": "Bearer sk-" + uuid.uuid4().hex}):
            resp = requests.request(method, sec.url + url_path, data=b"{not json", timeout=30,
                                    headers={"Content-Type": "application/json", **headers})
            assert resp.status_code == 401, f"{method} {path} with {headers or 'no credential'}: {resp.status_code} {resp.text}"
            assert_litellm_error(resp.json(), 401)
            checked += 1
    assert checked >= 30


def test_self_service_routes_show_only_what_the_key_owns(sec, victims):
    mine = new_key(sec, models=["stub-model"])
    status, data, dummy = http_json("GET", sec.url + f"/key/info?key={victims['key']}", headers=bearer(mine))
    assert status == 403
    assert_litellm_error(data, 403)
    status, data, dummy = http_json("GET", sec.url + "/key/info", headers=bearer(mine))
    assert status == 200 and data["key"] == mine and data["info"]["key_name"] == "sk-..." + mine[-4:]
    for path in ("/model/info", "/v1/model/info"):
        status, data, dummy = http_json("GET", sec.url + path, headers=bearer(mine))
        assert status == 200 and {m["model_name"] for m in data["data"]} == {"stub-model"}
        assert all("api_key" not in m["litellm_params"] for m in data["data"])
    status, data, dummy = http_json("GET", sec.url + "/model_group/info", headers=bearer(mine))
    assert status == 200 and [g["model_group"] for g in data["data"]] == ["stub-model"]


def test_hash_is_not_a_credential(sec):
    key = new_key(sec)
    for header in ({"Authorization": f"Bearer {sha(key)}"}, {"x-litellm-api-key": sha(key)}):
        status, data, dummy = http_json("POST", sec.url + "/v1/chat/completions", {"model": "stub-model", "messages": []}, header)
        assert status == 401
        assert_litellm_error(data, 401)
    assert call(sec, "chat", key, "stub-model")[0] == 200


# --------------------------------------------------------------------------------------------------------------------
# Model access: a key reaches only its models; a team's restriction applies to its keys


def test_key_reaches_only_its_models(sec, stub_upstream):
    key = new_key(sec, models=["stub-model"])
    token = sha(key)
    before = stub_upstream.stats()["requests"]
    for route, model in (("chat", "granite-3-8b"), ("stream", "granite-3-8b"), ("completions", "granite-3-8b"), ("embeddings", "stub-embed"),
                         ("docling", None)):
        status, data = call(sec, route, key, model)
        assert status == 401, (route, data)
        assert_litellm_error(data, 401)
        assert data["error"]["type"] == "key_model_access_denied" or "not allowed to access model" in data["error"]["message"]
    status, data, dummy = http_json("POST", sec.url + "/docling/v1/convert/source", {}, {**bearer(key), "x-litemaas-model": "Docling"})
    assert status == 401
    assert stub_upstream.stats()["requests"] == before, "a refused request reached the upstream"
    for path in ("/v1/models", "/models"):
        status, data, dummy = http_json("GET", sec.url + path, headers=bearer(key))
        assert status == 200 and [m["id"] for m in data["data"]] == ["stub-model"]
    for name in ("granite-3-8b", "stub-embed", "Docling"):
        assert http_json("GET", sec.url + f"/v1/models/{name}", headers=bearer(key))[0] == 404
    assert call(sec, "chat", key, "stub-model")[0] == 200
    wait_for(lambda: flushed(sec, token, 1), message="spend row")
    assert db_value(sec.dsn, 'SELECT count(*) FROM "LiteLLM_SpendLogs" WHERE api_key = %s', token) == 1  # only the allowed call


def test_team_restriction_applies_to_its_keys(sec, stub_upstream):
    team = uid("sec-team-models")
    assert sec.admin("POST", "/team/new", {"team_id": team, "models": ["granite-3-8b"]})[0] == 200
    key = new_key(sec, team_id=team)  # the key itself has no model list: the team's applies
    before = stub_upstream.stats()["requests"]
    for route, model in (("chat", "stub-model"), ("completions", "stub-model"), ("embeddings", "stub-embed"), ("docling", None)):
        status, data = call(sec, route, key, model)
        assert status == 401, (route, data)
        assert_litellm_error(data, 401)
    assert stub_upstream.stats()["requests"] == before
    status, data, dummy = http_json("GET", sec.url + "/v1/models", headers=bearer(key))
    assert [m["id"] for m in data["data"]] == ["granite-3-8b"]
    assert call(sec, "completions", key, "granite-3-8b")[0] == 200


def test_user_restriction_applies_to_keys_without_team(sec, stub_upstream):
    user = uid("sec-user-models")
    assert sec.admin("POST", "/user/new", {"user_id": user, "models": ["stub-model"], "auto_create_key": False})[0] == 200
    key = new_key(sec, user_id=user)
    before = stub_upstream.stats()["requests"]
    for route, model in (("chat", "granite-3-8b"), ("embeddings", "stub-embed"), ("docling", None)):
        assert call(sec, route, key, model)[0] == 401, route
    assert stub_upstream.stats()["requests"] == before
    assert call(sec, "chat", key, "stub-model")[0] == 200


def test_every_listing_matches_what_team_and_user_keys_may_use(sec):
    team = uid("sec-list-team")
    assert sec.admin("POST", "/team/new", {"team_id": team, "models": ["granite-3-8b"]})[0] == 200
    user = uid("sec-list-user")
    assert sec.admin("POST", "/user/new", {"user_id": user, "models": ["stub-model"], "auto_create_key": False})[0] == 200
    for key, allowed, denied in ((new_key(sec, team_id=team), "granite-3-8b", "stub-model"), (new_key(sec, user_id=user), "stub-model", "granite-3-8b")):
        assert call(sec, "chat", key, denied)[0] == 401 and call(sec, "chat", key, allowed)[0] == 200  # enforcement itself is right
        listed = {}
        for path, field in (("/v1/models", "id"), ("/model/info", "model_name"), ("/model_group/info", "model_group")):
            status, data, dummy = http_json("GET", sec.url + path, headers=bearer(key))
            listed[path] = sorted({m[field] for m in data["data"]})
        assert listed == {"/v1/models": [allowed], "/model/info": [allowed], "/model_group/info": [allowed]}
        assert http_json("GET", sec.url + f"/v1/models/{denied}", headers=bearer(key))[0] == 404


# --------------------------------------------------------------------------------------------------------------------
# Expired, blocked, over budget: refused on every data route, not forwarded, not charged
# (tests/proxy/test_enforcement.py proves the chat route and the unblock/raise-budget paths)

ROUTES = [("chat", "stub-model"), ("stream", "stub-model"), ("completions", "stub-model"), ("embeddings", "stub-embed"), ("docling", None)]


def make_refused_key(p, state: str) -> tuple:
    """A key in the given refused state; returns (key, expected status, expected error type or message part)."""
    if state == "expired":
        key = new_key(p, duration="1h")
        past = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
        assert p.admin("POST", "/key/update", {"key": key, "expires": past})[0] == 200
        return key, 400, "expired_key"
    if state == "blocked":
        key = new_key(p)
        assert p.admin("POST", "/key/block", {"key": key})[0] == 200
        return key, 401, "Key is blocked"
    if state == "key budget":
        return new_key(p, max_budget=0), 400, "budget_exceeded"
    if state == "user budget":
        user = uid("sec-ub")
        assert p.admin("POST", "/user/new", {"user_id": user, "max_budget": 1e-6, "auto_create_key": False})[0] == 200
        assert p.admin("POST", "/user/update", {"user_id": user, "spend": 1})[0] == 200
        return new_key(p, user_id=user), 400, "budget_exceeded"
    if state == "team budget":
        team = uid("sec-tb")
        assert p.admin("POST", "/team/new", {"team_id": team, "max_budget": 1e-6})[0] == 200
        assert p.admin("POST", "/team/update", {"team_id": team, "spend": 1})[0] == 200
        return new_key(p, team_id=team), 400, "budget_exceeded"
    if state == "team blocked":
        team = uid("sec-tblk")
        assert p.admin("POST", "/team/new", {"team_id": team})[0] == 200
        key = new_key(p, team_id=team)
        assert p.admin("POST", "/team/block", {"team_id": team})[0] == 200
        return key, 401, "is blocked"
    raise ValueError(state)


@pytest.mark.parametrize("state", ["expired", "blocked", "key budget", "user budget", "team budget", "team blocked"])
def test_refused_keys_are_not_forwarded_nor_charged(sec, stub_upstream, state):
    key, expected, marker = make_refused_key(sec, state)
    token = sha(key)
    spend_before = db_value(sec.dsn, 'SELECT spend FROM "LiteLLM_VerificationToken" WHERE token = %s', token)
    before = stub_upstream.stats()["requests"]
    for route, model in ROUTES:
        status, data = call(sec, route, key, model)
        assert status == expected, (state, route, data)
        assert_litellm_error(data, expected)
        assert marker in (data["error"]["type"], ) or marker in data["error"]["message"], (state, route, data)
    assert stub_upstream.stats()["requests"] == before, f"{state}: a refused request reached the upstream"
    # A charged request would be written within the flush interval (0.2 s); a control request proves the writer runs.
    control = new_key(sec)
    assert call(sec, "chat", control, "stub-model")[0] == 200
    wait_for(lambda: flushed(sec, sha(control), 1), message="control spend row")
    assert db_value(sec.dsn, 'SELECT count(*) FROM "LiteLLM_SpendLogs" WHERE api_key = %s', token) == 0
    assert db_value(sec.dsn, 'SELECT spend FROM "LiteLLM_VerificationToken" WHERE token = %s', token) == spend_before


# --------------------------------------------------------------------------------------------------------------------
# Constant-time comparison, proved on the source (timing tests are too noisy to be trusted)

SECRET_NAMES = re.compile(r"master_key|presented|credential|passed", re.I)


def _names(node) -> set:
    out = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            out.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            out.add(sub.attr)
    return out


def _is_none(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def test_master_key_is_compared_with_hmac_compare_digest():
    tree = ast.parse((PKG / "auth.py").read_text())
    funcs = {f.name: f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)}
    is_master = funcs["is_master"]
    calls = [c for c in ast.walk(is_master) if isinstance(c, ast.Call)]
    digest = [c for c in calls if isinstance(c.func, ast.Attribute) and c.func.attr == "compare_digest"
              and isinstance(c.func.value, ast.Name) and c.func.value.id == "hmac"]
    assert len(digest) == 1, "is_master must compare through hmac.compare_digest"
    args = set().union(*(_names(a) for a in digest[0].args))
    assert {"presented", "master_key"} <= args, "compare_digest must receive the presented value and the master key"
    for cmp in (n for n in ast.walk(is_master) if isinstance(n, ast.Compare)):
        assert all(isinstance(op, (ast.Is, ast.IsNot)) for op in cmp.ops) and any(_is_none(c) for c in cmp.comparators), \
            f"is_master has a non-constant-time comparison at line {cmp.lineno}"


def test_no_secret_is_compared_with_equality_anywhere_in_the_proxy():
    """No ``==``/``!=``/``in`` touches the master key or a presented credential; only ``is None`` checks."""
    offenders = []
    for path in sorted(PKG.rglob("*.py")):
        if "tools" in path.relative_to(PKG).parts:
            continue  # command-line clients: they send the master key, they never check one
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare):
                continue
            operands = [node.left, *node.comparators]
            if all(isinstance(op, (ast.Is, ast.IsNot)) for op in node.ops):
                continue
            for operand in operands:
                names = {n for n in _names(operand) if SECRET_NAMES.search(n)}
                # Slices/prefix checks of a presented value (``value[:7].lower() == "bearer "``) compare the scheme, not the secret.
                if names and not isinstance(operand, (ast.Subscript, ast.Call)):
                    offenders.append(f"{path.relative_to(PKG)}:{node.lineno} {ast.unparse(node)}")
    assert offenders == []


def test_presented_keys_are_only_hashed_or_digest_compared():
    """Where the credential is read from the headers, it goes to is_master (hmac), hash_token (SHA-256 for the
    lookup), or a prefix/suffix check; the key cache and the database are queried by the hash only."""
    tree = ast.parse((PKG / "app.py").read_text())
    readers = [f for f in ast.walk(tree) if isinstance(f, ast.AsyncFunctionDef)
               and "presented = credential_from_headers(request.headers)" in ast.unparse(f)]
    assert len(readers) == 1, [f.name for f in readers]
    auth = readers[0]
    parents = {}
    for node in ast.walk(auth):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    uses = []
    for node in ast.walk(auth):
        if isinstance(node, ast.Name) and node.id == "presented" and isinstance(node.ctx, ast.Load):
            parent = parents[node]
            if isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name):
                uses.append(parent.func.id)
            elif isinstance(parent, ast.Attribute):
                uses.append("." + parent.attr)
            elif isinstance(parent, ast.Subscript):
                uses.append("[slice]")
            elif isinstance(parent, ast.Compare):
                uses.append("is None" if all(isinstance(op, (ast.Is, ast.IsNot)) for op in parent.ops) else "COMPARE")
            else:
                uses.append(type(parent).__name__)
    # (.isascii rejects header bytes that are not text before anything else happens; it compares nothing.)
    assert uses and set(uses) <= {"is_master", "hash_token", ".startswith", ".isascii", "[slice]", "is None", "len"}, uses
    assert "hash_token" in uses and "is_master" in uses
    # The error message may echo a value that is not a key (it does not start with sk-), like LiteLLM; keys appear abbreviated.
    source = ast.unparse(auth)
    assert "self.cache.get(token)" in source and "token = hash_token(presented)" in source
    loader = (PKG / "db.py").read_text()
    assert re.search(r"async def fetch_auth\(pool[^,]*, token", loader) and "WHERE k.token = $1" in loader, "keys are loaded by token (the hash)"
    assert re.search(r"async def fetch_auth_many\(pool[^,]*, tokens", loader) and "WHERE k.token = ANY($1::text[])" in loader
    app_src = (PKG / "app.py").read_text()
    assert "await db.fetch_auth(self.pool, token)" in app_src and "await db.fetch_auth_many(self.pool, tokens)" in app_src
    # The cache key is the hash: KeyCache.get receives ``token`` and nothing else.
    auth_src = (PKG / "auth.py").read_text()
    assert "def hash_token(key: str) -> str:\n    return hashlib.sha256(key.encode()).hexdigest()" in auth_src
