"""Helpers shared by the proxy tests."""

from __future__ import annotations

import time
import uuid

import psycopg2
import pytest
from openai import OpenAI

from tests.support.proxy import INPUT_COST, OUTPUT_COST  # noqa: F401 - re-exported for the tests


def uid(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def new_key(proxy, **body) -> str:
    status, data = proxy.admin("POST", "/key/generate", body)
    assert status == 200, data
    return data["key"]


def client(proxy, key: str) -> OpenAI:
    return OpenAI(base_url=proxy.url + "/v1", api_key=key, max_retries=0, timeout=30)


def db_value(dsn: str, sql: str, *args):
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            row = cur.fetchone()
            return row[0] if row else None
    finally:
        conn.close()


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, message: str = "condition"):
    """Poll until ``predicate()`` is truthy (a generous deadline, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}; last value {value!r}")
        time.sleep(interval)


def chat(proxy, key: str, model: str = "stub-model", content: str = "hello world", extra_headers=None, **body):
    from tests.support.proxy import http_json

    payload = {"model": model, "messages": [{"role": "user", "content": content}], **body}
    return http_json("POST", proxy.url + "/v1/chat/completions", payload, {"Authorization": f"Bearer {key}", **(extra_headers or {})})


@pytest.fixture
def db_model(proxy, stub_upstream):
    """Register a DB model pointing at the stub with a given upstream model name; deleted afterwards."""
    created = []

    def make(upstream_model: str, **params):
        name = uid("m")
        body = {"model_name": name, "litellm_params": {"model": f"openai/{upstream_model}", "api_base": stub_upstream.url,
                                                       "input_cost_per_token": INPUT_COST, "output_cost_per_token": OUTPUT_COST, **params},
                "model_info": {"mode": "chat"}}
        status, data = proxy.admin("POST", "/model/new", body)
        assert status == 200, data
        created.append(data["model_info"]["id"])
        return name

    yield make
    for model_id in created:
        proxy.admin("POST", "/model/delete", {"id": model_id})
