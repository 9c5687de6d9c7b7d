# Apache-2.0 (see LICENSE)
"""A small process supervisor for the local LiteMaaS platform (PostgreSQL, Redis, model server, proxy).

Standard library only. Every process runs on 127.0.0.1, detached in its own session, with its pid in
``<state_dir>/run/<name>.pid`` and its output in ``<state_dir>/logs/<name>.log``.

    supervisor.py up --spec SPEC.json       start what is not running, print a JSON report
    supervisor.py down --state-dir DIR      stop every process it started (reverse order), print a JSON report
    supervisor.py status --state-dir DIR    print a table (``--json`` for JSON)

``up`` is idempotent: a service whose pid file names a live process is left alone, so a second ``up``
reports ``"changed": false``. PostgreSQL refuses to run as root: when root, it runs as the ``postgres``
OS user. Redis runs without persistence (``--save ""``).

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
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

PG_BIN_DIRS = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin")
STOP_SIGNALS = {"postgres": signal.SIGINT}  # PostgreSQL's "fast" shutdown; the others get SIGTERM


class SupervisorError(RuntimeError):
    pass


# ------------------------------------------------------------------ processes


def process_alive(pid: int) -> bool:
    """True when ``pid`` is a running process (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


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
        info = {"pid": pid, "port": self.port, "kind": self.kind, "order": self.order, "name": self.name}
        tmp = self.pid_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        tmp.replace(self.pid_file)

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
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

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
        if self.kind == "postgres":
            self._start_postgres()
        elif self.kind == "redis":
            self._start_redis()
        else:
            proc = self.spawn(list(self.spec["argv"]), env=self.spec.get("env"), cwd=self.spec.get("cwd"))
            self.wait_ready(proc, float(self.spec.get("ready_timeout", 60)))

    def _pg_user(self):
        if os.geteuid() != 0:
            return None
        return pwd.getpwnam(self.spec.get("os_user", "postgres"))

    def _start_postgres(self) -> None:
        base = self.state_dir / self.name
        pgdata, sock_dir = base / "pgdata", base / "sock"
        user = self._pg_user()
        preexec = None
        for path in (base, sock_dir):
            path.mkdir(parents=True, exist_ok=True)
            if user is not None:
                os.chown(path, user.pw_uid, user.pw_gid)
        if user is not None:
            uid, gid = user.pw_uid, user.pw_gid

            def preexec():
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)

        if not (pgdata / "PG_VERSION").exists():
            res = subprocess.run([pg_bin("initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=preexec, check=False)
            if res.returncode != 0:
                raise SupervisorError(f"initdb failed for {pgdata}:\n{res.stdout.decode(errors='replace')[-2000:]}")
        stale = pgdata / "postmaster.pid"
        if stale.exists():
            # Left by a crash or a killed machine: PostgreSQL checks it itself, but a pid reused by another process would block it.
            try:
                old = int(stale.read_text().splitlines()[0])
            except (OSError, ValueError, IndexError):
                old = 0
            if old <= 0 or not process_alive(old):
                stale.unlink()
        argv = [pg_bin("postgres"), "-D", str(pgdata), "-p", str(self.port), "-k", str(sock_dir),
                "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"]
        proc = self.spawn(argv, preexec=preexec, cwd=str(base))
        self.wait_ready(proc, float(self.spec.get("ready_timeout", 60)))
        deadline = time.monotonic() + 30
        while subprocess.run([pg_bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)], check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise SupervisorError(f"PostgreSQL on port {self.port} does not accept connections; see {self.log_file}")
            time.sleep(0.2)

    def ensure_databases(self) -> list:
        """Create the databases of the spec that are missing; return their names."""
        created = []
        for name in self.spec.get("databases") or []:
            psql = [pg_bin("psql"), "-X", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres", "-tA", "-c"]
            res = subprocess.run(psql + [f"SELECT 1 FROM pg_database WHERE datname = '{name}'"], capture_output=True, text=True, check=False)
            if res.returncode != 0:
                raise SupervisorError(f"cannot query PostgreSQL on port {self.port}: {res.stderr.strip()}")
            if res.stdout.strip() == "1":
                continue
            res = subprocess.run(psql + [f'CREATE DATABASE "{name}"'], capture_output=True, text=True, check=False)
            if res.returncode != 0:
                raise SupervisorError(f"cannot create database {name}: {res.stderr.strip()}")
            created.append(name)
        return created

    def _start_redis(self) -> None:
        base = self.state_dir / self.name
        base.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(base), "--daemonize", "no"]
        if self.spec.get("password"):
            argv += ["--requirepass", str(self.spec["password"])]
        proc = self.spawn(argv, cwd=str(base))
        self.wait_ready(proc, float(self.spec.get("ready_timeout", 30)))

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the process of the pid file; True when something was stopped."""
        pid = self.running_pid()
        stopped = False
        if pid is not None:
            sig = STOP_SIGNALS.get(self.kind, signal.SIGTERM)
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout
            while process_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if process_alive(pid):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 10
                while process_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
            stopped = True
        self.pid_file.unlink(missing_ok=True)
        return stopped


def pg_bin(name: str) -> str:
    for base in PG_BIN_DIRS:
        path = Path(base) / name
        if path.exists():
            return str(path)
    found = shutil.which(name)
    if found:
        return found
    raise SupervisorError(f"PostgreSQL program {name!r} not found: install the postgresql package")


# ------------------------------------------------------------------ commands


def load_spec(path: str) -> tuple:
    spec = json.loads(Path(path).read_text())
    state_dir = Path(spec["state_dir"]).resolve()
    services = [Service(state_dir, item, order=n) for n, item in enumerate(spec.get("services") or [])]
    return state_dir, services


def cmd_up(spec_path: str) -> dict:
    state_dir, services = load_spec(spec_path)
    (state_dir / "run").mkdir(parents=True, exist_ok=True)
    report = {"changed": False, "started": [], "running": [], "databases_created": [], "services": {}}
    for svc in services:
        pid = svc.running_pid()
        if pid is None:
            svc.pid_file.unlink(missing_ok=True)
            if port_open(svc.port):
                raise SupervisorError(f"port {svc.port} on 127.0.0.1 is taken by a process this platform did not start "
                                      f"(wanted for {svc.name}): stop it or choose another port")
            svc.start()
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
