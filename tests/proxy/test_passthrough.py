"""Authenticated pass-through routes (Docling document conversion) against the stub upstream's echo routes."""

from __future__ import annotations

import hashlib

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.proxy.conftest import db_value, new_key, uid, wait_for
from tests.support.proxy import http_json

BIG = 72 * 1024 * 1024  # more than the proxy's 64 MiB limit for bodies it reads whole


@pytest.fixture(scope="module")
def pt_proxy(proxy_factory, stub_upstream):
    models = [
        # What the portal registers: an OpenAI-style model name with the docling provider, api_base without /v1.
        {"model_name": "Docling", "litellm_params": {"model": "openai/docling-serve", "custom_llm_provider": "docling",
                                                     "api_base": stub_upstream.base_url, "api_key": "sk-docling"},
         "model_info": {"mode": "chat", "id": "docling-1"}},
        # Another prefix, configured explicitly; api_base with /v1 is not doubled.
        {"model_name": "converter", "litellm_params": {"model": "openai/conv", "api_base": stub_upstream.url, "passthrough_prefix": "/tools/convert"},
         "model_info": {"id": "converter-1"}},
        {"model_name": "stub-model", "litellm_params": {"model": "openai/stub-model", "api_base": stub_upstream.url}},
    ]
    return proxy_factory(database=uid("passthrough").replace("-", "_"), models=models)


def post(p, path: str, key: str, **kwargs) -> requests.Response:
    return requests.post(p.url + path, headers={"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}, timeout=60, **kwargs)


def test_convert_source_is_forwarded_with_the_deployment_key(pt_proxy, stub_upstream):
    key = new_key(pt_proxy, models=["Docling"])
    body = {"http_sources": [{"url": "https://example.com/a.pdf"}], "options": {"to_formats": ["md"]}}
    r = post(pt_proxy, "/docling/v1/convert/source?async=false", key, json=body)
    assert r.status_code == 200, r.text
    echo = r.json()
    assert echo["path"] == "/v1/convert/source" and echo["query"] == "async=false" and echo["method"] == "POST"
    assert echo["authorization"] == "Bearer sk-docling"  # the deployment's key, never the caller's
    assert echo["content_type"] == "application/json" and echo["received_bytes"] == len(r.request.body)
    assert r.headers["x-litellm-model-group"] == "Docling" and r.headers["x-litellm-model-id"] == "docling-1"


def test_convert_file_multipart(pt_proxy):
    key = new_key(pt_proxy, models=["Docling"])
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 400
    r = post(pt_proxy, "/docling/v1/convert/file", key, files={"files": ("report.pdf", pdf, "application/pdf")}, data={"to_formats": "md"})
    assert r.status_code == 200, r.text
    echo = r.json()
    assert echo["content_type"].startswith("multipart/form-data; boundary=")
    parts = {p["name"]: p for p in echo["parts"]}
    assert parts["files"]["filename"] == "report.pdf" and parts["files"]["bytes"] == len(pdf)
    assert parts["files"]["content_type"] == "application/pdf" and parts["to_formats"]["bytes"] == 2


def test_request_body_is_streamed_not_read_whole(pt_proxy):
    """A chunked upload larger than the limit for bodies the proxy reads whole still goes through, byte for byte."""
    key = new_key(pt_proxy, models=["Docling"])
    chunk = b"x" * (8 * 1024 * 1024)

    def gen():
        for dummy in range(BIG // len(chunk)):
            yield chunk

    r = post(pt_proxy, "/docling/v1/convert/file", key, data=gen(), headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    assert r.json()["received_bytes"] == BIG
    # The same size as one JSON body on an LLM route is refused: that route reads the body whole.
    try:
        status = requests.post(pt_proxy.url + "/v1/chat/completions", data=gen(), headers={"Authorization": f"Bearer {key}"}, timeout=60).status_code
    except requests.ConnectionError:
        status = 413  # the proxy answered 413 and closed the connection while the client was still sending
    assert status == 413


def test_other_prefix_and_api_base_with_v1(pt_proxy):
    key = new_key(pt_proxy, models=["converter"])
    r = post(pt_proxy, "/tools/convert/v1/convert/source", key, json={"a": 1})
    assert r.status_code == 200, r.text
    assert r.json()["path"] == "/v1/convert/source" and r.json()["authorization"] is None


def test_key_must_have_the_model(pt_proxy, stub_upstream):
    before = stub_upstream.stats()["requests"]
    other = new_key(pt_proxy, models=["stub-model"])
    r = post(pt_proxy, "/docling/v1/convert/source", other, json={})
    assert r.status_code == 401 and "key not allowed to access model" in r.json()["error"]["message"]
    assert post(pt_proxy, "/docling/v1/convert/source", "sk-not-a-key", json={}).status_code == 401
    assert requests.post(pt_proxy.url + "/docling/v1/convert/source", json={}, timeout=60).status_code == 401
    assert stub_upstream.stats()["requests"] == before


def test_rpm_is_counted_and_no_tokens_are_charged(pt_proxy):
    key = new_key(pt_proxy, models=["Docling"], rpm_limit=2, key_alias=uid("docling"))
    assert post(pt_proxy, "/docling/v1/convert/source", key, json={}).status_code == 200
    assert post(pt_proxy, "/docling/v1/convert/source", key, json={}).status_code == 200
    r = post(pt_proxy, "/docling/v1/convert/source", key, json={})
    assert r.status_code == 429 and "Limit type: requests" in r.json()["error"]["message"]
    token = hashlib.sha256(key.encode()).hexdigest()
    wait_for(lambda: db_value(pt_proxy.dsn, 'SELECT count(*) FROM "LiteLLM_SpendLogs" WHERE api_key = %s', token) == 2, message="spend rows")
    assert db_value(pt_proxy.dsn, 'SELECT sum(total_tokens) + sum(spend) FROM "LiteLLM_SpendLogs" WHERE api_key = %s', token) == 0
    assert db_value(pt_proxy.dsn, 'SELECT min(call_type) || \'/\' || min(model_group) FROM "LiteLLM_SpendLogs" WHERE api_key = %s',
                    token) == "pass_through_endpoint/Docling"
    dummy, text, dummy = http_json("GET", pt_proxy.url + "/metrics")
    values = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "litellm_proxy_total_requests_metric_total" and s.labels["requested_model"] == "Docling":
                values[(s.labels["route"], s.labels["status_code"])] = s.value
    assert values[("/docling/v1/convert/source", "200")] >= 2 and values[("/docling/v1/convert/source", "429")] >= 1


def test_unknown_prefix_path_is_not_found(pt_proxy):
    key = new_key(pt_proxy, models=["Docling"])
    assert post(pt_proxy, "/nothing-here/v1/convert/source", key, json={}).status_code == 404
