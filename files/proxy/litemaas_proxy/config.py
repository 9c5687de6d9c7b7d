"""Settings from the environment and an optional LiteLLM-style config.yaml (durations: see durations.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any, Optional
from urllib.parse import quote

import yaml

from litemaas_proxy.durations import UTC, DurationError, check_duration, duration_after, next_budget_reset, parse_duration, parse_timezone

__all__ = ["UTC", "DurationError", "Settings", "duration_after", "flag", "load_settings", "next_budget_reset", "parse_duration"]


REDIS_FAILURE_MODES = ("open", "closed")


def redis_failure_mode(value: Any) -> str:
    """``open`` (default: admit requests unchecked while Redis is unreachable) or ``closed`` (refuse them with 503)."""
    if value is None or value == "":
        return "open"
    mode = str(value).strip().lower()
    if mode not in REDIS_FAILURE_MODES:
        raise ValueError(f"Invalid redis failure mode {value!r}: expected 'open' or 'closed' "
                         "(LITEMAAS_REDIS_FAILURE_MODE, general_settings.redis_failure_mode)")
    return mode


def _env_value(value: Any) -> Any:
    """Resolve LiteLLM's ``os.environ/NAME`` indirection."""
    if isinstance(value, str) and value.startswith("os.environ/"):
        return os.environ.get(value[len("os.environ/"):])
    return value


def redis_url_from_env(env) -> Optional[str]:
    if env.get("REDIS_URL"):
        return env["REDIS_URL"]
    host = env.get("REDIS_HOST")
    if not host:
        return None
    port = env.get("REDIS_PORT") or "6379"
    password = env.get("REDIS_PASSWORD")
    auth = f":{quote(password, safe='')}@" if password else ""
    scheme = "rediss" if str(env.get("REDIS_SSL", "")).lower() in ("1", "true", "yes") else "redis"
    return f"{scheme}://{auth}{host}:{port}/0"


def _duration_setting(value: Any, setting: str) -> Optional[str]:
    """A duration from the config file, checked against the grammar at start-up (None when unset)."""
    value = _env_value(value)
    if value in (None, ""):
        return None
    try:
        check_duration(value if isinstance(value, str) else str(value))
    except DurationError as exc:
        raise ValueError(f"{setting}: {exc}") from None
    return str(value)


def _float_env(env, name: str, default: float) -> float:
    try:
        return float(env.get(name, default))
    except (TypeError, ValueError):
        return default


def flag(value) -> bool:
    """An on/off setting from the environment or the config file: ``1``, ``true``, ``yes``, ``on`` (or YAML true)."""
    return str(value).strip().lower() in ("1", "true", "yes", "on")


@dataclass
class Settings:
    database_url: Optional[str] = None
    redis_url: Optional[str] = None
    master_key: Optional[str] = None
    model_list: list = field(default_factory=list)
    request_timeout: float = 600.0
    connect_timeout: float = 10.0
    num_retries: int = 1
    cooldown_time: float = 30.0
    allowed_fails: int = 3
    spend_flush_interval: float = 1.0
    key_cache_ttl: float = 10.0
    salt_key: Optional[str] = None  # seals model parameters in the database (LITELLM_SALT_KEY; the master key when unset)
    key_stale_max: float = 300.0  # seconds a cached key keeps authenticating while the database is unreachable
    budget_reset_interval: float = 60.0
    model_reload_interval: float = 30.0
    rate_limit_window: int = 60
    spill_dir: str = "/tmp"
    shutdown_flush_timeout: float = 10.0
    db_pool_size: int = 10
    upstream_connections: int = 1000
    listen_backlog: int = 4096  # connections the kernel queues before accept (LITEMAAS_LISTEN_BACKLOG; capped by net.core.somaxconn)
    access_log: bool = False  # one line per request (LITEMAAS_ACCESS_LOG or general_settings.access_log)
    redis_failure_mode: str = "open"  # what rate-limited requests get while Redis is unreachable: "open" (admitted) or "closed" (503)
    budget_timezone: tzinfo = UTC  # budget resets align to midnight, Monday, the 1st, 1 January here (LITEMAAS_BUDGET_TIMEZONE, litellm_settings.timezone)
    default_user_budget_duration: Optional[str] = None  # budget_duration of users created without one (LITEMAAS_DEFAULT_USER_BUDGET_DURATION)
    # duration / budget_duration of keys generated without one (litellm_settings.default_key_generate_params)
    default_key_params: dict = field(default_factory=dict)
    raw_config: dict = field(default_factory=dict)  # the whole config file, for routing, guardrails, pass-through and metrics


def load_settings(config_path: Optional[str] = None, env=None) -> Settings:
    env = os.environ if env is None else env
    cfg: dict = {}
    if config_path:
        with open(config_path, encoding="utf-8") as fh:
            cfg = yaml.safe_load(fh) or {}
        if not isinstance(cfg, dict):
            raise ValueError(f"{config_path}: expected a mapping at the top level")
    general = cfg.get("general_settings") or {}
    router = cfg.get("router_settings") or {}
    litellm_settings = cfg.get("litellm_settings") or {}
    for name, value in (cfg.get("environment_variables") or {}).items():
        os.environ.setdefault(str(name), str(value))
    s = Settings()
    s.raw_config = cfg
    s.database_url = _env_value(general.get("database_url")) or env.get("DATABASE_URL")
    s.master_key = _env_value(general.get("master_key")) or env.get("LITELLM_MASTER_KEY")
    s.salt_key = env.get("LITELLM_SALT_KEY") or None
    s.redis_url = redis_url_from_env(env)
    if not s.redis_url and router.get("redis_host"):
        s.redis_url = redis_url_from_env(
            {"REDIS_HOST": _env_value(router["redis_host"]), "REDIS_PORT": _env_value(router.get("redis_port")),
             "REDIS_PASSWORD": _env_value(router.get("redis_password"))})
    s.model_list = list(cfg.get("model_list") or [])
    s.request_timeout = float(router.get("timeout") or litellm_settings.get("request_timeout") or env.get("LITEMAAS_REQUEST_TIMEOUT") or 600)
    s.num_retries = int(router.get("num_retries", litellm_settings.get("num_retries", 1)))
    s.cooldown_time = float(router.get("cooldown_time", 30))
    s.allowed_fails = int(router.get("allowed_fails", 3))
    s.spend_flush_interval = _float_env(env, "LITEMAAS_SPEND_FLUSH_INTERVAL", float(general.get("proxy_batch_write_at", 1.0)))
    s.key_cache_ttl = _float_env(env, "LITEMAAS_KEY_CACHE_TTL", float(general.get("user_api_key_cache_ttl", 10.0)))
    s.key_stale_max = _float_env(env, "LITEMAAS_KEY_STALE_MAX", 300.0)
    s.budget_reset_interval = _float_env(env, "LITEMAAS_BUDGET_RESET_INTERVAL", 60.0)
    s.model_reload_interval = _float_env(env, "LITEMAAS_MODEL_RELOAD_INTERVAL", 30.0)
    s.rate_limit_window = int(_float_env(env, "LITELLM_RATE_LIMIT_WINDOW_SIZE", 60))
    s.spill_dir = env.get("LITEMAAS_SPILL_DIR", "/tmp")
    s.shutdown_flush_timeout = _float_env(env, "LITEMAAS_SHUTDOWN_FLUSH_TIMEOUT", 10.0)
    s.redis_failure_mode = redis_failure_mode(env.get("LITEMAAS_REDIS_FAILURE_MODE") or _env_value(general.get("redis_failure_mode")))
    s.access_log = flag(env.get("LITEMAAS_ACCESS_LOG", general.get("access_log")))
    s.budget_timezone = parse_timezone(env.get("LITEMAAS_BUDGET_TIMEZONE") or _env_value(litellm_settings.get("timezone")),
                                       "LITEMAAS_BUDGET_TIMEZONE / litellm_settings.timezone")
    s.default_user_budget_duration = _duration_setting(
        env.get("LITEMAAS_DEFAULT_USER_BUDGET_DURATION") or litellm_settings.get("internal_user_budget_duration"),
        "LITEMAAS_DEFAULT_USER_BUDGET_DURATION / litellm_settings.internal_user_budget_duration")
    key_defaults = litellm_settings.get("default_key_generate_params") or {}
    if not isinstance(key_defaults, dict):
        raise ValueError(f"Invalid litellm_settings.default_key_generate_params {key_defaults!r}: expected a mapping")
    for name in ("duration", "budget_duration"):
        value = _duration_setting(key_defaults.get(name), f"litellm_settings.default_key_generate_params.{name}")
        if value is not None:
            s.default_key_params[name] = value
    backlog = str(env.get("LITEMAAS_LISTEN_BACKLOG") or "4096").strip()
    if not backlog.isdigit() or int(backlog) < 1:
        raise ValueError(f"Invalid LITEMAAS_LISTEN_BACKLOG {backlog!r}: expected a positive integer (default 4096)")
    s.listen_backlog = int(backlog)
    s.db_pool_size = int(_float_env(env, "LITEMAAS_DB_POOL_SIZE", float(general.get("database_connection_pool_limit", 10))))
    return s
