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

import logging
import time
from functools import partial
from typing import Optional

import orjson
from aiohttp import web

from litemaas_proxy import metrics
from litemaas_proxy.api import read_body_bytes
from litemaas_proxy.api.checks import check_key_state, may_use_model, validate_llm_body
from litemaas_proxy.api.common import proxy_of
from litemaas_proxy.api.context import RequestContext, check_limits, record_spend, release_limits
from litemaas_proxy.api.data import admit, read_json_body, take_model
from litemaas_proxy.api.model_api_streams import BridgeStream, NativeStream, estimate_tokens, split_events
from litemaas_proxy.api.model_api_wire import (
    COHERE_EMBED,
    COUNT_TOKENS,
    DETOKENIZE,
    MESSAGES,
    RERANK,
    RESPONSES,
    SCORE,
    STREAMED,
    TOKENIZE,
    TRANSCRIPTION,
    TRANSLATION,
    Api,
    Call,
    as_int,
    bridged,
    check_api_body,
    decode_response_id,
    encode_response_id,
    key_mark,
    payload_for,
    price,
    read_form,
    search_units,
    upstream_url,
    usage_tokens,
)
from litemaas_proxy.api.relay import LlmApi, call_upstream, common_headers, upstream_error
from litemaas_proxy.api.routes import KEY, Route
from litemaas_proxy.api.sse import CLIENT_GONE, end_failed_stream, open_stream, stream_failure
from litemaas_proxy.errors import ProxyError
from litemaas_proxy.translate import messages as messages_bridge
from litemaas_proxy.translate import responses as responses_bridge
from litemaas_proxy.upstream import UpstreamError, UpstreamTimeout

log = logging.getLogger("litemaas_proxy.model_apis")


# ---- the handlers -------------------------------------------------------------------------------------------------

async def serve(request: web.Request, api: Api) -> web.StreamResponse:
    proxy = proxy_of(request)
    ctx = RequestContext(request, api.call_type, api.upstream)
    entry = ctx.caller
    call = Call(api)
    if api.form:
        read_form(call, await read_body_bytes(request), request.headers.get("Content-Type", ""))
    else:
        call.body = await read_json_body(request)
    body = call.body
    take_model(request, ctx, body, body.get("model"))
    if not api.form:
        check_api_body(api, body)
        validate_llm_body(body, api.name)  # the optional fields shared with chat (types); the API's own fields above
    dummy, deps = admit(proxy, ctx, body, masks_output=False)
    if api is RESPONSES and body.get("previous_response_id") is not None:
        pinned = decode_response_id(body["previous_response_id"])
        if pinned is not None and pinned[1] == key_mark(entry)[:16]:
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
            data = {"input_tokens": as_int((data.get("usage") or {}).get("prompt_tokens"))}
        content = orjson.dumps(data)
        prompt, completion = usage_tokens(api, data)
    else:
        prompt, completion = usage_tokens(api, data)
        if api is RESPONSES and isinstance(data, dict) and isinstance(data.get("id"), str):
            content = content.replace(data["id"].encode(), encode_response_id(dep.id, key_mark(ctx.caller), data["id"]).encode())
    seconds = None
    if api.form:
        usage = data.get("usage") if isinstance(data, dict) else None
        if isinstance(usage, dict) and usage.get("type") == "duration":
            seconds = float(usage.get("seconds") or 0.0)
        elif not (prompt or completion):
            seconds = call.audio_seconds or 0.0
    cost = account(proxy, ctx, call, prompt, completion, seconds)
    return web.Response(body=content, content_type="application/json", headers=common_headers(ctx, cost))


async def relay_stream(proxy, ctx: RequestContext, call: Call, upstream, bridge: bool) -> web.StreamResponse:
    dep, api = ctx.deployment, call.api
    resp = await open_stream(ctx, common_headers(ctx, 0.0))
    conv = BridgeStream(api, call.body) if bridge else NativeStream(api, dep.id, key_mark(ctx.caller))
    buf, first, client_gone, failure = b"", True, False, None
    try:
        async for chunk in upstream.iter_chunks():
            if first:
                first = False
                metrics.first_token(ctx.model, ctx.elapsed())
            events, buf = split_events(buf + chunk)
            out = b"".join(conv.feed(e) for e in events)
            if out and not client_gone:
                try:
                    await resp.write(out)
                except CLIENT_GONE:
                    client_gone = True
                    upstream.close()
                    break
    except (UpstreamTimeout, UpstreamError) as exc:
        failure = stream_failure(exc, dep, ctx.model)
    if failure is not None:  # the error in the API's own event
        return await end_failed_stream(proxy, ctx, resp, failure, conv.error(failure.status, failure.message), client_gone,
                                       partial(_record, proxy, ctx, dep, 0, 0, 0.0, "failure"))
    tail = conv.close() if bridge else b""
    if (buf or tail) and not client_gone:
        try:
            await resp.write((conv.feed(buf) if buf.strip() else b"") + tail)
        except CLIENT_GONE:
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
        except CLIENT_GONE:
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
    if found is None or found[1] != key_mark(entry)[:16] or dep is None or not may_use_model(entry, dep.model_name, proxy.router):
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
