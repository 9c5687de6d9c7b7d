"""Data plane: OpenAI-compatible routes relayed to the model deployments, with enforcement and spend."""

from __future__ import annotations

import logging
import time
from datetime import timezone

import aiohttp
import orjson
from aiohttp import web

from litemaas_proxy import metrics
from litemaas_proxy.api import read_body_bytes
from litemaas_proxy.api.checks import check_key_state, check_model_access, invalid_field, may_use_model, validate_llm_body
from litemaas_proxy.api.context import RequestContext, check_limits, record_spend, release_limits
from litemaas_proxy.api.routes import KEY, Route
from litemaas_proxy.auth import MASTER, hash_token
from litemaas_proxy.errors import ProxyError, json_response
from litemaas_proxy.routing import attempt_headers
from litemaas_proxy.spend import compute_cost
from litemaas_proxy.upstream import UpstreamError, UpstreamTimeout

log = logging.getLogger("litemaas_proxy.data")
UTC = timezone.utc


def _event_end(buf: bytes) -> int:
    """End (exclusive) of the first complete SSE event in ``buf``, or -1. Servers end events with a blank line
    written as ``\n\n`` or ``\r\n\r\n`` (e.g. sse-starlette)."""
    lf = buf.find(b"\n\n")
    crlf = buf.find(b"\r\n\r\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf + 4
    return lf + 2 if lf >= 0 else -1


def _content_chars(event: bytes) -> int:
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


def _estimate_prompt_tokens(body: dict) -> int:
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
    return max(1, (chars + 3) // 4)


def _upstream_error(status: int, body: bytes, dep) -> ProxyError:
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


def routes(proxy) -> list:
    """The data-plane routes (any valid key), as handlers bound to this proxy."""
    router = proxy.router
    settings = proxy.settings
    master_token = hash_token(settings.master_key) if settings.master_key else ""

    def record(ctx: RequestContext, dep, prompt: int, completion: int, cost: float, status: str) -> None:
        body = ctx.body
        end_user = body.get("user") if isinstance(body.get("user"), str) else None
        record_spend(proxy, ctx, master_token, dep, prompt, completion, cost, status, {"status": status}, end_user)

    async def llm(request: web.Request, upstream_path: str, call_type: str) -> web.StreamResponse:
        ctx = RequestContext(request, call_type, upstream_path)
        entry = ctx.caller
        raw = await read_body_bytes(request)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ProxyError(400, f"Invalid JSON payload: {exc}", "invalid_request_error", "None")
        if not isinstance(body, dict):
            raise ProxyError(400, f"Invalid JSON payload: expected an object, got {type(body).__name__}", "invalid_request_error", "None")
        model = body.get("model")
        if model is None or model == "":
            raise ProxyError(400, "Invalid request: 'model' is required", "invalid_request_error", "model")
        if not isinstance(model, str):
            raise invalid_field("model", "a string (a model name from /v1/models)", model)
        request["litemaas_model"] = ctx.model = model
        ctx.body = body
        validate_llm_body(body, call_type)
        check_key_state(proxy, entry, time.time())
        check_model_access(entry, model, router)
        guard = proxy.guardrails.for_request(entry)
        if guard is not None:
            guard.pre_call(body, model, entry, request.path)
            if guard.post:
                ctx.guard = guard
        deps = router.candidates(model)
        if not deps:
            if model in proxy.unusable_models:
                raise ProxyError(503, f"{request.path}: {proxy.unusable_models[model]}", "None", "model")
            raise ProxyError(400, f"{request.path}: Invalid model name passed in model={model}. Call `/v1/models` to view available models for your key.",
                             "None", "model")
        await check_limits(proxy, ctx)
        if body.get("stream"):
            ctx.stream = True
            so = body.get("stream_options")
            ctx.wants_usage = isinstance(so, dict) and bool(so.get("include_usage"))
            body["stream_options"] = dict(so or {}, include_usage=True) if isinstance(so, dict) or so is None else {"include_usage": True}
        try:
            return await call_upstream(ctx, deps)
        finally:
            release_limits(proxy, ctx)

    async def call_upstream(ctx: RequestContext, deps: list) -> web.StreamResponse:
        """Try the deployments of the model in the router's order (retries, fallbacks) until one answers."""
        model, body = ctx.model, ctx.body
        last_error = None
        tried = 0
        for dep in router.plan(model, deps, settings.num_retries):
            if tried:
                ctx.limit_headers = attempt_headers(ctx.limit_headers, model, dep, tried)
            tried += 1
            body["model"] = dep.upstream_model
            payload = orjson.dumps(body)
            timeout = dep.timeout or settings.request_timeout
            url = f"{dep.api_base}/{ctx.upstream_path}"
            router.acquire(dep)
            try:
                upstream = await proxy.upstream.post(url, payload, dep.header_bytes, timeout)
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
                    last_error = _upstream_error(upstream.status, err_body, dep)
                    if upstream.status >= 500:
                        router.report_failure(dep, str(upstream.status), last_error.message)
                        continue
                    break
                router.report_success(dep, model)
                ctx.deployment = dep
                if ctx.stream:
                    return await relay_stream(ctx, upstream)
                return await relay_json(ctx, upstream)
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
            record(ctx, deps[0], 0, 0, 0.0, "failure")
        raise last_error

    def common_headers(ctx: RequestContext, cost: float) -> dict:
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

    def account(ctx: RequestContext, usage) -> float:
        """Cost and spend record of a successful response; sets the tokens the limiter counts."""
        dep = ctx.deployment
        prompt = completion = 0
        if isinstance(usage, dict):
            prompt = int(usage.get("prompt_tokens") or 0)
            completion = int(usage.get("completion_tokens") or 0)
            if not prompt and not completion and usage.get("total_tokens"):
                prompt = int(usage["total_tokens"])
        cost = compute_cost(dep, prompt, completion)
        record(ctx, dep, prompt, completion, cost, "success")
        metrics.success(ctx.caller, ctx.model, ctx.route, prompt, completion, cost, ctx.elapsed())
        ctx.tokens = prompt + completion
        return cost

    async def relay_json(ctx: RequestContext, upstream) -> web.Response:
        dep = ctx.deployment
        content = await upstream.read()
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise ProxyError(502, f"Upstream model server returned invalid JSON: {dep.api_base} (model={ctx.model})", "upstream_error", "None")
        usage = data.get("usage") if isinstance(data, dict) else None
        guard = ctx.guard if proxy.guardrails.post_possible else None
        if guard is not None:
            content = guard.mask_json(data, content)
        cost = account(ctx, usage)
        return web.Response(body=content, content_type="application/json", headers=common_headers(ctx, cost))

    async def relay_stream(ctx: RequestContext, upstream) -> web.StreamResponse:
        request, dep, model, body, wants_usage = ctx.request, ctx.deployment, ctx.model, ctx.body, ctx.wants_usage
        headers = common_headers(ctx, 0.0)
        headers.pop("x-litellm-response-cost", None)
        headers["Cache-Control"] = "no-cache"
        headers["Content-Type"] = "text/event-stream"
        resp = web.StreamResponse(status=200, headers=headers)
        await resp.prepare(request)
        usage = None
        streamed_chars = 0
        buf = b""
        client_gone = False
        failure = None
        guard = ctx.guard if proxy.guardrails.post_possible else None
        first = True
        try:
            async for chunk in upstream.iter_chunks():
                if first:
                    first = False
                    metrics.first_token(model, ctx.elapsed())
                buf += chunk
                out = []
                while True:
                    end = _event_end(buf)
                    if end < 0:
                        break
                    event = buf[:end]
                    buf = buf[end:]
                    if usage is None and (b'"content"' in event or b'"text"' in event):
                        streamed_chars += _content_chars(event)
                    if b'"usage"' in event:
                        keep, found = _inspect_usage(event, wants_usage)
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
                    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
                        client_gone = True
                        upstream.close()
                        break
        except UpstreamTimeout:
            failure = ProxyError(504, f"Upstream model server timed out during the stream: {dep.api_base} (model={model})", "timeout", "None")
        except UpstreamError as exc:
            failure = ProxyError(502, f"Upstream model server broke off the stream: {dep.api_base} (model={model}): {type(exc).__name__}",
                                 "upstream_error", "None")
        if failure is not None:
            # Headers are sent already: report the error in-band, charge nothing for an incomplete stream.
            router.report_failure(dep, str(failure.status), failure.message)
            metrics.failure(ctx.caller, model, ctx.route, failure.status)
            record(ctx, dep, 0, 0, 0.0, "failure")
            if not client_gone:
                try:
                    await resp.write(b"data: " + failure.body() + b"\n\n")
                    await resp.write_eof()
                except (ConnectionResetError, aiohttp.ClientConnectionResetError):
                    pass
            return resp
        if buf and not client_gone:
            try:
                await resp.write(buf)
            except (ConnectionResetError, aiohttp.ClientConnectionResetError):
                client_gone = True
        if usage is None:
            # The upstream sent no usage although asked: estimate (~4 characters per token) rather than charge nothing.
            usage = {"prompt_tokens": _estimate_prompt_tokens(body), "completion_tokens": (streamed_chars + 3) // 4}
            log.info("upstream %s sent no usage for a stream; estimated %s", dep.api_base, usage)
        account(ctx, usage)
        if not client_gone:
            try:
                await resp.write_eof()
            except (ConnectionResetError, aiohttp.ClientConnectionResetError):
                pass
        return resp

    def _inspect_usage(event: bytes, wants_usage: bool):
        """Return (forward?, usage) for one SSE event that mentions usage."""
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

    async def chat(request):
        return await llm(request, "chat/completions", "acompletion")

    async def completions(request):
        return await llm(request, "completions", "atext_completion")

    async def embeddings(request):
        return await llm(request, "embeddings", "aembedding")

    async def list_models(request):
        entry = request["litemaas_caller"]
        names = [n for n in router.model_names() if may_use_model(entry, n, router)]
        return json_response({"data": [{"id": n, "object": "model", "created": 1677610602, "owned_by": "openai"} for n in names], "object": "list"})

    async def get_model(request):
        entry = request["litemaas_caller"]
        name = request.match_info["model_id"]
        if name not in router.groups or not may_use_model(entry, name, router):
            raise ProxyError(404, f"The model `{name}` does not exist", "not_found_error", "model")
        return json_response({"id": name, "object": "model", "created": 1677610602, "owned_by": "openai"})

    out = []
    for prefix in ("/v1", "", "/openai/deployments/{deployment}"):
        out.append(Route("POST", prefix + "/chat/completions", chat, KEY))
        out.append(Route("POST", prefix + "/completions", completions, KEY))
        out.append(Route("POST", prefix + "/embeddings", embeddings, KEY))
    out.append(Route("POST", "/engines/{engine}/chat/completions", chat, KEY))
    out.append(Route("GET", "/v1/models", list_models, KEY))
    out.append(Route("GET", "/models", list_models, KEY))
    out.append(Route("GET", "/v1/models/{model_id:.+}", get_model, KEY))
    out.append(Route("GET", "/models/{model_id:.+}", get_model, KEY))
    return out
