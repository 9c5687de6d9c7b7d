"""Data plane, the model servers' other APIs: OpenAI Responses, Anthropic Messages, audio, rerank/score, Cohere embed,
tokenize.

Every route here takes a key like chat completions (``Authorization: Bearer``, ``x-api-key``,
``x-litellm-api-key``) and goes through the same steps: the key's state and budget, model access, guardrails on the
request, RPM/TPM/parallel limits, the router's deployments with retries, cooldown and fallbacks, metrics, and a
spend-log row whose tokens come from the answer's own ``usage``:

=====================  ============================================  ==========================================
route                  upstream (the deployment's ``api_base``)       accounting
=====================  ============================================  ==========================================
/v1/responses          ``/responses``, or chat completions            ``usage.input_tokens/output_tokens``
                       (``responses_api: chat``)                      (streamed: the ``response.completed`` event)
/v1/messages           ``/messages``, or chat completions             ``usage.input_tokens/output_tokens``
                       (``messages_api: chat``)                       (streamed: ``message_start`` + ``message_delta``)
/v1/messages/          ``/messages/count_tokens``, or a one-token     not charged
count_tokens           chat completion (``messages_api: chat``)
/v1/audio/*            ``/audio/transcriptions``, ``/translations``   seconds x ``input_cost_per_second`` (the
                       (multipart upload)                             server's ``usage.seconds``, else the WAV's
                                                                      length); token usage when reported
/rerank, /v1/rerank,   ``/rerank``; ``/score``                        ``usage.total_tokens`` (``prompt_tokens``)
/v2/rerank, /score                                                    x ``input_cost_per_token``; without usage,
                                                                      search units (a query per started 100
                                                                      documents) x ``input_cost_per_query``
/v2/embed (Cohere)     the server root's ``/v2/embed``                ``meta.billed_units.input_tokens`` x input
/tokenize, /detokenize the server root's ``/tokenize``, ``/detokenize``  not charged
=====================  ============================================  ==========================================

Errors are in each API's own shape: Anthropic's ``{"type": "error", "error": {"type", "message"}}`` on the Messages
routes (the route table's ``errors="anthropic"``; the middleware renders them), LiteLLM's elsewhere. A Responses
API id from a relayed deployment is handed out as ``resp_`` + an encoding of (deployment id, key, the server's
id), so ``GET /v1/responses/{id}``, ``/cancel`` and ``previous_response_id`` reach the deployment that created it
and no other key can read it; the proxy keeps no state for it. Translated responses are not stored.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import struct
import time
from dataclasses import dataclass
from functools import partial
from typing import Optional

import aiohttp
import orjson
from aiohttp import web

from litemaas_proxy import metrics
from litemaas_proxy.api import read_body_bytes
from litemaas_proxy.api.checks import check_key_state, check_model_access, invalid_field, may_use_model, validate_llm_body
from litemaas_proxy.api.common import proxy_of
from litemaas_proxy.api.context import RequestContext, check_limits, record_spend, release_limits
from litemaas_proxy.api.data import read_json_body
from litemaas_proxy.api.relay import LlmApi, call_upstream, common_headers, upstream_error
from litemaas_proxy.api.routes import KEY, Route
from litemaas_proxy.auth import MASTER
from litemaas_proxy.errors import ProxyError
from litemaas_proxy.translate import NotTranslatable, sse_event
from litemaas_proxy.translate import messages as messages_bridge
from litemaas_proxy.translate import responses as responses_bridge
from litemaas_proxy.upstream import UpstreamError, UpstreamTimeout, render_headers

log = logging.getLogger("litemaas_proxy.model_apis")


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
BRIDGE_VALUES = ("native", "chat")
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


def _token(entry) -> str:
    return "master" if entry is MASTER else entry.token


# ---- usage --------------------------------------------------------------------------------------------------------

def _int(value) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def usage_tokens(api: Api, data) -> tuple:
    """(prompt, completion) tokens from an answer of ``api`` (0, 0 when it reports none)."""
    if api is COHERE_EMBED:
        meta = data.get("meta") if isinstance(data, dict) else None
        billed = meta.get("billed_units") if isinstance(meta, dict) else None
        return (_int(billed.get("input_tokens")) if isinstance(billed, dict) else 0), 0
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return 0, 0
    if api is MESSAGES:
        prompt = _int(usage.get("input_tokens")) + _int(usage.get("cache_creation_input_tokens")) + _int(usage.get("cache_read_input_tokens"))
        return prompt, _int(usage.get("output_tokens"))
    if api in (RESPONSES, TRANSCRIPTION, TRANSLATION):
        return _int(usage.get("input_tokens")), _int(usage.get("output_tokens"))
    return _int(usage.get("prompt_tokens")) or _int(usage.get("total_tokens")), 0


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


# ---- the handlers -------------------------------------------------------------------------------------------------

async def serve(request: web.Request, api: Api) -> web.StreamResponse:
    proxy = proxy_of(request)
    router = proxy.router
    ctx = RequestContext(request, api.call_type, api.upstream)
    entry = ctx.caller
    call = Call(api)
    if api.form:
        read_form(call, await read_body_bytes(request), request.headers.get("Content-Type", ""))
    else:
        call.body = await read_json_body(request)
    body = call.body
    model = body.get("model")
    if model is None or model == "":
        raise ProxyError(400, "Invalid request: 'model' is required", "invalid_request_error", "model")
    if not isinstance(model, str):
        raise invalid_field("model", "a string (a model name from /v1/models)", model)
    request["litemaas_model"] = ctx.model = model
    ctx.body = body
    if not api.form:
        check_api_body(api, body)
        validate_llm_body(body, api.name)  # the optional fields shared with chat (types); the API's own fields above
    check_key_state(proxy, entry, time.time())
    check_model_access(entry, model, router)
    guard = proxy.guardrails.for_request(entry)
    if guard is not None:
        guard.pre_call(body, model, entry, request.path)
        if guard.post:
            raise ProxyError(400, f"{request.path} cannot apply this key's output guardrails (they mask chat and text completions); "
                             "use /v1/chat/completions with this key", "guardrail_violation", "None")
    deps = router.candidates(model)
    if not deps:
        if model in proxy.unusable_models:
            raise ProxyError(503, f"{request.path}: {proxy.unusable_models[model]}", "None", "model")
        raise ProxyError(400, f"{request.path}: Invalid model name passed in model={model}. Call `/v1/models` to view available models for your key.",
                         "None", "model")
    if api is RESPONSES and body.get("previous_response_id") is not None:
        pinned = decode_response_id(body["previous_response_id"])
        if pinned is not None and pinned[1] == _token(entry)[:16]:
            deps = [d for d in deps if d.id == pinned[0]]
            call.server_id = pinned[2]
            if not deps:
                raise ProxyError(400, f"previous_response_id {body['previous_response_id']} was created by a deployment of another model",
                                 "invalid_request_error", "previous_response_id")
    ctx.stream = api.name in STREAMED and body.get("stream") is True
    request["litemaas_call"] = call
    await check_limits(proxy, ctx)
    try:
        return await call_upstream(proxy, ctx, RELAYED[api.name], deps)
    finally:
        release_limits(proxy, ctx)


def _checked_in_serve(body: dict) -> None:
    """The body checks of these APIs run in :func:`serve` (check_api_body), before the limits."""


def request_for(api: Api, dep, ctx: RequestContext) -> tuple:
    """The upstream request to ``dep`` (the shared relay's hook): relayed, translated, or the rewritten upload."""
    return payload_for(ctx.request["litemaas_call"], dep, bridged(dep, api))


async def answer(api: Api, proxy, ctx: RequestContext, upstream) -> web.StreamResponse:
    """The caller's answer (the shared relay's hook): relayed or translated back, whole or streamed, and accounted."""
    call, bridge = ctx.request["litemaas_call"], bridged(ctx.deployment, api)
    if ctx.stream:
        return await relay_stream(proxy, ctx, call, upstream, bridge)
    return await relay_json(proxy, ctx, call, upstream, bridge)


def _record(proxy, ctx: RequestContext, dep, prompt: int, completion: int, cost: float, status: str, extra: Optional[dict] = None) -> None:
    user = ctx.body.get("user") if isinstance(ctx.body.get("user"), str) else None
    record_spend(proxy, ctx, dep, prompt, completion, cost, status, {"status": status, **(extra or {})}, user)


def account(proxy, ctx: RequestContext, call: Call, prompt: int, completion: int, seconds: Optional[float] = None) -> float:
    """Cost, spend record and metrics of a successful answer; the tokens the TPM limit counts."""
    dep, api = ctx.deployment, call.api
    if not api.charged:
        metrics.success(ctx.caller, ctx.model, ctx.route, prompt, completion, 0.0, ctx.elapsed())
        return 0.0
    cost = prompt * dep.input_cost + completion * dep.output_cost
    extra = None
    if seconds is not None:
        cost += seconds * price(dep, "input_cost_per_second")
        extra = {"audio_seconds": seconds}
    elif api in (RERANK, SCORE) and not prompt:  # no token usage in the answer: per query (input_cost_per_query)
        units = search_units(ctx.body)
        cost += units * price(dep, "input_cost_per_query")
        extra = {"search_units": units}
    _record(proxy, ctx, dep, prompt, completion, cost, "success", extra)
    metrics.success(ctx.caller, ctx.model, ctx.route, prompt, completion, cost, ctx.elapsed())
    ctx.tokens = prompt + completion
    return cost


async def relay_json(proxy, ctx: RequestContext, call: Call, upstream, bridge: bool) -> web.Response:
    dep, api = ctx.deployment, call.api
    content = await upstream.read()
    content_type = upstream.headers.get("content-type", "application/json")
    if api.form and not content_type.startswith("application/json"):  # response_format=text: plain text, charged by the file's length
        cost = account(proxy, ctx, call, 0, 0, call.audio_seconds or 0.0)
        return web.Response(body=content, content_type=content_type.split(";")[0], headers=common_headers(ctx, cost))
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise ProxyError(502, f"Upstream model server returned invalid JSON: {dep.api_base} (model={ctx.model})", "upstream_error", "None")
    if bridge:
        if api is RESPONSES:
            data = responses_bridge.chat_to_response(call.body, data)
        elif api is MESSAGES:
            data = messages_bridge.chat_to_message(call.body, data)
        else:
            data = {"input_tokens": _int((data.get("usage") or {}).get("prompt_tokens"))}
        content = orjson.dumps(data)
        prompt, completion = usage_tokens(api, data)
    else:
        prompt, completion = usage_tokens(api, data)
        if api is RESPONSES and isinstance(data, dict) and isinstance(data.get("id"), str):
            content = content.replace(data["id"].encode(), encode_response_id(dep.id, _token(ctx.caller), data["id"]).encode())
    seconds = None
    if api.form:
        usage = data.get("usage") if isinstance(data, dict) else None
        if isinstance(usage, dict) and usage.get("type") == "duration":
            seconds = float(usage.get("seconds") or 0.0)
        elif not (prompt or completion):
            seconds = call.audio_seconds or 0.0
    cost = account(proxy, ctx, call, prompt, completion, seconds)
    return web.Response(body=content, content_type="application/json", headers=common_headers(ctx, cost))


def _events(buf: bytes):
    """Complete SSE events at the start of ``buf`` and the rest: (list of events, rest)."""
    out = []
    while True:
        lf, crlf = buf.find(b"\n\n"), buf.find(b"\r\n\r\n")
        if crlf >= 0 and (lf < 0 or crlf < lf):
            end = crlf + 4
        elif lf >= 0:
            end = lf + 2
        else:
            return out, buf
        out.append(buf[:end])
        buf = buf[end:]


def _data(event: bytes):
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            payload = line[5:].strip()
            if payload == b"[DONE]":
                return "[DONE]"
            try:
                return orjson.loads(payload)
            except orjson.JSONDecodeError:
                return None
    return None


def text_chars(value) -> int:
    """Characters of the text in a request field: strings, lists of them, and parts' text/content/input/output."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(text_chars(v) for v in value)
    if isinstance(value, dict):
        return sum(text_chars(value.get(k)) for k in ("text", "content", "input", "output"))
    return 0


def estimate_tokens(body: dict, streamed_chars: int) -> tuple:
    """(prompt, completion) tokens estimated at ~4 characters each, for a stream whose server sent no usage."""
    chars = sum(text_chars(body.get(k)) for k in ("instructions", "system", "input", "messages"))
    return max(1, (chars + 3) // 4), (streamed_chars + 3) // 4


def _delta_chars(event: bytes) -> int:
    if b'"delta"' not in event or not (b"output_text.delta" in event or b"text_delta" in event):
        return 0
    data = _data(event)
    delta = data.get("delta") if isinstance(data, dict) else None
    if isinstance(delta, dict):
        delta = delta.get("text")
    return len(delta) if isinstance(delta, str) else 0


class NativeStream:
    """Relays a Responses or Messages event stream unchanged (except the response id), noting its usage."""

    def __init__(self, api: Api, dep_id: str, token: str):
        self.api, self.dep_id, self.token = api, dep_id, token
        self.prompt = self.completion = 0
        self.seen_usage = False
        self.server_id = None
        self.public_id = None
        self.chars = 0  # streamed text, for an estimate when the server sends no usage

    def feed(self, event: bytes) -> bytes:
        if not self.seen_usage:
            self.chars += _delta_chars(event)
        if self.api is RESPONSES:
            if self.server_id is None and b'"response"' in event:
                data = _data(event)
                rid = ((data or {}).get("response") or {}).get("id") if isinstance(data, dict) else None
                if isinstance(rid, str):
                    self.server_id, self.public_id = rid.encode(), encode_response_id(self.dep_id, self.token, rid).encode()
            if b'"usage"' in event and (b"response.completed" in event or b"response.incomplete" in event or b"response.failed" in event):
                data = _data(event)
                if isinstance(data, dict) and isinstance(data.get("response"), dict):
                    self.prompt, self.completion = usage_tokens(RESPONSES, data["response"])
                    self.seen_usage = True
            return event.replace(self.server_id, self.public_id) if self.server_id else event
        if b'"usage"' in event and (b"message_start" in event or b"message_delta" in event):
            data = _data(event)
            if isinstance(data, dict):
                usage = (data.get("message") or {}).get("usage") if data.get("type") == "message_start" else data.get("usage")
                if isinstance(usage, dict):
                    prompt, completion = usage_tokens(MESSAGES, {"usage": usage})
                    self.prompt = prompt or self.prompt
                    self.completion = completion or self.completion
                    self.seen_usage = self.seen_usage or data.get("type") == "message_delta"
        return event

    def tokens(self) -> tuple:
        return self.prompt, self.completion

    def error(self, status: int, message: str) -> bytes:
        if self.api is MESSAGES:
            return sse_event("error", messages_bridge.error_body(status, message))
        return sse_event("error", {"type": "error", "code": str(status), "message": message, "param": None})


class BridgeStream:
    """Translates a chat completions event stream into Responses or Messages events."""

    def __init__(self, api: Api, body: dict):
        self.api = api
        self.conv = responses_bridge.ResponsesStream(body) if api is RESPONSES else messages_bridge.MessagesStream(body)
        self.seen_usage = False
        self.chars = 0

    def feed(self, event: bytes) -> bytes:
        data = _data(event)
        if data == "[DONE]":
            return self.close()
        if not isinstance(data, dict):
            return b""
        if isinstance(data.get("usage"), dict):
            self.seen_usage = True
        for choice in data.get("choices") or []:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                self.chars += len(delta["content"])
        return self.conv.feed(data)

    def close(self) -> bytes:
        return self.conv.close()

    def tokens(self) -> tuple:
        return self.conv.tokens()

    def error(self, status: int, message: str) -> bytes:
        if self.api is MESSAGES:
            return self.conv.error(status, message)
        return self.conv.error(message, str(status))


async def relay_stream(proxy, ctx: RequestContext, call: Call, upstream, bridge: bool) -> web.StreamResponse:
    dep, api, request = ctx.deployment, call.api, ctx.request
    headers = common_headers(ctx, 0.0)
    headers.pop("x-litellm-response-cost", None)
    headers["Cache-Control"] = "no-cache"
    headers["Content-Type"] = "text/event-stream"
    resp = web.StreamResponse(status=200, headers=headers)
    await resp.prepare(request)
    conv = BridgeStream(api, call.body) if bridge else NativeStream(api, dep.id, _token(ctx.caller))
    buf, first, client_gone, failure = b"", True, False, None
    try:
        async for chunk in upstream.iter_chunks():
            if first:
                first = False
                metrics.first_token(ctx.model, ctx.elapsed())
            events, buf = _events(buf + chunk)
            out = b"".join(conv.feed(e) for e in events)
            if out and not client_gone:
                try:
                    await resp.write(out)
                except (ConnectionResetError, aiohttp.ClientConnectionResetError):
                    client_gone = True
                    upstream.close()
                    break
    except UpstreamTimeout:
        failure = ProxyError(504, f"Upstream model server timed out during the stream: {dep.api_base} (model={ctx.model})", "timeout", "None")
    except UpstreamError as exc:
        failure = ProxyError(502, f"Upstream model server broke off the stream: {dep.api_base} (model={ctx.model}): {type(exc).__name__}",
                             "upstream_error", "None")
    if failure is not None:
        # Headers are sent: report the error in the API's own event, and charge nothing for an incomplete answer.
        proxy.router.report_failure(dep, str(failure.status), failure.message)
        metrics.failure(ctx.caller, ctx.model, ctx.route, failure.status)
        _record(proxy, ctx, dep, 0, 0, 0.0, "failure")
        if not client_gone:
            try:
                await resp.write(conv.error(failure.status, failure.message))
                await resp.write_eof()
            except (ConnectionResetError, aiohttp.ClientConnectionResetError):
                pass
        return resp
    tail = conv.close() if bridge else b""
    if (buf or tail) and not client_gone:
        try:
            await resp.write((conv.feed(buf) if buf.strip() else b"") + tail)
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            client_gone = True
    if conv.seen_usage:
        prompt, completion = conv.tokens()
    else:  # the server sent no usage: estimate rather than charge nothing, as for chat streams
        prompt, completion = estimate_tokens(call.body, conv.chars)
        log.info("upstream %s sent no usage for a %s stream; estimated %s prompt and %s completion tokens", dep.api_base, call.api.name,
                 prompt, completion)
    account(proxy, ctx, call, prompt, completion)
    if not client_gone:
        try:
            await resp.write_eof()
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass
    return resp


async def stored_response(request: web.Request) -> web.StreamResponse:
    """``GET /v1/responses/{id}`` and ``POST .../cancel``: to the deployment that created the response."""
    proxy = proxy_of(request)
    entry = request["litemaas_caller"]
    public = request.match_info["response_id"]
    cancel = request.path.endswith("/cancel")
    found = decode_response_id(public)
    dep = proxy.router.by_id.get(found[0]) if found else None
    if found is None or found[1] != _token(entry)[:16] or dep is None or not may_use_model(entry, dep.model_name, proxy.router):
        why = ("it was not stored: responses of a model whose Responses API is translated to chat completions are not kept"
               if found is None and public.startswith("resp_") else "it does not exist or was created with another key")
        raise ProxyError(404, f"Response with id '{public}' not found: {why}.", "invalid_request_error", "response_id")
    check_key_state(proxy, entry, time.time())
    if str(request.query.get("stream", "")).lower() in ("true", "1"):
        raise ProxyError(400, "Streaming a stored response again (stream=true) is not relayed; retrieve it without stream", "invalid_request_error",
                         "stream")
    url = upstream_url(dep, f"responses/{found[2]}" + ("/cancel" if cancel else ""))
    if request.query_string:
        url += "?" + request.query_string
    try:
        status, content = await proxy.upstream.send("POST" if cancel else "GET", url, b"", dep.header_bytes, dep.timeout or proxy.settings.request_timeout)
    except (UpstreamError, UpstreamTimeout) as exc:
        raise ProxyError(502, f"Upstream model server connection failed: {dep.api_base} (model={dep.model_name}): {exc}", "upstream_error", "None")
    if status >= 400:
        raise upstream_error(status, content, dep)
    return web.Response(body=content.replace(found[2].encode(), public.encode()), content_type="application/json")


async def responses(request: web.Request) -> web.StreamResponse:
    return await serve(request, RESPONSES)


async def messages(request: web.Request) -> web.StreamResponse:
    return await serve(request, MESSAGES)


async def count_tokens(request: web.Request) -> web.StreamResponse:
    return await serve(request, COUNT_TOKENS)


async def transcriptions(request: web.Request) -> web.StreamResponse:
    return await serve(request, TRANSCRIPTION)


async def translations(request: web.Request) -> web.StreamResponse:
    return await serve(request, TRANSLATION)


async def rerank(request: web.Request) -> web.StreamResponse:
    return await serve(request, RERANK)


async def score(request: web.Request) -> web.StreamResponse:
    return await serve(request, SCORE)


async def cohere_embed(request: web.Request) -> web.StreamResponse:
    return await serve(request, COHERE_EMBED)


async def tokenize(request: web.Request) -> web.StreamResponse:
    return await serve(request, TOKENIZE)


async def detokenize(request: web.Request) -> web.StreamResponse:
    return await serve(request, DETOKENIZE)


# The shared relay's description of each API (api/relay.py): the upstream request and the answer come from the hooks.
RELAYED = {api.name: LlmApi(api.upstream, api.call_type, _checked_in_serve, request_for=partial(request_for, api), answer=partial(answer, api))
           for api in (RESPONSES, MESSAGES, COUNT_TOKENS, TRANSCRIPTION, TRANSLATION, RERANK, SCORE, COHERE_EMBED, TOKENIZE, DETOKENIZE)}

ROUTES = [
    Route("POST", "/v1/responses", responses, KEY),
    Route("POST", "/responses", responses, KEY),
    Route("GET", "/v1/responses/{response_id}", stored_response, KEY),
    Route("POST", "/v1/responses/{response_id}/cancel", stored_response, KEY),
    Route("POST", "/v1/messages", messages, KEY, errors="anthropic"),
    Route("POST", "/v1/messages/count_tokens", count_tokens, KEY, errors="anthropic"),
    Route("POST", "/v1/audio/transcriptions", transcriptions, KEY),
    Route("POST", "/v1/audio/translations", translations, KEY),
    Route("POST", "/rerank", rerank, KEY),
    Route("POST", "/v1/rerank", rerank, KEY),
    Route("POST", "/v2/rerank", rerank, KEY),
    Route("POST", "/score", score, KEY),
    Route("POST", "/v1/score", score, KEY),
    Route("POST", "/v2/embed", cohere_embed, KEY),
    Route("POST", "/tokenize", tokenize, KEY),
    Route("POST", "/detokenize", detokenize, KEY),
]
