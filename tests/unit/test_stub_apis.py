"""The stub model server's Responses, Messages, audio, rerank/score and tokenize APIs, read by the official clients."""

from __future__ import annotations

import http.client
import json

import anthropic
import openai
import pytest

from tests.support import stub_apis
from tests.support.stub_apis import make_wav
from tests.support.stub_upstream import StubUpstream

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}, "required": ["city"]}


@pytest.fixture(scope="module")
def stub(work_dir):
    server = StubUpstream(log_path=work_dir / "stub-apis.log").start()
    yield server
    server.stop()


@pytest.fixture()
def oai(stub):
    stub.reset()
    with openai.OpenAI(base_url=stub.url, api_key="sk-anything", max_retries=0, timeout=10) as c:
        yield c


@pytest.fixture()
def claude(stub):
    stub.reset()
    with anthropic.Anthropic(base_url=stub.base_url, api_key="sk-anything", max_retries=0, timeout=10) as c:
        yield c


def post(stub, path: str, payload) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", stub.port, timeout=10)
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, resp.getheader("content-type"), data


# ---- Responses ---------------------------------------------------------------------------------------------------

def test_responses_create_usage_and_retrieve(oai, stub):
    resp = oai.responses.create(model="resp-model", instructions="be brief", input="one two three")
    assert resp.id.startswith("resp_")
    assert resp.object == "response"
    assert resp.status == "completed"
    assert resp.model == "resp-model"
    assert resp.output_text == "tok0 tok1 tok2 tok3 tok4"
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.total_tokens) == (5, 5, 10)
    again = oai.responses.retrieve(resp.id)
    assert again.output_text == resp.output_text and again.usage.total_tokens == 10
    with pytest.raises(openai.BadRequestError) as info:
        oai.responses.cancel(resp.id)
    assert info.value.body["message"] == "Cannot cancel a synchronous response."
    with pytest.raises(openai.NotFoundError) as info:
        oai.responses.retrieve("resp_unknown")
    assert info.value.body["message"] == "Response with id 'resp_unknown' not found."
    assert stub.stats()["by_path"] == {"/v1/responses": 1, f"/v1/responses/{resp.id}": 1, f"/v1/responses/{resp.id}/cancel": 1,
                                       "/v1/responses/resp_unknown": 1}


def test_responses_input_items_and_max_output_tokens(oai):
    resp = oai.responses.create(
        model="m", input=[{"role": "user", "content": [{"type": "input_text", "text": "a b"}]}, {"role": "assistant", "content": "c"}],
        max_output_tokens=3, store=False,
    )
    assert resp.status == "incomplete"
    assert resp.incomplete_details.reason == "max_output_tokens"
    assert (resp.usage.input_tokens, resp.usage.output_tokens) == (3, 3)
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(resp.id)


def test_responses_stream_events(oai):
    events = list(oai.responses.create(model="m", input="x y", stream=True))
    names = [e.type for e in events]
    assert names[:4] == ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
    assert names[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"]
    assert names.count("response.output_text.delta") == 4
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "tok0 tok1 tok2 tok3 tok4"
    assert events[0].response.usage is None
    assert (events[-1].response.usage.input_tokens, events[-1].response.usage.output_tokens) == (2, 5)


def test_responses_stream_wire_format(stub):
    stub.reset()
    status, ctype, data = post(stub, "/v1/responses", {"model": "m", "input": "x", "stream": True})
    assert status == 200 and ctype.startswith("text/event-stream")
    first = data.split(b"\n\n")[0].decode()
    assert first.startswith("event: response.created\ndata: {")
    assert b"[DONE]" not in data


def test_responses_tool_call(oai):
    tools = [{"type": "function", "name": "get_weather", "description": "weather", "parameters": WEATHER}]
    resp = oai.responses.create(model="m", input="weather in Paris", tools=tools, tool_choice="required")
    call = resp.output[0]
    assert (call.type, call.name, json.loads(call.arguments)) == ("function_call", "get_weather", {"city": "tok0"})
    assert call.call_id.startswith("call_")
    assert (resp.usage.input_tokens, resp.usage.output_tokens) == (3, 5)
    events = list(oai.responses.create(model="m", input="x", tools=tools, tool_choice={"type": "function", "name": "get_weather"}, stream=True))
    assert [e.type for e in events][2:6] == ["response.output_item.added", "response.function_call_arguments.delta",
                                             "response.function_call_arguments.done", "response.output_item.done"]
    assert events[-1].response.output[0].arguments == '{"city":"tok0"}'
    plain = oai.responses.create(model="m", input="x", tools=tools)  # tool_choice auto: the stub answers text
    assert plain.output[0].type == "message"


# ---- Anthropic Messages ------------------------------------------------------------------------------------------

def test_messages_create_and_count_tokens(claude, stub):
    msg = claude.messages.create(model="claude-ish", max_tokens=4, system="be brief", messages=[{"role": "user", "content": "one two three"}])
    assert (msg.type, msg.role, msg.model) == ("message", "assistant", "claude-ish")
    assert msg.content[0].text == "tok0 tok1 tok2 tok3"
    assert msg.stop_reason == "max_tokens"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (5, 4)
    count = claude.messages.count_tokens(model="claude-ish", messages=[{"role": "user", "content": [{"type": "text", "text": "a b c"}]}])
    assert count.input_tokens == 3
    assert stub.stats()["recent"][0]["headers"]["authorization"] == "Bearer sk-anything"  # this client version sends api_key so


def test_messages_stream_events(claude):
    with claude.messages.stream(model="m", max_tokens=6, messages=[{"role": "user", "content": "x y"}]) as stream:
        events = list(stream)
        final = stream.get_final_message()
    wire = ("message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop")
    kinds = [e.type for e in events if e.type in wire]  # the client adds its own "text" events
    assert kinds == ["message_start", "content_block_start"] + ["content_block_delta"] * 4 + ["content_block_stop", "message_delta", "message_stop"]
    assert events[0].message.usage.input_tokens == 2
    assert final.content[0].text == "tok0 tok1 tok2 tok3 tok4 tok5"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (2, 6)


def test_messages_tool_use(claude):
    tools = [{"name": "get_weather", "description": "weather", "input_schema": WEATHER}]
    msg = claude.messages.create(model="m", max_tokens=50, tools=tools, tool_choice={"type": "any"}, messages=[{"role": "user", "content": "weather?"}])
    assert msg.stop_reason == "tool_use"
    assert (msg.content[0].type, msg.content[0].name, msg.content[0].input) == ("tool_use", "get_weather", {"city": "tok0"})
    with claude.messages.stream(model="m", max_tokens=50, tools=tools, tool_choice={"type": "tool", "name": "get_weather"},
                                messages=[{"role": "user", "content": "weather?"}]) as stream:
        final = stream.get_final_message()
    assert final.content[0].input == {"city": "tok0"}
    assert final.usage.output_tokens == 5


def test_messages_errors_in_anthropic_shape(claude, stub):
    with pytest.raises(anthropic.BadRequestError) as info:
        claude.messages.create(model="m", max_tokens=0, messages=[{"role": "user", "content": "x"}])
    assert info.value.body == {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: Value error, max_tokens must be positive"}}
    with pytest.raises(anthropic.InternalServerError) as info:
        claude.messages.create(model="stub-fail-503", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 503
    assert info.value.body == {"type": "error", "error": {"type": "api_error", "message": "stub upstream failure 503"}}


# ---- audio, rerank, score, tokenize -----------------------------------------------------------------------------

def test_transcription_and_translation(oai, stub):
    wav = make_wav(1.5)
    assert stub_apis.wav_seconds(wav) == pytest.approx(1.5)
    text = oai.audio.transcriptions.create(model="whisper", file=("hello.wav", wav, "audio/wav"))
    assert text.text == "tok0 tok1 tok2 tok3 tok4"
    assert text.usage.type == "duration" and text.usage.seconds == 2
    assert stub.stats()["recent"][-1]["json"] == {"fields": {"model": "whisper"}}
    plain = oai.audio.transcriptions.create(model="whisper", file=("hello.wav", wav, "audio/wav"), response_format="text")
    assert plain == "tok0 tok1 tok2 tok3 tok4"
    translated = oai.audio.translations.create(model="whisper", file=("hello.wav", wav, "audio/wav"))
    assert translated.text == "tok0 tok1 tok2 tok3 tok4"
    with pytest.raises(openai.BadRequestError) as info:
        oai.audio.transcriptions.create(model="whisper", file=("x.wav", b"not audio", "audio/wav"))
    assert info.value.body["message"] == "Invalid or unsupported audio file."


def test_rerank_and_score(stub):
    stub.reset()
    docs = ["paris is in france", "berlin", {"text": "the capital of france is paris"}]
    status, _ctype, data = post(stub, "/v1/rerank", {"model": "rr", "query": "capital of france", "documents": docs, "top_n": 2})
    answer = json.loads(data)
    assert status == 200
    assert answer["model"] == "rr" and answer["usage"] == {"total_tokens": 3 * 3 + 4 + 1 + 6}
    assert [(r["index"], r["relevance_score"]) for r in answer["results"]] == [(2, 1.0), (0, pytest.approx(1 / 3, abs=1e-6))]
    assert answer["results"][0]["document"] == {"text": "the capital of france is paris"}
    for path in ("/rerank", "/v2/rerank"):
        assert json.loads(post(stub, path, {"model": "rr", "query": "a", "documents": ["a"]})[2])["results"][0]["relevance_score"] == 1.0
    status, _ctype, data = post(stub, "/score", {"model": "rr", "text_1": "a b", "text_2": ["a", "c"]})
    answer = json.loads(data)
    assert [d["score"] for d in answer["data"]] == [0.5, 0.0]
    assert answer["usage"]["prompt_tokens"] == 6 and answer["object"] == "list"
    status, _ctype, data = post(stub, "/v1/rerank", {"model": "rr", "query": "a"})
    assert status == 400 and json.loads(data)["error"]["message"] == "'query' must be a string and 'documents' a non-empty list"


def test_tokenize_round_trip(stub):
    stub.reset()
    status, _ctype, data = post(stub, "/tokenize", {"model": "m", "prompt": "hello big world", "return_token_strs": True})
    answer = json.loads(data)
    assert status == 200
    assert (answer["count"], answer["max_model_len"], answer["token_strs"]) == (3, 4096, ["hello", "big", "world"])
    status, _ctype, data = post(stub, "/detokenize", {"model": "m", "tokens": answer["tokens"]})
    assert json.loads(data) == {"prompt": "hello big world"}
    assert post(stub, "/detokenize", {"model": "m", "tokens": "x"})[0] == 400


@pytest.mark.parametrize("value,expected", [
    ([{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a b"}]}], 2),
    ([{"type": "function_call_output", "call_id": "c", "output": "x y z"}], 3),
    ([{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "q"}]}], 1),
    ([{"type": "image", "source": {}}], 0),
])
def test_words(value, expected):
    assert stub_apis.words(value) == expected


def test_cohere_embed(stub):
    stub.reset()
    status, _ctype, data = post(stub, "/v2/embed", {"model": "e", "texts": ["hello world", "x"], "input_type": "search_document",
                                                    "embedding_types": ["float", "base64"], "output_dimension": 4})
    answer = json.loads(data)
    assert status == 200
    assert [len(v) for v in answer["embeddings"]["float"]] == [4, 4] and len(answer["embeddings"]["base64"]) == 2
    assert answer["meta"] == {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 3}}
    assert (answer["texts"], answer["response_type"]) == (["hello world", "x"], "embeddings_by_type")
    assert post(stub, "/v2/embed", {"model": "e", "texts": []})[0] == 400
