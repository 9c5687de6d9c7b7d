"""Data plane: OpenAI-compatible routes relayed to the model deployments, with enforcement and spend.

Handlers, found by name: :func:`chat_completions`, :func:`completions`, :func:`embeddings` (each one line: its
:class:`~litemaas_proxy.api.relay.LlmApi` handed to :func:`relay_llm`), :func:`list_models`, :func:`get_model`.
:func:`relay_llm` reads and checks the request (body, key state, model access, guardrails, limits) and hands it to
``relay.call_upstream``, which relays the answer (``relay.relay_json`` / ``relay.relay_stream``). ``ROUTES`` is
the module's route table (any valid key).

Adding a relayed route: describe it with an ``LlmApi`` (``openai_api(path, call_type)`` for an OpenAI-shaped one;
otherwise give the fields that differ: how to read the model, the usage of a JSON answer and of stream events,
the in-band stream error), write a one-line handler like :func:`chat_completions`, add its ``Route`` to
``ROUTES`` and its path to ``openapi.yaml``.
"""

from __future__ import annotations

import time

import orjson
from aiohttp import web

from litemaas_proxy.api import read_body_bytes
from litemaas_proxy.api.checks import check_key_state, check_model_access, invalid_field, may_use_model
from litemaas_proxy.api.common import proxy_of
from litemaas_proxy.api.context import RequestContext, check_limits, release_limits
from litemaas_proxy.api.relay import LlmApi, call_upstream, openai_api
from litemaas_proxy.api.routes import KEY, Route
from litemaas_proxy.errors import ProxyError, json_response

CHAT = openai_api("chat/completions", "acompletion")
COMPLETIONS = openai_api("completions", "atext_completion")
EMBEDDINGS = openai_api("embeddings", "aembedding")
MODEL_CREATED = 1677610602  # the fixed "created" LiteLLM reports for every model


async def read_json_body(request: web.Request) -> dict:
    """The request's JSON object (400 naming the problem otherwise)."""
    raw = await read_body_bytes(request)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProxyError(400, f"Invalid JSON payload: {exc}", "invalid_request_error", "None")
    if not isinstance(body, dict):
        raise ProxyError(400, f"Invalid JSON payload: expected an object, got {type(body).__name__}", "invalid_request_error", "None")
    return body


def take_model(request: web.Request, ctx: RequestContext, body: dict, model) -> str:
    """The request's model, which must be a non-empty string; noted on the request and its context with the body."""
    if model is None or model == "":
        raise ProxyError(400, "Invalid request: 'model' is required", "invalid_request_error", "model")
    if not isinstance(model, str):
        raise invalid_field("model", "a string (a model name from /v1/models)", model)
    request["litemaas_model"] = ctx.model = model
    ctx.body = body
    return model


def admit(proxy, ctx: RequestContext, body: dict, masks_output: bool = True) -> tuple:
    """The checks every relayed request passes after its body's own: the key's state and budget, its access to the
    model, the guardrails on the request, and the model's deployments. Returns (the key's guardrails or None, the
    deployments); 503 for a model whose parameters cannot be opened, 400 for one the router does not know. A route
    that cannot mask its answers (``masks_output=False``) refuses a key with output guardrails."""
    request, entry, model, router = ctx.request, ctx.caller, ctx.model, proxy.router
    check_key_state(proxy, entry, time.time())
    check_model_access(entry, model, router)
    guard = proxy.guardrails.for_request(entry)
    if guard is not None:
        guard.pre_call(body, model, entry, request.path)
        if guard.post and not masks_output:
            raise ProxyError(400, f"{request.path} cannot apply this key's output guardrails (they mask chat and text completions); "
                             "use /v1/chat/completions with this key", "guardrail_violation", "None")
    deps = router.candidates(model)
    if not deps:
        if model in proxy.unusable_models:
            raise ProxyError(503, f"{request.path}: {proxy.unusable_models[model]}", "None", "model")
        raise ProxyError(400, f"{request.path}: Invalid model name passed in model={model}. Call `/v1/models` to view available models for your key.",
                         "None", "model")
    return guard, deps


async def relay_llm(request: web.Request, api: LlmApi) -> web.StreamResponse:
    """One LLM request of any relayed API: read and check it, apply guardrails and limits, relay it."""
    proxy = proxy_of(request)
    ctx = RequestContext(request, api.call_type, api.upstream_path)
    body = await read_json_body(request)
    take_model(request, ctx, body, api.model_of(body))
    api.validate(body)
    guard, deps = admit(proxy, ctx, body)
    if guard is not None and guard.post:
        ctx.guard = guard
    await check_limits(proxy, ctx)
    if body.get("stream"):
        ctx.stream = True
        ctx.wants_usage = api.ask_stream_usage(body)
    try:
        return await call_upstream(proxy, ctx, api, deps)
    finally:
        release_limits(proxy, ctx)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/chat/completions`` (and its aliases): relayed to ``<api_base>/chat/completions``."""
    return await relay_llm(request, CHAT)


async def completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/completions``: relayed to ``<api_base>/completions``."""
    return await relay_llm(request, COMPLETIONS)


async def embeddings(request: web.Request) -> web.StreamResponse:
    """``POST /v1/embeddings``: relayed to ``<api_base>/embeddings``."""
    return await relay_llm(request, EMBEDDINGS)


def model_object(name: str) -> dict:
    return {"id": name, "object": "model", "created": MODEL_CREATED, "owned_by": "openai"}


async def list_models(request: web.Request) -> web.Response:
    """``GET /v1/models``: the models the caller's key may use."""
    router = proxy_of(request).router
    entry = request["litemaas_caller"]
    names = [n for n in router.model_names() if may_use_model(entry, n, router)]
    return json_response({"data": [model_object(n) for n in names], "object": "list"})


async def get_model(request: web.Request) -> web.Response:
    """``GET /v1/models/{model_id}``: one model, 404 when it does not exist or the key may not use it."""
    router = proxy_of(request).router
    entry = request["litemaas_caller"]
    name = request.match_info["model_id"]
    if name not in router.groups or not may_use_model(entry, name, router):
        raise ProxyError(404, f"The model `{name}` does not exist", "not_found_error", "model")
    return json_response(model_object(name))


ROUTES = [
    *(Route("POST", prefix + path, handler, KEY)
      for prefix in ("/v1", "", "/openai/deployments/{deployment}")
      for path, handler in (("/chat/completions", chat_completions), ("/completions", completions), ("/embeddings", embeddings))),
    Route("POST", "/engines/{engine}/chat/completions", chat_completions, KEY),
    Route("GET", "/v1/models", list_models, KEY),
    Route("GET", "/models", list_models, KEY),
    Route("GET", "/v1/models/{model_id:.+}", get_model, KEY),
    Route("GET", "/models/{model_id:.+}", get_model, KEY),
]
