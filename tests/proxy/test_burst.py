"""A workshop burst: the listen backlog the proxy asks for, and cold keys looked up once and in batches."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import threading
import time
import uuid

import psycopg2
import pytest

from tests.proxy.conftest import INPUT_COST, OUTPUT_COST, chat, db_value, new_key, wait_for
from tests.support.proxy import http_json
from tests.support.tools import require_tool


def listen_backlog(port: int) -> int:
    """The accept-queue limit of the socket listening on 127.0.0.1:port, as the kernel reports it
    (``ss``: for a LISTEN socket the Send-Q column is the backlog)."""
    out = subprocess.run([require_tool("ss", "iproute2"), "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True, timeout=10).stdout
    rows = [line.split() for line in out.splitlines() if line.strip()]
    assert len(rows) == 1, f"expected one listening socket on port {port}, ss printed:\n{out}"
    return int(rows[0][2])


def somaxconn() -> int:
    with open("/proc/sys/net/core/somaxconn") as fh:
        return int(fh.read())


def test_the_listening_socket_has_the_default_backlog(proxy):
    # aiohttp listens again on the socket it is given; without an explicit backlog the queue shrinks to 128.
    assert listen_backlog(proxy.port) == min(4096, somaxconn())


@pytest.mark.parametrize("workers", [1, 2])
def test_the_backlog_setting_reaches_the_socket(proxy, proxy_factory, workers):
    p = proxy_factory(dsn=proxy.dsn, workers=workers, env={"LITEMAAS_LISTEN_BACKLOG": "1000"})
    try:
        assert listen_backlog(p.port) == min(1000, somaxconn())
        key = new_key(p)
        assert chat(p, key)[0] == 200
    finally:
        assert p.terminate() == 0


@pytest.mark.parametrize("value", ["0", "-5", "many", "1.5"])
def test_a_bad_backlog_stops_the_proxy_at_start_naming_the_setting(proxy, value, tmp_path):
    from tests.support.proxy import PROXY_SRC, ProxyProcess

    p = ProxyProcess(proxy.dsn, None, work_dir=tmp_path, env={"LITEMAAS_LISTEN_BACKLOG": value})
    p.write_config()
    res = subprocess.run([sys.executable, "-m", "litemaas_proxy", "--host", "127.0.0.1", "--port", "0", "--config", str(p.config_path)],
                         env=p.env(), cwd=str(PROXY_SRC), capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode != 0
    assert f"Invalid LITEMAAS_LISTEN_BACKLOG {value!r}: expected a positive integer" in res.stderr


# ---------------------------------------------------------------- cold keys

def metric(proxy, name: str) -> float:
    status, text, dummy = http_json("GET", proxy.url + "/metrics")
    assert status == 200
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def burst(proxy, keys: list) -> list:
    """One thread per key, all released at once; returns (status, body) per request."""
    gate = threading.Barrier(len(keys))
    results = [None] * len(keys)

    def one(i, key):
        gate.wait()
        status, body, dummy = chat(proxy, key)
        results[i] = (status, body)

    threads = [threading.Thread(target=one, args=(i, k)) for i, k in enumerate(keys)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_concurrent_first_requests_with_one_new_key_make_one_database_lookup(proxy, proxy_factory):
    key = new_key(proxy, key_alias=f"burst-{uuid.uuid4().hex[:8]}")
    # A fresh process: nothing cached. The key cache TTL is long so that only the first requests miss.
    p = proxy_factory(dsn=proxy.dsn, env={"LITEMAAS_KEY_CACHE_TTL": "600"})
    before = metric(p, "litemaas_key_lookups_total")
    results = burst(p, [key] * 40)
    assert [s for s, dummy in results] == [200] * 40, results
    assert all(body["usage"]["completion_tokens"] == 5 for dummy, body in results)
    assert metric(p, "litemaas_key_lookups_total") - before == 1
    assert p.terminate() == 0


def test_concurrent_first_requests_with_many_new_keys_are_looked_up_in_batches(proxy, proxy_factory):
    keys = [new_key(proxy, key_alias=f"burst-{uuid.uuid4().hex[:8]}") for dummy in range(40)]
    unknown = "sk-" + uuid.uuid4().hex
    p = proxy_factory(dsn=proxy.dsn, env={"LITEMAAS_KEY_CACHE_TTL": "600"})
    lookups, batches = metric(p, "litemaas_key_lookups_total"), metric(p, "litemaas_key_lookup_batches_total")
    # The key table is held locked while the burst starts, so the first lookup queries wait, as they do on a busy
    # database: the misses that arrive meanwhile must wait for a free query slot and then share one query.
    lock = psycopg2.connect(proxy.dsn)
    blocked_sql = ("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database() "
                   "AND query LIKE %s")
    try:
        lock.cursor().execute('LOCK TABLE "LiteLLM_VerificationToken" IN ACCESS EXCLUSIVE MODE')
        box: dict = {}
        runner = threading.Thread(target=lambda: box.update(results=burst(p, keys + [unknown])))
        runner.start()
        wait_for(lambda: db_value(proxy.dsn, blocked_sql, "%row_to_json(k.*)%") >= 2,
                 message="the first key lookups to wait for the lock")
        time.sleep(1.0)  # the rest of the burst arrives (a gap, not a measurement)
    finally:
        lock.rollback()
        lock.close()
    runner.join(90)
    results = box["results"]
    assert [s for s, dummy in results[:-1]] == [200] * 40, results
    status, body = results[-1]
    assert status == 401 and body["error"]["code"] == "401" and "token_not_found_in_db" in body["error"]["type"]
    # Every key is looked up exactly once, and the lookups share queries.
    assert metric(p, "litemaas_key_lookups_total") - lookups == 41
    # Two queries were held by the lock; the misses that arrived meanwhile shared the next ones.
    assert metric(p, "litemaas_key_lookup_batches_total") - batches <= 10
    # Each key resolved to its own row: every request is charged to the key that made it, once.
    assert p.terminate() == 0  # SIGTERM flushes the spend
    hashes = [hashlib.sha256(k.encode()).hexdigest() for k in keys]
    assert db_value(proxy.dsn, 'SELECT count(DISTINCT api_key) FROM "LiteLLM_SpendLogs" WHERE api_key = ANY(%s)', hashes) == 40
    assert db_value(proxy.dsn, 'SELECT count(*) FROM "LiteLLM_VerificationToken" WHERE token = ANY(%s) AND spend = %s', hashes,
                    2 * INPUT_COST + 5 * OUTPUT_COST) == 40


# ---------------------------------------------------------------- garbage collection while serving

def test_serving_begins_with_the_start_up_objects_out_of_the_collectors_reach():
    # A burst must not meet a full collection of everything the start made (measured: 60-75 ms pauses per burst).
    import asyncio
    import gc
    import signal
    import socket

    from aiohttp import web

    from litemaas_proxy import cli

    thresholds = gc.get_threshold()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    app = web.Application()

    async def hello(_request):
        return web.Response(text="hello")

    app.router.add_get("/", hello)
    life = cli._Lifecycle(budget=60, backlog=16)
    seen = {}

    async def main():
        serving = asyncio.ensure_future(life.run(app, sock, {"access_log": None}))
        for dummy in range(200):
            try:
                reader, writer = await asyncio.open_connection(*sock.getsockname())
                break
            except OSError:
                await asyncio.sleep(0.02)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        seen["answer"] = (await reader.read()).decode()
        writer.close()
        seen["frozen"], seen["thresholds"] = gc.get_freeze_count(), gc.get_threshold()
        life.stop(signal.SIGTERM)
        await serving

    try:
        asyncio.run(main())
    finally:
        if life.watchdog is not None:
            life.watchdog.cancel()
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        sock.close()
    assert seen["answer"].startswith("HTTP/1.1 200") and seen["answer"].endswith("hello"), seen["answer"]
    assert seen["frozen"] > 1000
    assert seen["thresholds"] == cli.GC_THRESHOLDS
