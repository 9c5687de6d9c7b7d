"""key_cleanup: selection logic, the portal sync against a real PostgreSQL, and a full pass against the real proxy."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg2
import pytest

from litemaas_proxy.tools import key_cleanup as kc

UTC = timezone.utc
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, None),
        ("", None),
        ("2026-03-01T11:00:00Z", datetime(2026, 3, 1, 11, 0, tzinfo=UTC)),
        ("2026-03-01T11:00:00.123Z", datetime(2026, 3, 1, 11, 0, 0, 123000, tzinfo=UTC)),
        ("2026-03-01T11:00:00.1234567+00:00", datetime(2026, 3, 1, 11, 0, 0, 123456, tzinfo=UTC)),
        ("2026-03-01T13:00:00+02:00", datetime(2026, 3, 1, 11, 0, tzinfo=UTC)),
        ("2026-03-01 11:00:00", datetime(2026, 3, 1, 11, 0, tzinfo=UTC)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
    ],
)
def test_parse_time(value, expected):
    assert kc.parse_time(value) == expected


def _key(token, alias=None, expires=None, created=None, metadata=None):
    return {"token": token, "key_alias": alias, "expires": expires, "created_at": created, "metadata": metadata or {}}


@pytest.mark.parametrize(
    "key, grace, max_age, reason",
    [
        (_key("a", expires="2026-03-01T11:59:59Z"), timedelta(0), None, "expired"),
        (_key("a", expires="2026-03-01T12:00:00Z"), timedelta(0), None, "expired"),
        (_key("a", expires="2026-03-01T12:00:01Z"), timedelta(0), None, None),
        (_key("a", expires="2026-03-01T11:00:00Z"), timedelta(hours=2), None, None),
        (_key("a", expires="2026-03-01T09:00:00Z"), timedelta(hours=2), None, "expired"),
        (_key("a"), timedelta(0), None, None),
        (_key("a", created="2026-01-01T00:00:00Z"), timedelta(0), timedelta(days=30), "too_old"),
        (_key("a", created="2026-02-28T00:00:00Z"), timedelta(0), timedelta(days=30), None),
    ],
)
def test_why_delete(key, grace, max_age, reason):
    assert kc.why_delete(key, NOW, grace, max_age) == reason


def test_select_keys_scope_and_dedup():
    keys = [
        _key("t1", "ws-abc-user1", "2026-02-01T00:00:00Z", metadata={"workshop": "abc"}),
        _key("t2", "ws-abc-user2", "2026-04-01T00:00:00Z", metadata={"workshop": "abc"}),  # not expired
        _key("t3", "portal_key_1a2b", "2026-02-01T00:00:00Z"),  # other alias
        _key("t1", "ws-abc-user1", "2026-02-01T00:00:00Z", metadata={"workshop": "abc"}),  # duplicate row
        _key("t4", "ws-def-user1", "2026-02-01T00:00:00Z", metadata=json.dumps({"workshop": "def"})),  # metadata as JSON text
        _key(None, "ws-no-token", "2026-02-01T00:00:00Z"),
    ]
    assert [k["token"] for k in kc.select_keys(keys, NOW)] == ["t1", "t3", "t4"]
    assert [k["token"] for k in kc.select_keys(keys, NOW, alias_prefixes=["ws-"])] == ["t1", "t4"]
    assert [k["token"] for k in kc.select_keys(keys, NOW, metadata_key="workshop")] == ["t1", "t4"]
    assert [k["token"] for k in kc.select_keys(keys, NOW, alias_prefixes=["ws-def"], metadata_key="workshop")] == ["t4"]
    assert kc.select_keys(keys, NOW)[0] == {"token": "t1", "key_alias": "ws-abc-user1", "expires": "2026-02-01T00:00:00Z", "reason": "expired"}


def test_batches():
    assert kc.batches(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
    assert kc.batches([], 100) == []
    assert kc.batches([1], 0) == [[1]]


PORTAL_TABLE = """
CREATE TABLE api_keys (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id UUID NOT NULL,
  name VARCHAR(255),
  key_hash VARCHAR(255) UNIQUE NOT NULL,
  key_prefix VARCHAR(20),
  litellm_key_alias VARCHAR(255),
  is_active BOOLEAN DEFAULT true,
  revoked_at TIMESTAMP,
  sync_status VARCHAR(20) DEFAULT 'synced',
  sync_error TEXT,
  updated_at TIMESTAMP DEFAULT NOW()
)
"""


@pytest.fixture()
def portal_db(pg_server):
    name = "portal_" + uuid.uuid4().hex[:8]
    pg_server.create_database(name)
    dsn = pg_server.dsn(name)
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute(PORTAL_TABLE)
    conn.close()
    return dsn


def _rows(dsn):
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT key_hash, litellm_key_alias, is_active, revoked_at IS NOT NULL, sync_error FROM api_keys ORDER BY key_hash")
            return cur.fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("driver", ["psycopg2", "asyncpg"])
def test_sync_portal_marks_matching_rows_inactive(portal_db, driver):
    h = {n: hashlib.sha256(n.encode()).hexdigest() for n in ("k1", "k2", "k3")}
    conn = psycopg2.connect(portal_db)
    with conn, conn.cursor() as cur:
        for name, alias in (("k1", "ws-1"), ("k2", "by-alias"), ("k3", "keep")):
            cur.execute("INSERT INTO api_keys (user_id, name, key_hash, litellm_key_alias) VALUES (%s, %s, %s, %s)",
                        (str(uuid.uuid4()), name, h[name], alias))
    conn.close()
    # k1 matches by hash, k2 by alias (its hash is not given), k3 stays active.
    assert kc.sync_portal(portal_db, [h["k1"], "0" * 64], ["by-alias"], driver=driver) == 2
    rows = {r[0]: r for r in _rows(portal_db)}
    assert rows[h["k1"]][2:] == (False, True, "Key deleted by key cleanup (expired)")
    assert rows[h["k2"]][2] is False
    assert rows[h["k3"]][2:] == (True, False, None)
    # Second pass: rows already inactive are not touched again.
    assert kc.sync_portal(portal_db, [h["k1"]], ["by-alias"], driver=driver) == 0
    # Without aliases only the hash matches.
    assert kc.sync_portal(portal_db, [h["k3"]], [], driver=driver) == 1


@pytest.mark.parametrize("driver", ["psycopg2", "asyncpg"])
def test_sync_portal_without_table_fails_clearly(pg_server, driver):
    name = "empty_" + uuid.uuid4().hex[:8]
    pg_server.create_database(name)
    with pytest.raises(RuntimeError, match="no api_keys table"):
        kc.sync_portal(pg_server.dsn(name), ["x"], [], driver=driver)


def test_cli_without_master_key_exits_2():
    env = {k: v for k, v in os.environ.items() if k not in ("LITELLM_MASTER_KEY", "PROXY_MASTER_KEY")}
    env["PYTHONPATH"] = str(kc.__file__).rsplit("/litemaas_proxy/", 1)[0]
    proc = subprocess.run([sys.executable, "-m", "litemaas_proxy.tools.key_cleanup"], env=env, capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 2
    assert json.loads(proc.stdout) == {"errors": ["LITELLM_MASTER_KEY is not set"]}


def test_cli_unreachable_proxy_reports_error(tmp_path):
    from tests.support.services import free_port

    env = dict(os.environ, LITELLM_MASTER_KEY="sk-test", PYTHONPATH=str(kc.__file__).rsplit("/litemaas_proxy/", 1)[0])
    proc = subprocess.run([sys.executable, "-m", "litemaas_proxy.tools.key_cleanup", "--url", f"http://127.0.0.1:{free_port()}", "--timeout", "2"],
                          env=env, capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 1
    summary = json.loads(proc.stdout)
    assert summary["scanned"] == 0 and summary["deleted"] == 0
    assert summary["errors"][0].startswith("GET /key/list failed (no response)")


# ---------------------------------------------------------------- against the real proxy

def _generate(proxy, alias, duration=None, metadata=None):
    body = {"key_alias": alias, "models": ["stub-model"], "metadata": metadata or {}}
    if duration:
        body["duration"] = duration
    status, resp = proxy.admin("POST", "/key/generate", body)
    assert status == 200, resp
    return resp["key"]


def _aliases(proxy, prefix):
    client = kc.AdminClient(proxy.url, proxy.master_key)
    return sorted(k["key_alias"] for k in client.list_all_keys() if (k.get("key_alias") or "").startswith(prefix))


def _expire(proxy, aliases):
    """Move the keys' expiry into the past, directly in the proxy's database (what time passing would do)."""
    conn = psycopg2.connect(proxy.dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE \"LiteLLM_VerificationToken\" SET expires = now() - interval '1 hour' WHERE key_alias = ANY(%s)", (list(aliases),))
            assert cur.rowcount == len(aliases)
    finally:
        conn.close()


def test_run_pages_through_all_keys_and_deletes_only_expired_workshop_keys(proxy):
    run_id = uuid.uuid4().hex[:6]
    prefix = f"ws-{run_id}-"
    # 7 expired workshop keys, 3 live ones, and an expired key of another workshop; page size 3 forces paging.
    expired = [f"{prefix}user{i}" for i in range(7)]
    live = [f"{prefix}live{i}" for i in range(3)]
    other = f"other-{run_id}-user1"
    for alias in expired + live:
        _generate(proxy, alias, duration="1d", metadata={"workshop": run_id})
    _generate(proxy, other, duration="1d", metadata={"workshop": "other"})
    _expire(proxy, expired + [other])
    client = kc.AdminClient(proxy.url, proxy.master_key)

    dry = kc.run(client, dry_run=True, alias_prefixes=[prefix], page_size=3)
    assert dry["selected"] == 7 and dry["deleted"] == 0 and dry["errors"] == []
    assert sorted(k["key_alias"] for k in dry["keys"]) == expired
    assert _aliases(proxy, prefix) == sorted(expired + live)

    summary = kc.run(client, alias_prefixes=[prefix], page_size=3, batch_size=2)
    assert summary["errors"] == []
    assert summary["deleted"] == 7
    assert _aliases(proxy, prefix) == sorted(live)
    assert _aliases(proxy, f"other-{run_id}") == [other]  # other prefix untouched
    # Idempotent: a second pass finds nothing to delete.
    again = kc.run(client, alias_prefixes=[prefix], page_size=3)
    assert again["selected"] == 0 and again["deleted"] == 0 and again["errors"] == []


def test_run_with_future_clock_selects_by_expiry(proxy):
    run_id = uuid.uuid4().hex[:6]
    _generate(proxy, f"clock-{run_id}-a", duration="1h")
    _generate(proxy, f"clock-{run_id}-b", duration="30d")
    client = kc.AdminClient(proxy.url, proxy.master_key)
    later = datetime.now(UTC) + timedelta(days=2)
    summary = kc.run(client, now=later, dry_run=True, alias_prefixes=[f"clock-{run_id}-"])
    assert [k["key_alias"] for k in summary["keys"]] == [f"clock-{run_id}-a"]


def test_cli_deletes_and_syncs_the_portal(proxy, portal_db):
    run_id = uuid.uuid4().hex[:6]
    alias = f"cli-{run_id}-user1"
    secret = _generate(proxy, alias, duration="1d", metadata={"workshop": run_id})
    keep = _generate(proxy, f"cli-{run_id}-user2", duration="1d", metadata={"workshop": run_id})
    _expire(proxy, [alias])
    conn = psycopg2.connect(portal_db)
    with conn, conn.cursor() as cur:
        for key, name in ((secret, alias), (keep, f"cli-{run_id}-user2")):
            cur.execute("INSERT INTO api_keys (user_id, name, key_hash, litellm_key_alias) VALUES (%s, %s, %s, %s)",
                        (str(uuid.uuid4()), name, hashlib.sha256(key.encode()).hexdigest(), name))
    conn.close()
    env = dict(os.environ, LITELLM_MASTER_KEY=proxy.master_key, PROXY_URL=proxy.url, PORTAL_DATABASE_URL=portal_db,
               KEY_CLEANUP_METADATA_KEY="workshop", PYTHONPATH=str(kc.__file__).rsplit("/litemaas_proxy/", 1)[0])
    proc = subprocess.run([sys.executable, "-m", "litemaas_proxy.tools.key_cleanup", "--alias-prefix", f"cli-{run_id}-"],
                          env=env, capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["deleted"], summary["portal_deactivated"], summary["portal_sync"]) == (1, 1, "done")
    assert proxy.master_key not in proc.stdout + proc.stderr
    rows = {r[1]: r[2] for r in _rows(portal_db)}
    assert rows == {alias: False, f"cli-{run_id}-user2": True}
    status, body, dummy_headers = proxy.request("POST", "/v1/chat/completions",
                                                {"model": "stub-model", "messages": [{"role": "user", "content": "hi"}]},
                                                headers={"Authorization": f"Bearer {secret}"})
    # The deleted key is unknown to the proxy: 401 with LiteLLM's "token not found" error, not any other refusal.
    assert status == 401, body
    assert body["error"]["type"] == "token_not_found_in_db", body
    assert body["error"]["message"].startswith("Authentication Error, Invalid proxy server token passed."), body


@pytest.mark.parametrize("driver", ["psycopg2", "asyncpg"])
def test_sync_portal_on_the_portal_schema(pg_server, driver):
    """Against the portal's own api_keys columns (sync_status has a CHECK constraint, revoked_at, sync_error, ...)."""
    schema = Path(__file__).resolve().parents[2] / "integration" / "modules" / "portal_schema.sql"
    dsn = pg_server.create_database("portal_full_" + uuid.uuid4().hex[:8])
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(schema.read_text())
        cur.execute("INSERT INTO users (username, email, oauth_id) VALUES ('u', 'u@example.com', 'u') RETURNING id")
        user_id = cur.fetchone()[0]
        for name in ("expired", "other"):
            cur.execute("INSERT INTO api_keys (user_id, name, key_hash, key_prefix, litellm_key_alias) VALUES (%s, %s, %s, 'sk-...', %s)",
                        (user_id, name, hashlib.sha256(name.encode()).hexdigest(), f"ws-{name}"))
    assert kc.sync_portal(dsn, [hashlib.sha256(b"expired").hexdigest()], ["ws-expired"], driver=driver) == 1
    with conn.cursor() as cur:
        cur.execute("SELECT name, is_active, revoked_at IS NOT NULL, sync_status, sync_error FROM api_keys ORDER BY name")
        rows = cur.fetchall()
    conn.close()
    assert rows == [("expired", False, True, "synced", "Key deleted by key cleanup (expired)"), ("other", True, False, "pending", None)]


def test_the_tool_needs_only_the_standard_library():
    """The tool runs from the proxy image without the proxy's dependencies: it and the helpers it imports from the
    proxy package (values.py: the one on/off and timestamp parser) use the standard library only."""
    probe = ("import sys\nimport litemaas_proxy.tools.key_cleanup\n"
             "bad = sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names) - {'litemaas_proxy', '__main__'})\n"
             "print(','.join(bad))")
    src = Path(kc.__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-S", "-c", probe], env={"PYTHONPATH": str(src), "PATH": os.environ.get("PATH", "")},
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"non-standard modules imported: {proc.stdout.strip()}"
    assert kc.parse_time("2026-01-01T00:00:00Z") == datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("value, expected", [("on", True), ("Yes", True), ("1", True), ("off", False), ("0", False), ("", False)])
def test_dry_run_environment_takes_the_proxy_on_off_words(value, expected, monkeypatch):
    monkeypatch.setenv("KEY_CLEANUP_DRY_RUN", value)
    assert kc.build_parser().parse_args([]).dry_run is expected


def test_dry_run_environment_refuses_other_words(monkeypatch):
    monkeypatch.setenv("KEY_CLEANUP_DRY_RUN", "maybe")
    with pytest.raises(ValueError, match="KEY_CLEANUP_DRY_RUN"):
        kc.build_parser()
