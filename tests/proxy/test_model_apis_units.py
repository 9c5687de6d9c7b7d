"""The pure pieces of the proxy's other APIs (litemaas_proxy/api/model_apis.py): response ids, multipart, WAV length,
usage per API, upstream paths and the translation switch."""

from __future__ import annotations

import io
import struct
import wave

import pytest

from litemaas_proxy.api import model_api_streams as streams
from litemaas_proxy.api import model_api_wire as ma
from litemaas_proxy.routing import Deployment


def dep(api_base="http://m:8000/v1", **params) -> Deployment:
    return Deployment("dep-1", "m", {"model": "openai/up", "api_base": api_base, **params}, {}, False)


def test_response_ids_round_trip_and_refuse_others():
    public = ma.encode_response_id("dep-1", "a" * 64, "resp_server123")
    assert public.startswith("resp_") and "server123" not in public
    assert ma.decode_response_id(public) == ("dep-1", "a" * 16, "resp_server123")
    for other in ("resp_server123", "resp_", "msg_x", "resp_!!!", None, "resp_" + "bGl0ZW1hYXM7eA"):  # the last: "litemaas;x"
        assert ma.decode_response_id(other) is None


@pytest.mark.parametrize("base,path,url", [
    ("http://m:8000/v1", "responses", "http://m:8000/v1/responses"),
    ("http://m:8000/v1", "/tokenize", "http://m:8000/tokenize"),
    ("http://m:8000", "/tokenize", "http://m:8000/tokenize"),
    ("http://m:8000/v1", "/v2/embed", "http://m:8000/v2/embed"),
])
def test_upstream_url(base, path, url):
    assert ma.upstream_url(dep(base), path) == url


@pytest.mark.parametrize("params,expected", [({}, False), ({"responses_api": "native"}, False), ({"responses_api": "chat"}, True),
                                             ({"responses_api": "CHAT"}, True), ({"responses_api": True}, False)])
def test_bridged(params, expected):
    assert ma.bridged(dep(**params), ma.RESPONSES) is expected
    assert ma.bridged(dep(**params), ma.RERANK) is False


def test_bridged_from_model_info():
    d = Deployment("d", "m", {"model": "openai/up"}, {"messages_api": "chat"}, False)
    assert ma.bridged(d, ma.MESSAGES) and ma.bridged(d, ma.COUNT_TOKENS) and not ma.bridged(d, ma.RESPONSES)


def wav(seconds: float, rate: int = 16000, channels: int = 2) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(struct.pack("<h", 0) * int(seconds * rate) * channels)
    return buf.getvalue()


def test_wav_seconds():
    assert ma.wav_seconds(wav(1.25)) == pytest.approx(1.25)
    assert ma.wav_seconds(wav(0.5, rate=8000, channels=1)) == pytest.approx(0.5)
    assert ma.wav_seconds(b"ID3 not a wav") is None
    assert ma.wav_seconds(wav(1.0)[:30]) is None  # cut inside the fmt chunk


def test_form_parts_and_model_rewrite():
    body = (b"--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper\r\n"
            b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\n--B--\r\n")
    parts = ma.form_parts(body, "multipart/form-data; boundary=B")
    assert [(name, data) for name, _head, data in parts] == [("model", b"whisper"), ("file", b"RIFF")]
    assert ma.form_body(parts, "B") == body
    assert ma.form_parts(body, "application/json") is None
    assert ma.form_parts(body[:-8], "multipart/form-data; boundary=B") is None  # no closing delimiter


@pytest.mark.parametrize("api,data,tokens", [
    (ma.RESPONSES, {"usage": {"input_tokens": 3, "output_tokens": 4}}, (3, 4)),
    (ma.MESSAGES, {"usage": {"input_tokens": 3, "output_tokens": 4, "cache_read_input_tokens": 10, "cache_creation_input_tokens": 1}}, (14, 4)),
    (ma.RERANK, {"usage": {"total_tokens": 9}}, (9, 0)),
    (ma.SCORE, {"usage": {"prompt_tokens": 6, "total_tokens": 6}}, (6, 0)),
    (ma.TRANSCRIPTION, {"usage": {"type": "tokens", "input_tokens": 20, "output_tokens": 5}}, (20, 5)),
    (ma.TRANSCRIPTION, {"usage": {"type": "duration", "seconds": 3}}, (0, 0)),
    (ma.COHERE_EMBED, {"meta": {"billed_units": {"input_tokens": 7}}}, (7, 0)),
    (ma.RESPONSES, {"usage": None}, (0, 0)),
    (ma.RESPONSES, ["not", "a", "dict"], (0, 0)),
])
def test_usage_tokens(api, data, tokens):
    assert ma.usage_tokens(api, data) == tokens


def test_estimate_tokens_and_search_units():
    assert streams.estimate_tokens({"instructions": "abcd", "input": [{"role": "user", "content": [{"type": "input_text", "text": "efgh"}]}]}, 9) == (2, 3)
    assert streams.estimate_tokens({"messages": []}, 0) == (1, 0)
    assert [ma.search_units({"documents": ["d"] * n}) for n in (0, 1, 100, 101, 250)] == [1, 1, 1, 2, 3]
