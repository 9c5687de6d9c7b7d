# Apache-2.0 (see LICENSE)
"""PostgreSQL and Redis on 127.0.0.1: the one launcher of the local platform and of the test suite.

Standard library only, so that ``files/local/supervisor.py`` runs it from a fresh checkout with any Python 3.9+.
The tests use it through ``tests/support/services.py`` and the benchmarks through the tests' helpers.

Each server runs as a child process in its own session (so that it outlives a supervisor that exits), with its data
in a directory the caller chooses and its output appended to a log file. PostgreSQL refuses to run as root: when we
are root it runs as the ``postgres`` OS user. Redis runs without persistence.

    pg = PostgresServer(data_dir, port=15432, log_file=..., durable=True).start()
    pg.ensure_databases(["litellm_db"]); pg.dsn("litellm_db"); pg.stop()
    redis = RedisServer(data_dir, port=16379).start(); redis.url; redis.stop()

``stop()`` works on the process this object started; ``stop_process(pid, ...)`` stops one known only by its pid
(the supervisor's ``down`` runs in another process than its ``up``).
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

PG_BIN_DIRS = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin")


class ServiceError(RuntimeError):
    """A server could not be found, started or queried; the message says which and why."""


# ------------------------------------------------------------------ ports and processes


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """Wait until something accepts connections on 127.0.0.1:port (fails early when ``proc`` exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"process exited with {proc.returncode} before port {port} opened")
        if port_open(port):
            return
        time.sleep(0.05)
    raise ServiceError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


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
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def stop_process(target, sig: int = signal.SIGTERM, timeout: float = 15.0) -> bool:
    """Stop a process given as a ``Popen`` or a pid: ``sig``, then SIGKILL to its process group after ``timeout``.

    Returns True when a running process was stopped."""
    proc = target if isinstance(target, subprocess.Popen) else None
    pid = proc.pid if proc is not None else int(target)
    if (proc.poll() is not None) if proc is not None else not process_alive(pid):
        return False

    def gone(wait: float) -> bool:
        if proc is not None:
            try:
                proc.wait(timeout=wait)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + wait
        while process_alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return True
    if not gone(timeout):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        gone(10)
    return True


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _spawn(name: str, port: int, argv: list, log_file: Path, cwd: Path, preexec=None) -> subprocess.Popen:
    if port_open(port):
        # Otherwise the server that holds the port would answer the readiness check in place of the new one.
        raise ServiceError(f"port {port} on 127.0.0.1 is already in use (wanted for {name}): stop what holds it or choose another port")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        try:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=str(cwd), preexec_fn=preexec,
                                    start_new_session=True, close_fds=True)
        except OSError as exc:
            raise ServiceError(f"cannot start {name} ({argv[0]}): {exc}") from exc


def _wait_ready(name: str, proc: subprocess.Popen, port: int, timeout: float, log_file: Path, ready=None) -> None:
    """Wait until ``port`` accepts connections and ``ready()`` (if given) is true; explain a failure with the log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"{name} exited with status {proc.returncode} while starting; last lines of {log_file}:\n"
                               f"{log_tail(log_file)}")
        if port_open(port) and (ready is None or ready()):
            return
        time.sleep(0.1)
    stop_process(proc)
    raise ServiceError(f"{name} did not become ready on 127.0.0.1:{port} within {timeout:.0f}s; see {log_file}")


# ------------------------------------------------------------------ PostgreSQL


def pg_bin(name: str) -> str:
    """Path of a PostgreSQL program (initdb, postgres, pg_isready, psql)."""
    for base in PG_BIN_DIRS:
        path = Path(base) / name
        if path.exists():
            return str(path)
    found = shutil.which(name)
    if found:
        return found
    raise ServiceError(f"PostgreSQL program {name!r} not found: install the postgresql package")


class PostgresServer:
    """A PostgreSQL cluster under ``data_dir`` (``pgdata/``, ``sock/``) with trust authentication on loopback.

    ``durable=False`` turns fsync, synchronous commit and full-page writes off: for tests, whose data is thrown away.
    """

    STOP_SIGNAL = signal.SIGINT  # PostgreSQL's "fast" shutdown: disconnect clients, then exit cleanly

    def __init__(self, data_dir, port: int | None = None, user: str = "postgres", log_file=None, durable: bool = True,
                 max_connections: int = 300, ready_timeout: float = 60.0, os_user: str = "postgres"):
        self.data_dir = Path(data_dir).resolve()
        self.port = int(port or free_port())
        self.user = user
        self.log_file = Path(log_file) if log_file else self.data_dir / "postgres.log"
        self.durable = durable
        self.max_connections = max_connections
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None
        self._as_user = pwd.getpwnam(os_user) if os.geteuid() == 0 else None

    def _preexec(self):
        if self._as_user is None:
            return None
        uid, gid = self._as_user.pw_uid, self._as_user.pw_gid

        def demote():
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)

        return demote

    def _own(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        if self._as_user is not None:
            os.chown(path, self._as_user.pw_uid, self._as_user.pw_gid)

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def argv(self) -> list:
        argv = [pg_bin("postgres"), "-D", str(self.data_dir / "pgdata"), "-p", str(self.port), "-k", str(self.data_dir / "sock"),
                "-c", "listen_addresses=127.0.0.1", "-c", f"max_connections={self.max_connections}"]
        if not self.durable:
            argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        return argv

    def start(self) -> PostgresServer:
        pgdata = self.data_dir / "pgdata"
        self._own(self.data_dir)
        self._own(self.data_dir / "sock")
        if not (pgdata / "PG_VERSION").exists():
            res = subprocess.run([pg_bin("initdb"), "-D", str(pgdata), "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-sync"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=self._preexec(),
                                 check=False)
            if res.returncode != 0:
                raise ServiceError(f"initdb failed for {pgdata}:\n{res.stdout.decode(errors='replace')[-2000:]}")
        stale = pgdata / "postmaster.pid"
        if stale.exists():
            # Left by a crash or a killed machine; a pid since reused by another process would block the start.
            try:
                old = int(stale.read_text().splitlines()[0])
            except (OSError, ValueError, IndexError):
                old = 0
            if old <= 0 or not process_alive(old):
                stale.unlink()
        self.proc = _spawn("PostgreSQL", self.port, self.argv(), self.log_file, self.data_dir, self._preexec())
        _wait_ready("PostgreSQL", self.proc, self.port, self.ready_timeout, self.log_file, ready=self.accepts_queries)
        return self

    def accepts_queries(self) -> bool:
        res = subprocess.run([pg_bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        return res.returncode == 0

    def _psql(self, sql: str, **variables) -> str:
        argv = [pg_bin("psql"), "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
                "-d", "postgres"]
        for name, value in variables.items():
            argv += ["-v", f"{name}={value}"]
        res = subprocess.run(argv, input=sql, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise ServiceError(f"PostgreSQL on port {self.port}: {res.stderr.strip()}")
        return res.stdout.strip()

    def create_database(self, name: str) -> str:
        """Create database ``name`` if it is missing; return its DSN."""
        self.ensure_databases([name])
        return self.dsn(name)

    def ensure_databases(self, names) -> list:
        """Create the databases of ``names`` that are missing; return the names created."""
        created = []
        for name in names:
            if self._psql("SELECT 1 FROM pg_database WHERE datname = :'name';\n", name=name) == "1":
                continue
            self._psql('CREATE DATABASE :"name";\n', name=name)
            created.append(name)
        return created

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, self.STOP_SIGNAL, timeout=30)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


# ------------------------------------------------------------------ Redis


class RedisServer:
    """A Redis server without persistence on loopback, working directory ``data_dir``."""

    STOP_SIGNAL = signal.SIGTERM

    def __init__(self, data_dir, port: int | None = None, password: str | None = None, log_file=None, ready_timeout: float = 30.0):
        self.data_dir = Path(data_dir).resolve()
        self.port = int(port or free_port())
        self.password = password
        self.log_file = Path(log_file) if log_file else self.data_dir / "redis.log"
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def argv(self) -> list:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.data_dir), "--daemonize", "no"]
        if self.password:
            argv += ["--requirepass", self.password]
        return argv

    def start(self) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = _spawn("Redis", self.port, self.argv(), self.log_file, self.data_dir)
        _wait_ready("Redis", self.proc, self.port, self.ready_timeout, self.log_file)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, self.STOP_SIGNAL)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()
