"""The documented command lines that call the portal backend at ``$ADMIN``, run exactly as written: its full health
check (docs/deployment.md, "Verify") and its model sync (docs/troubleshooting.md, item 1). Which commands these are:
RUN in tests/playbooks/test_doc_commands.py.

The reader sets ``$ADMIN`` (the ``litellm-admin`` route's URL) and ``$ADMIN_KEY`` (the first key of Secret
``backend-secret``) as the docs show; here they are the stand-in's address and one of its admin keys. The portal
backend is the stand-in tests/support/portal_backend.py; behind it everything is real: the proxy process (PostgreSQL,
Redis; models registered through its API, one only in its config file), and the portal's database in the real
PostgreSQL with the portal's schema.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest

from tests.support.doc_commands import sh
from tests.support.portal_backend import PortalBackend
from tests.support.portal_db import create_portal_db, sql
from tests.support.proxy import http_json

HEALTH = "curl -s $ADMIN/api/v1/health | python3 -m json.tool"
SYNC = ('curl -s -X POST $ADMIN/api/v1/models/sync -H "Authorization: Bearer $ADMIN_KEY" -H \'Content-Type: application/json\''
        ' -d \'{"forceUpdate": false, "markUnavailable": true}\'')
REGISTERED = ("granite-3-8b", "nomic-embed", "llama-3-1-8b")


class Portal:
    def __init__(self, proxy, dsn: str, backend: PortalBackend, admin_key: str, cwd):
        self.proxy, self.dsn, self.backend, self.admin_key, self.cwd = proxy, dsn, backend, admin_key, cwd

    def env(self, **shell) -> dict:
        return {**os.environ, "ADMIN": self.backend.url, "ADMIN_KEY": self.admin_key, **shell}

    def rows(self) -> dict:
        """id -> row of the portal's models table, as ``psql_portal -c "SELECT id, availability FROM models ORDER BY id"``."""
        return {r["id"]: r for r in sql(self.dsn, "SELECT id, availability, litellm_model_id, backend_model_name, api_base FROM models ORDER BY id")}

    def proxy_models(self) -> dict:
        status, body = self.proxy.admin("GET", "/model/info")
        assert status == 200, body
        return {m["model_name"]: m for m in body["data"]}


@pytest.fixture(scope="module")
def portal(tmp_path_factory, pg_server, proxy_factory, stub_upstream):
    # A proxy of its own (it is stopped below): one model in its config file, three registered through its API.
    config_only = [{"model_name": "config-only", "litellm_params": {"model": "openai/config-only", "api_base": stub_upstream.url},
                    "model_info": {"mode": "chat"}}]
    proxy = proxy_factory(database="doc_portal_" + uuid.uuid4().hex[:8], models=config_only)
    for name in REGISTERED:
        params = {"model": f"openai/{name}-served", "api_base": stub_upstream.url}
        status, body = proxy.admin("POST", "/model/new", {"model_name": name, "litellm_params": params,
                                                          "model_info": {"mode": "embedding" if "embed" in name else "chat"}})
        assert status == 200, body
    dsn = create_portal_db(pg_server, "litemaas_db_")
    # A model the portal copied long ago and the proxy no longer has.
    sql(dsn, "INSERT INTO models (id, name, provider) VALUES ('retired-model', 'retired-model', 'openai')")
    admin_key = "ltm_admin_" + uuid.uuid4().hex
    # ADMIN_API_KEYS as Secret backend-secret holds them; a key without the ltm_admin_ prefix is never checked.
    backend = PortalBackend(dsn, proxy.url, proxy.master_key, admin_api_keys=[admin_key, "ltm_admin_second", "change-me-admin-key"],
                            jwt_secret=uuid.uuid4().hex, litellm_database_url=proxy.dsn).start()
    yield Portal(proxy, dsn, backend, admin_key, tmp_path_factory.mktemp("doc-portal"))
    backend.stop()


def pretty(stdout: str) -> dict:
    """What ``python3 -m json.tool`` printed: indented JSON (4 spaces), parsed."""
    parsed = json.loads(stdout)
    assert stdout == json.dumps(parsed, indent=4) + "\n", stdout
    return parsed


def test_health_line_prints_every_check_healthy_and_the_proxy_down_as_unhealthy(portal):
    # docs/deployment.md, "Verify": database, proxy and auth all "healthy".
    health = pretty(sh(HEALTH, portal.env(), portal.cwd).stdout)
    assert health["status"] == "healthy", health
    assert health["checks"] == {"database": "healthy", "litellm": "healthy", "auth": "healthy"}, health
    status, answer, dummy = http_json("GET", portal.backend.url + "/api/v1/health")
    assert status == 200 and answer["checks"] == health["checks"], answer

    # A portal whose database is gone: the same line shows which check fails.
    broken = PortalBackend(portal.dsn.rsplit("/", 1)[0] + "/no_such_portal_db", portal.proxy.url, portal.proxy.master_key,
                           admin_api_keys=[portal.admin_key]).start()
    try:
        no_db = pretty(sh(HEALTH, portal.env(ADMIN=broken.url), portal.cwd).stdout)
    finally:
        broken.stop()
    assert no_db["status"] == "unhealthy" and no_db["checks"] == {"database": "unhealthy", "litellm": "healthy", "auth": "healthy"}, no_db

    # The proxy stopped: 503, and the line prints the proxy unhealthy (the database still healthy).
    portal.proxy.terminate()
    try:
        down = pretty(sh(HEALTH, portal.env(), portal.cwd).stdout)
        assert down["status"] == "unhealthy", down
        assert down["checks"] == {"database": "healthy", "litellm": "unhealthy", "auth": "healthy"}, down
        status, answer, dummy = http_json("GET", portal.backend.url + "/api/v1/health")
        assert status == 503 and answer["checks"]["litellm"] == "unhealthy", answer
    finally:
        portal.proxy.restart()
    assert pretty(sh(HEALTH, portal.env(), portal.cwd).stdout)["status"] == "healthy"


def test_sync_line_copies_the_proxys_models_and_marks_a_deleted_one_unavailable(portal):
    proxy_models = portal.proxy_models()
    assert set(proxy_models) == {"config-only", *REGISTERED}, sorted(proxy_models)

    # docs/troubleshooting.md, item 1: the portal copies the proxy's models; the one only in the proxy's config file is
    # not in LiteLLM_ProxyModelTable and stays out; the row the proxy no longer has is marked unavailable.
    first = json.loads(sh(SYNC, portal.env(), portal.cwd).stdout)
    assert first["success"] is True and first["errors"] == [], first
    assert (first["totalModels"], first["newModels"], first["updatedModels"], first["unavailableModels"]) == (3, 3, 0, 1), first
    assert first["syncedAt"].endswith("Z"), first
    rows = portal.rows()
    assert {k: r["availability"] for k, r in rows.items()} == {**{n: "available" for n in REGISTERED}, "retired-model": "unavailable"}, rows
    for name in REGISTERED:
        assert rows[name]["litellm_model_id"] == proxy_models[name]["model_info"]["id"], rows[name]
        assert rows[name]["backend_model_name"] == f"{name}-served" and rows[name]["api_base"] == proxy_models[name]["litellm_params"]["api_base"]

    # Again: nothing new, nothing changed.
    again = json.loads(sh(SYNC, portal.env(), portal.cwd).stdout)
    assert (again["totalModels"], again["newModels"], again["updatedModels"], again["unavailableModels"]) == (3, 0, 0, 0), again
    assert portal.rows() == rows

    # A model deleted from the proxy: the next sync marks it unavailable (kept for the subscriptions that name it).
    status, body = portal.proxy.admin("POST", "/model/delete", {"id": proxy_models["llama-3-1-8b"]["model_info"]["id"]})
    assert status == 200, body
    after = json.loads(sh(SYNC, portal.env(), portal.cwd).stdout)
    assert (after["totalModels"], after["newModels"], after["updatedModels"], after["unavailableModels"]) == (2, 0, 0, 1), after
    available = {k for k, r in portal.rows().items() if r["availability"] == "available"}
    assert available == {"granite-3-8b", "nomic-embed"} == set(portal.proxy_models()) - {"config-only"}
    assert portal.rows()["llama-3-1-8b"]["availability"] == "unavailable"

    # forceUpdate rewrites every row the proxy has.
    status, forced, dummy = http_json("POST", portal.backend.url + "/api/v1/models/sync", {"forceUpdate": True},
                                      {"Authorization": f"Bearer {portal.admin_key}"})
    assert status == 200 and (forced["newModels"], forced["updatedModels"], forced["unavailableModels"]) == (0, 2, 0), forced


@pytest.mark.parametrize("admin_key", ["ltm_admin_not-a-key-of-this-portal", "", "change-me-admin-key"])
def test_sync_line_with_a_wrong_key_is_refused_and_changes_nothing(portal, admin_key):
    before = portal.rows()
    calls = len(portal.backend.calls)
    proc = sh(SYNC, portal.env(ADMIN_KEY=admin_key), portal.cwd)
    # The backend's 401 body (automation branches on the status code).
    assert json.loads(proc.stdout) == {"error": "[object Object]"}, proc.stdout
    assert portal.backend.calls[calls:] == [("/api/v1/models/sync", f"Bearer {admin_key}", {"forceUpdate": False, "markUnavailable": True})]
    status, dummy, dummy2 = http_json("POST", portal.backend.url + "/api/v1/models/sync", {}, {"Authorization": f"Bearer {admin_key}"})
    assert status == 401
    assert portal.rows() == before
