"""Data plane: OpenAI-compatible routes relayed to the model deployments, with enforcement and spend."""

from __future__ import annotations

import fnmatch
import logging
import time
from datetime import datetime, timezone

import aiohttp
import orjson
from aiohttp import web

from litemaas_proxy import metrics
from litemaas_proxy.api import read_body_bytes
from litemaas_proxy.api.context import RequestContext, check_limits, record_spend, release_limits
from litemaas_proxy.api.routes import KEY, Route
from litemaas_proxy.auth import MASTER, hash_token
from litemaas_proxy.errors import ProxyError, json_response
from litemaas_proxy.routing import attempt_headers
from litemaas_proxy.spend import compute_cost
from litemaas_proxy.upstream import UpstreamError, UpstreamTimeout
from litemaas_proxy.values import epoch

log = logging.getLogger("litemaas_proxy.data")
UTC = timezone.utc
SPECIAL_ALL = ("*", "all-proxy-models", "all-team-models")


def model_allowed(allowed: list, model: str, router) -> bool:
    if not allowed or model in allowed:
        return True
    for item in allowed:
        if item in SPECIAL_ALL:
            return True
        if "*" in item and fnmatch.fnmatchcase(model, item):
            return True
    deps = router.groups.get(model) or ()
    return any(g in allowed for d in deps for g in d.access_groups)


def may_use_model(entry, model: str, router) -> bool:
    """Whether a request by this key for ``model`` passes check_model_access (the listings show exactly those)."""
    try:
        check_model_access(entry, model, router)
    except ProxyError:
        return False
    return True


def check_model_access(entry, model: str, router) -> None:
    if entry is MASTER:
        return
    key = entry.key
    if not model_allowed(key.get("models") or [], model, router):
        raise ProxyError(401, f"key not allowed to access model. This key can only access models={key.get('models')}. Tried to access {model}",
                         "key_model_access_denied", "model")
    team = entry.team
    if team and not model_allowed(team.get("models") or [], model, router):
        raise ProxyError(401, f"Team not allowed to access model. Team={team['team_id']}, Model={model}. Allowed team models = {team.get('models')}",
                         "team_model_access_denied", "model")
    user = entry.user
    if user and not team:
        umodels = [m for m in (user.get("models") or []) if m != "no-default-models"]
        if umodels and not model_allowed(umodels, model, router):
            raise ProxyError(401, f"User not allowed to access model. User={user['user_id']}, Model={model}. Allowed user models = {umodels}",
                             "user_model_access_denied", "model")


def _spend_of(proxy, row: dict, kind: str, ident, mark: float, now: float) -> float:
    reset = row.get("budget_reset_at")
    if reset is not None:
        if epoch(reset) <= now:
            return max(0.0, proxy.spend.pending(kind, ident, mark))
    return float(row.get("spend") or 0.0) + proxy.spend.pending(kind, ident, mark)


def check_key_state(proxy, entry, now: float) -> None:
    """Blocked, expired and over-budget keys (and their teams/users) are refused before any upstream call."""
    if entry is MASTER:
        return
    key = entry.key
    if key.get("blocked"):
        raise ProxyError(401, "Authentication Error, Key is blocked. Update via `/key/unblock` if you're admin.", "auth_error", "None")
    team = entry.team
    if team and team.get("blocked"):
        raise ProxyError(401, f"Authentication Error, Team={team['team_id']} is blocked. Update via `/team/unblock` if your admin.", "auth_error", "None")
    if entry.expires_ts is not None and entry.expires_ts < now:
        exp = datetime.fromtimestamp(entry.expires_ts, UTC).isoformat()
        raise ProxyError(400, f"Authentication Error - Expired Key. Key Expiry time {exp} and current time {datetime.now(UTC).isoformat()}",
                         "expired_key", key.get("key_name") or "None")
    marks = entry.spend_marks or {}
    max_budget = key.get("max_budget")
    if max_budget is not None:
        spent = _spend_of(proxy, key, "k", entry.token, marks.get("k", 0.0), now)
        if spent >= max_budget:
            raise ProxyError(400, f"Budget has been exceeded! Current cost: {spent}, Max budget: {max_budget}", "budget_exceeded", None)
    if team and team.get("max_budget") is not None:
        spent = _spend_of(proxy, team, "t", team["team_id"], marks.get("t", 0.0), now)
        if spent > team["max_budget"]:
            raise ProxyError(400, f"Budget has been exceeded! Team={team['team_id']} Current cost: {spent}, Max budget: {team['max_budget']}",
                             "budget_exceeded", None)
    user = entry.user
    if user and user.get("max_budget") is not None:
        spent = _spend_of(proxy, user, "u", user["user_id"], marks.get("u", 0.0), now)
        if spent > user["max_budget"]:
            raise ProxyError(400, f"ExceededBudget: User={user['user_id']} over budget. Spend={spent}, Budget={user['max_budget']}",
                             "budget_exceeded", None)


def _invalid(name: str, expected: str, value) -> ProxyError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return ProxyError(400, f"Invalid request: '{name}' must be {expected}. Received: {shown}", "invalid_request_error", name)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _text_or_tokens(value) -> bool:
    """A string, a non-empty list of strings, of token ids, or of lists of token ids (OpenAI's prompt/input)."""
    if isinstance(value, str):
        return True
    if not isinstance(value, list) or not value:
        return False
    return (all(isinstance(v, str) for v in value) or all(_is_int(v) for v in value)
            or all(isinstance(v, list) and v and all(_is_int(t) for t in v) for v in value))


# Optional request fields checked before anything reaches a model server: name -> (test, expected).
_OPTIONAL_FIELDS = {
    "stream": (lambda v: isinstance(v, bool), "true or false"),
    "max_tokens": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "max_completion_tokens": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "n": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "seed": (_is_int, "an integer"),
    # Ranges are the model server's to check (they differ between servers); the types are not.
    "temperature": (_is_number, "a number"),
    "top_p": (_is_number, "a number"),
    "presence_penalty": (_is_number, "a number"),
    "frequency_penalty": (_is_number, "a number"),
    "stream_options": (lambda v: isinstance(v, dict), "an object"),
    "stop": (lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v)), "a string or a list of strings"),
    "user": (lambda v: isinstance(v, str), "a string"),
    "metadata": (lambda v: isinstance(v, dict), "an object"),
    "tools": (lambda v: isinstance(v, list) and all(isinstance(t, dict) for t in v), "a list of objects"),
    "tool_choice": (lambda v: isinstance(v, (str, dict)), "a string or an object"),
    "response_format": (lambda v: isinstance(v, dict), "an object"),
    "dimensions": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "encoding_format": (lambda v: v in ("float", "base64"), "'float' or 'base64'"),
}


def validate_llm_body(body: dict, call_type: str) -> None:
    """Refuse, with a 400 naming the field, a request no model server could answer (wrong types, missing fields)."""
    if call_type == "acompletion":
        messages = body.get("messages")
        if messages is None:
            raise ProxyError(400, "Invalid request: 'messages' is required", "invalid_request_error", "messages")
        if not isinstance(messages, list) or not messages:
            raise _invalid("messages", "a non-empty list of message objects", messages)
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                raise _invalid(f"messages[{i}]", "an object with 'role' and 'content'", message)
            if not isinstance(message.get("role"), str) or not message["role"]:
                raise _invalid(f"messages[{i}].role", "a string such as 'user'", message.get("role"))
            content = message.get("content")
            if content is not None and not isinstance(content, (str, list)):
                raise _invalid(f"messages[{i}].content", "a string or a list of content parts", content)
    elif call_type == "atext_completion":
        if body.get("prompt") is None:
            raise ProxyError(400, "Invalid request: 'prompt' is required", "invalid_request_error", "prompt")
        if not _text_or_tokens(body["prompt"]):
            raise _invalid("prompt", "a string, a non-empty list of strings or a list of token ids", body["prompt"])
    elif call_type == "aembedding":
        if body.get("input") is None:
            raise ProxyError(400, "Invalid request: 'input' is required", "invalid_request_error", "input")
        if not _text_or_tokens(body["input"]):
            raise _invalid("input", "a string, a non-empty list of strings or a list of token ids", body["input"])
    for name, (test, expected) in _OPTIONAL_FIELDS.items():
        value = body.get(name)
        if value is not None and not test(value):
            raise _invalid(name, expected, value)


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
            raise _invalid("model", "a string (a model name from /v1/models)", model)
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
