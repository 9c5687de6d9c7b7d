"""portal_user and key_sync against a portal database in the real PostgreSQL and the live proxy."""

from __future__ import annotations

import hashlib
import time

from tests.integration.modules.conftest import sql


def add_user(dsn, username, email, roles=("user",)):
    return sql(dsn, "INSERT INTO users (username, email, oauth_id, roles) VALUES (%s, %s, %s, %s) RETURNING id::text AS id",
               (username, email, username, list(roles)))[0]["id"]


def add_portal_key(dsn, user_id, name, key_hash, expires_at=None):
    return sql(dsn, "INSERT INTO api_keys (user_id, name, key_hash, key_prefix, expires_at) VALUES (%s, %s, %s, 'sk-...', %s) RETURNING id::text AS id",
               (user_id, name, key_hash, expires_at))[0]["id"]


def roles_of(dsn, user_id):
    return sql(dsn, "SELECT roles FROM users WHERE id = %s", (user_id,))[0]["roles"]


def test_portal_user_grant_and_revoke(play, portal_db, uid):
    user_id = add_user(portal_db, f"{uid}-lead", f"{uid}-Lead@Example.com")
    PU = "rhpds.litemaas.portal_user"
    grant = {"username": f"{uid}-lead", "role": "admin", "portal_db_url": portal_db}
    by_email = {"email": f"{uid}-lead@example.com", "role": "adminReadonly", "portal_db_url": portal_db}
    revoke = {"user_id": user_id, "role": "admin", "state": "absent", "portal_db_url": portal_db}
    run = play([{PU: grant, "check_mode": True, "diff": True}, {PU: grant}, {PU: grant}, {PU: by_email}, {PU: by_email}, {PU: revoke}, {PU: revoke},
                {PU: {"username": f"{uid}-nobody", "portal_db_url": portal_db}},
                {PU: {"username": f"{uid}-lead", "portal_url": "http://127.0.0.1:9", "portal_jwt_secret": "portal-jwt-secret-for-the-test",
                      "portal_jwt_user_id": user_id}},
                {PU: {"username": f"{uid}-lead", "portal_url": "http://127.0.0.1:9", "portal_jwt_secret": "portal-jwt-secret-for-the-test"}}],
               verbosity=3)
    check = run[0]
    assert check["changed"] is True and check["portal_user"]["roles"] == ["user", "admin"]
    assert check["diff"] == {"before": {"roles": ["user"]}, "after": {"roles": ["user", "admin"]}}
    assert run[1]["portal_user"]["roles"] == ["user", "admin"], "check mode must not write"
    assert [r["changed"] for r in run.results[1:7]] == [True, False, True, False, True, False]
    assert run[1]["msg"] == f"Granted role admin for {uid}-lead"
    assert run[4]["portal_user"]["roles"] == ["user", "admin", "admin-readonly"]
    assert run[6]["msg"] == f"Role admin of {user_id} is already absent"
    assert roles_of(portal_db, user_id) == ["user", "admin-readonly"]
    assert run[7]["failed"] and run[7]["msg"] == f"Portal user '{uid}-nobody' not found (portal users are created at their first login)"
    assert "postgresql://" not in run.stdout, "the database URL must stay hidden"
    assert run[8]["msg"] == (f"GET /api/v1/users?limit=100&search={uid}-lead failed: cannot reach http://127.0.0.1:9: "
                             "[Errno 111] Connection refused")
    assert run[9]["msg"] == ("portal_jwt_user_id is required with portal_jwt_secret: the portal accepts a token only for an active user id")
    assert "portal-jwt-secret-for-the-test" not in run.stdout


def test_key_sync(play, proxy, portal_db, uid):
    owner = add_user(portal_db, f"{uid}-owner", f"{uid}-owner@example.com")
    # A portal key whose proxy key is alive, one whose proxy key is gone, one expired in the portal, one expired on the proxy.
    status, live = proxy.admin("POST", "/key/generate", {"key_alias": f"{uid}-live", "user_id": owner})
    assert status == 200
    status, short = proxy.admin("POST", "/key/generate", {"key_alias": f"{uid}-short", "user_id": owner, "duration": "1s"})
    assert status == 200
    live_id = add_portal_key(portal_db, owner, "live", live["token"])
    gone_id = add_portal_key(portal_db, owner, "gone", hashlib.sha256(f"sk-{uid}-deleted".encode()).hexdigest())
    old_id = add_portal_key(portal_db, owner, "old", live["token"][::-1], expires_at="2020-01-01T00:00:00Z")
    short_id = add_portal_key(portal_db, owner, "short", short["token"])
    # Workshop keys created in the proxy: one owned by the portal user (by e-mail), one by nobody the portal knows.
    sql(portal_db, "INSERT INTO models (id, name) VALUES ('stub-model', 'stub-model'), ('granite-3-8b', 'granite-3-8b') ON CONFLICT DO NOTHING",
        fetch=False)
    status, ws = proxy.admin("POST", "/key/generate", {"key_alias": f"{uid}-ws-user1", "user_id": f"{uid}-owner@example.com", "max_budget": 3,
                                                       "models": ["stub-model"]})
    assert status == 200
    assert proxy.admin("POST", "/key/generate", {"key_alias": f"{uid}-ws-user2", "user_id": "stranger@example.com"})[0] == 200
    time.sleep(1.2)  # let the 1-second key expire

    KS = "rhpds.litemaas.key_sync"
    args = {"portal_db_url": portal_db, "import_keys": True, "alias_prefix": f"{uid}-ws-"}
    run = play([{KS: args, "check_mode": True}, {KS: args}, {KS: args}])
    res = run[0]
    assert res["changed"] is True
    deactivations = {d["id"]: d["reason"] for d in res["differences"] if d["action"] == "deactivate"}
    assert deactivations == {gone_id: "gone from the proxy", old_id: "gone from the proxy", short_id: "expired on the proxy"}
    imports = [d for d in res["differences"] if d["action"] == "import"]
    assert [(d["key_alias"], d["user_id"]) for d in imports] == [(f"{uid}-ws-user1", owner)]
    assert res["counts"]["skipped_no_owner"] == 1
    assert run[1]["changed"] is True and run[1]["counts"]["deactivated"] == 3 and run[1]["counts"]["imported"] == 1, "check mode must not write"
    assert run[2]["changed"] is False and run[2]["differences"] == []
    rows = {r["name"]: r for r in sql(portal_db, "SELECT name, is_active, revoked_at, key_hash, max_budget FROM api_keys WHERE user_id = %s", (owner,))}
    assert rows["live"]["is_active"] is True and rows["live"]["revoked_at"] is None
    assert not rows["gone"]["is_active"] and not rows["old"]["is_active"] and not rows["short"]["is_active"]
    assert rows["gone"]["revoked_at"] is not None
    imported = rows[f"{uid}-ws-user1"]
    assert imported["is_active"] is True and imported["key_hash"] == ws["token"] and float(imported["max_budget"]) == 3
    linked = sql(portal_db, "SELECT m.model_id FROM api_key_models m JOIN api_keys k ON k.id = m.api_key_id WHERE k.key_hash = %s", (ws["token"],))
    assert [r["model_id"] for r in linked] == ["stub-model"], "the portal lists a key with its models"
    assert live_id
