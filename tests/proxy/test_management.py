"""Management plane (LiteLLM admin API contract) against the real proxy process, PostgreSQL and Redis."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg2
import pytest

from tests.proxy.conftest import db_value
from tests.support.proxy import http_json

# shared/ lies beside the checkout (CI lays a copy there too).
PORTAL_CALLS = Path(__file__).resolve().parents[3] / "shared" / "reference" / "portal-calls-to-proxy.jsonl"


def uid(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def gen(proxy, **body):
    status, data = proxy.admin("POST", "/key/generate", body)
    assert status == 200, data
    return data


def assert_error(data, status: int, fragment: str = None, etype: str = None):
    assert set(data) == {"error"}, data
    err = data["error"]
    assert err["code"] == str(status), data
    assert {"message", "type", "param", "code"} <= set(err)
    if fragment:
        assert fragment in err["message"], data
    if etype:
        assert err["type"] == etype, data


# ------------------------------------------------------------------ auth


def test_master_key_via_both_headers(proxy):
    """The master key works in either header and sees the same listing (LiteLLM's /key/list shape)."""
    alias = "both-headers-" + uuid.uuid4().hex[:8]
    status, created, dummy = http_json("POST", proxy.url + "/key/generate", {"key_alias": alias},
                                       headers={"x-litellm-api-key": proxy.master_key})
    assert status == 200, created
    listings = []
    for headers in ({"Authorization": f"Bearer {proxy.master_key}"}, {"x-litellm-api-key": proxy.master_key}):
        status, data, dummy = http_json("GET", proxy.url + f"/key/list?key_alias={alias}&return_full_object=true", headers=headers)
        assert status == 200, data
        assert [k["key_alias"] for k in data["keys"]] == [alias], data
        assert data["keys"][0]["token"] == created["token"], data
        assert data["total_count"] == 1, data
        listings.append(data)
    assert listings[0] == listings[1]


def test_auth_errors(proxy):
    status, data, dummy = http_json("GET", proxy.url + "/key/list")
    assert status == 401
    assert_error(data, 401, "No api key passed in", "auth_error")
    status, data, dummy = http_json("GET", proxy.url + "/key/list", headers={"Authorization": proxy.master_key})
    assert status == 401
    assert_error(data, 401, "Malformed API Key")
    status, data, dummy = http_json("GET", proxy.url + "/key/list", headers={"Authorization": "Bearer not-a-key-pw0rd-4711"})
    assert status == 401
    assert_error(data, 401, "LiteLLM Virtual Key expected")
    assert "pw0rd" not in json.dumps(data)  # whatever was sent by mistake is not repeated back
    status, data, dummy = http_json("GET", proxy.url + "/key/list", headers={"Authorization": "Bearer sk-unknown-key-123"})
    assert status == 401
    assert_error(data, 401, "Invalid proxy server token", "token_not_found_in_db")


def test_virtual_key_cannot_call_admin_routes(proxy):
    key = gen(proxy)["key"]
    status, data = proxy.admin("POST", "/key/generate", {}, key=key)
    assert status == 401
    assert_error(data, 401, "Only proxy admin", "auth_error")


# ------------------------------------------------------------------ keys


def test_generate_stores_only_the_hash(proxy):
    alias = uid("hash")
    data = gen(proxy, key_alias=alias, models=["stub-model"], max_budget=5, tpm_limit=100, rpm_limit=10, metadata={"a": 1})
    key = data["key"]
    assert key.startswith("sk-") and len(key) > 20
    assert data["token"] == sha(key) == data["token_id"]
    assert data["key_name"] == "sk-..." + key[-4:]
    assert data["key_alias"] == alias and data["models"] == ["stub-model"] and data["max_budget"] == 5
    assert data["metadata"] == {"a": 1} and data["expires"] is None
    conn = psycopg2.connect(proxy.dsn)
    try:
        with conn.cursor() as cur:
            cur.execute('SELECT row_to_json(t)::text FROM "LiteLLM_VerificationToken" t WHERE key_alias = %s', (alias,))
            row_text = cur.fetchone()[0]
    finally:
        conn.close()
    assert key not in row_text
    assert json.loads(row_text)["token"] == sha(key)


def test_generate_with_custom_key_and_duration(proxy):
    custom = "sk-" + uuid.uuid4().hex
    data = gen(proxy, key=custom, duration="1h")
    assert data["key"] == custom
    expires = datetime.fromisoformat(data["expires"])
    assert timedelta(minutes=59) < expires - datetime.now(timezone.utc) <= timedelta(hours=1)
    status, err = proxy.admin("POST", "/key/generate", {"key": "bad-key"})
    assert status == 400
    assert_error(err, 400, "must start with 'sk-'")


@pytest.mark.parametrize("duration", ["30s", "12h", "30d", "1w", "1mo"])
def test_duration_units(proxy, duration):
    data = gen(proxy, duration=duration, budget_duration=duration)
    assert data["expires"] is not None
    assert data["budget_reset_at"] is not None


@pytest.mark.parametrize("body,param", [
    ({"duration": "30"}, "duration"),
    ({"duration": "abc"}, "duration"),
    ({"budget_duration": "1x"}, "budget_duration"),
    ({"max_budget": -1}, "max_budget"),
    ({"max_budget": "lots"}, "max_budget"),
    ({"tpm_limit": 1.5}, "tpm_limit"),
    ({"models": ["no-such-model"]}, "models"),
    ({"team_id": "no-such-team"}, "team_id"),
])
def test_generate_rejects_bad_input_with_400(proxy, body, param):
    status, data = proxy.admin("POST", "/key/generate", body)
    assert status == 400, data
    assert_error(data, 400)
    assert data["error"]["param"] == param


def test_alias_is_unique(proxy):
    alias = uid("dup")
    gen(proxy, key_alias=alias)
    status, data = proxy.admin("POST", "/key/generate", {"key_alias": alias})
    assert status == 400
    assert_error(data, 400, f"Key with alias '{alias}' already exists")
    other = gen(proxy, key_alias=uid("other"))
    status, data = proxy.admin("POST", "/key/update", {"key": other["key"], "key_alias": alias})
    assert status == 400
    assert_error(data, 400, "already exists")
    # Re-setting a key's own alias is fine.
    status, dummy = proxy.admin("POST", "/key/update", {"key": other["key"], "key_alias": other["key_alias"]})
    assert status == 200


def test_key_info_by_key_hash_and_own_key(proxy):
    alias = uid("info")
    data = gen(proxy, key_alias=alias, max_budget=3)
    key = data["key"]
    for ident in (key, sha(key)):
        status, info = proxy.admin("GET", f"/key/info?key={ident}")
        assert status == 200
        assert info["key"] == ident
        assert info["info"]["key_alias"] == alias and "token" not in info["info"]
    # The portal's call: the user's own key in x-litellm-api-key, no ?key=.
    status, info = proxy.admin("GET", "/key/info", key=key)
    assert status == 200
    assert info["key"] == key and info["info"]["key_alias"] == alias and info["info"]["max_budget"] == 3
    for name in ("spend", "max_budget", "tpm_limit", "rpm_limit", "budget_duration", "budget_reset_at", "soft_budget", "models", "expires",
                 "key_alias", "max_parallel_requests", "model_max_budget"):
        assert name in info["info"]
    status, err = proxy.admin("GET", "/key/info?key=sk-does-not-exist")
    assert status == 404
    assert_error(err, 404, "Key not found", "not_found_error")


def test_key_update_changes_only_given_fields(proxy):
    data = gen(proxy, key_alias=uid("upd"), max_budget=10, rpm_limit=5, models=["stub-model"], duration="1d", metadata={"x": 1})
    key = data["key"]
    status, out = proxy.admin("POST", "/key/update", {"key": key, "max_budget": 20, "rpm_limit": 50})
    assert status == 200, out
    assert out["key"] == key and out["token"] == sha(key)
    info = proxy.admin("GET", f"/key/info?key={key}")[1]["info"]
    assert info["max_budget"] == 20 and info["rpm_limit"] == 50 and info["models"] == ["stub-model"] and info["metadata"] == {"x": 1}
    assert info["expires"] is not None
    status, dummy = proxy.admin("POST", "/key/update", {"key": sha(key), "duration": "-1", "models": [], "metadata": {"y": 2}})
    assert status == 200
    info = proxy.admin("GET", f"/key/info?key={key}")[1]["info"]
    assert info["expires"] is None and info["models"] == [] and info["metadata"] == {"y": 2}
    status, err = proxy.admin("POST", "/key/update", {"key": key, "duration": "soon"})
    assert status == 400 and err["error"]["param"] == "duration"
    status, err = proxy.admin("POST", "/key/update", {"key": key, "max_budget": -5})
    assert status == 400 and "cannot be negative" in err["error"]["message"]
    status, err = proxy.admin("POST", "/key/update", {"max_budget": 1})
    assert status == 422 and "detail" in err
    status, err = proxy.admin("POST", "/key/update", {"key": "sk-missing-key", "max_budget": 1})
    assert status == 404


def test_key_list_paging_and_filters(proxy):
    user = uid("lister")
    tokens = {sha(gen(proxy, user_id=user, key_alias=uid("l"))["key"]) for dummy in range(3)}
    status, page1 = proxy.admin("GET", f"/key/list?user_id={user}&size=2&page=1")
    assert status == 200
    assert page1["total_count"] == 3 and page1["total_pages"] == 2 and page1["current_page"] == 1 and len(page1["keys"]) == 2
    status, page2 = proxy.admin("GET", f"/key/list?user_id={user}&size=2&page=2")
    assert set(page1["keys"]) | set(page2["keys"]) == tokens
    alias = uid("only")
    token = sha(gen(proxy, key_alias=alias)["key"])
    status, data = proxy.admin("GET", f"/key/list?key_alias={alias}")
    assert data["keys"] == [token] and data["total_count"] == 1
    status, data = proxy.admin("GET", f"/key/list?key_alias={alias}&return_full_object=true")
    assert data["keys"][0]["token"] == token and data["keys"][0]["key_alias"] == alias
    status, data = proxy.admin("GET", "/key/list?size=1000")
    assert status == 422 and data["detail"][0]["loc"] == ["query", "size"]


def test_key_delete_by_keys_and_aliases(proxy):
    k1 = gen(proxy, key_alias=uid("del"))
    status, data = proxy.admin("POST", "/key/delete", {"keys": [k1["key"]]})
    assert status == 200 and data == {"deleted_keys": [k1["key"]]}
    assert proxy.admin("GET", f"/key/info?key={k1['key']}")[0] == 404
    status, dummy, dummy = http_json("POST", proxy.url + "/v1/chat/completions", {"model": "stub-model", "messages": []},
                                     {"Authorization": f"Bearer {k1['key']}"})
    assert status == 401
    k2 = gen(proxy, key_alias=uid("del"))
    status, data = proxy.admin("POST", "/key/delete", {"key_aliases": [k2["key_alias"]]})
    assert status == 200 and data == {"deleted_keys": [k2["key_alias"]]}
    assert proxy.admin("GET", f"/key/info?key={k2['token']}")[0] == 404
    status, data = proxy.admin("POST", "/key/delete", {"keys": ["sk-never-existed"]})
    assert status == 404
    assert_error(data, 404, "No keys found")
    status, data = proxy.admin("POST", "/key/delete", {})
    assert status == 422 and "detail" in data


def test_block_and_unblock(proxy):
    key = gen(proxy, key_alias=uid("blk"))["key"]
    status, row = proxy.admin("POST", "/key/block", {"key": key})
    assert status == 200 and row["blocked"] is True
    assert proxy.admin("GET", f"/key/info?key={key}")[1]["info"]["blocked"] is True
    status, row = proxy.admin("POST", "/key/unblock", {"key": sha(key)})
    assert status == 200 and row["blocked"] is False
    status, err = proxy.admin("POST", "/key/block", {"key": "not a key!"})
    assert status == 400 and err["error"]["message"] == "Invalid key format."
    status, err = proxy.admin("POST", "/key/block", {"key": "sk-unknown123"})
    assert status == 404


def test_regenerate(proxy):
    data = gen(proxy, key_alias=uid("regen"), max_budget=7)
    status, new = proxy.admin("POST", "/key/regenerate", {"key": data["key"]})
    assert status == 200, new
    assert new["key"] != data["key"] and new["token"] == sha(new["key"]) and new["key_alias"] == data["key_alias"]
    assert new["max_budget"] == 7 and new["rotation_count"] == 1
    assert proxy.admin("GET", f"/key/info?key={data['key']}")[0] == 404
    assert proxy.admin("GET", f"/key/info?key={new['key']}")[0] == 200
    status, newer = proxy.admin("POST", f"/key/{new['token']}/regenerate", {})
    assert status == 200 and newer["key"] != new["key"]
    assert proxy.admin("POST", "/key/regenerate", {"key": "sk-nope"})[0] == 404


# ------------------------------------------------------------------ users and teams


def test_user_lifecycle(proxy):
    team = uid("team")
    status, t = proxy.admin("POST", "/team/new", {"team_id": team, "team_alias": "T", "max_budget": 10, "models": []})
    assert status == 200 and t["team_id"] == team
    user = str(uuid.uuid4())
    email = f"{user[:8]}@example.com"
    status, u = proxy.admin("POST", "/user/new", {"user_id": user, "user_email": email, "user_alias": "alice", "user_role": "internal_user",
                                                  "max_budget": 100, "tpm_limit": 10000, "rpm_limit": 60, "auto_create_key": False,
                                                  "teams": [team]})
    assert status == 200, u
    assert u["user_id"] == user and u["key"] == "" and u["max_budget"] == 100
    assert proxy.admin("POST", "/user/new", {"user_id": user})[0] == 409
    assert proxy.admin("POST", "/user/new", {"user_email": email.upper()})[0] == 409
    key = gen(proxy, user_id=user, key_alias=uid("ukey"))
    status, info = proxy.admin("GET", f"/user/info?user_id={user}")
    assert status == 200
    assert info["user_id"] == user and info["user_info"]["teams"] == [team]
    assert [t["team_id"] for t in info["teams"]] == [team]
    assert info["keys"][0]["token"] == key["token"] and info["keys"][0]["key_name"] == key["key_name"]
    status, upd = proxy.admin("POST", "/user/update", {"user_id": user, "max_budget": 500, "tpm_limit": 20000})
    assert status == 200 and upd["user_id"] == user and upd["data"]["max_budget"] == 500
    status, info = proxy.admin("GET", f"/user/info?user_id={user}")
    assert info["user_info"]["max_budget"] == 500 and info["user_info"]["rpm_limit"] == 60
    status, n = proxy.admin("POST", "/user/delete", {"user_ids": [user]})
    assert status == 200 and n == 1
    assert proxy.admin("GET", f"/user/info?user_id={user}")[0] == 404
    assert proxy.admin("GET", f"/key/info?key={key['key']}")[0] == 404
    status, err = proxy.admin("POST", "/user/delete", {"user_ids": [user]})
    assert status == 404 and err == {"detail": {"error": f"User not found, passed user_id={user}"}}


def test_user_update_upserts(proxy):
    user = uid("ups")
    status, data = proxy.admin("POST", "/user/update", {"user_id": user, "max_budget": 3})
    assert status == 200 and data["data"]["max_budget"] == 3
    assert proxy.admin("GET", f"/user/info?user_id={user}")[0] == 200
    assert proxy.admin("POST", "/user/update", {"max_budget": 3})[0] == 422


def test_user_new_auto_creates_key_by_default(proxy):
    status, data = proxy.admin("POST", "/user/new", {"user_id": uid("auto"), "models": ["stub-model"]})
    assert status == 200 and data["key"].startswith("sk-")
    status, info = proxy.admin("GET", f"/key/info?key={data['key']}")
    assert status == 200 and info["info"]["user_id"] == data["user_id"]


def test_team_new_and_info(proxy):
    team = uid("tm")
    status, data = proxy.admin("POST", "/team/new", {"team_id": team, "team_alias": "Default Team", "max_budget": 10000, "tpm_limit": 50000,
                                                     "rpm_limit": 1000, "admins": [], "models": []})
    assert status == 200 and data["team_id"] == team and data["max_budget"] == 10000
    status, err = proxy.admin("POST", "/team/new", {"team_id": team})
    assert status == 400 and "already exists" in err["error"]["message"]
    status, info = proxy.admin("GET", f"/team/info?team_id={team}")
    assert status == 200 and info["team_id"] == team and info["team_info"]["tpm_limit"] == 50000
    assert proxy.admin("GET", "/team/info?team_id=nope")[0] == 404
    assert proxy.admin("POST", "/team/new", {"max_budget": -1})[0] == 400


@pytest.mark.parametrize("members, fragment", [([None], "members_with_roles must hold objects"),
                                               ([{"role": "owner", "user_id": "u1"}], "role must be 'admin' or 'user'"),
                                               ([{"role": "user", "user_id": 7}], "user_id must be a string")])
def test_team_members_must_be_member_objects(proxy, members, fragment):
    """A malformed members_with_roles is refused naming the field, and no team is created."""
    team = uid("tm")
    status, err = proxy.admin("POST", "/team/new", {"team_id": team, "members_with_roles": members})
    assert status == 400, err
    assert_error(err, 400, fragment)
    assert err["error"]["param"] == "members_with_roles"
    assert proxy.admin("GET", f"/team/info?team_id={team}")[0] == 404


# ------------------------------------------------------------------ models


def test_model_crud_and_proxy_model_table(proxy):
    name = uid("llama")
    body = {"model_name": name, "litellm_params": {"model": "openai/llama-3-8b", "api_base": "http://vllm2:8000/v1", "custom_llm_provider": "openai",
                                                   "input_cost_per_token": 0, "output_cost_per_token": 0, "tpm": 1000, "rpm": 10, "api_key": "secret"},
            "model_info": {"db_model": True, "max_tokens": 4096, "supports_vision": False, "supports_function_calling": False}}
    status, data = proxy.admin("POST", "/model/new", body)
    assert status == 200, data
    model_id = data["model_info"]["id"]
    assert data["model_name"] == name and "api_key" not in data["litellm_params"]
    conn = psycopg2.connect(proxy.dsn)
    try:
        with conn.cursor() as cur:
            cur.execute('SELECT model_name FROM "LiteLLM_ProxyModelTable"')
            assert name in {r[0] for r in cur.fetchall()}
    finally:
        conn.close()
    status, info = proxy.admin("GET", "/model/info")
    entry = next(m for m in info["data"] if m["model_name"] == name)
    assert entry["model_info"]["id"] == model_id and entry["model_info"]["db_model"] is True and entry["model_info"]["max_tokens"] == 4096
    assert entry["litellm_params"]["model"] == "openai/llama-3-8b" and entry["litellm_params"]["api_base"] == "http://vllm2:8000/v1"
    assert "api_key" not in entry["litellm_params"]
    assert entry["model_info"]["input_cost_per_token"] == 0
    status, v1 = proxy.admin("GET", "/v1/model/info")
    assert v1 == info
    # A key may now name the model.
    gen(proxy, models=[name])
    status, dummy, dummy = http_json("PATCH", f"{proxy.url}/model/{model_id}/update", {"litellm_params": {"rpm": 20, "input_cost_per_token": 1e-6}},
                                     {"x-litellm-api-key": proxy.master_key})
    assert status == 200
    entry = next(m for m in proxy.admin("GET", "/model/info")[1]["data"] if m["model_name"] == name)
    assert entry["litellm_params"]["rpm"] == 20 and entry["litellm_params"]["tpm"] == 1000 and entry["model_info"]["id"] == model_id
    assert entry["model_info"]["input_cost_per_token"] == 1e-6
    status, data = proxy.admin("POST", "/model/delete", {"id": model_id})
    assert status == 200 and data == {"message": f"Model: {model_id} deleted successfully"}
    assert all(m["model_name"] != name for m in proxy.admin("GET", "/model/info")[1]["data"])
    assert proxy.admin("POST", "/model/delete", {"id": model_id})[0] == 400


@pytest.mark.parametrize("params, fragment", [({"tpm": True}, "litellm_params.tpm must be a number"),
                                              ({"rpm": 1.5}, "litellm_params.rpm must be a whole number"),
                                              ({"input_cost_per_token": False}, "litellm_params.input_cost_per_token must be a number")])
def test_model_numbers_are_numbers(proxy, params, fragment):
    """true/false are not numbers (Python's bool is an int), and limits are whole numbers; nothing is stored."""
    name = uid("badnum")
    status, err = proxy.admin("POST", "/model/new", {"model_name": name, "litellm_params": {"model": "openai/x", **params}})
    assert status == 400, err
    assert_error(err, 400, fragment)
    assert all(m["model_name"] != name for m in proxy.admin("GET", "/model/info")[1]["data"])


def test_config_models_are_read_only(proxy):
    info = proxy.admin("GET", "/model/info")[1]["data"]
    cfg = next(m for m in info if m["model_name"] == "stub-model")
    assert cfg["model_info"]["db_model"] is False
    assert proxy.admin("POST", "/model/delete", {"id": cfg["model_info"]["id"]})[0] == 400
    status, err = proxy.admin("POST", "/model/new", {"model_name": "x"})
    assert status == 400


# ------------------------------------------------------------------ health


def test_health_endpoints(proxy):
    for path in ("/health/liveliness", "/health/liveness"):
        status, data, dummy = http_json("GET", proxy.url + path)
        assert status == 200 and data == "I'm alive!"
    status, data, dummy = http_json("GET", proxy.url + "/health/readiness")
    assert status == 200 and data["status"] == "healthy" and data["db"] == "connected" and data["cache"] == "redis"
    status, text, dummy = http_json("GET", proxy.url + "/metrics")
    assert status == 200 and "litellm_proxy_total_requests_metric" in text


# ------------------------------------------------------------------ the portal's exact calls


def _portal_calls():
    return [json.loads(line) for line in PORTAL_CALLS.read_text().splitlines() if line.strip()]


def test_portal_call_sequence(proxy):
    """Replay every call the upstream portal makes, with its exact bodies (ids made unique), and check the fields it reads."""
    calls = _portal_calls()
    user_id, team_id = str(uuid.uuid4()), "a0000000-0000-4000-8000-" + uuid.uuid4().hex[:12]
    state = {"user_key": None, "rotated_key": None, "model_id": None}

    def subst(value):
        text = json.dumps(value)
        text = text.replace("ebf67981-81db-4ee6-859c-e9eb0942b4fe", user_id).replace("a0000000-0000-4000-8000-000000000001", team_id)
        text = text.replace("alice@example.com", f"{user_id[:8]}@example.com").replace("ci-key_6c34051d", uid("ci-key"))
        text = text.replace("llama-test", "llama-" + user_id[:8])
        if state["user_key"]:
            text = text.replace("sk-Z6Iger1S_caT1sWUlWrlnQ", state["user_key"])
        if state["rotated_key"]:
            text = text.replace("sk-GDzEG3SG31gzJZo1seHIEg", state["rotated_key"])
        if state["model_id"]:
            text = text.replace("b433e578-3854-4752-b11d-6a7d4990127b", state["model_id"])
        return json.loads(text)

    seen_user = seen_team = False
    for call in calls:
        headers = subst(call["headers"])
        if headers.get("x-litellm-api-key") == "sk-master-dummy":
            headers["x-litellm-api-key"] = proxy.master_key
        query = subst(call["query"])
        path = call["path"] + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
        body = subst(call["body"]) if call["body"] is not None else None
        status, data, dummy = http_json(call["method"], proxy.url + path, body, headers)
        p = call["path"]
        if p == "/user/info":
            if not seen_user:
                assert status == 404, data  # portal: 404 means "create the user"
            else:
                assert status == 200 and data["teams"] and data["user_info"]["teams"]
                for name in ("max_budget", "spend", "tpm_limit", "rpm_limit", "budget_duration", "budget_reset_at"):
                    assert name in data["user_info"]
                for k in data["keys"]:
                    assert {"token", "key_name", "key_alias", "spend"} <= set(k)
            continue
        if p == "/team/info":
            assert status == (200 if seen_team else 404), data
            continue
        assert status == 200, (call, data)
        if p == "/team/new":
            seen_team = True
            assert data["team_id"] == team_id
        elif p == "/user/new":
            seen_user = True
            assert data["user_id"] == user_id
        elif p == "/key/generate":
            assert data["key"].startswith("sk-")
            if state["user_key"] is None:
                state["user_key"] = data["key"]
            else:
                state["rotated_key"] = data["key"]
                assert data["max_budget"] == 20.0
        elif p == "/key/info":
            assert data["key"] == state["user_key"]
            for name in ("spend", "max_budget", "tpm_limit", "rpm_limit", "budget_duration", "budget_reset_at", "soft_budget", "models", "expires",
                         "key_alias", "max_parallel_requests", "model_max_budget"):
                assert name in data["info"]
        elif p == "/model/new":
            state["model_id"] = data["model_info"]["id"]
            assert data["model_name"] == body["model_name"]
        elif p == "/model/info":
            for m in data["data"]:
                assert {"model_name", "litellm_params", "model_info"} <= set(m)
                assert m["model_info"]["id"]
                assert {"model", "api_base", "input_cost_per_token", "output_cost_per_token"} <= set(m["litellm_params"]) or m["model_info"]["db_model"]
        elif p == "/user/daily/activity":
            assert {"total_spend", "total_tokens", "total_prompt_tokens", "total_completion_tokens", "total_api_requests", "has_more", "page",
                    "total_pages"} <= set(data["metadata"])
            assert isinstance(data["results"], list)
    assert state["user_key"] and state["rotated_key"] and state["model_id"]


def test_model_params_are_sealed_in_the_database(proxy, stub_upstream):
    # String values of litellm_params (the upstream key above all) are stored sealed; the API, the router and the
    # upstream call see the plain values; a later update keeps them; a row stored in plain text still loads.
    upstream_key = "sk-upstream-" + uuid.uuid4().hex
    name = uid("sealed")
    body = {"model_name": name, "litellm_params": {"model": "openai/stub-model", "api_base": stub_upstream.url, "api_key": upstream_key, "rpm": 100},
            "model_info": {"mode": "chat"}}
    status, created = proxy.admin("POST", "/model/new", body)
    assert status == 200, created
    model_id = created["model_info"]["id"]
    assert created["litellm_params"]["api_base"] == stub_upstream.url and "api_key" not in created["litellm_params"]
    status, updated = proxy.admin("POST", "/model/update", {"model_info": {"id": model_id}, "litellm_params": {"rpm": 200}})
    assert status == 200 and updated["litellm_params"]["model"] == "openai/stub-model", updated
    stored = db_value(proxy.dsn, 'SELECT litellm_params::text FROM "LiteLLM_ProxyModelTable" WHERE model_id = %s', model_id)
    assert upstream_key not in stored and stub_upstream.url not in stored and "openai/stub-model" not in stored
    assert json.loads(stored)["rpm"] == 200
    entry = next(m for m in proxy.admin("GET", "/model/info")[1]["data"] if m["model_name"] == name)
    assert entry["litellm_params"]["api_base"] == stub_upstream.url and entry["litellm_params"]["rpm"] == 200
    key = gen(proxy, models=[name])["key"]
    status, data, dummy = http_json("POST", proxy.url + "/v1/chat/completions", {"model": name, "messages": [{"role": "user", "content": "hi"}]},
                                    {"Authorization": f"Bearer {key}"})
    assert status == 200, data
    assert stub_upstream.stats()["recent"][-1]["headers"].get("authorization") == f"Bearer {upstream_key}"
    proxy.admin("POST", "/model/delete", {"id": model_id})


def test_plain_model_rows_are_sealed_at_start(proxy_factory, stub_upstream):
    # Rows stored in plain text (before sealing existed) are sealed by the next proxy start, including a 64-character
    # hexadecimal upstream key (which has the length of a sealed value). The model keeps working throughout. A value
    # sealed under another key is never sealed again: tests/litellm_db covers it with LiteLLM's own helper.
    first = proxy_factory(database=f"sealing_{uuid.uuid4().hex[:8]}")
    model_id, name, upstream_key = uid("plain-id"), uid("plain"), uuid.uuid4().hex + uuid.uuid4().hex
    conn = psycopg2.connect(first.dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute('INSERT INTO "LiteLLM_ProxyModelTable" (model_id, model_name, litellm_params, model_info) VALUES (%s, %s, %s::jsonb, %s::jsonb)',
                        (model_id, name, json.dumps({"model": "openai/stub-model", "api_base": stub_upstream.url, "api_key": upstream_key, "rpm": 50}),
                         json.dumps({"mode": "chat"})))
    finally:
        conn.close()
    second = proxy_factory(dsn=first.dsn)
    stored = db_value(first.dsn, 'SELECT litellm_params FROM "LiteLLM_ProxyModelTable" WHERE model_id = %s', model_id)
    assert upstream_key not in json.dumps(stored) and stub_upstream.url not in json.dumps(stored)
    assert stored["rpm"] == 50 and set(stored) == {"model", "api_base", "api_key", "rpm"}
    entry = next(m for m in second.admin("GET", "/model/info")[1]["data"] if m["model_name"] == name)
    assert entry["litellm_params"]["api_base"] == stub_upstream.url
    key = gen(second, models=[name])["key"]
    status, data, dummy = http_json("POST", second.url + "/v1/chat/completions", {"model": name, "messages": [{"role": "user", "content": "hi"}]},
                                    {"Authorization": f"Bearer {key}"})
    assert status == 200, data
    assert stub_upstream.stats()["recent"][-1]["headers"].get("authorization") == f"Bearer {upstream_key}"
