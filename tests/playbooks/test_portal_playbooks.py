"""key_sync and portal_admins playbooks against a portal database in the real PostgreSQL and the real proxy."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from tests.playbooks.conftest import recap
from tests.support.portal_db import create_portal_db, sql


@pytest.fixture()
def portal(pg_server):
    return create_portal_db(pg_server, "portal_pb_")


def add_user(dsn, username, email, roles=("user",)):
    return sql(dsn, "INSERT INTO users (username, email, oauth_id, roles) VALUES (%s, %s, %s, %s) RETURNING id::text AS id",
               (username, email, username, list(roles)))[0]["id"]


def test_portal_admins(playbook, portal):
    lead = add_user(portal, "lead", "lead@example.com")
    old = add_user(portal, "former", "former@example.com", roles=("user", "admin"))
    admins = [{"email": "lead@example.com"}, {"username": "former", "state": "absent"}]
    variables = {"litemaas_portal_db_url": portal, "litemaas_portal_admins": admins}

    check = playbook.run("portal_admins.yml", variables, check=True)
    assert recap(check.stdout)["changed"] == 1
    assert sql(portal, "SELECT roles FROM users WHERE id = %s", (lead,))[0]["roles"] == ["user"], "check mode must not write"

    first = playbook.run("portal_admins.yml", variables)
    assert recap(first.stdout)["changed"] == 1  # one task, two items changed
    assert sql(portal, "SELECT roles FROM users WHERE id = %s", (lead,))[0]["roles"] == ["user", "admin"]
    assert sql(portal, "SELECT roles FROM users WHERE id = %s", (old,))[0]["roles"] == ["user"]
    assert portal not in first.stdout

    again = playbook.run("portal_admins.yml", variables)
    assert recap(again.stdout)["changed"] == 0

    missing = playbook.run("portal_admins.yml", {"litemaas_portal_db_url": portal, "litemaas_portal_admins": [{"username": "nobody"}]}, expect_rc=2)
    assert "Portal user 'nobody' not found" in missing.stdout


def test_key_sync_dry_run_then_fix(playbook, proxy, portal):
    owner = add_user(portal, "owner", "owner@example.com")
    alias = "ks-" + uuid.uuid4().hex[:6]
    status, live = proxy.admin("POST", "/key/generate", {"key_alias": alias, "user_id": owner})
    assert status == 200
    for name, key_hash in (("live", live["token"]), ("gone", hashlib.sha256(f"sk-{alias}-deleted".encode()).hexdigest())):
        sql(portal, "INSERT INTO api_keys (user_id, name, key_hash, key_prefix) VALUES (%s, %s, %s, 'sk-...')", (owner, name, key_hash))
    conn = {"litemaas_proxy_url": proxy.url, "litemaas_master_key": proxy.master_key, "litemaas_portal_db_url": portal}

    dry = playbook.run("key_sync.yml", dict(conn, litemaas_key_sync_dry_run=True))
    assert "Dry run only: nothing changed." in dry.stdout
    assert {r["name"]: r["is_active"] for r in sql(portal, "SELECT name, is_active FROM api_keys")} == {"live": True, "gone": True}

    fix = playbook.run("key_sync.yml", conn)
    assert recap(fix.stdout)["changed"] >= 1
    assert {r["name"]: r["is_active"] for r in sql(portal, "SELECT name, is_active FROM api_keys")} == {"live": True, "gone": False}
    assert proxy.master_key not in fix.stdout and portal not in fix.stdout

    again = playbook.run("key_sync.yml", conn)
    assert recap(again.stdout)["changed"] == 0
