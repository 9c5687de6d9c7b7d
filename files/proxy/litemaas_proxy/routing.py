"""Deployments per public model name: round-robin with cooldown of failing deployments."""

from __future__ import annotations

import hashlib
import os
import time
from typing import Optional

import orjson

# LiteLLM provider prefixes whose upstream speaks the OpenAI API; the prefix is stripped before the call.
OPENAI_COMPATIBLE = {"openai", "hosted_vllm", "vllm", "openai_like", "custom_openai", "text-completion-openai", "docling", "ollama_chat",
                     "lm_studio", "llamafile", "xinference", "openvino"}
SECRET_PARAMS = ("api_key", "aws_secret_access_key", "vertex_credentials", "client_secret")
COST_FIELDS = ("input_cost_per_token", "output_cost_per_token")


def _resolve(value):
    if isinstance(value, str) and value.startswith("os.environ/"):
        return os.environ.get(value[len("os.environ/"):])
    return value


def _float(value, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def config_model_id(entry: dict) -> str:
    return hashlib.sha256(orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)).hexdigest()


class Deployment:
    __slots__ = ("id", "model_name", "upstream_model", "provider", "api_base", "api_key", "input_cost", "output_cost", "rpm", "tpm", "timeout",
                 "mode", "litellm_params", "model_info", "db_model", "headers", "created_at", "access_groups")

    def __init__(self, model_id: str, model_name: str, litellm_params: dict, model_info: dict, db_model: bool):
        self.id = model_id
        self.model_name = model_name
        self.litellm_params = dict(litellm_params or {})
        self.model_info = dict(model_info or {})
        self.db_model = db_model
        model = str(self.litellm_params.get("model") or model_name)
        provider, _, rest = model.partition("/")
        if rest and provider in OPENAI_COMPATIBLE:
            self.provider, self.upstream_model = provider, rest
        else:
            self.provider = self.litellm_params.get("custom_llm_provider") or "openai"
            self.upstream_model = model
        self.api_base = (str(_resolve(self.litellm_params.get("api_base")) or "https://api.openai.com/v1")).rstrip("/")
        self.api_key = _resolve(self.litellm_params.get("api_key"))
        self.input_cost = _float(self.litellm_params.get("input_cost_per_token", self.model_info.get("input_cost_per_token")))
        self.output_cost = _float(self.litellm_params.get("output_cost_per_token", self.model_info.get("output_cost_per_token")))
        self.rpm = self.litellm_params.get("rpm")
        self.tpm = self.litellm_params.get("tpm")
        timeout = self.litellm_params.get("timeout")
        self.timeout = _float(timeout, 0.0) or None
        self.mode = self.model_info.get("mode") or "chat"
        self.access_groups = list(self.model_info.get("access_groups") or [])
        self.headers = {"Content-Type": "application/json"}
        if self.api_key:
            self.headers["Authorization"] = f"Bearer {self.api_key}"

    def public_params(self) -> dict:
        out = {k: v for k, v in self.litellm_params.items() if k not in SECRET_PARAMS}
        out.setdefault("custom_llm_provider", self.provider)
        return out

    def info(self) -> dict:
        info = {
            "id": self.id,
            "db_model": self.db_model,
            "key": self.upstream_model,
            "litellm_provider": self.provider,
            "mode": self.mode,
            "input_cost_per_token": self.input_cost,
            "output_cost_per_token": self.output_cost,
            "max_tokens": None,
            "max_input_tokens": None,
            "max_output_tokens": None,
            "tpm": self.tpm,
            "rpm": self.rpm,
        }
        info.update(self.model_info)
        info["id"] = self.id
        info["db_model"] = self.db_model
        for name in COST_FIELDS:
            info[name] = getattr(self, "input_cost" if name.startswith("input") else "output_cost")
        return info

    def as_model_info(self) -> dict:
        return {"model_name": self.model_name, "litellm_params": self.public_params(), "model_info": self.info()}


class Router:
    def __init__(self, cooldown_time: float = 30.0, allowed_fails: int = 3):
        self.groups: dict = {}
        self.by_id: dict = {}
        self.config_ids: set = set()
        self.cooldown_time = cooldown_time
        self.allowed_fails = allowed_fails
        self._rr: dict = {}
        self._fails: dict = {}
        self._cool_until: dict = {}

    def set_deployments(self, config: list, db: list) -> None:
        groups: dict = {}
        by_id: dict = {}
        for dep in list(config) + list(db):
            groups.setdefault(dep.model_name, []).append(dep)
            by_id[dep.id] = dep
        self.groups = groups
        self.by_id = by_id
        self.config_ids = {d.id for d in config}

    def model_names(self) -> list:
        return list(self.groups)

    def access_groups(self) -> set:
        out = set()
        for deps in self.groups.values():
            for dep in deps:
                out.update(dep.access_groups)
        return out

    def models_in_group(self, group: str) -> list:
        return [name for name, deps in self.groups.items() if any(group in d.access_groups for d in deps)]

    def candidates(self, model_name: str) -> Optional[list]:
        """Deployments to try, in order: healthy ones round-robin, then cooling ones as a last resort."""
        deps = self.groups.get(model_name)
        if not deps:
            return None
        if len(deps) == 1:
            return deps
        n = self._rr.get(model_name, 0)
        self._rr[model_name] = n + 1
        start = n % len(deps)
        ordered = deps[start:] + deps[:start]
        now = time.monotonic()
        healthy = [d for d in ordered if self._cool_until.get(d.id, 0) <= now]
        cooling = [d for d in ordered if self._cool_until.get(d.id, 0) > now]
        return healthy + cooling

    def report_failure(self, dep: Deployment) -> None:
        fails = self._fails.get(dep.id, 0) + 1
        self._fails[dep.id] = fails
        if fails >= self.allowed_fails:
            self._cool_until[dep.id] = time.monotonic() + self.cooldown_time
            self._fails[dep.id] = 0

    def report_success(self, dep: Deployment) -> None:
        if self._fails.get(dep.id):
            self._fails[dep.id] = 0
