"""Bad input to the proxy: each malformed request gets a clear 4xx in LiteLLM's error shape, naming the field,
and a refused write leaves the database exactly as it was (checked with psycopg2).

The proxy here runs on its own database, so row counts are not disturbed by other tests.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import sys
import uuid
from urllib.parse import urlparse

import psycopg2
import psycopg2.extras
import pytest

from tests.proxy.conftest import chat, db_value
from tests.support.proxy import PROXY_SRC, http_json

sys.path.insert(0, str(PROXY_SRC))

KEY_TABLE = '"LiteLLM_VerificationToken"'
USER_TABLE = '"LiteLLM_UserTable"'
TEAM_TABLE = '"LiteLLM_TeamTable"'
MODEL_TABLE = '"LiteLLM_ProxyModelTable"'
LIMIT_MB = 1


@pytest.fixture(scope="module")
def bad_proxy(proxy_factory):
    """A proxy with its own database and a 1 MB request body limit (general_settings.max_request_size_mb)."""
    return proxy_factory(database="reliability_bad_input", config_extra={"general_settings": {"max_request_size_mb": LIMIT_MB}})


@pytest.fixture(scope="module")
def vkey(bad_proxy) -> str:
    status, data = bad_proxy.admin("POST", "/key/generate", {"key_alias": "bad-input-data-key"})
    assert status == 200, data
    return data["key"]


def uid(prefix: str = "b") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def rows(dsn: str, sql: str, *args) -> list:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(sql, args)
            return [dict(r) for r in cur.fetchall()]
    finally:
        conn.close()


def count(dsn: str, table: str) -> int:
    return db_value(dsn, f"SELECT count(*) FROM {table}")


def raw_request(proxy, method: str, path: str, body: bytes, headers: dict, chunked: bool = False) -> tuple:
    """Send raw bytes (not necessarily JSON); return (status, parsed JSON or text)."""
    url = urlparse(proxy.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        if chunked:
            conn.putrequest(method, path)
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            step = 256 * 1024
            try:
                for i in range(0, len(body), step):
                    piece = body[i:i + step]
                    conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                conn.send(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the proxy may answer and stop reading before the end; its answer is still there
        else:
            conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        status, ctype = resp.status, resp.getheader("Content-Type", "")
    finally:
        conn.close()
    try:
        return status, json.loads(raw), ctype
    except ValueError:
        return status, raw.decode("utf-8", "replace"), ctype


def assert_error(status: int, data, expected_status: int, *words: str, param=None) -> dict:
    """LiteLLM's shape A with the status as a string; the message contains every word (case-insensitive)."""
    assert status == expected_status, (status, data)
    assert isinstance(data, dict) and isinstance(data.get("error"), dict), data
    err = data["error"]
    assert set(err) >= {"message", "type", "param", "code"} and err["code"] == str(expected_status), data
    for word in words:
        assert word.lower() in err["message"].lower(), (word, err["message"])
    if param is not None:
        assert err["param"] == param, data
    return err


def master(proxy) -> dict:
    return {"x-litellm-api-key": proxy.master_key, "Content-Type": "application/json"}


# ------------------------------------------------------------------ not JSON, not an object

@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"])
@pytest.mark.parametrize("payload", [b"{", b'{"model": "stub-model",}', b"not json at all", b"\xff\xfe\x00"])
def test_malformed_json_on_the_data_plane(bad_proxy, vkey, path, payload):
    status, data, ctype = raw_request(bad_proxy, "POST", path, payload, {"Authorization": f"Bearer {vkey}", "Content-Type": "application/json"})
    assert ctype.startswith("application/json")
    assert_error(status, data, 400, "Invalid JSON payload")


@pytest.mark.parametrize("path", ["/key/generate", "/key/update", "/user/new", "/team/new", "/model/new"])
def test_malformed_json_on_management_routes(bad_proxy, path):
    before = [count(bad_proxy.dsn, t) for t in (KEY_TABLE, USER_TABLE, TEAM_TABLE, MODEL_TABLE)]
    status, data, dummy = raw_request(bad_proxy, "POST", path, b'{"key_alias": "x"', master(bad_proxy))
    assert_error(status, data, 400, "Invalid JSON payload")
    assert [count(bad_proxy.dsn, t) for t in (KEY_TABLE, USER_TABLE, TEAM_TABLE, MODEL_TABLE)] == before


@pytest.mark.parametrize("payload", [[1, 2], "a string", 42, None, True])
def test_json_that_is_not_an_object(bad_proxy, vkey, payload):
    status, data, dummy = http_json("POST", bad_proxy.url + "/v1/chat/completions", payload, {"Authorization": f"Bearer {vkey}"})
    if payload is None:  # "null" is read as an empty body: the model is missing
        assert_error(status, data, 400, "Invalid JSON payload")
        return
    assert_error(status, data, 400, "Invalid JSON payload", "expected an object")
    before = count(bad_proxy.dsn, KEY_TABLE)
    status, data = bad_proxy.admin("POST", "/key/generate", payload)
    assert status == 422, data
    assert data["detail"][0]["loc"] == ["body"] and data["detail"][0]["type"] == "model_attributes_type", data
    assert count(bad_proxy.dsn, KEY_TABLE) == before


# ------------------------------------------------------------------ data plane: wrong types, unknown models

CHAT_BAD = [
    ("model", 123, "'model' must be a string"),
    ("model", ["stub-model"], "'model' must be a string"),
    ("model", "", "'model' is required"),
    ("messages", "hello", "'messages' must be a non-empty list"),
    ("messages", [], "'messages' must be a non-empty list"),
    ("messages", {"role": "user", "content": "hi"}, "'messages' must be a non-empty list"),
    ("messages", ["hello"], "'messages[0]' must be an object"),
    ("messages", [{"content": "hi"}], "'messages[0].role' must be a string"),
    ("messages", [{"role": "user", "content": 42}], "'messages[0].content' must be a string or a list"),
    ("max_tokens", "10", "'max_tokens' must be an integer >= 1"),
    ("max_tokens", 0, "'max_tokens' must be an integer >= 1"),
    ("max_tokens", -5, "'max_tokens' must be an integer >= 1"),
    ("max_tokens", 1.5, "'max_tokens' must be an integer >= 1"),
    ("max_tokens", True, "'max_tokens' must be an integer >= 1"),
    ("stream", "yes", "'stream' must be true or false"),
    ("stream", 1, "'stream' must be true or false"),
    ("temperature", "hot", "'temperature' must be a number"),
    ("n", 0, "'n' must be an integer >= 1"),
    ("stop", 5, "'stop' must be a string or a list of strings"),
    ("user", {"id": 1}, "'user' must be a string"),
    ("stream_options", True, "'stream_options' must be an object"),
    ("tools", "none", "'tools' must be a list of objects"),
]


@pytest.mark.parametrize("field,value,message", CHAT_BAD, ids=[f"{f}={v!r}" for f, v, m in CHAT_BAD])
def test_chat_field_with_a_wrong_type_names_the_field(bad_proxy, vkey, field, value, message):
    body = {"model": "stub-model", "messages": [{"role": "user", "content": "hello"}], field: value}
    status, data, dummy = http_json("POST", bad_proxy.url + "/v1/chat/completions", body, {"Authorization": f"Bearer {vkey}"})
    err = assert_error(status, data, 400, message)
    assert err["param"] == field or err["param"].startswith(field + "["), err
    # Refused before any model server call: nothing is recorded for this key.
    assert db_value(bad_proxy.dsn, 'SELECT count(*) FROM "LiteLLM_SpendLogs" WHERE api_key = %s', hashlib.sha256(vkey.encode()).hexdigest()) == 0


@pytest.mark.parametrize("path,body,message", [
    ("/v1/completions", {"model": "stub-model"}, "'prompt' is required"),
    ("/v1/completions", {"model": "stub-model", "prompt": {"text": "hi"}}, "'prompt' must be a string"),
    ("/v1/completions", {"model": "stub-model", "prompt": []}, "'prompt' must be a string"),
    ("/v1/embeddings", {"model": "stub-embed"}, "'input' is required"),
    ("/v1/embeddings", {"model": "stub-embed", "input": 5}, "'input' must be a string"),
    ("/v1/embeddings", {"model": "stub-embed", "input": "x", "encoding_format": "hex"}, "'encoding_format' must be 'float' or 'base64'"),
    ("/v1/embeddings", {"model": "stub-embed", "input": "x", "dimensions": "8"}, "'dimensions' must be an integer"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}, "'model' is required"),
])
def test_completion_and_embedding_fields(bad_proxy, vkey, path, body, message):
    status, data, dummy = http_json("POST", bad_proxy.url + path, body, {"Authorization": f"Bearer {vkey}"})
    assert_error(status, data, 400, message)


def test_valid_request_still_passes(bad_proxy, vkey):
    status, data, dummy = chat(bad_proxy, vkey, max_tokens=3, stream=False, temperature=0.5, stop=["\n"], user="u1")
    assert status == 200 and data["usage"]["completion_tokens"] == 3, data


@pytest.mark.parametrize("path,model", [("/v1/chat/completions", "no-such-model"), ("/v1/completions", "gpt-nonexistent"),
                                        ("/v1/embeddings", "unknown-embed")])
def test_unknown_model_is_a_clear_400(bad_proxy, vkey, path, model):
    body = {"model": model, "messages": [{"role": "user", "content": "x"}], "prompt": "x", "input": "x"}
    if path != "/v1/chat/completions":
        body.pop("messages")
    status, data, dummy = http_json("POST", bad_proxy.url + path, body, {"Authorization": f"Bearer {vkey}"})
    assert_error(status, data, 400, "Invalid model name", f"model={model}", param="model")


def test_unknown_model_for_a_key_limited_to_other_models(bad_proxy):
    status, data = bad_proxy.admin("POST", "/key/generate", {"models": ["stub-model"]})
    assert status == 200, data
    status, data, dummy = chat(bad_proxy, data["key"], model="granite-3-8b")
    assert_error(status, data, 401, "key not allowed to access model", "granite-3-8b", param="model")


# ------------------------------------------------------------------ management: wrong types, durations, budgets

KEY_BAD = [
    ("model", "max_budget", "abc", "max_budget must be a number"),
    ("model", "max_budget", -1, "max_budget cannot be negative"),
    ("model", "max_budget", True, "max_budget must be a number"),
    ("model", "max_budget", [5], "max_budget must be a number"),
    ("model", "max_budget", "NaN", "max_budget must be a number"),
    ("model", "soft_budget", -0.5, "soft_budget cannot be negative"),
    ("model", "tpm_limit", "many", "tpm_limit must be an integer"),
    ("model", "tpm_limit", -10, "tpm_limit cannot be negative"),
    ("model", "tpm_limit", 1.5, "tpm_limit must be an integer"),
    ("model", "tpm_limit", 10**30, "tpm_limit must be at most"),
    ("model", "rpm_limit", "10/min", "rpm_limit must be an integer"),
    ("model", "rpm_limit", -1, "rpm_limit cannot be negative"),
    ("model", "max_parallel_requests", 2**40, "max_parallel_requests must be at most"),
    ("model", "models", "stub-model", "models must be a list"),
    ("model", "models", [1, 2], "models must be a list of strings"),
    ("model", "models", ["no-such-model"], "Unknown model(s) in models: ['no-such-model']"),
    ("model", "duration", "30x", "Invalid duration"),
    ("model", "duration", "-1d", "Invalid duration"),
    ("model", "duration", 30, "Invalid duration"),
    ("model", "duration", "abc", "Invalid duration"),
    ("model", "duration", "99999999999999999d", "too long"),
    ("model", "duration", "999999999mo", "too long"),
    ("model", "budget_duration", "30x", "Invalid budget_duration"),
    ("model", "budget_duration", "monthly-ish", "Invalid budget_duration"),  # the portal's words are accepted, not their variants
    ("model", "budget_duration", "30 d", "Invalid budget_duration"),
    ("model", "budget_duration", 7, "Invalid budget_duration"),
    ("model", "metadata", "owner=ops", "metadata must be an object"),
    ("model", "metadata", [1], "metadata must be an object"),
    ("model", "key_alias", 123, "key_alias must be a string"),
    ("model", "key_alias", ["a"], "key_alias must be a string"),
    ("model", "key_alias", "nul\u0000char", "key_alias must not contain NUL"),
    ("model", "blocked", "no", "blocked must be true or false"),
    ("model", "user_id", {"id": 1}, "user_id must be a string"),
    ("model", "team_id", "no-such-team", "Team not found"),
    ("model", "expires", "next tuesday", "Invalid expires"),
]
KEY_BAD_IDS = [f"{f}={v!r}"[:60] for dummy, f, v, m in KEY_BAD]


@pytest.mark.parametrize("dummy,field,value,message", KEY_BAD, ids=KEY_BAD_IDS)
def test_key_generate_refuses_and_creates_nothing(bad_proxy, dummy, field, value, message):
    alias = uid("gen")
    body = {"key_alias": alias, "models": ["stub-model"], "max_budget": 5, field: value}
    if field == "key_alias":
        body["metadata"] = {"marker": alias}
    before = count(bad_proxy.dsn, KEY_TABLE)
    status, data = bad_proxy.admin("POST", "/key/generate", body)
    expected_param = "team_id" if field == "team_id" else field
    assert_error(status, data, 400, message, param=expected_param)
    assert count(bad_proxy.dsn, KEY_TABLE) == before
    assert rows(bad_proxy.dsn, f"SELECT token FROM {KEY_TABLE} WHERE key_alias = %s OR metadata->>'marker' = %s", alias, alias) == []


@pytest.mark.parametrize("dummy,field,value,message", [c for c in KEY_BAD if c[1] not in ("expires",)],
                         ids=[i for c, i in zip(KEY_BAD, KEY_BAD_IDS) if c[1] not in ("expires",)])
def test_key_update_refuses_and_changes_nothing(bad_proxy, dummy, field, value, message):
    alias = uid("upd")
    status, data = bad_proxy.admin("POST", "/key/generate", {"key_alias": alias, "models": ["stub-model"], "max_budget": 5, "rpm_limit": 7,
                                                             "metadata": {"owner": "ops"}, "duration": "30d", "budget_duration": "1d"})
    assert status == 200, data
    token = data["token"]
    before = rows(bad_proxy.dsn, f"SELECT * FROM {KEY_TABLE} WHERE token = %s", token)
    # A valid change next to the bad one must not be applied either: the update is all or nothing.
    status, data = bad_proxy.admin("POST", "/key/update", {"key": token, "max_budget": 9, "rpm_limit": 11, field: value}
                                   if field not in ("max_budget", "rpm_limit") else {"key": token, "tpm_limit": 99, field: value})
    assert_error(status, data, 400, message, param=field)
    assert rows(bad_proxy.dsn, f"SELECT * FROM {KEY_TABLE} WHERE token = %s", token) == before


def test_key_update_duration_minus_one_is_allowed_but_not_minus_two(bad_proxy):
    status, data = bad_proxy.admin("POST", "/key/generate", {"duration": "1d"})
    assert status == 200 and data["expires"], data
    token = data["token"]
    status, data = bad_proxy.admin("POST", "/key/update", {"key": token, "duration": "-2"})
    assert_error(status, data, 400, "Invalid duration", param="duration")
    assert db_value(bad_proxy.dsn, f"SELECT expires IS NOT NULL FROM {KEY_TABLE} WHERE token = %s", token) is True
    status, data = bad_proxy.admin("POST", "/key/update", {"key": token, "duration": "-1"})
    assert status == 200 and data["expires"] is None, data


def test_key_update_of_an_unknown_key_and_without_key(bad_proxy):
    status, data = bad_proxy.admin("POST", "/key/update", {"key": "sk-does-not-exist", "max_budget": 1})
    assert_error(status, data, 404, "Key not found", param="key")
    status, data = bad_proxy.admin("POST", "/key/update", {"max_budget": 1})
    assert status == 422 and data["detail"][0]["loc"] == ["body", "key"], data
    status, data = bad_proxy.admin("POST", "/key/update", {"key": 12345})
    assert_error(status, data, 400, "key must be a string", param="key")


USER_BAD = [
    ("max_budget", -3, "max_budget cannot be negative"),
    ("max_budget", "lots", "max_budget must be a number"),
    ("budget_duration", "30x", "Invalid budget_duration"),
    ("tpm_limit", "x", "tpm_limit must be an integer"),
    ("models", ["no-such-model"], "Unknown model(s)"),
    ("teams", [{"name": "t"}], "teams must be a list of team ids"),
    ("user_email", 5, "user_email must be a string"),
    ("metadata", "x", "metadata must be an object"),
    ("auto_create_key", "yes", "auto_create_key must be true or false"),
    ("duration", "30x", "Invalid duration"),
]


@pytest.mark.parametrize("field,value,message", USER_BAD, ids=[f"{f}={v!r}" for f, v, m in USER_BAD])
def test_user_new_refuses_and_creates_no_user_and_no_key(bad_proxy, field, value, message):
    user_id = uid("user")
    before = (count(bad_proxy.dsn, USER_TABLE), count(bad_proxy.dsn, KEY_TABLE))
    status, data = bad_proxy.admin("POST", "/user/new", {"user_id": user_id, field: value})
    assert_error(status, data, 400, message, param=field)
    assert (count(bad_proxy.dsn, USER_TABLE), count(bad_proxy.dsn, KEY_TABLE)) == before


def test_user_update_refuses_and_changes_nothing(bad_proxy):
    user_id = uid("user")
    status, data = bad_proxy.admin("POST", "/user/new", {"user_id": user_id, "max_budget": 4, "auto_create_key": False})
    assert status == 200, data
    before = rows(bad_proxy.dsn, f"SELECT * FROM {USER_TABLE} WHERE user_id = %s", user_id)
    for field, value, message in USER_BAD[:6]:
        status, data = bad_proxy.admin("POST", "/user/update", {"user_id": user_id, "user_alias": "changed", field: value})
        assert_error(status, data, 400, message, param=field)
    assert rows(bad_proxy.dsn, f"SELECT * FROM {USER_TABLE} WHERE user_id = %s", user_id) == before


@pytest.mark.parametrize("field,value,message", [
    ("max_budget", -1, "max_budget cannot be negative"),
    ("budget_duration", "1 month", "Invalid budget_duration"),
    ("rpm_limit", "fast", "rpm_limit must be an integer"),
    ("models", "stub-model", "models must be a list"),
    ("metadata", 3, "metadata must be an object"),
    ("team_alias", 7, "team_alias must be a string"),
])
def test_team_new_refuses_and_creates_nothing(bad_proxy, field, value, message):
    team_id = uid("team")
    before = count(bad_proxy.dsn, TEAM_TABLE)
    status, data = bad_proxy.admin("POST", "/team/new", {"team_id": team_id, field: value})
    assert_error(status, data, 400, message, param=field)
    assert count(bad_proxy.dsn, TEAM_TABLE) == before


@pytest.mark.parametrize("body,message,param", [
    ({"litellm_params": {"model": "openai/x"}}, "model_name is required", "model_name"),
    ({"model_name": 5, "litellm_params": {"model": "openai/x"}}, "model_name is required", "model_name"),
    ({"model_name": "m"}, "litellm_params.model is required", "litellm_params"),
    ({"model_name": "m", "litellm_params": "openai/x"}, "litellm_params must be an object", "litellm_params"),
    ({"model_name": "m", "litellm_params": {"model": "openai/x", "input_cost_per_token": "cheap"}}, "input_cost_per_token must be a number",
     "litellm_params"),
    ({"model_name": "m", "litellm_params": {"model": "openai/x", "rpm": -1}}, "rpm cannot be negative", "litellm_params"),
    ({"model_name": "m", "litellm_params": {"model": "openai/x", "api_key": "a\r\nX-Injected: 1"}}, "api_key must be a string without control",
     "litellm_params"),
    ({"model_name": "m", "litellm_params": {"model": "openai/x", "api_base": 8080}}, "api_base must be a string", "litellm_params"),
    ({"model_name": "m", "litellm_params": {"model": "openai/x", "api_key": "clé-été"}}, "api_key must be printable ASCII", "litellm_params"),
    ({"model_name": "m", "litellm_params": {"model": "openai/x"}, "model_info": {"access_groups": "team-a"}}, "access_groups must be a list",
     "model_info"),
    ({"model_name": "m", "litellm_params": {"model": "openai/x"}, "model_info": {"id": 42}}, "model_info.id must be a non-empty string",
     "model_info"),
])
def test_model_new_refuses_and_creates_nothing(bad_proxy, body, message, param):
    before = count(bad_proxy.dsn, MODEL_TABLE)
    status, data = bad_proxy.admin("POST", "/model/new", body)
    assert_error(status, data, 400, message, param=param)
    assert count(bad_proxy.dsn, MODEL_TABLE) == before
    # The router still serves the configured models.
    status, data, dummy = bad_proxy.request("GET", "/v1/models", headers={"Authorization": f"Bearer {bad_proxy.master_key}"})
    assert status == 200 and "stub-model" in [m["id"] for m in data["data"]]


@pytest.mark.parametrize("path,query,message,param", [
    ("/key/list", "page=0", "greater than or equal to 1", None),
    ("/key/list", "size=1000", "less than or equal to 100", None),
    ("/key/list", "page=abc", "valid integer", None),
    ("/key/list", "page=99999999999999999999", "less than or equal to", None),
    ("/key/list", "sort_by=token;drop", "Invalid sort_by", "sort_by"),
    ("/spend/logs", "start_date=yesterday", "Invalid start_date", "start_date"),
    ("/spend/logs", "start_date=0001-01-01&end_date=9999-12-30", "Date range too long", "end_date"),
    ("/spend/logs", "end_date=9999-12-31", "Invalid end_date", "end_date"),
    ("/user/daily/activity", "start_date=2026-01-01", "Please provide start_date and end_date", "start_date"),
])
def test_query_parameters(bad_proxy, path, query, message, param):
    status, data = bad_proxy.admin("GET", f"{path}?{query}")
    if status == 422:
        assert message.lower() in data["detail"][0]["msg"].lower() and data["detail"][0]["loc"][0] == "query", data
    else:
        assert_error(status, data, 400, message, param=param)


# ------------------------------------------------------------------ huge bodies, routes, methods

@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("path,auth", [("/v1/chat/completions", "virtual"), ("/key/generate", "master"), ("/model/new", "master")])
def test_huge_body_is_413_in_the_litellm_shape(bad_proxy, vkey, path, auth, chunked):
    before = [count(bad_proxy.dsn, t) for t in (KEY_TABLE, MODEL_TABLE)]
    filler = "word " * (LIMIT_MB * 1024 * 1024 // 5 + 1000)
    body = {"model": "stub-model", "messages": [{"role": "user", "content": filler}], "model_name": "huge", "key_alias": uid("huge"),
            "metadata": {"filler": filler}, "litellm_params": {"model": "openai/x"}}
    headers = {"Content-Type": "application/json"}
    headers.update({"Authorization": f"Bearer {vkey}"} if auth == "virtual" else {"x-litellm-api-key": bad_proxy.master_key})
    status, data, ctype = raw_request(bad_proxy, "POST", path, json.dumps(body).encode(), headers, chunked=chunked)
    assert ctype.startswith("application/json"), (status, data)
    err = assert_error(status, data, 413, "Request body too large", f"{LIMIT_MB * 1024 * 1024} bytes", "max_request_size_mb")
    assert err["type"] == "request_too_large"
    assert [count(bad_proxy.dsn, t) for t in (KEY_TABLE, MODEL_TABLE)] == before


def test_body_just_under_the_limit_is_served(bad_proxy, vkey):
    content = "word " * (LIMIT_MB * 1024 * 1024 // 5 - 2000)
    status, data, dummy = chat(bad_proxy, vkey, content=content, max_tokens=2)
    assert status == 200 and data["usage"]["prompt_tokens"] == LIMIT_MB * 1024 * 1024 // 5 - 2000, (status, str(data)[:300])


def test_request_size_setting(tmp_path):
    from litemaas_proxy.api import max_request_size  # noqa: PLC0415 - the proxy package is on sys.path only for this test
    from litemaas_proxy.config import load_settings  # noqa: PLC0415

    cfg = tmp_path / "config.yaml"
    assert max_request_size(load_settings(None, env={})) == 64 * 1024 * 1024
    assert max_request_size(load_settings(None, env={"LITEMAAS_MAX_REQUEST_SIZE_MB": "0.5"})) == 512 * 1024
    cfg.write_text(json.dumps({"general_settings": {"max_request_size_mb": 2}}))
    assert max_request_size(load_settings(str(cfg), env={"LITEMAAS_MAX_REQUEST_SIZE_MB": "0.5"})) == 2 * 1024 * 1024, "the config file wins"
    for bad in ("ten", 0, -1):
        cfg.write_text(json.dumps({"general_settings": {"max_request_size_mb": bad}}))
        with pytest.raises(ValueError, match="max_request_size_mb"):
            load_settings(str(cfg), env={})


def test_unknown_route_and_wrong_method_are_json(bad_proxy, vkey):
    status, data, dummy = bad_proxy.request("GET", "/v1/no/such/route", headers={"Authorization": f"Bearer {vkey}"})
    assert_error(status, data, 404, "Route not found")
    status, data, hdrs = bad_proxy.request("GET", "/key/generate", headers={"x-litellm-api-key": bad_proxy.master_key})
    assert_error(status, data, 405, "Method Not Allowed", "POST")
    assert "POST" in hdrs.get("Allow", "")


def test_key_values_that_collide(bad_proxy):
    """A chosen secret equal to another key's or to the master key is refused, and both keys stay as they were."""
    a = "sk-collide-" + uuid.uuid4().hex
    b = "sk-collide-" + uuid.uuid4().hex
    for secret in (a, b):
        status, data = bad_proxy.admin("POST", "/key/generate", {"key": secret, "max_budget": 1})
        assert status == 200, data
    before = rows(bad_proxy.dsn, f"SELECT * FROM {KEY_TABLE} WHERE token IN (%s, %s) ORDER BY token",
                  hashlib.sha256(a.encode()).hexdigest(), hashlib.sha256(b.encode()).hexdigest())
    assert len(before) == 2
    status, data = bad_proxy.admin("POST", "/key/generate", {"key": a})
    assert_error(status, data, 400, "already exists", param="key")
    status, data = bad_proxy.admin("POST", "/key/regenerate", {"key": a, "new_key": b, "max_budget": 50})
    assert_error(status, data, 400, "already exists", param="new_key")
    status, data = bad_proxy.admin("POST", "/key/generate", {"key": bad_proxy.master_key})
    assert_error(status, data, 400, "master key", param="key")
    status, data = bad_proxy.admin("POST", "/key/regenerate", {"key": a, "new_key": bad_proxy.master_key})
    assert_error(status, data, 400, "master key", param="new_key")
    assert rows(bad_proxy.dsn, f"SELECT * FROM {KEY_TABLE} WHERE token IN (%s, %s) ORDER BY token",
                hashlib.sha256(a.encode()).hexdigest(), hashlib.sha256(b.encode()).hexdigest()) == before


def test_an_unusable_model_row_does_not_take_the_router_down(bad_proxy, vkey, stub_upstream):
    """A row the API would refuse (written straight into the table) is skipped on reload; other models keep working."""
    bad_id = uid("badrow")
    conn = psycopg2.connect(bad_proxy.dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO {MODEL_TABLE} (model_id, model_name, litellm_params, model_info) VALUES (%s, %s, %s::jsonb, %s::jsonb)",
                        (bad_id, "bad-row-model", json.dumps({"model": "openai/x", "api_base": stub_upstream.url, "api_key": "\u00e9\u4e2d"}),
                         json.dumps({"mode": "chat"})))
        name = uid("good")
        status, data = bad_proxy.admin("POST", "/model/new", {"model_name": name, "litellm_params": {"model": "openai/stub-model",
                                                                                                     "api_base": stub_upstream.url}})
        assert status == 200, data
        status, data, dummy = chat(bad_proxy, vkey, model=name, max_tokens=2)
        assert status == 200, data
        status, data, dummy = chat(bad_proxy, vkey, model="stub-model", max_tokens=2)
        assert status == 200, data
        assert bad_proxy.admin("POST", "/model/delete", {"id": bad_id})[0] == 200
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DELETE FROM {MODEL_TABLE} WHERE model_id = %s OR model_name LIKE 'good-%%'", (bad_id,))
        conn.close()


@pytest.mark.parametrize("header", ["Authorization", "x-litellm-api-key"])
@pytest.mark.parametrize("value", [b"Bearer sk-\xff\xfe", b"sk-\xc3\xa9t\xc3\xa9", b"Bearer ", b"\xff"], ids=["latin1", "utf8", "empty", "byte"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/key/generate"])
def test_undecodable_credentials_are_a_401(bad_proxy, header, value, path):
    url = urlparse(bad_proxy.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        body = json.dumps({"model": "stub-model", "messages": [{"role": "user", "content": "x"}]}).encode()
        conn.putrequest("POST", path)
        conn.putheader(header, value)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        status, data = resp.status, json.loads(resp.read())
    finally:
        conn.close()
    assert status in (400, 401), (status, data)
    assert_error(status, data, status)
