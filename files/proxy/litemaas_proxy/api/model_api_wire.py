"""The other APIs of the model servers (api/model_apis.py), on the wire: each API's description (:class:`Api`), where
a deployment answers it, whether it is translated, the Responses API ids the proxy hands out, the usage of each
answer, the WAV length of an upload, multipart bodies, the checks of a request body, and the upstream request.
Pure functions: unit tests call them directly (tests/proxy/test_model_apis_units.py)."""

from __future__ import annotations

import base64
import binascii
import re
import struct
from dataclasses import dataclass
from typing import Optional

import orjson

from litemaas_proxy.api.checks import invalid_field
from litemaas_proxy.auth import MASTER
from litemaas_proxy.errors import ProxyError
from litemaas_proxy.translate import NotTranslatable
from litemaas_proxy.translate import messages as messages_bridge
from litemaas_proxy.translate import responses as responses_bridge
from litemaas_proxy.upstream import render_headers


@dataclass(frozen=True)
class Api:
    name: str
    call_type: str  # the spend log's call_type (LiteLLM's names)
    upstream: str  # appended to the deployment's api_base; a leading "/" means from the server root (api_base without /v1)
    errors: str = "openai"  # the error shape: "openai" (LiteLLM's) or "anthropic"
    form: bool = False  # a multipart/form-data upload
    charged: bool = True
    bridge: str = ""  # the litellm_params / model_info flag that switches this API to chat completions ("chat")


RESPONSES = Api("responses", "aresponses", "responses", bridge="responses_api")
MESSAGES = Api("messages", "anthropic_messages", "messages", errors="anthropic", bridge="messages_api")
COUNT_TOKENS = Api("count_tokens", "anthropic_count_tokens", "messages/count_tokens", errors="anthropic", charged=False, bridge="messages_api")
TRANSCRIPTION = Api("transcription", "atranscription", "audio/transcriptions", form=True)
TRANSLATION = Api("translation", "atranslation", "audio/translations", form=True)
RERANK = Api("rerank", "arerank", "rerank")
SCORE = Api("score", "ascore", "score")
TOKENIZE = Api("tokenize", "tokenize", "/tokenize", charged=False)
DETOKENIZE = Api("detokenize", "detokenize", "/detokenize", charged=False)
COHERE_EMBED = Api("cohere_embed", "aembedding", "/v2/embed")
STREAMED = ("responses", "messages")


def upstream_url(dep, path: str) -> str:
    base = dep.api_base
    if path.startswith("/"):
        return (base[:-3] if base.endswith("/v1") else base) + path
    return f"{base}/{path}"


def bridged(dep, api: Api) -> bool:
    """Whether ``dep`` answers ``api`` through chat completions (its ``litellm_params`` or ``model_info`` say ``chat``)."""
    if not api.bridge:
        return False
    value = dep.litellm_params.get(api.bridge, dep.model_info.get(api.bridge))
    return isinstance(value, str) and value.lower() == "chat"


# ---- response ids ----------------------------------------------------------------------------------------------------

def encode_response_id(dep_id: str, token: str, server_id: str) -> str:
    raw = f"litemaas;{dep_id};{token[:16]};{server_id}".encode()
    return "resp_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_response_id(value: str) -> Optional[tuple]:
    """(deployment id, key token prefix, the server's id) of an id made by :func:`encode_response_id`, else None."""
    if not isinstance(value, str) or not value.startswith("resp_"):
        return None
    text = value[5:]
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    parts = raw.split(";", 3)
    if len(parts) != 4 or parts[0] != "litemaas":
        return None
    return parts[1], parts[2], parts[3]


def key_mark(entry) -> str:
    return "master" if entry is MASTER else entry.token


# ---- usage --------------------------------------------------------------------------------------------------------

def as_int(value) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def usage_tokens(api: Api, data) -> tuple:
    """(prompt, completion) tokens from an answer of ``api`` (0, 0 when it reports none)."""
    if api is COHERE_EMBED:
        meta = data.get("meta") if isinstance(data, dict) else None
        billed = meta.get("billed_units") if isinstance(meta, dict) else None
        return (as_int(billed.get("input_tokens")) if isinstance(billed, dict) else 0), 0
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return 0, 0
    if api is MESSAGES:
        prompt = as_int(usage.get("input_tokens")) + as_int(usage.get("cache_creation_input_tokens")) + as_int(usage.get("cache_read_input_tokens"))
        return prompt, as_int(usage.get("output_tokens"))
    if api in (RESPONSES, TRANSCRIPTION, TRANSLATION):
        return as_int(usage.get("input_tokens")), as_int(usage.get("output_tokens"))
    return as_int(usage.get("prompt_tokens")) or as_int(usage.get("total_tokens")), 0


def wav_seconds(data: bytes) -> Optional[float]:
    """The length of a RIFF/WAVE file (from its byte rate and data chunk), or None for anything else."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, byte_rate = 12, 0
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        if chunk == b"fmt " and size >= 16 and pos + 20 <= len(data):
            byte_rate = struct.unpack_from("<I", data, pos + 16)[0]
        elif chunk == b"data":
            return min(size, len(data) - pos - 8) / byte_rate if byte_rate else None
        pos += 8 + size + (size & 1)
    return None


def price(dep, name: str) -> float:
    """A price of the deployment (``litellm_params`` wins over ``model_info``), 0 when unset or not a number."""
    value = dep.litellm_params.get(name, dep.model_info.get(name))
    try:
        return float(value or 0.0)
    except (TypeError, ValueError):
        return 0.0


def search_units(body: dict) -> int:
    """Cohere's billing unit of a rerank without token usage: one per query and started 100 documents."""
    documents = body.get("documents")
    return max(1, -(-len(documents) // 100)) if isinstance(documents, list) else 1


# ---- multipart ----------------------------------------------------------------------------------------------------

_BOUNDARY = re.compile(r'boundary="?([^";]+)"?')
_NAME = re.compile(rb'\bname="([^"]*)"')


def form_parts(body: bytes, content_type: str) -> Optional[list]:
    """The parts of a multipart/form-data body as [name, headers bytes, data] lists, or None when it is not one."""
    match = _BOUNDARY.search(content_type or "")
    if not content_type.lower().startswith("multipart/form-data") or not match:
        return None
    delim = b"--" + match.group(1).encode("latin-1")
    parts = []
    for chunk in body.split(delim)[1:]:
        if chunk.startswith(b"--"):
            return parts
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            return None
        name = _NAME.search(head)
        parts.append([name.group(1).decode("utf-8", "replace") if name else "", head, data[:-2] if data.endswith(b"\r\n") else data])
    return None  # no closing delimiter


def form_body(parts: list, boundary: str) -> bytes:
    delim = b"--" + boundary.encode("latin-1")
    return b"".join(delim + b"\r\n" + head + b"\r\n\r\n" + data + b"\r\n" for _name, head, data in parts) + delim + b"--\r\n"


# ---- request reading and checks -------------------------------------------------------------------------------------

def _require(condition: bool, message: str, param: str) -> None:
    if not condition:
        raise ProxyError(400, message, "invalid_request_error", param)


def check_api_body(api: Api, body: dict) -> None:
    """The fields every server of ``api`` needs, refused with a 400 naming the field before any upstream call."""
    if api is RESPONSES:
        value = body.get("input")
        _require(value is not None, "Invalid request: 'input' is required (a string or a list of input items)", "input")
        if not isinstance(value, (str, list)):
            raise invalid_field("input", "a string or a list of input items", value)
        limit = body.get("max_output_tokens")
        if limit is not None and not (isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1):
            raise invalid_field("max_output_tokens", "an integer >= 1", limit)
    elif api in (MESSAGES, COUNT_TOKENS):
        messages = body.get("messages")
        _require(messages is not None, "messages: Field required", "messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise invalid_field("messages", "a list of message objects", messages)
        if api is MESSAGES:
            _require(body.get("max_tokens") is not None, "max_tokens: Field required", "max_tokens")
    elif api is COHERE_EMBED:
        texts = body.get("texts")
        _require(texts is not None or body.get("inputs") is not None or body.get("images") is not None,
                 "Invalid request: 'texts' (or 'inputs' or 'images') is required", "texts")
    elif api is RERANK:
        _require(isinstance(body.get("query"), str), "Invalid request: 'query' is required (a string)", "query")
        _require(isinstance(body.get("documents"), list) and bool(body["documents"]), "Invalid request: 'documents' is required (a non-empty list)",
                 "documents")


class Call:
    """One request's parsed body and what the upstream call needs (JSON body, or the multipart parts)."""

    __slots__ = ("api", "body", "parts", "boundary", "content_type", "audio_seconds", "server_id")

    def __init__(self, api: Api):
        self.api = api
        self.body: dict = {}
        self.parts = None
        self.boundary = ""
        self.content_type = ""
        self.audio_seconds = None
        self.server_id = None  # the server's id of previous_response_id: the request goes to the deployment that made it


def read_form(call: Call, raw: bytes, content_type: str) -> None:
    parts = form_parts(raw, content_type)
    if parts is None:
        raise ProxyError(400, "Invalid request: expected a multipart/form-data body with the fields 'file' and 'model'", "invalid_request_error",
                         "file")
    fields = {name: data for name, _head, data in parts}
    _require("file" in fields, "Invalid request: 'file' is required (the audio file)", "file")
    call.parts = parts
    call.boundary = _BOUNDARY.search(content_type).group(1)
    call.content_type = content_type
    call.audio_seconds = wav_seconds(fields["file"])
    model = fields.get("model")
    call.body = {"model": model.decode("utf-8", "replace").strip() if model is not None else None}


def payload_for(call: Call, dep, bridge: bool) -> tuple:
    """(url, body bytes, rendered headers) of the upstream request to ``dep``."""
    api = call.api
    if call.parts is not None:
        parts = [[name, head, dep.upstream_model.encode() if name == "model" else data] for name, head, data in call.parts]
        headers = {"Content-Type": call.content_type}
        if dep.api_key:
            headers["Authorization"] = f"Bearer {dep.api_key}"
        return upstream_url(dep, api.upstream), form_body(parts, call.boundary), render_headers(headers)
    if bridge:
        try:
            if api is RESPONSES:
                body = responses_bridge.request_to_chat(call.body)
            elif api is MESSAGES:
                body = messages_bridge.request_to_chat(call.body)
            else:
                body = messages_bridge.count_tokens_chat(call.body)
        except NotTranslatable as exc:
            raise ProxyError(400, exc.message, "invalid_request_error", exc.param)
        body["model"] = dep.upstream_model
        return f"{dep.api_base}/chat/completions", orjson.dumps(body), dep.header_bytes
    body = dict(call.body, model=dep.upstream_model)
    if call.server_id is not None:
        body["previous_response_id"] = call.server_id
    return upstream_url(dep, api.upstream), orjson.dumps(body), dep.header_bytes
