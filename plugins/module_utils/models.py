# -*- coding: utf-8 -*-
# Apache-2.0 (see LICENSE)
"""Pure logic of the ``model`` module: find deployments by model name + api_base, plan create/update/delete."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible_collections.rhpds.litemaas.plugins.module_utils.diffs import redact, values_differ

SECRET_PARAMS = ("api_key", "aws_secret_access_key", "vertex_credentials", "client_secret")


def normalize_base(url):
    return (url or "").rstrip("/") or None


def matching_deployments(entries, model_name, api_base=None):
    """Deployments with this public name (and this upstream URL when given)."""
    out = []
    for entry in entries:
        if entry.get("model_name") != model_name:
            continue
        if api_base is not None and normalize_base((entry.get("litellm_params") or {}).get("api_base")) != normalize_base(api_base):
            continue
        out.append(entry)
    return out


def desired_params(model=None, api_base=None, extra=None):
    params = dict(extra or {})
    if model is not None:
        params["model"] = model
    if api_base is not None:
        params["api_base"] = api_base
    return params


def public_model(entry):
    """A deployment without secrets: model_name, id, litellm_params, model_info."""
    if not entry:
        return {}
    out = {
        "model_name": entry.get("model_name"),
        "id": (entry.get("model_info") or {}).get("id"),
        "litellm_params": redact(dict(entry.get("litellm_params") or {}), SECRET_PARAMS),
        "model_info": copy.deepcopy(entry.get("model_info") or {}),
    }
    return out


def plan_model(model_name, params, info, current, state="present", secret_params=None, update_secrets=False):
    """Decide what to do. ``params`` holds the comparable litellm_params (no secrets), ``secret_params``
    the secret ones (sent on create, and on update only with ``update_secrets``)."""
    secret_params = secret_params or {}
    if state == "absent":
        if not current:
            return {"action": "none", "before": None, "after": None, "body": None}
        return {"action": "delete", "before": public_model(current), "after": None, "body": None}
    if current is None:
        if not params.get("model"):
            raise ValueError("model (the upstream model, for example openai/granite-3-8b) is required to create model '%s'" % model_name)
        lp = dict(params)
        lp.update(secret_params)
        body = {"model_name": model_name, "litellm_params": lp, "model_info": dict(info or {})}
        after = {"model_name": model_name, "litellm_params": params, "model_info": dict(info or {})}
        return {"action": "create", "before": None, "after": public_model(after), "body": body}
    cur_params = current.get("litellm_params") or {}
    cur_info = current.get("model_info") or {}
    changed_params = dict((k, v) for k, v in params.items() if values_differ(v, cur_params.get(k)))
    changed_info = dict((k, v) for k, v in (info or {}).items() if values_differ(v, cur_info.get(k)))
    body = {}
    if changed_params or (update_secrets and secret_params):
        lp = dict(changed_params)
        if update_secrets:
            lp.update(secret_params)
        body["litellm_params"] = lp
    if changed_info:
        body["model_info"] = changed_info
    after = copy.deepcopy(current)
    after.setdefault("litellm_params", {}).update(changed_params)
    after.setdefault("model_info", {}).update(changed_info)
    return {"action": "update" if body else "none", "before": public_model(current), "after": public_model(after), "body": body}
