"""Shared helpers for the reliability suite: background load, private PostgreSQL/Redis servers, spend checks."""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import http.client
import json
import threading
import time
import uuid
from urllib.parse import urlparse

import psycopg2
import pytest

from tests.conftest import REPO
from tests.support.proxy import INPUT_COST, OUTPUT_COST


def token_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def is_error_shape(body) -> bool:
    """LiteLLM's error shape: {"error": {"message", "type", "param", "code"}} with a non-empty message."""
    err = body.get("error") if isinstance(body, dict) else None
    return isinstance(err, dict) and {"message", "type", "param", "code"} <= set(err) and bool(err["message"])


class Load:
    """Background load: ``threads`` threads, each with its own keep-alive connection, post chat completions to
    ``url`` round-robin over ``keys`` until ``stop()``. Records every outcome; per key the usage of the 200s.

    ``statuses`` counts HTTP statuses (as strings) and ``conn`` connection-level failures (no HTTP answer).
    ``bad`` keeps (status, body) of answers that are neither a 200 with usage nor an error in LiteLLM's shape;
    ``first`` the body of the first answer of each status other than 200 (to name an unexpected status's cause).
    """

    def __init__(self, url: str, keys: list, model: str = "stub-model", threads: int = 3, content: str = "one two three",
                 max_tokens: int = 4, pause: float = 0.005, timeout: float = 60.0):
        parsed = urlparse(url)
        self.host, self.port = parsed.hostname, parsed.port
        self.keys = list(keys)
        self.model = model
        self.threads = threads
        self.content = content
        self.max_tokens = max_tokens
        self.pause = pause
        self.timeout = timeout
        self.lock = threading.Lock()
        self.outcomes: list = []  # status strings in the order they arrived ("conn" for no answer)
        self.statuses = collections.Counter()
        self.usage = collections.defaultdict(lambda: [0, 0, 0])  # key -> [ok requests, prompt tokens, completion tokens]
        self.bad: list = []
        self.first: dict = {}
        self._stop = threading.Event()
        self._threads: list = []
        self._n = 0

    def start(self) -> Load:
        for i in range(self.threads):
            t = threading.Thread(target=self._run, args=(i,), daemon=True, name=f"load-{i}")
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> Load:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.timeout + 10)
        return self

    def count(self) -> int:
        with self.lock:
            return len(self.outcomes)

    def since(self, mark: int) -> collections.Counter:
        """Outcomes that arrived after ``mark`` (a value of ``count()``)."""
        with self.lock:
            return collections.Counter(self.outcomes[mark:])

    def wait_more(self, n: int, message: str = "load progress", timeout: float = 60.0, status: str = None) -> int:
        """Wait until ``n`` more outcomes (or ``n`` more with ``status``) have arrived; returns the mark taken before."""
        from tests.proxy.conftest import wait_for

        mark = self.count()
        if status is None:
            wait_for(lambda: self.count() >= mark + n, timeout=timeout, interval=0.02, message=message)
        else:
            wait_for(lambda: self.since(mark)[status] >= n, timeout=timeout, interval=0.02, message=message)
        return mark

    def record(self, status: str, key: str = None, data=None) -> None:
        """Count one answer (also used for requests a test sends itself with a key under load, so the spend check includes them)."""
        with self.lock:
            self.outcomes.append(status)
            self.statuses[status] += 1
            if status != "200":
                self.first.setdefault(status, data)
            if status == "200":
                usage = data.get("usage") if isinstance(data, dict) else None
                if not isinstance(usage, dict):
                    self.bad.append((status, data))
                    return
                u = self.usage[key]
                u[0] += 1
                u[1] += int(usage.get("prompt_tokens") or 0)
                u[2] += int(usage.get("completion_tokens") or 0)
            elif status != "conn" and not is_error_shape(data):
                self.bad.append((status, data))

    def _run(self, index: int) -> None:
        conn = None
        while not self._stop.is_set():
            with self.lock:
                key = self.keys[self._n % len(self.keys)]
                self._n += 1
            body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": self.content}], "max_tokens": self.max_tokens})
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                conn.request("POST", "/v1/chat/completions", body, {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
                resp = conn.getresponse()
                raw = resp.read()
            except (OSError, http.client.HTTPException):
                self.record("conn")
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
                continue
            try:
                data = json.loads(raw) if raw else None
            except ValueError:
                data = raw.decode("utf-8", "replace")
            self.record(str(resp.status), key, data)
            if self.pause:
                time.sleep(self.pause)
        if conn is not None:
            conn.close()


def recorded_spend(dsn: str, keys: list) -> dict:
    """key -> (successful spend log rows, prompt tokens, completion tokens, key spend) as recorded in PostgreSQL."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            out = {}
            for key in keys:
                cur.execute('SELECT count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0) FROM "LiteLLM_SpendLogs" '
                            "WHERE api_key = %s AND status = 'success'", (token_of(key),))
                rows, prompt, completion = cur.fetchone()
                cur.execute('SELECT spend FROM "LiteLLM_VerificationToken" WHERE token = %s', (token_of(key),))
                spend = cur.fetchone()
                out[key] = (int(rows), int(prompt), int(completion), float(spend[0]) if spend else None)
            return out
    finally:
        conn.close()


def expected_spend(usage: dict, keys: list) -> dict:
    """key -> (ok requests, prompt, completion, cost) from what the clients received (``usage``: key -> [n, prompt, completion])."""
    out = {}
    for key in keys:
        n, prompt, completion = usage.get(key, (0, 0, 0))
        out[key] = (n, prompt, completion, prompt * INPUT_COST + completion * OUTPUT_COST)
    return out


def assert_spend_matches(dsn: str, usage: dict, keys: list) -> None:
    """The database holds, per key, exactly the requests and tokens the clients got back, and the key spend to the token."""
    got = recorded_spend(dsn, keys)
    want = expected_spend(usage, keys)
    for key in keys:
        assert got[key][:3] == want[key][:3], f"key {token_of(key)[:12]}: recorded {got[key][:3]} != client usage {want[key][:3]}"
        assert got[key][3] is not None and abs(got[key][3] - want[key][3]) < min(INPUT_COST, OUTPUT_COST) / 2, \
            f"key {token_of(key)[:12]}: key spend {got[key][3]!r} != client usage cost {want[key][3]!r}"


@pytest.fixture
def own_pg(work_dir):
    """A private PostgreSQL server that a test may stop and restart without disturbing the session server."""
    from tests.support.services import PostgresServer

    server = PostgresServer(work_dir / f"pg-rel-{uuid.uuid4().hex[:6]}").start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(work_dir):
    """A private Redis server that a test may stop, restart or flush."""
    from tests.support.services import RedisServer

    server = RedisServer(work_dir / f"redis-rel-{uuid.uuid4().hex[:6]}").start()
    yield server
    server.stop()


@contextlib.contextmanager
def bench_results_lock():
    """bench/run.py's documented lines write the fixed .work/bench/results.json: one such run and its reading at a time
    (test_bench_doc.py and test_bench_doc_lines.py may run in two pytest processes at once)."""
    path = REPO / ".work" / "bench" / ".results.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
