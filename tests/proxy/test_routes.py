"""The route table (litemaas_proxy/api/routes.py) is the one place that says who may call what.

* Every route of the application is in the table, with a level; the OpenAPI document says the same.
* Walking the table against a live proxy: every non-public route refuses a missing credential, a wrong one, and
  (admin routes) a valid virtual key that is not a proxy admin, with LiteLLM's 401 error shape, before the
  body is read (the bodies sent are not JSON).
"""

from __future__ import annotations

import re
import sys
import uuid
import warnings
from pathlib import Path

import pytest
import requests
import yaml

from tests.proxy.conftest import new_key, uid

PROXY_SRC = Path(__file__).resolve().parents[2] / "files" / "proxy"
sys.path.insert(0, str(PROXY_SRC))

from litemaas_proxy.api import routes  # noqa: E402
from litemaas_proxy.app import create_app  # noqa: E402
from litemaas_proxy.config import load_settings  # noqa: E402

# Same operation as a documented path: the data plane without /v1 and under Azure's and the engines' prefixes,
# the model listing without /v1, /metrics with a trailing slash.
ALIASES = {
    "/chat/completions": "/v1/chat/completions", "/completions": "/v1/completions", "/embeddings": "/v1/embeddings",
    "/openai/deployments/{deployment}/chat/completions": "/v1/chat/completions",
    "/openai/deployments/{deployment}/completions": "/v1/completions",
    "/openai/deployments/{deployment}/embeddings": "/v1/embeddings",
    "/engines/{engine}/chat/completions": "/v1/chat/completions",
    "/models/{model_id}": "/v1/models/{model_id}", "/metrics/": "/metrics",
    "/responses": "/v1/responses", "/rerank": "/v1/rerank", "/v2/rerank": "/v1/rerank", "/score": "/v1/score",
}
# Pass-through routes take every method on a prefix; the document lists the operations Docling serves.
PASSTHROUGH_DOCUMENTED = {("POST", "/docling/v1/convert/source"), ("POST", "/docling/v1/convert/file")}


def build_app(config: dict | None = None, tmp_path=None):
    path = None
    if config is not None:
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_app(load_settings(str(path) if path else None, env={}))


def template(path: str) -> str:
    """aiohttp's ``{name:regex}`` as OpenAPI's ``{name}``."""
    return re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)


def test_every_route_has_a_level():
    app = build_app()
    levels = app[routes.LEVEL_KEY]
    assert set(levels) == set(app.router.routes())
    assert set(levels.values()) == {routes.PUBLIC, routes.KEY, routes.ADMIN}
    table = routes.table(app)
    assert len(table) == len({(r.method, r.path) for r in table}), "a route declared twice"
    by_path = {(r.method, r.path): r.auth for r in table}
    # Spot checks that the levels are the contract's (a mistake here would open a route).
    assert by_path[("POST", "/key/generate")] == routes.ADMIN and by_path[("GET", "/key/info")] == routes.KEY
    assert by_path[("POST", "/v1/chat/completions")] == routes.KEY and by_path[("GET", "/health/readiness")] == routes.PUBLIC
    assert by_path[("*", "/docling/{tail:.*}")] == routes.KEY


def test_metrics_level_follows_the_setting(tmp_path):
    app = build_app({"litellm_settings": {"require_auth_for_metrics_endpoint": True}}, tmp_path)
    assert {r.auth for r in routes.table(app) if r.path.startswith("/metrics")} == {routes.KEY}
    with pytest.raises(ValueError, match="require_auth_for_metrics_endpoint"):
        build_app({"litellm_settings": {"require_auth_for_metrics_endpoint": "maybe"}}, tmp_path)


def test_a_route_without_a_valid_level_is_refused():
    async def handler(request):
        return None

    with pytest.raises(ValueError, match="auth level 'master'"):
        routes.Route("GET", "/x", handler, "master")


def test_openapi_document_matches_the_route_table():
    from litemaas_proxy.api.openapi import document

    doc = document()
    documented = {}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            public = op.get("security", doc.get("security")) == []
            documented[(method.upper(), path)] = public
    declared = {}
    for r in routes.table(build_app()):
        if r.method == "*":
            for op in PASSTHROUGH_DOCUMENTED:
                declared[op] = r.auth == routes.PUBLIC
            continue
        path = template(r.path)
        declared[(r.method, ALIASES.get(path, path))] = r.auth == routes.PUBLIC
    assert set(documented) == set(declared), (f"undocumented: {sorted(set(declared) - set(documented))}; "
                                              f"not served: {sorted(set(documented) - set(declared))}")
    wrong = sorted(op for op in declared if declared[op] != documented[op])
    assert not wrong, f"security in openapi.yaml differs from the route table for {wrong}"


def concrete(path: str, key: str) -> str:
    return (path.replace("{key}", key).replace("{model_id}", "x").replace("{model_id:.+}", "x").replace("{deployment}", "d")
            .replace("{engine}", "e").replace("{tail:.*}", "v1/convert/source").replace("{response_id}", "resp_x"))


def test_every_protected_route_refuses_missing_wrong_and_underprivileged_credentials(proxy):
    user = uid("rt-user")
    assert proxy.admin("POST", "/user/new", {"user_id": user, "auto_create_key": False})[0] == 200
    vkey = new_key(proxy, key_alias=uid("rt-key"), user_id=user)
    table = [r for r in routes.table(build_app()) if r.auth != routes.PUBLIC]
    assert len(table) >= 44
    checked = 0
    for r in table:
        method = "POST" if r.method == "*" else r.method
        url = proxy.url + concrete(r.path, vkey)
        credentials = {"missing": {}, "wrong": {"Authorization": "Bearer sk-" + uuid.uuid4().hex},
                       "wrong master key": {"x-litellm-api-key": proxy.master_key + "x"}}
        if r.auth == routes.ADMIN:
            credentials["virtual key (not a proxy admin)"] = {"Authorization": f"Bearer {vkey}"}
        for label, headers in credentials.items():
            data = b"{not json" if method in ("POST", "PATCH") else None
            resp = requests.request(method, url, data=data, headers={"Content-Type": "application/json", **headers}, timeout=30)
            assert resp.status_code == 401, f"{method} {r.path} with {label}: {resp.status_code} {resp.text[:300]}"
            if r.errors == "anthropic":  # the Messages routes answer in Anthropic's shape, which its clients show
                body = resp.json()
                assert body["type"] == "error" and body["error"]["type"] == "authentication_error", body
                assert body["error"]["message"].startswith("Authentication Error"), body
                checked += 1
                continue
            err = resp.json()["error"]
            assert err["code"] == "401" and err["type"] in ("auth_error", "token_not_found_in_db") and err["message"], err
            if label.startswith("virtual key"):
                assert "Only proxy admin" in err["message"] and f"Route={concrete(r.path, vkey)}" in err["message"], err
            checked += 1
    assert checked >= 3 * len(table)
    # The same virtual key is accepted where a key is enough (the refusals above are about the level, not the key).
    status, data, dummy = proxy.request("GET", "/key/info", headers={"Authorization": f"Bearer {vkey}"})
    assert status == 200 and data["info"]["user_id"] == user, data
