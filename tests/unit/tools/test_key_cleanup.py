"""key_cleanup: selection logic, the portal sync against a real PostgreSQL, and a full pass against the real proxy."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone

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


def test_sync_portal_marks_matching_rows_inactive(portal_db):
    h = {n: hashlib.sha256(n.encode()).hexdigest() for n in ("k1", "k2", "k3")}
    conn = psycopg2.connect(portal_db)
    with conn, conn.cursor() as cur:
        for name, alias in (("k1", "ws-1"), ("k2", "by-alias"), ("k3", "keep")):
            cur.execute("INSERT INTO api_keys (user_id, name, key_hash, litellm_key_alias) VALUES (%s, %s, %s, %s)",
                        (str(uuid.uuid4()), name, h[name], alias))
    conn.close()
    # k1 matches by hash, k2 by alias (its hash is not given), k3 stays active.
    assert kc.sync_portal(portal_db, [h["k1"], "0" * 64], ["by-alias"]) == 2
    rows = {r[0]: r for r in _rows(portal_db)}
    assert rows[h["k1"]][2:] == (False, True, "Key deleted by key cleanup (expired)")
    assert rows[h["k2"]][2] is False
    assert rows[h["k3"]][2:] == (True, False, None)
    # Second pass: rows already inactive are not touched again.
    assert kc.sync_portal(portal_db, [h["k1"]], ["by-alias"]) == 0


def test_sync_portal_without_table_fails_clearly(pg_server):
    name = "empty_" + uuid.uuid4().hex[:8]
    pg_server.create_database(name)
    with pytest.raises(RuntimeError, match="no api_keys table"):
        kc.sync_portal(pg_server.dsn(name), ["x"], [])


def test_cli_without_master_key_exits_2():
    env = {k: v for k, v in os.environ.items() if k not in ("LITELLM_MASTER_KEY", "PROXY_MASTER_KEY")}
    env["PYTHONPATH"] = str(kc.__file__).rsplit("/litemaas_proxy/", 1)[0]
    proc = subprocess.run([sys.executable, "-m", "litemaas_proxy.tools.key_cleanup"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert json.loads(proc.stdout) == {"errors": ["LITELLM_MASTER_KEY is not set"]}


def test_cli_unreachable_proxy_reports_error(tmp_path):
    from tests.support.services import free_port

    env = dict(os.environ, LITELLM_MASTER_KEY="sk-test", PYTHONPATH=str(kc.__file__).rsplit("/litemaas_proxy/", 1)[0])
    proc = subprocess.run([sys.executable, "-m", "litemaas_proxy.tools.key_cleanup", "--url", f"http://127.0.0.1:{free_port()}", "--timeout", "2"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    summary = json.loads(proc.stdout)
    assert summary["scanned"] == 0 and summary["deleted"] == 0
    assert summary["errors"][0].startswith("GET /key/list failed (no response)")
