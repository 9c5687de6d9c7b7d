"""Relaying one LLM request to the model deployments: the steps every relayed route shares.

A relayed route is described by an :class:`LlmApi` (its upstream path, spend-log call type, body checks, and how
to read the model and the token usage of its answers, whole or streamed); ``data.py`` holds the descriptions and
the handlers. The steps, each a module-level function taking its dependencies explicitly (the ``Proxy``, the
request's :class:`~litemaas_proxy.api.context.RequestContext`, the ``LlmApi``):

* :func:`call_upstream`: the deployments of the model in the router's order (retries, fallbacks) until one answers;
* :func:`relay_json` / :func:`relay_stream`: the answer back to the caller, whole or as server-sent events, with
  the usage read from it (asked for with ``stream_options.include_usage`` and estimated when a stream has none);
* :func:`account`: from the (prompt, completion) tokens: cost, spend record, metrics and the tokens the limiter counts;
* :func:`common_headers`: LiteLLM's ``x-litellm-*`` response headers.

``relay_json`` and ``relay_stream`` read the upstream answer through three members only (``read()``,
``iter_chunks()``, ``close()``, as :class:`litemaas_proxy.upstream.UpstreamResponse` has them), so a test can hand
them a stand-in object.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional

import orjson
from aiohttp import web

from litemaas_proxy import metrics
from litemaas_proxy.api.checks import validate_llm_body
from litemaas_proxy.api.context import RequestContext, record_spend
from litemaas_proxy.api.sse import CLIENT_GONE, end_failed_stream, open_stream, stream_failure
from litemaas_proxy.auth import MASTER
from litemaas_proxy.errors import ProxyError
from litemaas_proxy.routing import attempt_headers
from litemaas_proxy.spend import compute_cost
from litemaas_proxy.upstream import UpstreamError, UpstreamTimeout

log = logging.getLogger("litemaas_proxy.data")


# ---------------------------------------------------------------------------- reading OpenAI's wire format

def event_end(buf: bytes) -> int:
    """End (exclusive) of the first complete SSE event in ``buf``, or -1. Servers end events with a blank line
    written as ``\n\n`` or ``\r\n\r\n`` (e.g. sse-starlette)."""
    lf = buf.find(b"\n\n")
    crlf = buf.find(b"\r\n\r\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf + 4
    return lf + 2 if lf >= 0 else -1


def openai_model(body: dict):
    """The ``model`` field of an OpenAI request body (checked by the handler: a non-empty string)."""
    return body.get("model")


def openai_usage(data) -> Optional[dict]:
    """The ``usage`` object of an OpenAI JSON answer."""
    return data.get("usage") if isinstance(data, dict) else None


def openai_tokens(usage) -> tuple:
    """(prompt, completion) tokens of an OpenAI ``usage`` object; an answer with only ``total_tokens`` counts as prompt."""
    prompt = completion = 0
    if isinstance(usage, dict):
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        if not prompt and not completion and usage.get("total_tokens"):
            prompt = int(usage["total_tokens"])
    return prompt, completion


def openai_ask_stream_usage(body: dict) -> bool:
    """Ask the upstream for the usage of a stream (``stream_options.include_usage``); return whether the caller asked."""
    so = body.get("stream_options")
    wants = isinstance(so, dict) and bool(so.get("include_usage"))
    body["stream_options"] = dict(so or {}, include_usage=True) if isinstance(so, dict) or so is None else {"include_usage": True}
    return wants


def openai_event_usage(event: bytes, wants_usage: bool) -> tuple:
    """(forward?, usage or None) for one SSE event. The usage-only event the proxy asked for is kept from a caller
    that did not ask for it."""
    if b'"usage"' not in event:
        return True, None
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            payload = line[5:].strip()
            if payload == b"[DONE]":
                return True, None
            try:
                data = orjson.loads(payload)
            except orjson.JSONDecodeError:
                return True, None
            usage = data.get("usage") if isinstance(data, dict) else None
            if usage and not wants_usage and not data.get("choices"):
                return False, usage
            return True, usage or None
    return True, None


def openai_event_chars(event: bytes) -> int:
    """Characters of generated text in one SSE event (``choices[].delta.content`` or ``choices[].text``)."""
    if b'"content"' not in event and b'"text"' not in event:
        return 0
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            try:
                data = orjson.loads(line[5:].strip())
            except orjson.JSONDecodeError:
                return 0
            total = 0
            for choice in (data.get("choices") or []) if isinstance(data, dict) else []:
                delta = choice.get("delta") or {}
                text = delta.get("content") if isinstance(delta, dict) else None
                if text is None:
                    text = choice.get("text")
                if isinstance(text, str):
                    total += len(text)
            return total
    return 0


def openai_prompt_chars(body: dict) -> int:
    """Characters of the prompt (``messages[].content`` text and ``prompt``), for an estimate of its tokens."""
    chars = 0
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(p.get("text") or "") for p in content if isinstance(p, dict))
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        chars += len(prompt)
    return chars


def openai_error_event(exc: ProxyError) -> bytes:
    """A failure after the stream's headers were sent, reported in-band as LiteLLM does."""
    return b"data: " + exc.body() + b"\n\n"


@dataclass(frozen=True)
class LlmApi:
    """One relayed LLM API: what the shared relay needs to know of its wire format. The defaults are OpenAI's."""
    upstream_path: str  # appended to the deployment's api_base: "chat/completions"
    call_type: str  # LiteLLM's call type in the spend log: "acompletion"
    validate: Callable[[dict], None]  # refuse a body no model server could answer (ProxyError 400 naming the field)
    model_of: Callable[[dict], object] = openai_model  # the model asked for, from the JSON body
    usage_of: Callable[[object], Optional[dict]] = openai_usage  # parsed JSON answer -> usage object
    tokens_of: Callable[[object], tuple] = openai_tokens  # usage object -> (prompt, completion) tokens
    ask_stream_usage: Callable[[dict], bool] = openai_ask_stream_usage  # stream request body: ask for usage; did the caller?
    event_usage: Callable[[bytes, bool], tuple] = openai_event_usage  # one SSE event -> (forward it?, usage or None)
    event_chars: Callable[[bytes], int] = openai_event_chars  # characters of text in one SSE event (estimate when no usage)
    prompt_chars: Callable[[dict], int] = openai_prompt_chars  # characters of the prompt (estimate when no usage)
    error_event: Callable[[ProxyError], bytes] = openai_error_event  # a failure after the stream's headers were sent
    # An API whose upstream request or answer is not the JSON body relayed as it is (api/model_apis.py: translation to
    # chat completions, multipart uploads, response ids) gives these; None is the OpenAI relay above.
    request_for: Optional[Callable] = None  # (deployment, ctx) -> (url, body bytes, rendered headers) of the upstream request
    answer: Optional[Callable] = None  # async (proxy, ctx, upstream) -> the caller's response, JSON or stream


def openai_api(upstream_path: str, call_type: str) -> LlmApi:
    """An OpenAI-compatible route relayed to ``<api_base>/<upstream_path>``."""
    return LlmApi(upstream_path, call_type, partial(validate_llm_body, call_type=call_type))


# ---------------------------------------------------------------------------- the relay

def record(proxy, ctx: RequestContext, dep, prompt: int, completion: int, cost: float, status: str) -> None:
    """Queue the spend-log row of this request (the body's ``user`` is LiteLLM's end user)."""
    end_user = ctx.body.get("user")
    record_spend(proxy, ctx, dep, prompt, completion, cost, status, {"status": status}, end_user if isinstance(end_user, str) else None)


def upstream_error(status: int, body: bytes, dep) -> ProxyError:
    """The caller's error for an upstream error answer: its message kept; a 5xx becomes 502/503/504 naming the server."""
    message, etype, param = None, None, "None"
    try:
        data = orjson.loads(body)
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict):
            message, etype, param = err.get("message"), err.get("type"), err.get("param", "None")
        elif isinstance(err, str):
            message = err
        elif isinstance(data, dict) and data.get("detail"):
            message = str(data["detail"])
    except Exception:
        message = body[:500].decode("utf-8", "replace")
    message = message or f"HTTP {status}"
    if status >= 500:
        out = status if status in (502, 503, 504) else 502
        return ProxyError(out, f"Upstream model server error (HTTP {status}) from {dep.api_base} for model={dep.model_name}: {message}",
                          "upstream_error", "None")
    return ProxyError(status, message, etype or "invalid_request_error", param)


async def call_upstream(proxy, ctx: RequestContext, api: LlmApi, deps: list) -> web.StreamResponse:
    """Try the deployments of the model in the router's order (retries, fallbacks) until one answers."""
    router, settings = proxy.router, proxy.settings
    model, body = ctx.model, ctx.body
    last_error = None
    tried = 0
    for dep in router.plan(model, deps, settings.num_retries):
        if tried:
            ctx.limit_headers = attempt_headers(ctx.limit_headers, model, dep, tried)
        tried += 1
        if api.request_for is None:
            body["model"] = dep.upstream_model
            url, payload, headers = f"{dep.api_base}/{api.upstream_path}", orjson.dumps(body), dep.header_bytes
        else:
            url, payload, headers = api.request_for(dep, ctx)
        timeout = dep.timeout or settings.request_timeout
        router.acquire(dep)
        try:
            upstream = await proxy.upstream.post(url, payload, headers, timeout)
        except UpstreamTimeout:
            router.release(dep)
            router.report_failure(dep, "timeout")
            last_error = ProxyError(504, f"Upstream model server timed out after {timeout}s: {dep.api_base} (model={model})", "timeout", "None")
            continue
        except UpstreamError as exc:
            router.release(dep)
            router.report_failure(dep, "connection", str(exc))
            if exc.connect:
                last_error = ProxyError(503, f"Upstream model server unavailable: {dep.api_base} (model={model}): {exc}", "upstream_unavailable", "None")
            else:
                last_error = ProxyError(502, f"Upstream model server connection failed: {dep.api_base} (model={model}): {exc}", "upstream_error", "None")
            continue
        try:
            if upstream.status >= 400:
                err_body = await upstream.read()
                last_error = upstream_error(upstream.status, err_body, dep)
                if upstream.status >= 500:
                    router.report_failure(dep, str(upstream.status), last_error.message)
                    continue
                break
            router.report_success(dep, model)
            ctx.deployment = dep
            if api.answer is not None:
                return await api.answer(proxy, ctx, upstream)
            if ctx.stream:
                return await relay_stream(proxy, ctx, api, upstream)
            return await relay_json(proxy, ctx, api, upstream)
        except UpstreamTimeout:
            router.report_failure(dep, "timeout")
            last_error = ProxyError(504, f"Upstream model server timed out after {timeout}s: {dep.api_base} (model={model})", "timeout", "None")
            break
        except UpstreamError as exc:
            router.report_failure(dep, "connection", str(exc))
            last_error = ProxyError(502, f"Upstream model server connection failed: {dep.api_base} (model={model}): {exc}", "upstream_error", "None")
            break
        finally:
            router.release(dep)
    metrics.failure(ctx.caller, model, ctx.route, last_error.status)
    if last_error.status >= 500:
        record(proxy, ctx, deps[0], 0, 0, 0.0, "failure")
    raise last_error


def common_headers(ctx: RequestContext, cost: float) -> dict:
    """LiteLLM's response headers: deployment, cost, duration, the key's spend and limits, the rate-limit headers."""
    dep = ctx.deployment
    headers = {"x-litellm-model-id": dep.id, "x-litellm-model-group": dep.model_name, "x-litellm-response-cost": repr(cost),
               "x-litellm-response-duration-ms": f"{ctx.elapsed() * 1000:.3f}"}
    entry = ctx.caller
    if entry is not MASTER:
        key = entry.key
        headers["x-litellm-key-spend"] = str(key.get("spend") or 0.0)
        if key.get("max_budget") is not None:
            headers["x-litellm-key-max-budget"] = str(key["max_budget"])
        if key.get("tpm_limit") is not None:
            headers["x-litellm-key-tpm-limit"] = str(key["tpm_limit"])
        if key.get("rpm_limit") is not None:
            headers["x-litellm-key-rpm-limit"] = str(key["rpm_limit"])
    if ctx.limit_headers:
        headers.update(ctx.limit_headers)
    return headers


def account(proxy, ctx: RequestContext, prompt: int, completion: int) -> float:
    """Cost and spend record of a successful response; sets the tokens the limiter counts."""
    dep = ctx.deployment
    cost = compute_cost(dep, prompt, completion)
    record(proxy, ctx, dep, prompt, completion, cost, "success")
    metrics.success(ctx.caller, ctx.model, ctx.route, prompt, completion, cost, ctx.elapsed())
    ctx.tokens = prompt + completion
    return cost


async def relay_json(proxy, ctx: RequestContext, api: LlmApi, upstream) -> web.Response:
    """A whole JSON answer: read, usage accounted, masked by an output guardrail, sent with LiteLLM's headers."""
    dep = ctx.deployment
    content = await upstream.read()
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise ProxyError(502, f"Upstream model server returned invalid JSON: {dep.api_base} (model={ctx.model})", "upstream_error", "None")
    usage = api.usage_of(data)
    guard = ctx.guard if proxy.guardrails.post_possible else None
    if guard is not None:
        content = guard.mask_json(data, content)
    prompt, completion = api.tokens_of(usage)
    cost = account(proxy, ctx, prompt, completion)
    return web.Response(body=content, content_type="application/json", headers=common_headers(ctx, cost))


async def relay_stream(proxy, ctx: RequestContext, api: LlmApi, upstream) -> web.StreamResponse:
    """A stream of server-sent events, forwarded event by event as they complete; the usage is read from the events
    (estimated from the text when there is none); a failure after the headers is reported in-band and charged nothing."""
    dep, model, wants_usage = ctx.deployment, ctx.model, ctx.wants_usage
    resp = await open_stream(ctx, common_headers(ctx, 0.0))
    usage = None
    streamed_chars = 0
    buf = b""
    client_gone = False
    failure = None
    guard = ctx.guard if proxy.guardrails.post_possible else None
    event_usage, event_chars = api.event_usage, api.event_chars
    first = True
    try:
        async for chunk in upstream.iter_chunks():
            if first:
                first = False
                metrics.first_token(model, ctx.elapsed())
            buf += chunk
            out = []
            while True:
                end = event_end(buf)
                if end < 0:
                    break
                event = buf[:end]
                buf = buf[end:]
                if usage is None:
                    streamed_chars += event_chars(event)
                keep, found = event_usage(event, wants_usage)
                if found is not None:
                    usage = found
                if not keep:
                    continue
                out.append(event)
            if out and not client_gone:
                if guard is not None:
                    out = guard.mask_events(out)
                try:
                    await resp.write(b"".join(out))
                except CLIENT_GONE:
                    client_gone = True
                    upstream.close()
                    break
    except (UpstreamTimeout, UpstreamError) as exc:
        failure = stream_failure(exc, dep, model)
    if failure is not None:
        return await end_failed_stream(proxy, ctx, resp, failure, api.error_event(failure), client_gone,
                                       partial(record, proxy, ctx, dep, 0, 0, 0.0, "failure"))
    if buf and not client_gone:
        try:
            await resp.write(buf)
        except CLIENT_GONE:
            client_gone = True
    if usage is None:
        # The upstream sent no usage although asked: estimate (~4 characters per token) rather than charge nothing.
        prompt, completion = max(1, (api.prompt_chars(ctx.body) + 3) // 4), (streamed_chars + 3) // 4
        log.info("upstream %s sent no usage for a stream; estimated %s", dep.api_base, {"prompt_tokens": prompt, "completion_tokens": completion})
    else:
        prompt, completion = api.tokens_of(usage)
    account(proxy, ctx, prompt, completion)
    if not client_gone:
        try:
            await resp.write_eof()
        except CLIENT_GONE:
            pass
    return resp
