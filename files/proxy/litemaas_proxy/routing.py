"""Deployments per public model name: load balancing, cooldown of failing deployments, bounded retries, fallbacks.

Several deployments may share one ``model_name``. For each request :meth:`Router.candidates` orders them
(``simple-shuffle``/round-robin by default, or ``least-busy`` = fewest requests in flight from this
process), healthy ones first and cooling ones last. :meth:`Router.plan` yields at most ``1 + num_retries``
distinct deployments of the group, then the same for each fallback group. Nothing is charged for a failed
attempt: spend is recorded only for the response that reaches the client, so a retry never double-charges.

A deployment that fails ``allowed_fails`` times in a row (connection errors, timeouts, HTTP 5xx) is cooled
down for ``cooldown_time`` seconds: it is tried only when no healthy deployment of its group is left, and
after the cooldown it is back in the rotation. Counters live on a shared :class:`DeploymentState` that
survives model reloads; ``/model/info`` shows them under ``model_info.health`` and ``/metrics`` renders them.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Optional

import orjson

from litemaas_proxy.upstream import render_headers

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


def passthrough_prefix_of(litellm_params: dict, model_info: dict, provider: str) -> Optional[str]:
    """The URL prefix a pass-through model serves (``/docling`` for Docling models), or None for LLM deployments."""
    prefix = litellm_params.get("passthrough_prefix") or model_info.get("passthrough_prefix")
    if not prefix and "docling" in (provider, litellm_params.get("custom_llm_provider")):
        prefix = "/docling"
    if not prefix or not isinstance(prefix, str):
        return None
    return "/" + prefix.strip("/")


class DeploymentState:
    """Health and traffic counters of one deployment (shared by the objects that one model id gets across reloads)."""

    __slots__ = ("in_flight", "requests", "successes", "failures", "consecutive_failures", "cool_until", "cooldowns", "errors", "last_error",
                 "last_error_at")

    def __init__(self):
        self.in_flight = 0
        self.requests = 0
        self.successes = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.cool_until = 0.0  # time.monotonic() until which the deployment is cooling down
        self.cooldowns = 0
        self.errors: dict = {}  # exception status ("503", "timeout", "connection") -> count
        self.last_error: Optional[str] = None
        self.last_error_at: Optional[float] = None

    def cooling(self, now: Optional[float] = None) -> bool:
        return self.cool_until > (time.monotonic() if now is None else now)

    def health(self) -> dict:
        remaining = max(0.0, self.cool_until - time.monotonic())
        return {
            "status": "cooldown" if remaining > 0 else "healthy",
            "cooldown_remaining_seconds": round(remaining, 3),
            "cooldowns": self.cooldowns,
            "consecutive_failures": self.consecutive_failures,
            "in_flight": self.in_flight,
            "requests": self.requests,
            "successes": self.successes,
            "failures": self.failures,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
        }


class Deployment:
    __slots__ = ("id", "model_name", "upstream_model", "provider", "api_base", "api_key", "input_cost", "output_cost", "rpm", "tpm", "timeout",
                 "mode", "litellm_params", "model_info", "db_model", "headers", "header_bytes", "created_at", "access_groups", "state", "passthrough_prefix",
                 "group_info")

    def __init__(self, model_id: str, model_name: str, litellm_params: dict, model_info: dict, db_model: bool):
        self.id = model_id
        self.model_name = model_name
        self.litellm_params = dict(litellm_params or {})
        self.model_info = dict(model_info or {})
        self.db_model = db_model
        model = str(self.litellm_params.get("model") or model_name)
        provider, dummy, rest = model.partition("/")
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
        self.header_bytes = render_headers(self.headers)
        self.state = DeploymentState()
        self.passthrough_prefix = passthrough_prefix_of(self.litellm_params, self.model_info, self.provider)
        self.group_info: dict = {}

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
        if self.passthrough_prefix:
            info["passthrough_prefix"] = self.passthrough_prefix
        info.update(self.group_info)
        info["health"] = self.state.health()
        return info

    def as_model_info(self) -> dict:
        return {"model_name": self.model_name, "litellm_params": self.public_params(), "model_info": self.info()}


STRATEGIES = {"simple-shuffle": "round-robin", "round-robin": "round-robin", "least-busy": "least-busy"}


def _fallback_map(value) -> dict:
    """LiteLLM's ``fallbacks: [{"gpt-4o": ["gpt-4o-mini"]}]`` (a plain mapping is accepted too)."""
    out: dict = {}
    items = value if isinstance(value, list) else [value] if isinstance(value, dict) else []
    for item in items:
        if not isinstance(item, dict):
            continue
        for name, targets in item.items():
            if isinstance(targets, str):
                targets = [targets]
            out.setdefault(str(name), []).extend(str(t) for t in targets or [] if str(t) != str(name))
    return out


class Router:
    def __init__(self, cooldown_time: float = 30.0, allowed_fails: int = 3, routing_strategy: str = "simple-shuffle", fallbacks=None,
                 default_fallbacks=None):
        self.groups: dict = {}
        self.by_id: dict = {}
        self.config_ids: set = set()
        self.passthrough: dict = {}  # URL prefix -> model names served there
        self.cooldown_time = cooldown_time
        self.allowed_fails = max(1, int(allowed_fails))
        self._rr: dict = {}
        self.configure(routing_strategy, fallbacks, default_fallbacks)
        # (requested model, fallback model) -> count, rendered by /metrics
        self.fallback_successes: dict = {}
        self.fallback_failures: dict = {}

    def configure(self, routing_strategy: Optional[str] = None, fallbacks=None, default_fallbacks=None) -> None:
        strategy = str(routing_strategy or "simple-shuffle")
        if strategy not in STRATEGIES:
            raise ValueError(f"router_settings.routing_strategy={strategy!r} is not supported; use one of {sorted(STRATEGIES)}")
        self.strategy = STRATEGIES[strategy]
        self.least_busy = self.strategy == "least-busy"
        self.fallbacks = _fallback_map(fallbacks)
        if isinstance(default_fallbacks, str):
            default_fallbacks = [default_fallbacks]
        self.default_fallbacks = [str(m) for m in default_fallbacks or []]
        self._group_info()

    def set_deployments(self, config: list, db: list) -> None:
        groups: dict = {}
        by_id: dict = {}
        old = self.by_id
        passthrough: dict = {}
        for dep in list(config) + list(db):
            prev = old.get(dep.id)
            if prev is not None and prev is not dep:
                dep.state = prev.state  # keep health and counters across reloads
            groups.setdefault(dep.model_name, []).append(dep)
            by_id[dep.id] = dep
            if dep.passthrough_prefix:
                names = passthrough.setdefault(dep.passthrough_prefix, [])
                if dep.model_name not in names:
                    names.append(dep.model_name)
        self.groups = groups
        self.by_id = by_id
        self.passthrough = passthrough
        self.config_ids = {d.id for d in config}
        self._group_info()

    def _group_info(self) -> None:
        for name, deps in getattr(self, "groups", {}).items():
            info = {"routing_strategy": self.strategy, "deployments_in_group": len(deps), "fallbacks": self.fallbacks_for(name)}
            for dep in deps:
                dep.group_info = info

    def fallbacks_for(self, model_name: str) -> list:
        return self.fallbacks.get(model_name) or [m for m in self.default_fallbacks if m != model_name]

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
        """Deployments to try, in order: healthy ones (round-robin, or fewest in flight), then cooling ones as a last resort."""
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
        healthy = [d for d in ordered if d.state.cool_until <= now]
        if len(healthy) < len(ordered):
            cooling = sorted((d for d in ordered if d.state.cool_until > now), key=lambda d: d.state.cool_until)
        else:
            cooling = []
        if self.least_busy and len(healthy) > 1:
            healthy.sort(key=lambda d: d.state.in_flight)  # stable: ties keep the round-robin order
        return healthy + cooling

    def plan(self, model_name: str, deps: list, num_retries: int):
        """Deployments to attempt for one request: up to 1 + num_retries distinct ones of the group, then of each fallback group."""
        per_group = 1 + num_retries if num_retries > 0 else 1
        if not self.fallbacks and not self.default_fallbacks:
            return deps if len(deps) <= per_group else deps[:per_group]
        return self._plan_with_fallbacks(model_name, deps, per_group)

    def _plan_with_fallbacks(self, model_name: str, deps: list, per_group: int):
        yield from deps[:per_group]
        fallbacks = self.fallbacks_for(model_name)
        if not fallbacks:
            return
        last = None
        for name in fallbacks:
            fdeps = self.candidates(name)
            if not fdeps:
                continue
            last = name
            yield from fdeps[:per_group]
        if last is not None:
            key = (model_name, last)
            self.fallback_failures[key] = self.fallback_failures.get(key, 0) + 1

    @staticmethod
    def acquire(dep: Deployment) -> None:
        st = dep.state
        st.in_flight += 1
        st.requests += 1

    @staticmethod
    def release(dep: Deployment) -> None:
        dep.state.in_flight -= 1

    def report_failure(self, dep: Deployment, reason: str = "error", message: Optional[str] = None) -> None:
        st = dep.state
        st.failures += 1
        st.errors[reason] = st.errors.get(reason, 0) + 1
        st.last_error = message or reason
        st.last_error_at = time.time()
        st.consecutive_failures += 1
        if st.consecutive_failures >= self.allowed_fails:
            st.cool_until = time.monotonic() + self.cooldown_time
            st.cooldowns += 1
            st.consecutive_failures = 0

    def report_success(self, dep: Deployment, model_name: Optional[str] = None) -> None:
        st = dep.state
        st.successes += 1
        if st.consecutive_failures:
            st.consecutive_failures = 0
        if model_name is not None and model_name != dep.model_name:
            key = (model_name, dep.model_name)
            self.fallback_successes[key] = self.fallback_successes.get(key, 0) + 1


def setup(proxy) -> None:
    """Apply ``router_settings`` (routing_strategy, fallbacks, default_fallbacks) of the config file to the proxy's router."""
    s = proxy.settings
    proxy.router.configure(s.routing_strategy, s.fallbacks, s.default_fallbacks)


def attempt_headers(headers: Optional[dict], model_name: str, dep: Deployment, tried: int) -> dict:
    """Response headers for an attempt after ``tried`` failed ones (LiteLLM's x-litellm-attempted-retries / -fallbacks)."""
    out = dict(headers or {})
    out["x-litellm-attempted-retries"] = str(tried)
    if dep.model_name != model_name:
        out["x-litellm-attempted-fallbacks"] = str(int(out.get("x-litellm-attempted-fallbacks", "0")) + 1)
    return out
