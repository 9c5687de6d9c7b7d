"""The proxy on LiteLLM 1.81's own database, as LiteLLM left it, and back.

The schema is built from LiteLLM's migrations (``litellm-proxy-extras`` 0.4.23, the version ``litellm==1.81.0`` pins,
from PyPI) applied in name order with psql; rows are seeded as LiteLLM writes them (hashed tokens, naive UTC
timestamps, model parameters sealed by LiteLLM's own ``encrypt_value_helper``, duplicate aliases); every row the proxy
writes is then validated with LiteLLM's pydantic types (``litellm/proxy/_types.py``) in a venv holding
``litellm==1.81.0`` (``litellm_side.py``).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import zipfile
from datetime import datetime, timedelta

import psycopg2
import pytest

from tests.proxy.conftest import chat, uid, wait_for
from tests.support.proxy import REPO
from tests.support.services import pg_bin

EXTRAS = "litellm-proxy-extras==0.4.23"
LITELLM = "litellm==1.81.0"
# litellm[proxy] would bring the NaCl binding LiteLLM's encryption helper imports, with a few minutes of other packages.
LITELLM_EXTRA = "PyNaCl==1.6.2"
CACHE = REPO / ".work" / "litellm-db"
SALT = "sk-salt-of-the-litellm-deployment"
OTHER_SALT = "sk-salt-of-another-deployment"
LIVE_KEY, DUP_KEY_1, DUP_KEY_2 = "sk-live-key-0001", "sk-dup-key-0001", "sk-dup-key-0002"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def migrations() -> list:
    """(name, SQL) of LiteLLM 1.81's migrations in name order, from the litellm-proxy-extras wheel (downloaded once)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    wheels = sorted(CACHE.glob("litellm_proxy_extras-0.4.23-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", EXTRAS, "-d", str(CACHE)], check=True)
        wheels = sorted(CACHE.glob("litellm_proxy_extras-0.4.23-*.whl"))
    with zipfile.ZipFile(wheels[0]) as whl:
        names = sorted(n for n in whl.namelist() if n.startswith("litellm_proxy_extras/migrations/") and n.endswith("/migration.sql"))
        return [(n.split("/")[2], whl.read(n).decode()) for n in names]


def litellm_python() -> str:
    """The Python of a venv holding LiteLLM 1.81.0 (installed once under .work/)."""
    venv = CACHE / "venv"
    python = venv / "bin" / "python"
    wanted = " ".join(spec.split("==")[1] for spec in (LITELLM, LITELLM_EXTRA))
    probe = "import importlib.metadata as m; print(m.version('litellm'), m.version('PyNaCl'))"
    if not python.exists() or subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=False).stdout.strip() != wanted:
        base = getattr(sys, "_base_executable", None) or sys.executable
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", LITELLM, LITELLM_EXTRA], check=True)
    return str(python)


def litellm_side(**request) -> dict:
    """Run ``litellm_side.py`` in LiteLLM's venv with ``request`` (salt key defaults to SALT)."""
    request.setdefault("salt_key", SALT)
    done = subprocess.run([litellm_python(), str(REPO / "tests" / "litellm_db" / "litellm_side.py")], input=json.dumps(request),
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise AssertionError(f"litellm_side.py failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def sql(dsn: str, statement: str, *args, fetch: bool = True):
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, args)
            return cur.fetchall() if fetch and cur.description else None
    finally:
        conn.close()


def rows_json(dsn: str, table: str, where: str = "TRUE", *args) -> list:
    return [r[0] for r in sql(dsn, f'SELECT row_to_json(t) FROM "{table}" t WHERE {where}', *args)]


def columns(dsn: str, table: str) -> dict:
    return dict(sql(dsn, "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s", table))


def seal_url_safe(values: dict, salt: str) -> dict:
    """Each string of ``values`` sealed by LiteLLM's helper; a sealed value with a URL-safe character (``-``, ``_``) is
    chosen, as a reader that knows only standard base64 fails on those."""
    strings = [v for v in values.values() if isinstance(v, str)]
    sealed = litellm_side(salt_key=salt, seal=[v for v in strings for dummy in range(8)])["sealed"]
    out = dict(values)
    for i, name in enumerate(k for k, v in values.items() if isinstance(v, str)):
        candidates = sealed[i * 8:(i + 1) * 8]
        out[name] = next((c for c in candidates if "-" in c or "_" in c), candidates[0])
    return out


@pytest.fixture(scope="module")
def litellm_dsn(pg_server, stub_upstream):
    """A database built by LiteLLM 1.81's migrations and seeded as LiteLLM writes it."""
    dsn = pg_server.create_database("litellm_181")
    for name, text in migrations():
        done = subprocess.run([pg_bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", dsn], input=text, text=True, capture_output=True, check=False)
        assert done.returncode == 0, f"LiteLLM migration {name}: {done.stderr}"
    params = {"model": "openai/stub-model", "api_base": stub_upstream.url, "api_key": "sk-upstream", "input_cost_per_token": 1e-6,
              "output_cost_per_token": 2e-6}
    ours = seal_url_safe(params, SALT)
    foreign = seal_url_safe({"model": "openai/stub-model", "api_base": stub_upstream.url}, OTHER_SALT)
    sql(dsn, """INSERT INTO "LiteLLM_ProxyModelTable" (model_id, model_name, litellm_params, model_info, created_by, updated_by, updated_at)
                VALUES ('m-ll', 'll-chat', %s, %s, 'default_user_id', 'default_user_id', now() AT TIME ZONE 'UTC'),
                       ('m-foreign', 'll-foreign', %s, %s, 'default_user_id', 'default_user_id', now() AT TIME ZONE 'UTC')""",
        json.dumps(ours), json.dumps({"id": "m-ll", "db_model": True}), json.dumps(foreign), json.dumps({"id": "m-foreign", "db_model": True}),
        fetch=False)
    sql(dsn, """INSERT INTO "LiteLLM_UserTable" (user_id, user_email, max_budget, spend, models, teams, budget_duration, budget_reset_at)
                VALUES ('u-live', 'live@example.com', 50, 3.5, '{}', '{}', '30d', (now() AT TIME ZONE 'UTC') + interval '20 days')""", fetch=False)
    key_sql = """INSERT INTO "LiteLLM_VerificationToken" (token, key_name, key_alias, spend, expires, models, user_id, max_budget,
                 budget_duration, budget_reset_at, rpm_limit, metadata, created_by, updated_by)
                 VALUES (%s, %s, %s, %s, (now() AT TIME ZONE 'UTC') + interval '30 days', '{}', 'u-live', 10, %s, %s, 100, '{}',
                         'default_user_id', 'default_user_id')"""
    # A key whose budget period ended an hour ago: the reset task must zero it.
    sql(dsn, key_sql, sha(LIVE_KEY), "sk-...0001", "live-key", 2.5, "1d", datetime.utcnow() - timedelta(hours=1), fetch=False)
    sql(dsn, key_sql, sha(DUP_KEY_1), "sk-...d001", "shared-alias", 0.5, None, None, fetch=False)
    sql(dsn, key_sql, sha(DUP_KEY_2), "sk-...d002", "shared-alias", 0.25, None, None, fetch=False)
    sql(dsn, """INSERT INTO "LiteLLM_SpendLogs" (request_id, call_type, api_key, spend, total_tokens, prompt_tokens, completion_tokens,
                "startTime", "endTime", model, model_group, "user", metadata)
                VALUES ('req-from-litellm', 'acompletion', %s, 0.25, 30, 10, 20, '2026-01-15 10:00:00', '2026-01-15 10:00:01',
                        'stub-model', 'll-chat', 'u-live', '{}')""", sha(LIVE_KEY), fetch=False)
    sql(dsn, """INSERT INTO "LiteLLM_DailyUserSpend" (id, user_id, date, api_key, model, model_group, prompt_tokens, completion_tokens, spend,
                api_requests, successful_requests, updated_at)
                VALUES ('daily-from-litellm', 'u-live', '2026-01-15', %s, 'stub-model', 'll-chat', 10, 20, 0.25, 1, 1, '2026-01-15 10:00:02')""",
        sha(LIVE_KEY), fetch=False)
    return dsn


@pytest.fixture(scope="module")
def on_litellm(proxy_factory, litellm_dsn):
    return proxy_factory(dsn=litellm_dsn, env={"LITELLM_SALT_KEY": SALT, "LITEMAAS_BUDGET_RESET_INTERVAL": "0.3"})


def test_starts_on_litellm_schema_and_reports_what_it_cannot_fix(on_litellm, litellm_dsn):
    status, health = on_litellm.admin("GET", "/health/readiness")
    assert status == 200 and health["db"] == "connected"
    assert health["duplicate_key_aliases"] == {"shared-alias": 2}
    assert list(health["unusable_models"]) == ["ll-foreign"]
    assert "litellm_params.api_base, litellm_params.model" in health["unusable_models"]["ll-foreign"]
    # Columns LiteLLM declares keep LiteLLM's types; the alias index exists, not unique while duplicates remain.
    assert columns(litellm_dsn, "LiteLLM_VerificationToken")["expires"] == "timestamp without time zone"
    assert sql(litellm_dsn, "SELECT indisunique FROM pg_index WHERE indexrelid = to_regclass('\"LiteLLM_VerificationToken_key_alias_key\"')") \
        == [(False,)]
    # Both keys with the shared alias still work; a new key may not take the alias.
    assert chat(on_litellm, DUP_KEY_1, model="stub-model")[0] == 200
    status, err = on_litellm.admin("POST", "/key/generate", {"key_alias": "shared-alias"})
    assert status == 400 and "Key with alias 'shared-alias' already exists" in err["error"]["message"]


def test_encrypted_model_served_and_never_resealed(on_litellm, litellm_dsn, stub_upstream):
    stored = sql(litellm_dsn, "SELECT litellm_params FROM \"LiteLLM_ProxyModelTable\" WHERE model_id = 'm-ll'")[0][0]
    status, info = on_litellm.admin("GET", "/model/info?litellm_model_id=m-ll")
    assert status == 200, info
    assert info["data"][0]["litellm_params"]["api_base"] == stub_upstream.url
    assert info["data"][0]["litellm_params"]["model"] == "openai/stub-model"
    status, body, dummy = chat(on_litellm, LIVE_KEY, model="ll-chat", content="hi there")
    assert status == 200, body
    assert body["choices"][0]["message"]["role"] == "assistant" and body["model"]
    # The proxy started, loaded and served the model without touching its row: LiteLLM can still open every value.
    assert sql(litellm_dsn, "SELECT litellm_params FROM \"LiteLLM_ProxyModelTable\" WHERE model_id = 'm-ll'")[0][0] == stored
    opened = litellm_side(open=[stored["model"], stored["api_base"], stored["api_key"]])["opened"]
    assert opened == ["openai/stub-model", stub_upstream.url, "sk-upstream"]


def test_model_sealed_under_another_key_is_refused_by_name(on_litellm, litellm_dsn):
    stored = sql(litellm_dsn, "SELECT litellm_params FROM \"LiteLLM_ProxyModelTable\" WHERE model_id = 'm-foreign'")[0][0]
    status, body, dummy = chat(on_litellm, LIVE_KEY, model="ll-foreign")
    assert status == 503
    assert "model 'll-foreign': litellm_params.api_base, litellm_params.model is sealed with another key" in body["error"]["message"]
    status, err = on_litellm.admin("POST", "/model/update", {"model_info": {"id": "m-foreign"}, "litellm_params": {"rpm": 5}})
    assert status == 400 and "model 'll-foreign'" in err["error"]["message"]
    # Nothing was sealed again: the row is exactly as the other deployment wrote it, still openable with its key.
    assert sql(litellm_dsn, "SELECT litellm_params FROM \"LiteLLM_ProxyModelTable\" WHERE model_id = 'm-foreign'")[0][0] == stored
    assert litellm_side(salt_key=OTHER_SALT, open=[stored["model"]])["opened"] == ["openai/stub-model"]


def test_model_written_by_the_proxy_opens_with_litellm(on_litellm, litellm_dsn, stub_upstream):
    name = uid("ll-new")
    status, data = on_litellm.admin("POST", "/model/new", {"model_name": name, "litellm_params": {
        "model": "openai/stub-model", "api_base": stub_upstream.url, "api_key": "sk-upstream-2", "input_cost_per_token": 1e-6}})
    assert status == 200, data
    stored = sql(litellm_dsn, "SELECT litellm_params FROM \"LiteLLM_ProxyModelTable\" WHERE model_name = %s", name)[0][0]
    assert stored["input_cost_per_token"] == 1e-6
    opened = litellm_side(open=[stored["model"], stored["api_base"], stored["api_key"]])["opened"]
    assert opened == ["openai/stub-model", stub_upstream.url, "sk-upstream-2"]


def test_writes_with_timestamps(on_litellm, litellm_dsn):
    status, key = on_litellm.admin("POST", "/key/generate", {"duration": "2d", "budget_duration": "7d", "max_budget": 3, "user_id": "u-live"})
    assert status == 200, key
    expires, reset = sql(litellm_dsn, 'SELECT expires, budget_reset_at FROM "LiteLLM_VerificationToken" WHERE token = %s', key["token"])[0]
    delta = expires - datetime.utcnow()  # naive UTC in the column, as LiteLLM writes it
    assert timedelta(days=1, hours=23) < delta <= timedelta(days=2) and reset > datetime.utcnow()
    status, updated = on_litellm.admin("POST", "/key/update", {"key": key["token"], "budget_duration": "1d"})
    assert status == 200 and updated["budget_duration"] == "1d", updated
    status, new = on_litellm.admin("POST", "/key/regenerate", {"key": key["key"]})
    assert status == 200 and new["token"] == sha(new["key"]) and new["rotation_count"] == 1, new
    assert sql(litellm_dsn, 'SELECT last_rotation_at IS NOT NULL FROM "LiteLLM_VerificationToken" WHERE token = %s', new["token"]) == [(True,)]
    status, logs = on_litellm.admin("GET", "/spend/logs?summarize=false&start_date=2026-01-15&end_date=2026-01-16")
    assert status == 200, logs
    assert [r["request_id"] for r in logs] == ["req-from-litellm"]
    status, activity = on_litellm.admin("GET", "/user/daily/activity?start_date=2026-01-15&end_date=2026-01-15")
    assert status == 200, activity
    assert [d["date"] for d in activity["results"]] == ["2026-01-15"]
    assert activity["results"][0]["metrics"]["spend"] == 0.25


def test_budget_reset_runs_on_litellm_timestamps(on_litellm, litellm_dsn):
    def reset_done():
        rows = sql(litellm_dsn, 'SELECT spend, budget_reset_at FROM "LiteLLM_VerificationToken" WHERE token = %s', sha(LIVE_KEY))
        return rows[0] if rows[0][1] > datetime.utcnow() else None

    spend, next_reset = wait_for(reset_done, message="the budget reset of the key whose period ended")
    assert next_reset <= datetime.utcnow() + timedelta(days=1)
    assert "budget reset failed" not in on_litellm.log_tail()


def test_key_and_user_delete_archive_as_litellm(on_litellm, litellm_dsn):
    status, key = on_litellm.admin("POST", "/key/generate", {"key_alias": uid("to-delete"), "user_id": "u-live"})
    assert status == 200, key
    status, out = on_litellm.admin("POST", "/key/delete", {"keys": [key["key"]]})
    assert status == 200 and out == {"deleted_keys": [key["key"]]}, out
    archived = rows_json(litellm_dsn, "LiteLLM_DeletedVerificationToken", "token = %s", key["token"])
    assert len(archived) == 1 and len(archived[0]["id"]) == 36 and archived[0]["key_alias"] == key["key_alias"]
    status, user = on_litellm.admin("POST", "/user/new", {"user_id": uid("u-del"), "auto_create_key": True})
    assert status == 200, user
    status, out = on_litellm.admin("POST", "/user/delete", {"user_ids": [user["user_id"]]})
    assert status == 200, out
    assert sql(litellm_dsn, 'SELECT count(*) FROM "LiteLLM_UserTable" WHERE user_id = %s', user["user_id"]) == [(0,)]
    assert sql(litellm_dsn, 'SELECT count(*) FROM "LiteLLM_DeletedVerificationToken" WHERE user_id = %s', user["user_id"]) == [(1,)]


def test_rows_written_by_the_proxy_are_valid_for_litellm(on_litellm, litellm_dsn):
    status, user = on_litellm.admin("POST", "/user/new", {"user_id": uid("u-back"), "auto_create_key": True, "max_budget": 5})
    assert status == 200, user
    status, team = on_litellm.admin("POST", "/team/new", {"team_alias": uid("team")})
    assert status == 200, team
    status, team_key = on_litellm.admin("POST", "/key/generate", {"team_id": team["team_id"], "user_id": user["user_id"]})
    assert status == 200, team_key
    assert chat(on_litellm, user["key"], model="ll-chat")[0] == 200
    assert chat(on_litellm, team_key["key"], model="ll-chat")[0] == 200

    def both_logged():
        logged = rows_json(litellm_dsn, "LiteLLM_SpendLogs", "\"user\" = %s", user["user_id"])
        return logged if len(logged) == 2 else None

    logs = wait_for(both_logged, message="the two spend log rows")

    # LiteLLM's usage pages read its daily tables: the proxy fills them from its spend logs, per user and per team.
    def user_daily():
        rows = rows_json(litellm_dsn, "LiteLLM_DailyUserSpend", "user_id = %s", user["user_id"])
        return sorted(rows, key=lambda r: r["api_key"]) if len(rows) == 2 else None

    daily = wait_for(user_daily, message="the user's daily rows (one per key)")
    by_key = {r["api_key"]: r for r in logs}
    assert [r["api_key"] for r in daily] == sorted(by_key)
    for row in daily:
        log = by_key[row["api_key"]]
        assert row["id"].startswith("litemaas-") and (row["model_group"], row["model"], row["date"]) == ("ll-chat", log["model"], log["startTime"][:10])
        assert (row["spend"], row["prompt_tokens"], row["completion_tokens"]) == (log["spend"], log["prompt_tokens"], log["completion_tokens"])
        assert (row["api_requests"], row["successful_requests"], row["failed_requests"]) == (1, 1, 0)
    team_daily = wait_for(lambda: rows_json(litellm_dsn, "LiteLLM_DailyTeamSpend", "team_id = %s", team["team_id"]) or None,
                          message="the team's daily row")
    assert [(r["api_key"], r["api_requests"]) for r in team_daily] == [(team_key["token"], 1)]
    # Spend LiteLLM logged before the cut-over stays LiteLLM's: its daily row is untouched and not counted again.
    assert [(r["id"], r["spend"], r["api_requests"]) for r in rows_json(litellm_dsn, "LiteLLM_DailyUserSpend", "date = '2026-01-15'")] \
        == [("daily-from-litellm", 0.25, 1)]
    rows = {"LiteLLM_VerificationToken": rows_json(litellm_dsn, "LiteLLM_VerificationToken"),
            "LiteLLM_UserTable": rows_json(litellm_dsn, "LiteLLM_UserTable"),
            "LiteLLM_TeamTable": rows_json(litellm_dsn, "LiteLLM_TeamTable"),
            "LiteLLM_ProxyModelTable": rows_json(litellm_dsn, "LiteLLM_ProxyModelTable"),
            "LiteLLM_SpendLogs": rows_json(litellm_dsn, "LiteLLM_SpendLogs"),
            "LiteLLM_DeletedVerificationToken": rows_json(litellm_dsn, "LiteLLM_DeletedVerificationToken")}
    assert all(rows.values()), {k: len(v) for k, v in rows.items()}
    assert litellm_side(rows=rows)["invalid"] == {name: [] for name in rows}
    key_row = rows_json(litellm_dsn, "LiteLLM_VerificationToken", "user_id = %s", user["user_id"])[0]
    assert key_row["models"] == [] and key_row["allowed_routes"] == []
    team_row = rows_json(litellm_dsn, "LiteLLM_TeamTable", "team_id = %s", team["team_id"])[0]
    assert team_row["admins"] == [] and team_row["members"] == [] and team_row["models"] == []


def test_documented_prechecks_answer_as_documented(litellm_dsn):
    """The SQL of docs/migration.md's pre-checks, run exactly as written, on the LiteLLM database the proxy now runs on."""
    blocks = re.findall(r"```sql\n(.*?)\n\s*```", (REPO / "docs" / "migration.md").read_text(), flags=re.S)
    assert len(blocks) == 2
    assert sql(litellm_dsn, blocks[0]) == [(1,)]
    assert sql(litellm_dsn, blocks[1]) == [("shared-alias", 2)]


def test_survives_litellm_dropping_what_the_proxy_added(on_litellm, litellm_dsn):
    """LiteLLM's first start drops what its schema does not declare; the proxy's next start adds it again."""
    added = [name for (name,) in sql(litellm_dsn, "SELECT indexname FROM pg_indexes WHERE tablename LIKE 'LiteLLM_%%' AND indexname IN "
                                                  "('LiteLLM_VerificationToken_key_alias_key', 'LiteLLM_SpendLogs_api_key_idx')")]
    assert sorted(added) == ["LiteLLM_SpendLogs_api_key_idx", "LiteLLM_VerificationToken_key_alias_key"]
    on_litellm.terminate()
    sql(litellm_dsn, 'ALTER TABLE "LiteLLM_VerificationToken" DROP COLUMN soft_budget; DROP TABLE "LiteMaaS_SchemaVersion"; '
                     'DROP INDEX "LiteLLM_VerificationToken_key_alias_key"; DROP INDEX "LiteLLM_SpendLogs_api_key_idx"', fetch=False)
    # Meanwhile the duplicate aliases were fixed the way the report asks: the alias index becomes unique again.
    sql(litellm_dsn, "UPDATE \"LiteLLM_VerificationToken\" SET key_alias = 'shared-alias-2' WHERE token = %s", sha(DUP_KEY_2), fetch=False)
    on_litellm.start()
    status, health = on_litellm.admin("GET", "/health/readiness")
    assert status == 200 and health["duplicate_key_aliases"] == {}
    assert "soft_budget" in columns(litellm_dsn, "LiteLLM_VerificationToken")
    assert sql(litellm_dsn, 'SELECT version FROM "LiteMaaS_SchemaVersion"') == [(1,)]
    assert sql(litellm_dsn, "SELECT indisunique FROM pg_index WHERE indexrelid = to_regclass('\"LiteLLM_VerificationToken_key_alias_key\"')") \
        == [(True,)]
    assert chat(on_litellm, LIVE_KEY, model="ll-chat")[0] == 200
