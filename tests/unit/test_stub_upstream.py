"""The OpenAI-compatible stub upstream, exercised with the official ``openai`` client and raw HTTP."""

from __future__ import annotations

import http.client
import json
import socket

import openai
import pytest

from tests.support.stub_upstream import StubUpstream, count_words, parse_multipart


@pytest.fixture(scope="module")
def stub(work_dir):
    server = StubUpstream(log_path=work_dir / "stub-unit.log").start()
    yield server
    server.stop()


@pytest.fixture()
def client(stub):
    stub.reset()
    with openai.OpenAI(base_url=stub.url, api_key="sk-anything", max_retries=0, timeout=10) as c:
        yield c


def test_url_points_at_v1(stub):
    assert stub.url == f"http://127.0.0.1:{stub.port}/v1"


def test_chat_completion_usage_is_deterministic(client, stub):
    resp = client.chat.completions.create(
        model="my-model",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "one two three"}],
    )
    assert resp.model == "my-model"
    assert resp.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (5, 5, 10)
    stats = stub.stats()
    assert stats["requests"] == 1
    assert stats["by_model"] == {"my-model": 1}
    assert stats["recent"][0]["headers"]["authorization"] == "Bearer sk-anything"


def test_max_tokens_sets_completion_tokens(client):
    resp = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=12)
    assert resp.usage.completion_tokens == 12
    assert len(resp.choices[0].message.content.split()) == 12
    assert resp.choices[0].finish_reason == "length"


def test_stream_with_usage(client, stub):
    stream = client.chat.completions.create(
        model="streamer", messages=[{"role": "user", "content": "a b c d"}], stream=True, stream_options={"include_usage": True}, max_tokens=9
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == " ".join(f"tok{i}" for i in range(9))
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) == 4
    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (4, 9)
    assert all(c.usage is None for c in chunks[:-1])
    assert stub.stats()["recent"][-1]["json"]["stream_options"] == {"include_usage": True}


def test_stream_without_usage_request_has_no_usage_chunk(client):
    chunks = list(client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True))
    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_omit_stream_usage_setting(client, stub):
    stub.configure(omit_stream_usage=True)
    chunks = list(client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True, stream_options={"include_usage": True}))
    assert all(c.choices for c in chunks)


def test_text_completion_and_stream(client):
    resp = client.completions.create(model="c-model", prompt="say it twice", max_tokens=3)
    assert resp.choices[0].text == "tok0 tok1 tok2"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (3, 3)
    chunks = list(client.completions.create(model="c-model", prompt="x", stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage.completion_tokens == 5
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "tok0 tok1 tok2 tok3 tok4"


def test_embeddings_float_and_base64(client):
    resp = client.embeddings.create(model="emb", input=["hello world", "x"])  # the client asks for base64
    assert resp.model == "emb"
    assert [d.index for d in resp.data] == [0, 1]
    assert len(resp.data[0].embedding) == 8
    assert resp.usage.prompt_tokens == 3
    again = client.embeddings.create(model="emb", input=["hello world", "x"], encoding_format="float")
    assert again.data[0].embedding == pytest.approx(resp.data[0].embedding, abs=1e-6)
    assert len(client.embeddings.create(model="emb", input="a", dimensions=3).data[0].embedding) == 3


def test_models_list(client):
    assert [m.id for m in client.models.list()] == ["stub-model", "stub-embed"]


@pytest.mark.parametrize("status,exc", [(500, openai.InternalServerError), (503, openai.InternalServerError), (429, openai.RateLimitError)])
def test_fail_via_config_then_recovers(client, stub, status, exc):
    stub.configure(fail_status=status, fail_count=2)
    for _attempt in range(2):
        with pytest.raises(exc) as info:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        assert info.value.status_code == status
    assert client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}]).usage.total_tokens == 6
    stats = stub.stats()
    assert (stats["requests"], stats["failed"]) == (3, 2)


def test_fail_via_model_name_and_header(client):
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="stub-fail-503", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 503
    with pytest.raises(openai.InternalServerError) as info:
        client.embeddings.create(model="e", input="x", extra_headers={"x-stub-fail": "500"})
    assert info.value.status_code == 500


def test_hang_times_out_and_delay_answers(client, stub):
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.5).chat.completions.create(model="stub-hang", messages=[{"role": "user", "content": "x"}])
    resp = client.chat.completions.create(model="stub-delay-100ms", messages=[{"role": "user", "content": "x"}])
    assert resp.model == "stub-delay-100ms"
    assert stub.stats()["max_in_flight"] >= 1


def test_cut_drops_connection(client):
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="stub-cut", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="stub-cut", messages=[{"role": "user", "content": "x"}], stream=True))


def test_require_api_key(client, stub):
    stub.configure(require_api_key="sk-right")
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    ok = client.with_options(api_key="sk-right").chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert ok.usage.prompt_tokens == 1


def test_keep_alive_pipelining_and_chunked_body(stub):
    stub.reset()
    body = json.dumps({"model": "pipe", "messages": [{"role": "user", "content": "one two"}]}).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:7], body[7:])) + b"0\r\n\r\n"
    raw = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        + b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked
        + b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", stub.port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while True:
            part = sock.recv(65536)
            if not part:
                break
            data += part
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert data.count(b'"prompt_tokens":2') == 2
    assert stub.stats()["by_path"] == {"/v1/chat/completions": 2}


def test_multipart_echo(stub):
    boundary = "XyZ123"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"doc.pdf\"\r\nContent-Type: application/pdf\r\n\r\n".encode()
        + b"%PDF" + b"\x00" * 1000 + b"\r\n"
        + f"--{boundary}\r\nContent-Disposition: form-data; name=\"to_formats\"\r\n\r\nmd\r\n--{boundary}--\r\n".encode()
    )
    conn = http.client.HTTPConnection("127.0.0.1", stub.port, timeout=10)
    conn.request("POST", "/docling/v1/convert/file", body=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    resp = conn.getresponse()
    payload = json.loads(resp.read())
    conn.close()
    assert resp.status == 200
    assert payload["received_bytes"] == len(body)
    assert payload["parts"] == [
        {"name": "files", "filename": "doc.pdf", "content_type": "application/pdf", "bytes": 1004},
        {"name": "to_formats", "filename": None, "content_type": None, "bytes": 2},
    ]


def test_unknown_route_and_bad_json(stub):
    conn = http.client.HTTPConnection("127.0.0.1", stub.port, timeout=10)
    conn.request("POST", "/v1/nope", body=b"{}")
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 404
    conn.request("POST", "/v1/chat/completions", body=b"not json")
    resp = conn.getresponse()
    assert resp.status == 400
    assert json.loads(resp.read())["error"]["type"] == "invalid_request_error"
    conn.close()


@pytest.mark.parametrize(
    "value,expected",
    [("a b  c", 3), ([{"type": "text", "text": "x y"}, {"type": "image_url", "image_url": {}}], 2), ([1, 2, 3], 3), (None, 0), (["a", "b c"], 3)],
)
def test_count_words(value, expected):
    assert count_words(value) == expected


def test_parse_multipart_without_boundary():
    assert parse_multipart(b"abc", "multipart/form-data") == []
