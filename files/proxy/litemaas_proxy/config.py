"""Settings: read once at start-up from the environment and a LiteLLM-style config.yaml into typed fields.

``SETTINGS`` is the table of every setting: the field of :class:`Settings` it fills, where it is read
(``env:NAME`` or a dotted path in config.yaml; the first source that has a value wins), how it is parsed, its
default and what it does. ``load_settings`` goes through that table; a bad value stops the proxy with an error
naming the setting. Nothing reads the config file after start-up: modules take the typed fields. The settings
tables of ``files/proxy/README.md`` are checked against this table by a test (tests/proxy/test_settings_doc.py).
Durations use the one grammar of ``durations.py``, on/off words the one parser of ``values.py``.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any, Callable, Optional
from urllib.parse import quote

import yaml

from litemaas_proxy.durations import UTC, DurationError, check_duration, parse_timezone
from litemaas_proxy.values import parse_on_off

# ---------------------------------------------------------------------------- parsers: (value, label) -> typed value


def _number(value: Any, label: str, cast, minimum: float, strict_min: bool, expected: str) -> Any:
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
        if math.isnan(number) or math.isinf(number):
            raise ValueError
        if cast is int:
            if number != int(number):
                raise ValueError
            number = int(number)
        if number < minimum or (strict_min and number == minimum):
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"Invalid {label} {value!r}: expected {expected}") from None
    return number


def positive(value: Any, label: str) -> float:
    return _number(value, label, float, 0, True, "a number greater than 0")


def non_negative(value: Any, label: str) -> float:
    return _number(value, label, float, 0, False, "a number, 0 or more")


def whole(value: Any, label: str) -> int:
    return _number(value, label, int, 0, False, "a whole number, 0 or more")


def whole_positive(value: Any, label: str) -> int:
    return _number(value, label, int, 1, False, "a positive integer")


def text(value: Any, label: str) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError(f"Invalid {label}: expected a string, got a {type(value).__name__}")
    return str(value)


def on_off(value: Any, label: str) -> bool:
    return parse_on_off(value, False, label)


def duration(value: Any, label: str) -> str:
    try:
        check_duration(value if isinstance(value, str) else str(value))
    except DurationError as exc:
        raise ValueError(f"{label}: {exc}") from None
    return str(value)


def timezone_name(value: Any, label: str) -> tzinfo:
    return parse_timezone(value, label)


REDIS_FAILURE_MODES = ("open", "closed")


def redis_failure_mode(value: Any, label: str = "LITEMAAS_REDIS_FAILURE_MODE, general_settings.redis_failure_mode") -> str:
    """``open`` (default: admit requests unchecked while Redis is unreachable) or ``closed`` (refuse them with 503)."""
    mode = str(value).strip().lower()
    if mode not in REDIS_FAILURE_MODES:
        raise ValueError(f"Invalid redis failure mode {value!r}: expected 'open' or 'closed' ({label.replace(' / ', ', ')})")
    return mode


ANY_ORIGIN = "*"
ORIGIN_RE = re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#\s@]+$")


def origins(value: Any, label: str) -> tuple:
    """``*`` or origins (``scheme://host[:port]``), as a list or one string separated by commas or spaces."""
    items = value if isinstance(value, (list, tuple)) else re.split(r"[,\s]+", str(value))
    out = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"Invalid {label} entry {item!r}: expected a string")
        origin = item.strip().rstrip("/").lower()
        if not origin:
            continue
        if origin != ANY_ORIGIN and not ORIGIN_RE.match(origin):
            raise ValueError(f"Invalid {label} entry {item!r}: expected '*' or an origin such as https://portal.example.com "
                             "(scheme and host, optionally a port; no path)")
        if origin not in out:
            out.append(origin)
    if not out:
        raise ValueError(f"Invalid {label} {value!r}: expected '*' or at least one origin")
    return tuple(out)


def a_list(value: Any, label: str) -> list:
    if not isinstance(value, list):
        raise ValueError(f"Invalid {label} {value!r}: expected a list")
    return list(value)


def a_mapping(value: Any, label: str) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"Invalid {label} {value!r}: expected a mapping")
    return dict(value)


def as_given(value: Any, label: str) -> Any:
    """Taken as it is: the module that uses it checks it at start-up (routing.py, guardrails.py) with its own messages."""
    return value


# ---------------------------------------------------------------------------- the table

@dataclass(frozen=True)
class Setting:
    field: str  # attribute of Settings
    sources: tuple  # "env:NAME" or a dotted config.yaml path; the first with a value wins
    parse: Callable[[Any, str], Any]
    default: Any
    doc: str

    @property
    def label(self) -> str:
        return " / ".join(s[4:] if s.startswith("env:") else s for s in self.sources)

    @property
    def env(self) -> list:
        return [s[4:] for s in self.sources if s.startswith("env:")]

    @property
    def config(self) -> list:
        return [s for s in self.sources if not s.startswith("env:")]


SETTINGS = (
    # connections and secrets
    Setting("database_url", ("general_settings.database_url", "env:DATABASE_URL"), text, None,
            "PostgreSQL DSN; without it keys, spend and the management API are off"),
    Setting("master_key", ("general_settings.master_key", "env:LITELLM_MASTER_KEY"), text, None,
            "the admin key; without it every request is admin, as in LiteLLM"),
    Setting("salt_key", ("env:LITELLM_SALT_KEY",), text, None,
            "seals the string values of database models' litellm_params at rest (LiteLLM's format); the master key when unset: keep it stable"),
    Setting("redis_url_env", ("env:REDIS_URL",), text, None, "Redis URL (wins over the host settings below)"),
    Setting("redis_host", ("env:REDIS_HOST", "router_settings.redis_host"), text, None, "Redis host when no URL is given"),
    Setting("redis_port", ("env:REDIS_PORT", "router_settings.redis_port"), whole_positive, 6379, "Redis port"),
    Setting("redis_password", ("env:REDIS_PASSWORD", "router_settings.redis_password"), text, None, "Redis password"),
    Setting("redis_ssl", ("env:REDIS_SSL",), on_off, False, "TLS to Redis (rediss://)"),
    Setting("redis_failure_mode", ("env:LITEMAAS_REDIS_FAILURE_MODE", "general_settings.redis_failure_mode"), redis_failure_mode, "open",
            "while Redis is unreachable: `open` admits rate-limited requests unchecked, `closed` refuses them with 503"),
    # models and routing
    Setting("model_list", ("model_list",), a_list, [], "the config file's models (read-only through the API)"),
    Setting("request_timeout", ("router_settings.timeout", "litellm_settings.request_timeout", "env:LITEMAAS_REQUEST_TIMEOUT"), positive, 600.0,
            "seconds an upstream call may take (a model's litellm_params.timeout wins)"),
    Setting("num_retries", ("router_settings.num_retries", "litellm_settings.num_retries"), whole, 1, "retries on another deployment"),
    Setting("cooldown_time", ("router_settings.cooldown_time",), non_negative, 30.0, "seconds a failing deployment is left out"),
    Setting("allowed_fails", ("router_settings.allowed_fails",), whole, 3, "consecutive failures before a cooldown"),
    Setting("routing_strategy", ("router_settings.routing_strategy",), text, None, "`simple-shuffle` (round-robin, default) or `least-busy`"),
    Setting("fallbacks", ("router_settings.fallbacks", "litellm_settings.fallbacks"), as_given, None, "per-model fallbacks"),
    Setting("default_fallbacks", ("router_settings.default_fallbacks", "litellm_settings.default_fallbacks"), as_given, None,
            "fallbacks of every model"),
    Setting("model_reload_interval", ("env:LITEMAAS_MODEL_RELOAD_INTERVAL",), positive, 30.0,
            "seconds between reloads of the database models (changes through the API apply at once)"),
    Setting("passthrough_prefixes", ("general_settings.passthrough_prefixes",), a_list, [], "extra pass-through route prefixes besides /docling"),
    Setting("guardrails", ("guardrails",), as_given, [], "regex guardrails (see guardrails.py)"),
    # keys, budgets, limits
    Setting("key_cache_ttl", ("env:LITEMAAS_KEY_CACHE_TTL", "general_settings.user_api_key_cache_ttl"), non_negative, 10.0,
            "seconds a key stays cached in a replica (changes are pushed to all replicas at once through Redis)"),
    Setting("key_stale_max", ("env:LITEMAAS_KEY_STALE_MAX",), non_negative, 300.0,
            "seconds a cached key keeps working while PostgreSQL is unreachable"),
    Setting("rate_limit_window", ("env:LITELLM_RATE_LIMIT_WINDOW_SIZE",), whole_positive, 60, "seconds of a rate-limit window"),
    Setting("parallel_lease_ttl", ("env:LITEMAAS_PARALLEL_LEASE_TTL",), whole_positive, 30,
            "seconds after which the max_parallel_requests slots of a proxy process that died are free again"),
    Setting("budget_reset_interval", ("env:LITEMAAS_BUDGET_RESET_INTERVAL",), positive, 60.0, "seconds between budget reset runs"),
    Setting("budget_timezone", ("env:LITEMAAS_BUDGET_TIMEZONE", "litellm_settings.timezone"), timezone_name, UTC,
            "time zone budget resets align to (midnight, Monday, the 1st)"),
    Setting("default_user_budget_duration", ("env:LITEMAAS_DEFAULT_USER_BUDGET_DURATION", "litellm_settings.internal_user_budget_duration"),
            duration, None, "budget_duration of users created without one"),
    Setting("default_key_duration", ("litellm_settings.default_key_generate_params.duration",), duration, None,
            "duration (expiry) of keys generated without one"),
    Setting("default_key_budget_duration", ("litellm_settings.default_key_generate_params.budget_duration",), duration, None,
            "budget_duration of keys generated without one"),
    # spend and database
    Setting("spend_flush_interval", ("env:LITEMAAS_SPEND_FLUSH_INTERVAL", "general_settings.proxy_batch_write_at"), positive, 1.0,
            "seconds between spend batch writes"),
    Setting("db_pool_size", ("env:LITEMAAS_DB_POOL_SIZE", "general_settings.database_connection_pool_limit"), whole_positive, 10,
            "PostgreSQL connections per worker"),
    Setting("spill_dir", ("env:LITEMAAS_SPILL_DIR",), text, "/tmp",
            "directory of the spend journal (every answered request's record until it is in the database; replayed at start)"),
    Setting("spend_memory_max", ("env:LITEMAAS_SPEND_MEMORY_MAX",), whole_positive, 10000,
            "spend records a worker holds in memory while the database is away; the rest waits in the journal on disk"),
    Setting("shutdown_flush_timeout", ("env:LITEMAAS_SHUTDOWN_FLUSH_TIMEOUT",), non_negative, 10.0,
            "seconds the spend buffer may take to flush on SIGTERM"),
    # HTTP
    Setting("listen_backlog", ("env:LITEMAAS_LISTEN_BACKLOG",), whole_positive, 4096,
            "connections the kernel queues before accept (capped by net.core.somaxconn)"),
    Setting("max_request_size_mb", ("general_settings.max_request_size_mb", "env:LITEMAAS_MAX_REQUEST_SIZE_MB"), positive, 64.0,
            "largest JSON body in MB; a larger one gets 413 (pass-through bodies are streamed and not bound by it)"),
    Setting("cors_allow_origins", ("env:LITEMAAS_CORS_ALLOW_ORIGINS", "general_settings.cors_allow_origins"), origins, (ANY_ORIGIN,),
            "origins whose pages may call the proxy from a browser (CORS): `*` for any, or origins such as "
            "`https://portal.example.com` separated by commas (a list in the config file)"),
    Setting("access_log", ("env:LITEMAAS_ACCESS_LOG", "general_settings.access_log"), on_off, False, "one log line per request"),
    Setting("metrics_key_alias", ("env:LITEMAAS_METRICS_KEY_ALIAS", "litellm_settings.metrics_key_alias"), on_off, False,
            "label request metrics with the key alias (a set of series per key)"),
    Setting("metrics_require_auth", ("litellm_settings.require_auth_for_metrics_endpoint",), on_off, False, "/metrics needs a valid key"),
    Setting("environment_variables", ("environment_variables",), a_mapping, {},
            "set in the proxy's environment when not set already (LiteLLM's config key)"),
)


@dataclass
class Settings:
    """Typed settings (the fields of ``SETTINGS``, plus what is derived from them)."""

    database_url: Optional[str] = None
    master_key: Optional[str] = None
    salt_key: Optional[str] = None
    redis_url_env: Optional[str] = None
    redis_host: Optional[str] = None
    redis_port: int = 6379
    redis_password: Optional[str] = None
    redis_ssl: bool = False
    redis_failure_mode: str = "open"
    model_list: list = field(default_factory=list)
    request_timeout: float = 600.0
    num_retries: int = 1
    cooldown_time: float = 30.0
    allowed_fails: int = 3
    routing_strategy: Optional[str] = None
    fallbacks: Any = None
    default_fallbacks: Any = None
    model_reload_interval: float = 30.0
    passthrough_prefixes: list = field(default_factory=list)
    guardrails: list = field(default_factory=list)
    key_cache_ttl: float = 10.0
    key_stale_max: float = 300.0
    rate_limit_window: int = 60
    parallel_lease_ttl: int = 30
    budget_reset_interval: float = 60.0
    budget_timezone: tzinfo = UTC
    default_user_budget_duration: Optional[str] = None
    default_key_duration: Optional[str] = None
    default_key_budget_duration: Optional[str] = None
    spend_flush_interval: float = 1.0
    db_pool_size: int = 10
    spill_dir: str = "/tmp"
    spend_memory_max: int = 10000
    shutdown_flush_timeout: float = 10.0
    listen_backlog: int = 4096
    max_request_size_mb: float = 64.0
    cors_allow_origins: tuple = (ANY_ORIGIN,)
    access_log: bool = False
    metrics_key_alias: bool = False
    metrics_require_auth: bool = False
    environment_variables: dict = field(default_factory=dict)
    # fixed (not settings)
    connect_timeout: float = 10.0
    upstream_connections: int = 1000

    @property
    def redis_url(self) -> Optional[str]:
        """REDIS_URL, else one built from the host, port, password and TLS settings; None without Redis."""
        if self.redis_url_env:
            return self.redis_url_env
        if not self.redis_host:
            return None
        auth = f":{quote(self.redis_password, safe='')}@" if self.redis_password else ""
        return f"{'rediss' if self.redis_ssl else 'redis'}://{auth}{self.redis_host}:{self.redis_port}/0"

    @property
    def default_key_params(self) -> dict:
        """duration / budget_duration of keys generated without one (litellm_settings.default_key_generate_params)."""
        out = {}
        if self.default_key_duration is not None:
            out["duration"] = self.default_key_duration
        if self.default_key_budget_duration is not None:
            out["budget_duration"] = self.default_key_budget_duration
        return out

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_size_mb * 1024 * 1024)


def _env_value(value: Any) -> Any:
    """Resolve LiteLLM's ``os.environ/NAME`` indirection."""
    if isinstance(value, str) and value.startswith("os.environ/"):
        return os.environ.get(value[len("os.environ/"):])
    return value


def _lookup(cfg: dict, path: str) -> Any:
    node: Any = cfg
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def read_config_file(config_path: Optional[str]) -> dict:
    if not config_path:
        return {}
    with open(config_path, encoding="utf-8") as fh:
        cfg = yaml.safe_load(fh) or {}
    if not isinstance(cfg, dict):
        raise ValueError(f"{config_path}: expected a mapping at the top level")
    for section in ("general_settings", "router_settings", "litellm_settings"):
        if cfg.get(section) is not None and not isinstance(cfg[section], dict):
            raise ValueError(f"Invalid {section} in {config_path}: expected a mapping")
    params = _lookup(cfg, "litellm_settings.default_key_generate_params")
    if params is not None and not isinstance(params, dict):
        raise ValueError(f"Invalid litellm_settings.default_key_generate_params {params!r}: expected a mapping")
    return cfg


def load_settings(config_path: Optional[str] = None, env=None) -> Settings:
    env = os.environ if env is None else env
    cfg = read_config_file(config_path)
    if cfg.get("environment_variables") is not None:
        a_mapping(cfg["environment_variables"], "environment_variables")
    for name, value in (cfg.get("environment_variables") or {}).items():
        os.environ.setdefault(str(name), str(value))
    s = Settings()
    for spec in SETTINGS:
        for source in spec.sources:
            value = env.get(source[4:]) if source.startswith("env:") else _env_value(_lookup(cfg, source))
            if value is None or value == "":
                continue
            setattr(s, spec.field, spec.parse(value, spec.label))
            break
        else:
            default = spec.default
            setattr(s, spec.field, list(default) if isinstance(default, list) else dict(default) if isinstance(default, dict) else default)
    return s


# ---------------------------------------------------------------------------- documentation

KIND_NAMES = {positive: "number > 0", non_negative: "number ≥ 0", whole: "whole number ≥ 0", whole_positive: "whole number ≥ 1",
              text: "string", on_off: "on/off", duration: "duration", timezone_name: "time zone", redis_failure_mode: "`open` or `closed`",
              origins: "origins", a_list: "list", a_mapping: "mapping", as_given: "as LiteLLM's"}


def _default_text(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (int, float)):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ", ".join(f"`{v}`" for v in value)
    if isinstance(value, (list, dict)):
        return "empty"
    return f"`{value}`"


def settings_markdown() -> str:
    """The settings table of files/proxy/README.md (a test checks the README holds exactly this)."""
    rows = ["| setting | read from (the first that is set wins) | type | default | what |", "|---|---|---|---|---|"]
    for spec in SETTINGS:
        sources = ", ".join(f"`{s[4:]}`" if s.startswith("env:") else f"config `{s}`" for s in spec.sources)
        rows.append(f"| {spec.field} | {sources} | {KIND_NAMES[spec.parse]} | {_default_text(spec.default)} | {spec.doc} |")
    return "\n".join(rows) + "\n"
