"""Data plane through the official openai client: chat (JSON and SSE), completions, embeddings, models, errors."""

from __future__ import annotations

import openai
import pytest

from tests.proxy.conftest import INPUT_COST, OUTPUT_COST, chat, client, db_value, new_key, uid, wait_for
from tests.support.proxy import http_json


def test_chat_completion_json(proxy):
    key = new_key(proxy, key_alias=uid("chat"))
    raw = client(proxy, key).chat.completions.with_raw_response.create(model="stub-model", messages=[{"role": "user", "content": "one two three"}])
    resp = raw.parse()
    assert resp.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4"
    assert resp.usage.prompt_tokens == 3 and resp.usage.completion_tokens == 5
    assert float(raw.headers["x-litellm-response-cost"]) == pytest.approx(3 * INPUT_COST + 5 * OUTPUT_COST)
    assert raw.headers["x-litellm-model-group"] == "stub-model"


def test_upstream_receives_upstream_model_name_and_key(proxy, stub_upstream):
    key = new_key(proxy)
    client(proxy, key).chat.completions.create(model="granite-3-8b", messages=[{"role": "user", "content": "x"}], max_tokens=2)
    recent = stub_upstream.stats()["recent"][-1]
    assert recent["model"] == "granite-3-8b"
    assert recent["headers"]["authorization"] == "Bearer sk-upstream"
    assert recent["json"]["max_tokens"] == 2


def test_chat_streaming_relays_chunks_and_hides_usage_unless_asked(proxy, stub_upstream):
    key = new_key(proxy)
    c = client(proxy, key)
    chunks = list(c.chat.completions.create(model="stub-model", messages=[{"role": "user", "content": "a b"}], stream=True))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "tok0 tok1 tok2 tok3 tok4"
    assert all(ch.choices for ch in chunks)  # the usage-only chunk the proxy asked for is not forwarded
    # The proxy asked the upstream for usage anyway.
    assert stub_upstream.stats()["recent"][-1]["json"]["stream_options"] == {"include_usage": True}
    chunks = list(c.chat.completions.create(model="stub-model", messages=[{"role": "user", "content": "a b"}], stream=True,
                                            stream_options={"include_usage": True}, max_tokens=3))
    assert chunks[-1].usage.prompt_tokens == 2 and chunks[-1].usage.completion_tokens == 3


def test_stream_is_relayed_before_the_upstream_finishes(proxy, db_model):
    """The upstream drops the connection after its first content chunk: the client still gets that chunk,
    which it could not if the proxy buffered the whole response, then an in-band error."""
    model = db_model("stub-cut")
    key = new_key(proxy)
    status, body, headers = http_json("POST", proxy.url + "/v1/chat/completions",
                                      {"model": model, "messages": [{"role": "user", "content": "x"}], "stream": True},
                                      {"Authorization": f"Bearer {key}"})
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    assert '"content":"tok0' in body.replace(" ", "") or '"content": "tok0' in body
    assert '"error"' in body and "502" in body


def test_text_completions_and_paths_without_v1(proxy):
    key = new_key(proxy)
    resp = client(proxy, key).completions.create(model="stub-model", prompt="say something", max_tokens=4)
    assert resp.choices[0].text == "tok0 tok1 tok2 tok3" and resp.usage.prompt_tokens == 2
    status, data, dummy = http_json("POST", proxy.url + "/chat/completions", {"model": "stub-model", "messages": [{"role": "user", "content": "x"}]},
                                    {"Authorization": f"Bearer {key}"})
    assert status == 200 and data["usage"]["completion_tokens"] == 5
    status, data, dummy = http_json("GET", proxy.url + "/models", headers={"Authorization": f"Bearer {key}"})
    assert status == 200 and {m["id"] for m in data["data"]} >= {"stub-model", "stub-embed"}


def test_embeddings(proxy):
    key = new_key(proxy)
    resp = client(proxy, key).embeddings.create(model="stub-embed", input=["one two", "three"])
    assert len(resp.data) == 2 and len(resp.data[0].embedding) == 8
    assert resp.usage.prompt_tokens == 3


def test_models_list_respects_key_models(proxy):
    key = new_key(proxy, models=["granite-3-8b"])
    ids = [m.id for m in client(proxy, key).models.list()]
    assert ids == ["granite-3-8b"]
    everything = [m.id for m in client(proxy, proxy.master_key).models.list()]
    assert {"stub-model", "granite-3-8b", "stub-embed"} <= set(everything)


def test_client_errors(proxy):
    with pytest.raises(openai.AuthenticationError) as exc:
        client(proxy, "sk-wrong").chat.completions.create(model="stub-model", messages=[{"role": "user", "content": "x"}])
    assert exc.value.status_code == 401
    key = new_key(proxy, models=["stub-model"])
    with pytest.raises(openai.AuthenticationError) as exc:
        client(proxy, key).chat.completions.create(model="granite-3-8b", messages=[{"role": "user", "content": "x"}])
    assert exc.value.body["type"] == "key_model_access_denied"
    key = new_key(proxy)
    with pytest.raises(openai.BadRequestError) as exc:
        client(proxy, key).chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert "Invalid model name" in exc.value.body["message"]
    status, data, dummy = http_json("POST", proxy.url + "/v1/chat/completions", None, {"Authorization": f"Bearer {key}"})
    assert status == 400 and data["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("upstream,params,status", [
    ("stub-fail-503", {}, 503),
    ("stub-fail-500", {}, 502),
    ("stub-hang", {"timeout": 0.5}, 504),
])
def test_upstream_failures_are_clear_and_free(proxy, db_model, upstream, params, status):
    model = db_model(upstream, **params)
    key = new_key(proxy, key_alias=uid("fail"))
    code, data, dummy = chat(proxy, key, model=model)
    assert code == status, data
    assert data["error"]["code"] == str(status) and data["error"]["message"]
    token = proxy.admin("GET", f"/key/info?key={key}")[1]["info"]
    # The failure is logged (spend 0) and the key is charged nothing.
    wait_for(lambda: db_value(proxy.dsn, 'SELECT count(*) FROM "LiteLLM_SpendLogs" WHERE model_group = %s', model) == 1, message="failure log row")
    assert db_value(proxy.dsn, 'SELECT sum(spend) FROM "LiteLLM_SpendLogs" WHERE model_group = %s', model) == 0
    assert token["spend"] == 0


def test_upstream_unreachable_is_503(proxy):
    from tests.support.services import free_port

    name = uid("down")
    status, data = proxy.admin("POST", "/model/new", {"model_name": name,
                               "litellm_params": {"model": "openai/x", "api_base": f"http://127.0.0.1:{free_port()}/v1"}})
    assert status == 200
    model_id = data["model_info"]["id"]
    try:
        key = new_key(proxy)
        code, err, dummy = chat(proxy, key, model=name)
        assert code == 503 and "unavailable" in err["error"]["message"]
    finally:
        proxy.admin("POST", "/model/delete", {"id": model_id})


def test_master_key_can_call_models(proxy):
    resp = client(proxy, proxy.master_key).chat.completions.create(model="stub-model", messages=[{"role": "user", "content": "x"}])
    assert resp.usage.total_tokens == 6


def test_stream_without_upstream_usage_is_estimated_not_free(proxy, stub_upstream):
    key = new_key(proxy, key_alias=uid("nousage"))
    stub_upstream.configure(omit_stream_usage=True)
    try:
        chunks = list(client(proxy, key).chat.completions.create(model="stub-model", messages=[{"role": "user", "content": "x" * 40}],
                                                                 stream=True, max_tokens=8))
    finally:
        stub_upstream.configure(omit_stream_usage=False)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text.startswith("tok0")
    # 40 prompt characters ~ 10 tokens; the streamed text's length / 4 for the completion.
    expected = 10 * INPUT_COST + ((len(text) + 3) // 4) * OUTPUT_COST
    wait_for(lambda: db_value(proxy.dsn, 'SELECT count(*) FROM "LiteLLM_SpendLogs" WHERE metadata->>\'user_api_key_alias\' = %s',
                              proxy.admin("GET", f"/key/info?key={key}")[1]["info"]["key_alias"]) == 1, message="spend log")
    assert proxy.admin("GET", f"/key/info?key={key}")[1]["info"]["spend"] == pytest.approx(expected)


def test_crlf_sse_upstream(proxy, work_dir):
    """An upstream that ends SSE events with CRLF blank lines (sse-starlette, e.g. llama.cpp's server): relayed and usage counted."""
    import subprocess
    import sys
    import textwrap

    from tests.support.services import free_port, wait_for_port

    port = free_port()
    script = work_dir / f"crlf_upstream_{port}.py"
    script.write_text(textwrap.dedent('''
        import json, sys
        from aiohttp import web
        async def chat(request):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "crlf"}
            for text in ("hel", "lo"):
                await resp.write(("data: " + json.dumps({**base, "choices": [{"index": 0, "delta": {"content": text}}]}) + "\\r\\n\\r\\n").encode())
            usage = {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
            await resp.write(("data: " + json.dumps({**base, "choices": [], "usage": usage}) + "\\r\\n\\r\\n").encode())
            await resp.write(b"data: [DONE]\\r\\n\\r\\n")
            return resp
        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
    '''))
    server = subprocess.Popen([sys.executable, str(script), str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc=server)
        name = uid("crlf")
        status, data = proxy.admin("POST", "/model/new", {"model_name": name, "litellm_params": {
            "model": "openai/crlf", "api_base": f"http://127.0.0.1:{port}/v1", "input_cost_per_token": INPUT_COST, "output_cost_per_token": OUTPUT_COST}})
        assert status == 200
        model_id = data["model_info"]["id"]
        key = new_key(proxy, key_alias=uid("crlf"))
        chunks = list(client(proxy, key).chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}], stream=True))
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "hello"
        assert all(ch.choices for ch in chunks)
        token = proxy.admin("GET", f"/key/info?key={key}")[1]["info"]
        wait_for(lambda: proxy.admin("GET", f"/key/info?key={key}")[1]["info"]["spend"] > 0, message="spend written")
        assert proxy.admin("GET", f"/key/info?key={key}")[1]["info"]["spend"] == pytest.approx(4 * INPUT_COST + 2 * OUTPUT_COST)
        assert token["key_alias"]
        proxy.admin("POST", "/model/delete", {"id": model_id})
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_model_is_usable_right_after_each_change(proxy, db_model, stub_upstream):
    # Every change triggers several reloads (the caller's own, its published invalidation and the Redis
    # echo). A reload that read the table before a change must never overwrite a newer list, so a
    # model registered right after another was deleted answers at once, and a deleted one is gone.
    # A second thread keeps changing other models meanwhile, so reloads overlap.
    import threading

    stop = threading.Event()

    def churn():
        while not stop.is_set():
            body = {"model_name": uid("churn"), "litellm_params": {"model": "openai/stub-model", "api_base": stub_upstream.url}}
            status, data = proxy.admin("POST", "/model/new", body)
            if status == 200:
                proxy.admin("POST", "/model/delete", {"id": data["model_info"]["id"]})

    worker = threading.Thread(target=churn, daemon=True)
    worker.start()
    try:
        key = new_key(proxy, key_alias=uid("reload"))
        for dummy in range(20):
            name = db_model("stub-model")
            code, data, dummy_headers = chat(proxy, key, model=name)
            assert code == 200, data
            status, info = proxy.admin("GET", "/model/info")
            model_id = next(m["model_info"]["id"] for m in info["data"] if m["model_name"] == name)
            status, data = proxy.admin("POST", "/model/delete", {"id": model_id})
            assert status == 200, data
            code, data, dummy_headers = chat(proxy, key, model=name)
            assert code == 400, data
    finally:
        stop.set()
        worker.join(30)
