"""Property-based tests of the proxy's OpenAPI document (GET /openapi.json) with schemathesis, against a live proxy.

Every operation of the document is called with schemathesis's explicit examples, its coverage cases (boundary
values, missing required fields, wrong types) and a bounded number of generated requests, valid and invalid
(``positive`` and ``negative`` modes). The checks: no response is a 5xx; every answer's status code, content type,
headers and body conform to the document (the response schemas name the fields the portal and the OpenAI client
read, so a renamed or missing field fails); and every 4xx carries LiteLLM's error shape
(``{"error": {"message", "type", "param", "code"}}`` with ``code`` equal to the status; Anthropic's
``{"type": "error", "error": {"type", "message"}}`` on the Messages routes), or FastAPI's
``{"detail": ...}`` exactly where LiteLLM answers with it: 422 validation errors, and ``/user/delete``'s 404.
Management routes get the master key, data-plane routes a virtual key; the data plane reaches the stub upstream.
Generation is derandomized, so a run is reproducible.

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
from schemathesis.checks import content_type_conformance, not_a_server_error, response_headers_conformance, response_schema_conformance, status_code_conformance
from schemathesis.core.failures import FailureGroup
from schemathesis.core.transport import Response

from tests.support.proxy import stub_models

DOCUMENT = Path(__file__).resolve().parents[2] / "files" / "proxy" / "litemaas_proxy" / "openapi.yaml"
# Generated requests per operation and mode, on top of the examples and coverage cases. A deeper search:
# LITEMAAS_FUZZ_EXAMPLES=500 pytest tests/reliability/test_schemathesis.py
MAX_EXAMPLES = int(os.environ.get("LITEMAAS_FUZZ_EXAMPLES", "40"))
STUB_MAX_TOKENS = 64  # the stub upstream builds a reply of max_tokens words: keep it small
CALLS: collections.Counter = collections.Counter()
STATUSES: collections.Counter = collections.Counter()
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance, response_schema_conformance]


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
    for name in ("max_tokens", "max_completion_tokens", "max_output_tokens", "dimensions"):
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


def check_error_shape(response, method: str, path: str) -> None:
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"{status} without a JSON body: {response.text[:300]!r}")
    assert isinstance(body, dict), body
    if path.startswith("/v1/messages"):  # Anthropic's shape, which its clients parse
        assert body.get("type") == "error" and set(body) == {"type", "error"}, body
        assert isinstance(body["error"].get("type"), str) and isinstance(body["error"].get("message"), str) and body["error"]["message"], body
        return
    if "error" in body:
        err = body["error"]
        assert isinstance(err, dict) and {"message", "type", "param", "code"} <= set(err), body
        assert isinstance(err["message"], str) and err["message"], body
        assert err["code"] == str(status), body
        return
    assert set(body) == {"detail"}, body
    if status == 422:  # FastAPI's validation error: a list of {loc, msg, type}
        assert isinstance(body["detail"], list) and body["detail"], body
        for item in body["detail"]:
            assert {"loc", "msg", "type"} <= set(item), body
    else:  # LiteLLM's /user/delete answers an unknown user with FastAPI's HTTPException shape
        assert (status, method, path) == (404, "POST", "/user/delete"), (status, method, path, body)
        assert body["detail"]["error"].startswith("User not found, passed user_id="), body


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
    case.validate_response(response, checks=CHECKS)
    if 400 <= response.status_code < 500:
        check_error_shape(response, case.method.upper(), case.path)


def test_served_document_is_the_packaged_one(fuzz_proxy):
    resp = requests.get(fuzz_proxy.url + "/openapi.json", timeout=30)  # no key: the document is public
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("application/json"), resp.text[:200]
    served = resp.json()
    assert served["openapi"].startswith("3.") and served["paths"] == load_document()["paths"]
    schemathesis.openapi.from_dict(served).validate()  # against the OpenAPI 3.0 meta-schema


def _answer_with(response, body) -> Response:
    """A copy of the proxy's ``response`` carrying ``body`` instead (same status, headers and request)."""
    content = json.dumps(body).encode()
    headers = {name: values for name, values in response.headers.items() if name.lower() != "content-length"}
    headers["content-length"] = [str(len(content))]
    return Response(status_code=response.status_code, headers=headers, content=content, request=response.request,
                    elapsed=response.elapsed, verify=response.verify)


@pytest.mark.parametrize("path, method, field", [("/key/generate", "POST", "key"), ("/key/generate", "POST", "token"),
                                                 ("/v1/chat/completions", "POST", "choices")])
def test_a_renamed_or_missing_field_in_a_real_answer_fails_the_checks(fuzz_proxy, data_key, path, method, field):
    """The proxy's real answer passes the response checks; the same answer with one field the clients read renamed
    (LiteLLM's ``key`` to ``api_key``, ``token``, the OpenAI client's ``choices``) does not."""
    operation = schema[path][method]
    if path == "/key/generate":
        case = operation.Case(body={"key_alias": "conformance-" + os.urandom(4).hex()})
        headers = {"x-litellm-api-key": fuzz_proxy.master_key}
    else:
        case = operation.Case(body={"model": "stub-model", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 3})
        headers = {"Authorization": f"Bearer {data_key}"}
    response = case.call(base_url=fuzz_proxy.url, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    case.validate_response(response, checks=CHECKS)
    body = response.json()
    assert field in body, body
    renamed = dict(body)
    renamed["renamed_" + field] = renamed.pop(field)
    with pytest.raises(FailureGroup) as failed:
        case.validate_response(_answer_with(response, renamed), checks=CHECKS)
    messages = [str(failure) for failure in failed.value.exceptions]
    assert any(f"{field!r} is a required property".replace("'", '"') in m for m in messages), messages


def test_every_operation_was_exercised(fuzz_proxy):
    """Runs after the property test: every documented operation was called, and the proxy is still healthy."""
    operations = {f"{op.ok().method.upper()} {op.ok().path}" for op in schema.get_all_operations()}
    missing = sorted(op for op in operations if CALLS[op] == 0)
    assert not missing, f"operations never called: {missing}"
    status, data, dummy = fuzz_proxy.request("GET", "/health/readiness")
    assert status == 200, data
    print(f"\nschemathesis: {len(operations)} operations, {sum(CALLS.values())} requests, statuses {json.dumps(dict(sorted(STATUSES.items())))}")
