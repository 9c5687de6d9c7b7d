"""Property-based tests of the proxy's OpenAPI document (GET /openapi.json) with schemathesis, against a live proxy.

Every operation of the document is called with schemathesis's explicit examples, its coverage cases (boundary
values, missing required fields, wrong types) and a bounded number of generated requests, valid and invalid
(``positive`` and ``negative`` modes). The checks: no response is a 5xx, and every 4xx carries LiteLLM's error
shape (``{"error": {"message", "type", "param", "code"}}`` with ``code`` equal to the status, or FastAPI's
``{"detail": ...}`` for 422 validation errors). Management routes get the master key, data-plane routes a
virtual key; the data plane reaches the stub upstream. Generation is derandomized, so a run is reproducible.

The proxy runs on its own database, so the keys, users, teams and models created here stay out of other tests.
"""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path

import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error

from tests.support.proxy import stub_models

DOCUMENT = Path(__file__).resolve().parents[2] / "files" / "proxy" / "litemaas_proxy" / "openapi.yaml"
# Generated requests per operation and mode, on top of the examples and coverage cases. A deeper search:
# LITEMAAS_FUZZ_EXAMPLES=500 pytest tests/reliability/test_schemathesis.py
MAX_EXAMPLES = int(os.environ.get("LITEMAAS_FUZZ_EXAMPLES", "40"))
STUB_MAX_TOKENS = 64  # the stub upstream builds a reply of max_tokens words: keep it small
CALLS: collections.Counter = collections.Counter()
STATUSES: collections.Counter = collections.Counter()


@pytest.fixture(scope="module")
def fuzz_proxy(proxy_factory, stub_upstream):
    # The stub models, and a Docling deployment on the stub so that the pass-through routes reach an upstream.
    docling = {"model_name": "Docling", "litellm_params": {"model": "openai/docling-serve", "custom_llm_provider": "docling",
                                                           "api_base": stub_upstream.base_url, "api_key": "sk-docling"},
               "model_info": {"mode": "chat", "id": "docling-fuzz"}}
    return proxy_factory(database="reliability_schemathesis", models=stub_models(stub_upstream.url) + [docling])


@pytest.fixture(scope="module")
def data_key(fuzz_proxy) -> str:
    status, data = fuzz_proxy.admin("POST", "/key/generate", {"metadata": {"purpose": "schemathesis data plane"}})
    assert status == 200, data
    return data["key"]


def load_document() -> dict:
    with open(DOCUMENT, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def make_schema():
    loaded = schemathesis.openapi.from_dict(load_document())
    loaded.config.generation.update(modes=["positive", "negative"], max_examples=MAX_EXAMPLES, deterministic=True, database="none")
    return loaded


# The packaged document (test_served_document_is_the_packaged_one checks that the proxy serves exactly this).
schema = make_schema()


def tame(case) -> None:
    """Keep generated requests inside what the stub upstream and a shared test database can take."""
    body = case.body if isinstance(case.body, dict) else None
    if body is None:
        return
    for name in ("max_tokens", "max_completion_tokens", "dimensions"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > STUB_MAX_TOKENS:
            body[name] = STUB_MAX_TOKENS
    if case.path.startswith("/model/") and isinstance(body.get("model_name"), str) and body["model_name"]:
        # A generated model must never take over the stub model names the data plane is tested with.
        body["model_name"] = "fuzz-" + body["model_name"]


def auth_headers(case, fuzz_proxy, data_key) -> dict:
    tags = case.operation.tags or []
    if "health" in tags:
        return {}
    if "data" in tags:
        return {"Authorization": f"Bearer {data_key}"}
    return {"x-litellm-api-key": fuzz_proxy.master_key}


def check_error_shape(response) -> None:
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"{status} without a JSON body: {response.text[:300]!r}")
    assert isinstance(body, dict), body
    if "error" in body:
        err = body["error"]
        assert isinstance(err, dict) and {"message", "type", "param", "code"} <= set(err), body
        assert isinstance(err["message"], str) and err["message"], body
        assert err["code"] == str(status), body
    else:
        assert status == 422 or "detail" in body, body
        assert "detail" in body, body


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.generate])
def test_no_server_error_and_litellm_error_shape(case, fuzz_proxy, data_key):
    tame(case)
    if case.headers:
        for name in [h for h in case.headers if h.lower() in ("authorization", "x-litellm-api-key", "api-key")]:
            del case.headers[name]
    response = case.call(base_url=fuzz_proxy.url, headers=auth_headers(case, fuzz_proxy, data_key), timeout=60)
    CALLS[f"{case.method} {case.path}"] += 1
    STATUSES[response.status_code] += 1
    case.validate_response(response, checks=[not_a_server_error])
    if 400 <= response.status_code < 500:
        check_error_shape(response)


def test_served_document_is_the_packaged_one(fuzz_proxy):
    resp = requests.get(fuzz_proxy.url + "/openapi.json", timeout=30)  # no key: the document is public
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("application/json"), resp.text[:200]
    served = resp.json()
    assert served["openapi"].startswith("3.") and served["paths"] == load_document()["paths"]
    schemathesis.openapi.from_dict(served).validate()  # against the OpenAPI 3.0 meta-schema


def test_a_broken_document_would_be_caught():
    broken = load_document()
    broken["paths"]["/key/info"]["get"]["parameters"][0]["in"] = "nowhere"
    with pytest.raises(Exception, match="nowhere"):
        schemathesis.openapi.from_dict(broken).validate()


def test_every_operation_was_exercised(fuzz_proxy):
    """Runs after the property test: every documented operation was called, and the proxy is still healthy."""
    operations = {f"{op.ok().method.upper()} {op.ok().path}" for op in schema.get_all_operations()}
    missing = sorted(op for op in operations if CALLS[op] == 0)
    assert not missing, f"operations never called: {missing}"
    status, data, dummy = fuzz_proxy.request("GET", "/health/readiness")
    assert status == 200, data
    print(f"\nschemathesis: {len(operations)} operations, {sum(CALLS.values())} requests, statuses {json.dumps(dict(sorted(STATUSES.items())))}")
