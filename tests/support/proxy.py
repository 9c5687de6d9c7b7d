"""The proxy in files/proxy as a real subprocess on a free port, for tests, benchmarks and the local platform.

    proc = ProxyProcess(dsn=..., redis_url=..., models=stub_models(stub.url)).start()
    proc.url, proc.master_key, proc.dsn
    proc.admin("POST", "/key/generate", {"key_alias": "a"})  -> (status, parsed JSON)
    proc.stop() / proc.terminate() (SIGTERM, waits) / proc.kill() / proc.restart()
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

import yaml

REPO = Path(__file__).resolve().parents[2]
PROXY_SRC = REPO / "files" / "proxy"
DEFAULT_MASTER_KEY = "sk-test-master-key"
_counter = itertools.count(1)

# Prices used by the test models: 1e-6 USD per prompt token, 2e-6 per completion token.
INPUT_COST = 1e-6
OUTPUT_COST = 2e-6


def stub_models(api_base: str, names=("stub-model", "granite-3-8b"), embed_names=("stub-embed",)) -> list:
    """A LiteLLM ``model_list`` pointing every name at the stub upstream (``api_base`` ends in /v1)."""
    out = []
    for name in names:
        out.append({"model_name": name, "litellm_params": {"model": f"openai/{name}", "api_base": api_base, "api_key": "sk-upstream",
                                                           "input_cost_per_token": INPUT_COST, "output_cost_per_token": OUTPUT_COST},
                    "model_info": {"mode": "chat"}})
    for name in embed_names:
        out.append({"model_name": name, "litellm_params": {"model": f"openai/{name}", "api_base": api_base, "api_key": "sk-upstream",
                                                           "input_cost_per_token": INPUT_COST, "output_cost_per_token": 0},
                    "model_info": {"mode": "embedding"}})
    return out


def http_json(method: str, url: str, body: Any = None, headers: Optional[dict] = None, timeout: float = 30.0) -> tuple:
    """Send one request; return (status, parsed JSON or text, response headers)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw, status, hdrs = resp.read(), resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        raw, status, hdrs = exc.read(), exc.code, dict(exc.headers)
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode("utf-8", "replace")
    return status, parsed, hdrs


class ProxyProcess:
    def __init__(self, dsn: Optional[str], redis_url: Optional[str], models: Optional[list] = None, master_key: str = DEFAULT_MASTER_KEY,
                 work_dir: Optional[os.PathLike] = None, env: Optional[dict] = None, port: Optional[int] = None, workers: int = 1,
                 python: Optional[str] = None, config_extra: Optional[dict] = None):
        self.dsn = dsn
        self.redis_url = redis_url
        self.models = models or []
        self.master_key = master_key
        self.n = next(_counter)
        self.work_dir = Path(work_dir or (REPO / ".work" / f"proxy-{os.getpid()}-{self.n}"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.extra_env = env or {}
        self._fixed_port = port
        self.port = port
        self.workers = workers
        self.python = python or sys.executable
        self.config_extra = config_extra or {}
        self.proc: Optional[subprocess.Popen] = None
        self.config_path = self.work_dir / "config.yaml"
        self.log_path = self.work_dir / "proxy.log"
        self.spill_dir = self.work_dir / "spill"
        self.spill_dir.mkdir(exist_ok=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    def env(self) -> dict:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(PROXY_SRC) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        for name in ("DATABASE_URL", "REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "LITELLM_MASTER_KEY"):
            env.pop(name, None)
        if self.dsn:
            env["DATABASE_URL"] = self.dsn
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        if self.master_key:
            env["LITELLM_MASTER_KEY"] = self.master_key
        env.setdefault("LITEMAAS_SPEND_FLUSH_INTERVAL", "0.2")
        env["LITEMAAS_SPILL_DIR"] = str(self.spill_dir)
        env.update({k: str(v) for k, v in self.extra_env.items()})
        return env

    def write_config(self) -> None:
        cfg = {"model_list": self.models}
        cfg.update(self.config_extra)
        self.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))

    def start(self, timeout: float = 30.0, wait_ready: bool = True) -> ProxyProcess:
        from tests.support.services import free_port

        for _attempt in range(3):
            self.spawn(self._fixed_port or free_port())
            if self.wait(timeout, ready=wait_ready):
                return self
            if self.proc.poll() is None or self._fixed_port:
                break
        raise RuntimeError(f"proxy did not become ready on port {self.port}; log:\n{self.log_tail()}")

    def spawn(self, port: int) -> subprocess.Popen:
        """Start the proxy process on ``port`` without waiting for anything (its own session, so it can be signalled as a group)."""
        self.write_config()
        self.port = port
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.python, "-m", "litemaas_proxy", "--host", "127.0.0.1", "--port", str(self.port), "--config", str(self.config_path),
                 "--workers", str(self.workers)],
                cwd=str(self.work_dir), env=self.env(), stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        return self.proc

    def wait(self, timeout: float = 30.0, ready: bool = True) -> bool:
        path = "/health/readiness" if ready else "/health/liveliness"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}{path}", timeout=1) as resp:
                    if resp.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.03)
        return False

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def admin(self, method: str, path: str, body: Any = None, key: Optional[str] = None, header: str = "x-litellm-api-key") -> tuple:
        """Management call with the master key (or ``key``); returns (status, JSON)."""
        status, parsed, dummy = http_json(method, self.url + path, body, {header: key or self.master_key})
        return status, parsed

    def request(self, method: str, path: str, body: Any = None, headers: Optional[dict] = None) -> tuple:
        return http_json(method, self.url + path, body, headers)

    def terminate(self, timeout: float = 45.0) -> int:
        """SIGTERM and wait (graceful: in-flight requests finish, spend is flushed). The default wait is above the
        proxy's own shutdown budget (40 s with the default spend flush timeout, past which the proxy ends itself with
        status 70), so a kill here means the proxy did not even do that."""
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        return proc.returncode

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)

    stop = terminate

    def restart(self, timeout: float = 30.0) -> ProxyProcess:
        self.terminate()
        self._fixed_port = self.port  # keep the URL stable
        return self.start(timeout)

    def __enter__(self) -> ProxyProcess:
        return self if self.proc else self.start()

    def __exit__(self, *exc) -> None:
        self.terminate()


def start_backing(work: Path, started: list) -> tuple:
    """PostgreSQL, Redis and the stub upstream under ``work`` (the benchmarks' backing services). Each is appended to
    ``started`` as soon as it runs, so the caller stops whatever did start even when a later one fails."""
    from tests.support.services import PostgresServer, RedisServer
    from tests.support.stub_upstream import StubUpstream

    pg = PostgresServer(work / "pg").start()
    started.append(pg)
    redis = RedisServer(work / "redis").start()
    started.append(redis)
    stub = StubUpstream(log_path=work / "stub.log").start()
    started.append(stub)
    return pg, redis, stub
