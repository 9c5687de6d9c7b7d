"""Responses, Anthropic Messages, audio, rerank/score and tokenize through the proxy, with the official ``openai`` and
``anthropic`` clients against the real proxy, PostgreSQL, Redis and the stub model server (which answers in vLLM's
shapes, see tests/support/stub_apis.py).

Each API is checked for: the answer the client parses, the spend to the token (from the answer's own usage, streamed
or not), the key's credential in every header a client uses, and refusals (bad key, model not allowed, rate limit,
budget) in the API's own error shape. Relayed models send the call to the deployment's own route; models marked
``responses_api: chat`` / ``messages_api: chat`` are translated to chat completions."""

from __future__ import annotations

import hashlib
import json

import anthropic
import openai
import pytest

from tests.proxy.conftest import INPUT_COST, OUTPUT_COST, db_value, new_key, uid, wait_for
from tests.support.proxy import http_json, stub_models
from tests.support.stub_apis import make_wav
from tests.support.stub_upstream import StubUpstream

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
PER_SECOND = 1e-4  # the audio model's price per second of audio
RERANK_COST = 3e-6


@pytest.fixture(scope="module")
def second_stub(work_dir):
    stub = StubUpstream(log_path=work_dir / "stub-second.log").start()
    yield stub
    stub.stop()


@pytest.fixture(scope="module")
def apis_proxy(proxy_factory, stub_upstream, second_stub):
    costs = {"input_cost_per_token": INPUT_COST, "output_cost_per_token": OUTPUT_COST, "api_key": "sk-upstream"}
    models = stub_models(stub_upstream.url) + [
        {"model_name": "bridge-model", "litellm_params": {"model": "openai/bridged", "api_base": stub_upstream.url, **costs,
                                                          "responses_api": "chat", "messages_api": "chat"}, "model_info": {"mode": "chat"}},
        {"model_name": "twin", "litellm_params": {"model": "openai/twin-a", "api_base": stub_upstream.url, **costs}, "model_info": {"id": "twin-a"}},
        {"model_name": "twin", "litellm_params": {"model": "openai/twin-b", "api_base": second_stub.url, **costs}, "model_info": {"id": "twin-b"}},
        {"model_name": "shaky", "litellm_params": {"model": "openai/shaky-fail-503", "api_base": stub_upstream.url, **costs}, "model_info": {"id": "shaky-a"}},
        {"model_name": "shaky", "litellm_params": {"model": "openai/shaky-ok", "api_base": stub_upstream.url, **costs}, "model_info": {"id": "shaky-b"}},
        {"model_name": "whisper", "litellm_params": {"model": "openai/whisper-large", "api_base": stub_upstream.url, "api_key": "sk-upstream",
                                                     "input_cost_per_second": PER_SECOND}, "model_info": {"mode": "audio_transcription"}},
        {"model_name": "per-query", "litellm_params": {"model": "openai/bge-reranker", "api_base": stub_upstream.url, "api_key": "sk-upstream",
                                                       "input_cost_per_query": 2e-3}, "model_info": {"mode": "rerank"}},
        {"model_name": "reranker", "litellm_params": {"model": "openai/bge-reranker", "api_base": stub_upstream.url, "api_key": "sk-upstream",
                                                      "input_cost_per_token": RERANK_COST}, "model_info": {"mode": "rerank"}},
    ]
    return proxy_factory(database="agent_apis", models=models)


def token_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def spend_of(proxy, key: str, rows: int) -> float:
    wait_for(lambda: db_value(proxy.dsn, 'SELECT count(*) FROM "LiteLLM_SpendLogs" WHERE api_key = %s', token_of(key)) == rows,
             message=f"{rows} spend rows")
    return db_value(proxy.dsn, 'SELECT spend FROM "LiteLLM_VerificationToken" WHERE token = %s', token_of(key))


def last_log(proxy, key: str) -> tuple:
    return db_value(proxy.dsn, 'SELECT json_build_array(call_type, prompt_tokens, completion_tokens, spend, model_group) FROM "LiteLLM_SpendLogs" '
                               'WHERE api_key = %s ORDER BY "endTime" DESC LIMIT 1', token_of(key))


def oai(proxy, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key=key, max_retries=0, timeout=30)


def claude(proxy, key: str, **kwargs) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.url, api_key=key, max_retries=0, timeout=30, **kwargs)


def cost(prompt: int, completion: int) -> float:
    return prompt * INPUT_COST + completion * OUTPUT_COST


# ---- Responses API --------------------------------------------------------------------------------------------------

def test_responses_relayed_create_stream_and_spend(apis_proxy, stub_upstream):
    key = new_key(apis_proxy, key_alias=uid("resp"))
    client = oai(apis_proxy, key)
    stub_upstream.reset()
    resp = client.responses.create(model="stub-model", instructions="be brief", input="one two three", max_output_tokens=4)
    assert resp.output_text == "tok0 tok1 tok2 tok3"
    assert (resp.usage.input_tokens, resp.usage.output_tokens) == (5, 4)
    seen = stub_upstream.stats()["recent"][-1]
    assert (seen["path"], seen["json"]["model"], seen["headers"]["authorization"]) == ("/v1/responses", "stub-model", "Bearer sk-upstream")
    events = list(client.responses.create(model="stub-model", input="a b", stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "tok0 tok1 tok2 tok3 tok4"
    assert (events[-1].response.usage.input_tokens, events[-1].response.usage.output_tokens) == (2, 5)
    assert spend_of(apis_proxy, key, 2) == pytest.approx(cost(5, 4) + cost(2, 5), rel=1e-9)
    assert last_log(apis_proxy, key)[:3] in (["aresponses", 5, 4], ["aresponses", 2, 5])


def test_responses_tool_call_round_trip(apis_proxy):
    key = new_key(apis_proxy, key_alias=uid("resp-tool"))
    client = oai(apis_proxy, key)
    tools = [{"type": "function", "name": "get_weather", "description": "weather", "parameters": WEATHER}]
    for model in ("stub-model", "bridge-model"):
        first = client.responses.create(model=model, input="weather in Paris", tools=tools, tool_choice="required")
        call = first.output[0]
        assert (call.type, call.name, json.loads(call.arguments)) == ("function_call", "get_weather", {"city": "tok0"}), model
        second = client.responses.create(model=model, tools=tools, input=[
            {"role": "user", "content": "weather in Paris"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny and warm"},
        ])
        assert second.output_text == "tok0 tok1 tok2 tok3 tok4", model
        assert (second.usage.input_tokens, second.usage.output_tokens) == (6, 5), model


def test_responses_translated_stream_and_not_stored(apis_proxy, stub_upstream):
    key = new_key(apis_proxy, key_alias=uid("resp-bridge"))
    client = oai(apis_proxy, key)
    stub_upstream.reset()
    events = list(client.responses.create(model="bridge-model", instructions="x", input="one two", max_output_tokens=3, stream=True))
    seen = stub_upstream.stats()["recent"][-1]
    assert seen["path"] == "/v1/chat/completions"
    assert seen["json"]["messages"] == [{"role": "system", "content": "x"}, {"role": "user", "content": "one two"}]
    final = events[-1].response
    assert (events[-1].type, final.status, final.output_text) == ("response.completed", "incomplete", "tok0 tok1 tok2")
    assert (final.usage.input_tokens, final.usage.output_tokens) == (3, 3)
    tools = [{"type": "function", "name": "get_weather", "parameters": WEATHER}]
    streamed = list(client.responses.create(model="bridge-model", input="w", tools=tools, tool_choice="required", stream=True))
    assert streamed[-1].response.output[0].arguments == '{"city":"tok0"}'
    assert spend_of(apis_proxy, key, 2) == pytest.approx(cost(3, 3) + cost(1, 5), rel=1e-9)
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.retrieve(final.id)
    assert "not stored" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="bridge-model", input="x", previous_response_id="resp_123")
    assert info.value.body["param"] == "previous_response_id"
    assert "previous_response_id is not supported for this model" in info.value.message


def test_responses_retrieve_and_cancel_go_to_the_creating_deployment(apis_proxy, stub_upstream, second_stub):
    key = new_key(apis_proxy, key_alias=uid("resp-twin"))
    other = new_key(apis_proxy, key_alias=uid("resp-other"))
    client = oai(apis_proxy, key)
    stub_upstream.reset()
    second_stub.reset()
    made = [client.responses.create(model="twin", input="hello") for _turn in range(6)]
    by_stub = {"a": stub_upstream.stats()["by_path"].get("/v1/responses", 0), "b": second_stub.stats()["by_path"].get("/v1/responses", 0)}
    assert by_stub["a"] + by_stub["b"] == 6 and by_stub["a"] and by_stub["b"]  # both deployments served some
    for resp in made:
        again = client.responses.retrieve(resp.id)
        assert (again.id, again.output_text) == (resp.id, "tok0 tok1 tok2 tok3 tok4")
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.cancel(resp.id)
        assert info.value.body["message"] == "Cannot cancel a synchronous response."
    retrieved = stub_upstream.stats()["by_path"]
    assert sum(n for p, n in retrieved.items() if p.startswith("/v1/responses/resp_") and not p.endswith("/cancel")) == by_stub["a"]
    with pytest.raises(openai.NotFoundError):  # another key does not see it
        oai(apis_proxy, other).responses.retrieve(made[0].id)
    status, data, dummy = http_json("GET", f"{apis_proxy.url}/v1/responses/{made[0].id}?stream=true", None, {"Authorization": f"Bearer {key}"})
    assert (status, data["error"]["param"]) == (400, "stream"), data


# ---- Anthropic Messages API --------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["stub-model", "bridge-model"])
def test_messages_create_stream_count_tokens_and_spend(apis_proxy, stub_upstream, model):
    key = new_key(apis_proxy, key_alias=uid("msg"))
    client = claude(apis_proxy, key)
    count = client.messages.count_tokens(model=model, messages=[{"role": "user", "content": "a b c"}])
    assert count.input_tokens == 3
    stub_upstream.reset()
    msg = client.messages.create(model=model, max_tokens=4, system="be brief", messages=[{"role": "user", "content": "one two three"}])
    assert (msg.content[0].text, msg.stop_reason, msg.model) == ("tok0 tok1 tok2 tok3", "max_tokens", model)
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (5, 4)
    assert stub_upstream.stats()["recent"][-1]["path"] == ("/v1/messages" if model == "stub-model" else "/v1/chat/completions")
    with client.messages.stream(model=model, max_tokens=6, messages=[{"role": "user", "content": "x y"}]) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "tok0 tok1 tok2 tok3 tok4 tok5"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (2, 6)
    assert spend_of(apis_proxy, key, 2) == pytest.approx(cost(5, 4) + cost(2, 6), rel=1e-9)  # counting tokens is not charged
    assert last_log(apis_proxy, key)[0] == "anthropic_messages"


@pytest.mark.parametrize("model", ["stub-model", "bridge-model"])
def test_messages_tool_use(apis_proxy, model):
    key = new_key(apis_proxy, key_alias=uid("msg-tool"))
    client = claude(apis_proxy, key)
    tools = [{"name": "get_weather", "description": "weather", "input_schema": WEATHER}]
    msg = client.messages.create(model=model, max_tokens=50, tools=tools, tool_choice={"type": "any"}, messages=[{"role": "user", "content": "weather?"}])
    block = msg.content[0]
    assert (msg.stop_reason, block.type, block.name, block.input) == ("tool_use", "tool_use", "get_weather", {"city": "tok0"})
    with client.messages.stream(model=model, max_tokens=8, tools=tools, messages=[
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": block.id, "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "sunny"}]},
    ]) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == " ".join(f"tok{i}" for i in range(8))
    assert (final.usage.input_tokens, final.usage.output_tokens) == (2, 8)


def test_messages_every_key_header(apis_proxy):
    key = new_key(apis_proxy, key_alias=uid("msg-hdr"))
    body = {"model": "stub-model", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
    for headers in ({"x-api-key": key}, {"Authorization": f"Bearer {key}"}, {"x-litellm-api-key": key}, {"x-litellm-api-key": f"Bearer {key}"}):
        status, data, dummy = http_json("POST", apis_proxy.url + "/v1/messages", body, {**headers, "anthropic-version": "2023-06-01"})
        assert (status, data["content"][0]["text"]) == (200, "tok0 tok1"), (headers, data)
    via_token = anthropic.Anthropic(base_url=apis_proxy.url, auth_token=key, max_retries=0, timeout=30)  # Claude Code's ANTHROPIC_AUTH_TOKEN
    assert via_token.messages.create(**body).usage.output_tokens == 2


def test_refusals_in_each_api_shape(apis_proxy):
    limited = new_key(apis_proxy, key_alias=uid("rpm"), rpm_limit=1)
    narrow = new_key(apis_proxy, key_alias=uid("narrow"), models=["granite-3-8b"])
    broke = new_key(apis_proxy, key_alias=uid("broke"), max_budget=0)
    message = {"model": "stub-model", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}

    with pytest.raises(anthropic.AuthenticationError) as info:
        claude(apis_proxy, "sk-not-a-key").messages.create(**message)
    assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == "authentication_error"
    assert "Authentication Error" in info.value.body["error"]["message"]
    with pytest.raises(anthropic.AuthenticationError) as info:
        claude(apis_proxy, narrow).messages.create(**message)
    assert "stub-model" in info.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as info:
        claude(apis_proxy, broke).messages.create(**message)
    assert info.value.body["error"]["type"] == "invalid_request_error" and "Budget has been exceeded" in info.value.body["error"]["message"]
    assert claude(apis_proxy, limited).messages.create(**message).usage.output_tokens == 2
    with pytest.raises(anthropic.RateLimitError) as info:
        claude(apis_proxy, limited).messages.create(**message)
    assert info.value.body["error"]["type"] == "rate_limit_error"
    status, data, dummy = http_json("POST", apis_proxy.url + "/v1/messages", {"model": "stub-model", "messages": []}, {"x-api-key": narrow})
    assert status == 400 and data["type"] == "error" and data["error"]["type"] == "invalid_request_error"

    with pytest.raises(openai.AuthenticationError) as info:
        oai(apis_proxy, "sk-not-a-key").responses.create(model="stub-model", input="x")
    assert (info.value.body["type"], info.value.body["code"]) == ("token_not_found_in_db", "401")
    assert info.value.body["message"].startswith("Authentication Error, Invalid proxy server token passed.")
    with pytest.raises(openai.AuthenticationError):
        oai(apis_proxy, narrow).responses.create(model="stub-model", input="x")
    with pytest.raises(openai.RateLimitError):
        oai(apis_proxy, limited).responses.create(model="stub-model", input="x")


def test_a_failing_deployment_is_retried_on_the_next(apis_proxy, stub_upstream):
    key = new_key(apis_proxy, key_alias=uid("retry"))
    stub_upstream.reset()
    for _attempt in range(2):  # round-robin: one of the two calls tries the failing deployment first
        msg = claude(apis_proxy, key).messages.create(model="shaky", max_tokens=2, messages=[{"role": "user", "content": "a"}])
        assert (msg.content[0].text, msg.model) == ("tok0 tok1", "shaky-ok")
        resp = oai(apis_proxy, key).responses.create(model="shaky", input="a", max_output_tokens=2)
        assert resp.output_text == "tok0 tok1"
    seen = stub_upstream.stats()["by_model"]
    assert seen["shaky-ok"] == 4 and seen["shaky-fail-503"] >= 1
    assert spend_of(apis_proxy, key, 4) == pytest.approx(4 * cost(1, 2), rel=1e-9)


# ---- audio, rerank, score, tokenize ------------------------------------------------------------------------------

def test_transcription_and_translation_charged_by_duration(apis_proxy, stub_upstream):
    key = new_key(apis_proxy, key_alias=uid("audio"))
    client = oai(apis_proxy, key)
    stub_upstream.reset()
    text = client.audio.transcriptions.create(model="whisper", file=("hello.wav", make_wav(2.5), "audio/wav"))
    assert (text.text, text.usage.seconds) == ("tok0 tok1 tok2 tok3 tok4", 3)
    seen = stub_upstream.stats()["recent"][-1]
    assert (seen["path"], seen["json"]["fields"]["model"]) == ("/v1/audio/transcriptions", "whisper-large")
    assert seen["headers"]["authorization"] == "Bearer sk-upstream"
    translated = client.audio.translations.create(model="whisper", file=("hello.wav", make_wav(1.2), "audio/wav"))  # no usage: the file's length
    assert translated.text == "tok0 tok1 tok2 tok3 tok4"
    assert spend_of(apis_proxy, key, 2) == pytest.approx((3 + 1.2) * PER_SECOND, rel=1e-9)
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.transcriptions.create(model="whisper", file=("x.wav", b"not audio", "audio/wav"))
    assert info.value.body["message"] == "Invalid or unsupported audio file."


def test_rerank_score_and_tokenize(apis_proxy):
    key = new_key(apis_proxy, key_alias=uid("rerank"))
    auth = {"Authorization": f"Bearer {key}"}
    docs = ["paris is in france", "berlin"]
    status, data, headers = http_json("POST", apis_proxy.url + "/v1/rerank", {"model": "reranker", "query": "capital of france", "documents": docs}, auth)
    assert status == 200, data
    assert [r["index"] for r in data["results"]] == [0, 1] and data["usage"] == {"total_tokens": 3 * 2 + 4 + 1}
    assert data["model"] == "bge-reranker"  # as the server answered, like chat completions
    assert float(headers["x-litellm-response-cost"]) == pytest.approx(11 * RERANK_COST)
    status, data, dummy = http_json("POST", apis_proxy.url + "/rerank", {"model": "reranker", "query": "a", "documents": ["a"]}, auth)
    assert status == 200 and data["usage"] == {"total_tokens": 2}
    status, data, dummy = http_json("POST", apis_proxy.url + "/score", {"model": "reranker", "text_1": "a b", "text_2": ["a"]}, auth)
    assert status == 200 and data["data"][0]["score"] == 0.5 and data["usage"]["prompt_tokens"] == 3
    assert spend_of(apis_proxy, key, 3) == pytest.approx((11 + 2 + 3) * RERANK_COST, rel=1e-9)
    status, data, dummy = http_json("POST", apis_proxy.url + "/tokenize", {"model": "stub-model", "prompt": "hello big world"}, auth)
    assert status == 200 and data["count"] == 3
    status, back, dummy = http_json("POST", apis_proxy.url + "/detokenize", {"model": "stub-model", "tokens": data["tokens"]}, auth)
    assert (status, back) == (200, {"prompt": "hello big world"})
    assert spend_of(apis_proxy, key, 3) == pytest.approx((11 + 2 + 3) * RERANK_COST, rel=1e-9)  # tokenizing is not charged
    status, data, dummy = http_json("POST", apis_proxy.url + "/v1/rerank", {"model": "nope", "query": "a", "documents": ["a"]}, auth)
    assert status == 400 and "Invalid model name passed in model=nope" in data["error"]["message"]


def test_metrics_count_each_api_route(apis_proxy):
    from tests.proxy.test_metrics import scrape, value

    alias = uid("metrics")
    key = new_key(apis_proxy, key_alias=alias)
    before = scrape(apis_proxy)
    oai(apis_proxy, key).responses.create(model="bridge-model", input="one two", max_output_tokens=3)
    claude(apis_proxy, key).messages.create(model="stub-model", max_tokens=2, messages=[{"role": "user", "content": "a"}])
    with pytest.raises(anthropic.BadRequestError):
        claude(apis_proxy, key).messages.create(model="no-such-model", max_tokens=2, messages=[{"role": "user", "content": "a"}])
    after = scrape(apis_proxy)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("litellm_proxy_total_requests_metric_total", route="/v1/responses", status_code="200") == 1
    assert delta("litellm_proxy_total_requests_metric_total", route="/v1/messages", status_code="200") == 1
    assert delta("litellm_proxy_total_requests_metric_total", route="/v1/messages", status_code="400") == 1
    assert delta("litellm_input_tokens_metric_total", model="bridge-model") == 2
    assert delta("litellm_output_tokens_metric_total", model="bridge-model") == 3
    assert delta("litellm_spend_metric_total", model="stub-model") == pytest.approx(cost(1, 2))


def test_rerank_without_usage_is_charged_per_search_unit(apis_proxy, stub_upstream):
    key = new_key(apis_proxy, key_alias=uid("per-query"))
    auth = {"Authorization": f"Bearer {key}"}
    stub_upstream.configure(omit_rerank_usage=True)
    try:
        for documents in (["a"] * 3, ["b"] * 101):
            status, data, headers = http_json("POST", apis_proxy.url + "/v1/rerank", {"model": "per-query", "query": "a", "documents": documents}, auth)
            assert status == 200 and "usage" not in data, data
    finally:
        stub_upstream.reset()
    assert float(headers["x-litellm-response-cost"]) == pytest.approx(2 * 2e-3)
    assert spend_of(apis_proxy, key, 2) == pytest.approx((1 + 2) * 2e-3, rel=1e-9)


def test_cohere_embed_charged_from_billed_units(apis_proxy):
    key = new_key(apis_proxy, key_alias=uid("embed"))
    body = {"model": "stub-embed", "texts": ["hello big world", "x"], "input_type": "search_document", "embedding_types": ["float"]}
    status, data, headers = http_json("POST", apis_proxy.url + "/v2/embed", body, {"Authorization": f"Bearer {key}"})
    assert status == 200, data
    assert len(data["embeddings"]["float"]) == 2 and data["meta"]["billed_units"] == {"input_tokens": 4}
    assert float(headers["x-litellm-response-cost"]) == pytest.approx(4 * INPUT_COST)
    assert spend_of(apis_proxy, key, 1) == pytest.approx(4 * INPUT_COST, rel=1e-9)
    assert last_log(apis_proxy, key)[:3] == ["aembedding", 4, 0]


def test_guardrails_on_the_other_apis(proxy_factory, stub_upstream):
    from tests.proxy.test_guardrails import CARD, GUARDRAILS

    gp = proxy_factory(database=uid("agent_guard").replace("-", "_"), config_extra={"guardrails": GUARDRAILS})
    key = new_key(gp)
    before = stub_upstream.stats()["requests"]
    with pytest.raises(anthropic.BadRequestError) as info:
        claude(gp, key).messages.create(model="stub-model", max_tokens=2, messages=[{"role": "user", "content": f"my card is {CARD}"}])
    assert "guardrail 'block-cards'" in info.value.body["error"]["message"] and CARD not in info.value.body["error"]["message"]
    with pytest.raises(openai.BadRequestError) as info:
        oai(gp, key).responses.create(model="stub-model", input=f"my card is {CARD}")
    assert info.value.body["type"] == "guardrail_violation"
    assert stub_upstream.stats()["requests"] == before  # neither reached the model
    masked = new_key(gp, metadata={"guardrails": ["redact-output"]})  # output masking: only chat and text completions mask answers
    with pytest.raises(anthropic.BadRequestError) as info:
        claude(gp, masked).messages.create(model="stub-model", max_tokens=2, messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["error"]["message"].startswith("/v1/messages cannot apply this key's output guardrails")
    assert oai(gp, masked).chat.completions.create(model="stub-model", messages=[{"role": "user", "content": "hi"}]).choices[0].message.content \
        == "tok0 [REDACTED] tok2 [REDACTED] tok4"


def test_a_stream_without_usage_is_charged_an_estimate(apis_proxy, stub_upstream):
    """A server that sends no usage (no response.completed, no message_delta, no usage chunk): ~4 characters a token,
    as for chat streams, rather than nothing."""
    key = new_key(apis_proxy, key_alias=uid("no-usage"))
    stub_upstream.configure(omit_stream_usage=True)
    try:
        for model in ("stub-model", "bridge-model"):
            events = list(oai(apis_proxy, key).responses.create(model=model, input="a b c d", stream=True))
            assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "tok0 tok1 tok2 tok3 tok4"
        with claude(apis_proxy, key).messages.stream(model="stub-model", max_tokens=5, messages=[{"role": "user", "content": "a b c d"}]) as stream:
            assert "".join(stream.text_stream) == "tok0 tok1 tok2 tok3 tok4"
    finally:
        stub_upstream.reset()
    prompt, completion = (len("a b c d") + 3) // 4, (len("tok0 tok1 tok2 tok3 tok4") + 3) // 4
    assert spend_of(apis_proxy, key, 3) == pytest.approx(3 * cost(prompt, completion), rel=1e-9)
