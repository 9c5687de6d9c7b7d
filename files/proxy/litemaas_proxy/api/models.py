"""Model management (LiteLLM's model_management_endpoints): /model/new, update, delete, info; /model_group/info.

Models added here live in the database with their ``litellm_params`` sealed (``sealed.py``); models of the
config file cannot be changed through the API.
"""

from __future__ import annotations

import uuid
from typing import Optional

import asyncpg
from aiohttp import web

from litemaas_proxy.api.checks import may_use_model
from litemaas_proxy.api.common import caller, caller_id, pool, proxy_of, read_body
from litemaas_proxy.api.routes import ADMIN, KEY, Route
from litemaas_proxy.errors import bad_request, json_response, not_found, validation_error
from litemaas_proxy.queries import models as q
from litemaas_proxy.sealed import SealedValueError


def normalise_model(proxy, body: dict, existing: Optional[dict] = None) -> tuple:
    params = body.get("litellm_params")
    info = body.get("model_info")
    if params is not None and not isinstance(params, dict):
        raise bad_request("litellm_params must be an object", "litellm_params")
    if info is not None and not isinstance(info, dict):
        raise bad_request("model_info must be an object", "model_info")
    given = {k for k, v in (params or {}).items() if v is not None}
    stored = {k: v for k, v in ((existing or {}).get("litellm_params") or {}).items() if k not in given}
    try:
        merged_params = proxy.sealer.open(stored, (existing or {}).get("model_name"))
    except SealedValueError as exc:  # never sealed again: the stored value stays as it is until replaced
        raise bad_request(str(exc), "litellm_params")
    merged_params.update({k: v for k, v in (params or {}).items() if v is not None})
    merged_info = dict((existing or {}).get("model_info") or {})
    merged_info.update({k: v for k, v in (info or {}).items() if v is not None})
    if not merged_params.get("model") or not isinstance(merged_params.get("model"), str):
        raise bad_request("litellm_params.model is required (e.g. 'openai/<served-model-name>')", "litellm_params")
    for name in ("input_cost_per_token", "output_cost_per_token", "rpm", "tpm", "timeout"):
        if merged_params.get(name) is not None:
            try:
                if isinstance(merged_params[name], bool):
                    raise TypeError(name)
                val = float(merged_params[name])
            except (TypeError, ValueError):
                raise bad_request(f"litellm_params.{name} must be a number", "litellm_params")
            if name in ("rpm", "tpm") and val != int(val):
                raise bad_request(f"litellm_params.{name} must be a whole number", "litellm_params")
            if val < 0:
                raise bad_request(f"litellm_params.{name} cannot be negative", "litellm_params")
    for name in ("api_base", "api_key", "custom_llm_provider", "passthrough_prefix"):
        val = merged_params.get(name)
        if val is not None and (not isinstance(val, str) or any(ord(c) < 32 or ord(c) == 127 for c in val)):
            raise bad_request(f"litellm_params.{name} must be a string without control characters", "litellm_params")
    api_key = merged_params.get("api_key")
    if api_key is not None and not all(32 <= ord(c) < 127 for c in api_key):
        raise bad_request("litellm_params.api_key must be printable ASCII (it is sent in an HTTP header)", "litellm_params")
    for name in ("mode", "base_model", "passthrough_prefix"):
        val = merged_info.get(name)
        if val is not None and not isinstance(val, str):
            raise bad_request(f"model_info.{name} must be a string", "model_info")
    groups = merged_info.get("access_groups")
    if groups is not None and not (isinstance(groups, list) and all(isinstance(g, str) for g in groups)):
        raise bad_request("model_info.access_groups must be a list of strings", "model_info")
    if "id" in merged_info and (not isinstance(merged_info["id"], str) or not merged_info["id"]):
        raise bad_request("model_info.id must be a non-empty string", "model_info")
    for name in ("input_cost_per_token", "output_cost_per_token"):
        if name in merged_params:
            merged_info[name] = merged_params[name]
    merged_info["db_model"] = True
    return merged_params, merged_info


def model_row_out(proxy, row: dict) -> dict:
    out = dict(row)
    out["litellm_params"] = {k: v for k, v in proxy.sealer.open(row.get("litellm_params") or {}).items() if k != "api_key"}
    info = dict(row.get("model_info") or {})
    info["id"] = row["model_id"]
    out["model_info"] = info
    return out


async def model_changed(proxy) -> None:
    await proxy.reload_models()
    await proxy.publish("models:")


async def model_new(request: web.Request) -> web.Response:
    proxy = proxy_of(request)
    body = await read_body(request)
    name = body.get("model_name")
    if not name or not isinstance(name, str):
        raise bad_request("model_name is required", "model_name")
    params, info = normalise_model(proxy, body)
    model_id = str(info.get("id") or uuid.uuid4())
    info["id"] = model_id
    if model_id in proxy.router.config_ids:
        raise bad_request(f"Model id {model_id} is defined in the config file", "model_info")
    me = caller_id(request, caller(request))
    async with pool(proxy).acquire() as conn:
        try:
            row = await q.insert(conn, {"model_id": model_id, "model_name": name, "litellm_params": proxy.sealer.seal(params), "model_info": info,
                                        "created_by": me, "updated_by": me})
        except asyncpg.UniqueViolationError:
            raise bad_request(f"Model with id={model_id} already exists", "model_info")
    await model_changed(proxy)
    return json_response(model_row_out(proxy, row))


async def update_model(request: web.Request, model_id, body: dict) -> web.Response:
    proxy = proxy_of(request)
    if not model_id:
        raise bad_request("model_info.id is required", "model_info")
    if not isinstance(model_id, str):
        raise bad_request(f"model_info.id must be a string. Received: {model_id!r}", "model_info")
    if model_id in proxy.router.config_ids:
        raise bad_request("Can't edit model. Model in config. Store model in db via /model/new. to edit.", "model_info")
    async with pool(proxy).acquire() as conn:
        async with conn.transaction():
            existing = await q.get_for_update(conn, model_id)
            if existing is None:
                raise not_found(f"Model not found, passed model_id={model_id}", "model_id")
            params, info = normalise_model(proxy, body, dict(existing))
            info["id"] = model_id
            values = {"litellm_params": proxy.sealer.seal(params), "model_info": info, "updated_by": caller_id(request, caller(request))}
            if body.get("model_name"):
                values["model_name"] = str(body["model_name"])
            row = await q.update(conn, model_id, values)
    await model_changed(proxy)
    return json_response(model_row_out(proxy, row))


async def model_patch(request: web.Request) -> web.Response:
    body = await read_body(request)
    return await update_model(request, request.match_info["model_id"], body)


async def model_update(request: web.Request) -> web.Response:
    body = await read_body(request)
    info = body.get("model_info") or {}
    return await update_model(request, info.get("id") if isinstance(info, dict) else None, body)


async def model_delete(request: web.Request) -> web.Response:
    proxy = proxy_of(request)
    body = await read_body(request)
    model_id = body.get("id")
    if not model_id:
        raise validation_error(["body", "id"], "Field required", body, "missing")
    if not isinstance(model_id, str):
        raise bad_request(f"id must be a string. Received: {model_id!r}", "id")
    if model_id in proxy.router.config_ids:
        raise bad_request(f"Model with id={model_id} is defined in the config file and cannot be deleted through the API", "id")
    if not await q.delete(pool(proxy), str(model_id)):
        raise bad_request(f"Model with id={model_id} not found in db", "id")
    await model_changed(proxy)
    return json_response({"message": f"Model: {model_id} deleted successfully"})


async def model_info(request: web.Request) -> web.Response:
    """The deployments of the models the caller may use (any key; the master key sees all)."""
    router = proxy_of(request).router
    entry = caller(request)
    wanted = request.query.get("litellm_model_id")
    out = []
    for name, deps in router.groups.items():
        if not may_use_model(entry, name, router):
            continue
        for dep in deps:
            if wanted and dep.id != wanted:
                continue
            out.append(dep.as_model_info())
    if wanted and not out:
        raise bad_request(f"Model id = {wanted} not found on litellm proxy", "litellm_model_id")
    return json_response({"data": out})


async def model_group_info(request: web.Request) -> web.Response:
    router = proxy_of(request).router
    entry = caller(request)
    out = []
    for name, deps in router.groups.items():
        if not may_use_model(entry, name, router):
            continue
        out.append({"model_group": name, "providers": sorted({d.provider for d in deps}), "mode": deps[0].mode,
                    "input_cost_per_token": deps[0].input_cost, "output_cost_per_token": deps[0].output_cost,
                    "tpm": deps[0].tpm, "rpm": deps[0].rpm})
    return json_response({"data": out})


ROUTES = [
    Route("POST", "/model/new", model_new, ADMIN),
    Route("POST", "/model/update", model_update, ADMIN),
    Route("PATCH", "/model/{model_id}/update", model_patch, ADMIN),
    Route("POST", "/model/delete", model_delete, ADMIN),
    Route("GET", "/model/info", model_info, KEY),
    Route("GET", "/v1/model/info", model_info, KEY),
    Route("GET", "/model_group/info", model_group_info, KEY),
]
