# Apache-2.0 (see LICENSE)
"""A small process supervisor for the local LiteMaaS platform (PostgreSQL, Redis, model server, proxy).

Standard library only. Every process runs on 127.0.0.1, detached in its own session, with its pid in
``<state_dir>/run/<name>.pid`` and its output in ``<state_dir>/logs/<name>.log``.

    supervisor.py up --spec SPEC.json       start what is not running, print a JSON report
    supervisor.py down --state-dir DIR      stop every process it started (reverse order), print a JSON report
    supervisor.py status --state-dir DIR    print a table (``--json`` for JSON)

``up`` is idempotent: a service whose pid file names a live process started from the same spec entry is left
alone, so a second ``up`` reports ``"changed": false``; one started with other arguments is restarted.
PostgreSQL and Redis are started by ``services.py`` (the launcher the tests use too): PostgreSQL runs as the
``postgres`` OS user when we are root, Redis without persistence.

The spec (written by the ``rhpds.litemaas.litemaas_local`` role) is a JSON object::

    {"state_dir": "/abs/local-data",
     "services": [
       {"name": "postgres", "kind": "postgres", "port": 15432, "databases": ["litellm_db"]},
       {"name": "redis", "kind": "redis", "port": 16379},
       {"name": "proxy", "kind": "command", "port": 4000, "argv": [...], "env": {...},
        "health_url": "http://127.0.0.1:4000/health/readiness", "ready_timeout": 60}]}
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from services import PostgresServer, RedisServer, ServiceError, log_tail, port_open, process_alive, stop_process  # noqa: E402

SupervisorError = ServiceError
STOP_SIGNALS = {"postgres": PostgresServer.STOP_SIGNAL, "redis": RedisServer.STOP_SIGNAL}  # the others get SIGTERM


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


class Service:
    """One supervised process and its pid file."""

    def __init__(self, state_dir: Path, spec: dict, order: int = 0):
        self.state_dir = state_dir
        self.spec = spec
        self.name = spec["name"]
        self.kind = spec.get("kind", "command")
        self.port = int(spec["port"])
        self.order = order
        self.pid_file = state_dir / "run" / f"{self.name}.pid"
        self.log_file = state_dir / "logs" / f"{self.name}.log"

    # The pid file holds JSON: pid, port, kind, order and the marker we expect in the process's command line.
    def read_pid(self) -> dict | None:
        try:
            return json.loads(self.pid_file.read_text())
        except (OSError, ValueError):
            return None

    def running_pid(self) -> int | None:
        info = self.read_pid()
        if not info:
            return None
        pid = int(info.get("pid", 0))
        if pid > 0 and process_alive(pid) and str(info.get("port")) in cmdline(pid):
            return pid
        return None

    def write_pid(self, pid: int) -> None:
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        info = {"pid": pid, "port": self.port, "kind": self.kind, "order": self.order, "name": self.name, "fingerprint": self.fingerprint()}
        tmp = self.pid_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        tmp.replace(self.pid_file)

    def fingerprint(self) -> str:
        """What the process was started with: a running process with another fingerprint is restarted by ``up``."""
        started_with = {key: self.spec.get(key) for key in ("kind", "port", "argv", "env", "cwd", "password")}
        return hashlib.sha256(json.dumps(started_with, sort_keys=True).encode()).hexdigest()

    def spawn(self, argv: list, env: dict | None = None, preexec=None, cwd: str | None = None) -> subprocess.Popen:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        full_env = dict(os.environ)
        full_env.update({str(k): str(v) for k, v in (env or {}).items()})
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=full_env, cwd=cwd,
                                    preexec_fn=preexec, start_new_session=True, close_fds=True)
        self.write_pid(proc.pid)
        return proc

    def log_tail(self, lines: int = 15) -> str:
        return log_tail(self.log_file, lines)

    def wait_ready(self, proc: subprocess.Popen, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        health = self.spec.get("health_url")
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SupervisorError(f"{self.name} exited with status {proc.returncode} while starting; "
                                      f"last lines of {self.log_file}:\n{self.log_tail()}")
            if self.ready(health):
                return
            time.sleep(0.2)
        raise SupervisorError(f"{self.name} did not become ready on 127.0.0.1:{self.port} within {timeout:.0f}s; see {self.log_file}")

    def ready(self, health: str | None) -> bool:
        if not port_open(self.port):
            return False
        if not health:
            return True
        try:
            with urllib.request.urlopen(health, timeout=5) as resp:
                return 200 <= resp.status < 300
        except (urllib.error.URLError, OSError, ValueError):
            return False

    # --------------------------------------------------------------- per kind

    def start(self) -> None:
        timeout = float(self.spec.get("ready_timeout", 60))
        if self.kind in ("postgres", "redis"):
            server = self.server(timeout)
            server.start()
            self.write_pid(server.proc.pid)
        else:
            proc = self.spawn(list(self.spec["argv"]), env=self.spec.get("env"), cwd=self.spec.get("cwd"))
            self.wait_ready(proc, timeout)

    def server(self, ready_timeout: float = 60.0):
        """The shared launcher (files/local/services.py) for PostgreSQL and Redis, data under <state_dir>/<name>/."""
        base = self.state_dir / self.name
        if self.kind == "postgres":
            return PostgresServer(base, port=self.port, log_file=self.log_file, durable=True, max_connections=200,
                                  ready_timeout=ready_timeout, os_user=self.spec.get("os_user", "postgres"))
        return RedisServer(base, port=self.port, password=self.spec.get("password"), log_file=self.log_file, ready_timeout=ready_timeout)

    def ensure_databases(self) -> list:
        """Create the databases of the spec that are missing; return their names."""
        return self.server().ensure_databases(self.spec.get("databases") or [])

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the process of the pid file; True when something was stopped."""
        pid = self.running_pid()
        stopped = pid is not None and stop_process(pid, STOP_SIGNALS.get(self.kind, signal.SIGTERM), timeout=timeout)
        self.pid_file.unlink(missing_ok=True)
        return stopped


# ------------------------------------------------------------------ commands


def load_spec(path: str) -> tuple:
    spec = json.loads(Path(path).read_text())
    state_dir = Path(spec["state_dir"]).resolve()
    services = [Service(state_dir, item, order=n) for n, item in enumerate(spec.get("services") or [])]
    return state_dir, services


def cmd_up(spec_path: str) -> dict:
    state_dir, services = load_spec(spec_path)
    (state_dir / "run").mkdir(parents=True, exist_ok=True)
    report = {"changed": False, "started": [], "restarted": [], "running": [], "databases_created": [], "services": {}}
    for svc in services:
        pid = svc.running_pid()
        if pid is not None and (svc.read_pid() or {}).get("fingerprint") != svc.fingerprint():
            # Started with other arguments (an earlier version or other settings): start it again as the spec says.
            svc.stop()
            report["restarted"].append(svc.name)
            pid = None
        if pid is None:
            svc.pid_file.unlink(missing_ok=True)
            if port_open(svc.port):
                raise SupervisorError(f"port {svc.port} on 127.0.0.1 is taken by a process this platform did not start "
                                      f"(wanted for {svc.name}): stop it or choose another port")
            svc.start()
            if svc.name not in report["restarted"]:
                report["started"].append(svc.name)
            report["changed"] = True
            pid = svc.running_pid()
        else:
            report["running"].append(svc.name)
        if svc.kind == "postgres":
            created = svc.ensure_databases()
            if created:
                report["databases_created"] += created
                report["changed"] = True
        report["services"][svc.name] = {"pid": pid, "port": svc.port, "log": str(svc.log_file)}
    return report


def known_services(state_dir: Path) -> list:
    out = []
    for pid_file in sorted((state_dir / "run").glob("*.pid")):
        try:
            info = json.loads(pid_file.read_text())
        except (OSError, ValueError):
            continue
        svc = Service(state_dir, {"name": pid_file.stem, "kind": info.get("kind", "command"), "port": info.get("port", 0)},
                      order=int(info.get("order", 0)))
        out.append(svc)
    return sorted(out, key=lambda s: s.order)


def cmd_down(state_dir: Path) -> dict:
    report = {"changed": False, "stopped": [], "not_running": []}
    for svc in reversed(known_services(state_dir)):
        if svc.stop():
            report["stopped"].append(svc.name)
            report["changed"] = True
        else:
            report["not_running"].append(svc.name)
    return report


def cmd_status(state_dir: Path) -> list:
    rows = []
    for svc in known_services(state_dir):
        pid = svc.running_pid()
        info = svc.read_pid() or {}
        rows.append({"name": svc.name, "pid": pid or info.get("pid"), "port": svc.port, "state": "running" if pid else "stopped (stale pid file)",
                     "log": str(svc.log_file)})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Start, stop and show the processes of the local LiteMaaS platform")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start every service of the spec that is not running")
    up.add_argument("--spec", required=True)
    for name in ("down", "status"):
        p = sub.add_parser(name)
        p.add_argument("--state-dir", required=True)
        p.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            print(json.dumps(cmd_up(args.spec)))
        elif args.command == "down":
            report = cmd_down(Path(args.state_dir).resolve())
            if args.json:
                print(json.dumps(report))
            else:
                for name in report["stopped"]:
                    print(f"stopped {name}")
                if not report["stopped"]:
                    print("nothing was running")
        else:
            rows = cmd_status(Path(args.state_dir).resolve())
            if args.json:
                print(json.dumps(rows))
            elif not rows:
                print(f"nothing is running (no pid files under {Path(args.state_dir) / 'run'})")
            else:
                print(f"{'service':<10} {'state':<24} {'pid':>7} {'port':>6}  log")
                for row in rows:
                    print(f"{row['name']:<10} {row['state']:<24} {row['pid'] or '-':>7} {row['port']:>6}  {row['log']}")
    except SupervisorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
