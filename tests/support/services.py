"""Real PostgreSQL and Redis servers for tests, benchmarks and the local platform.

Each server runs as a child process on 127.0.0.1 with a free port and its data in a
directory the caller chooses (under the checkout). Nothing here needs systemd or containers.
PostgreSQL refuses to run as root, so when we are root it runs as the ``postgres`` OS user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PG_BIN_CANDIDATES = ("/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """Wait until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def pg_bin(name: str) -> str:
    for base in PG_BIN_CANDIDATES:
        path = Path(base) / name
        if path.exists():
            return str(path)
    found = shutil.which(name)
    if found:
        return found
    raise FileNotFoundError(f"PostgreSQL binary {name!r} not found; install the postgresql package")


def _stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


class PostgresServer:
    """A throw-away PostgreSQL cluster with trust authentication on loopback."""

    def __init__(self, data_dir: str | os.PathLike, port: int | None = None, user: str = "postgres"):
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.user = user
        self.proc: subprocess.Popen | None = None
        self._as_user = None
        if os.geteuid() == 0:
            self._as_user = pwd.getpwnam("postgres")

    def _preexec(self):
        if self._as_user is None:
            return None
        uid, gid = self._as_user.pw_uid, self._as_user.pw_gid

        def demote():
            os.setgid(gid)
            os.setuid(uid)

        return demote

    def _chown(self, path: Path) -> None:
        if self._as_user is not None:
            os.chown(path, self._as_user.pw_uid, self._as_user.pw_gid)

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> PostgresServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.data_dir)
        pgdata = self.data_dir / "pgdata"
        sock_dir = self.data_dir / "sock"
        sock_dir.mkdir(exist_ok=True)
        self._chown(sock_dir)
        if not (pgdata / "PG_VERSION").exists():
            subprocess.run(
                [pg_bin("initdb"), "-D", str(pgdata), "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-sync"],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=self._preexec(),
            )
        log = open(self.data_dir / "postgres.log", "ab")
        self.proc = subprocess.Popen(
            [
                pg_bin("postgres"), "-D", str(pgdata), "-p", str(self.port), "-k", str(sock_dir),
                "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off", "-c", "max_connections=300",
            ],
            stdout=log,
            stderr=log,
            preexec_fn=self._preexec(),
            start_new_session=True,
        )
        wait_for_port(self.port, proc=self.proc)
        # Wait until the server accepts queries, not just TCP connections.
        deadline = time.monotonic() + 30
        while True:
            res = subprocess.run(
                [pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
            )
            if res.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("PostgreSQL did not become ready")
            time.sleep(0.1)
        return self

    def create_database(self, name: str) -> str:
        """Create database ``name`` if missing and return its DSN."""
        import psycopg2  # local import: only the callers that need a DB pay for it

        conn = psycopg2.connect(self.dsn())
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.dsn(name)

    def stop(self) -> None:
        # SIGINT = "fast" shutdown: disconnect clients, then exit cleanly.
        _stop(self.proc, signal.SIGINT)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class RedisServer:
    """A Redis server without persistence on loopback."""

    def __init__(self, data_dir: str | os.PathLike, port: int | None = None, password: str | None = None):
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.password = password
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.data_dir), "--daemonize", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        log = open(self.data_dir / "redis.log", "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)
        wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()
