"""Process lifecycle: concurrent migrations, several workers, Redis outage, config file models."""

from __future__ import annotations

import threading
import uuid

from tests.proxy.conftest import chat, db_value, new_key, wait_for
from tests.support.proxy import ProxyProcess, http_json, stub_models


def test_three_replicas_migrate_one_fresh_database_at_once(pg_server, redis_server, stub_upstream, work_dir):
    dsn = pg_server.create_database(f"proxy_race_{uuid.uuid4().hex[:6]}")
    procs = [ProxyProcess(dsn, redis_server.url, stub_models(stub_upstream.url), work_dir=work_dir / f"race-{i}-{uuid.uuid4().hex[:4]}")
             for i in range(3)]
    errors = []

    def start(p):
        try:
            p.start()
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(p,)) for p in procs]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert db_value(dsn, 'SELECT version FROM "LiteMaaS_SchemaVersion" WHERE id = 1') == 1
        key = new_key(procs[0])
        for p in procs:
            assert chat(p, key)[0] == 200
    finally:
        for p in procs:
            p.terminate()


def test_several_workers_share_the_port(proxy, proxy_factory):
    p = proxy_factory(dsn=proxy.dsn, workers=2)
    key = new_key(p, rpm_limit=4)
    statuses = [chat(p, key)[0] for dummy in range(6)]
    # Whatever worker answers, the limit is one (Redis): 4 pass, then 429.
    assert statuses == [200, 200, 200, 200, 429, 429]
    assert p.terminate() == 0


def test_redis_outage_fails_open_and_readiness_reports_it(proxy_factory, work_dir):
    from tests.support.services import RedisServer

    redis = RedisServer(work_dir / f"redis-outage-{uuid.uuid4().hex[:6]}").start()
    try:
        p = proxy_factory(database="proxy_redis_outage", redis_url=redis.url)
        key = new_key(p, rpm_limit=100)
        assert chat(p, key)[0] == 200
        redis.stop()
        status, data, dummy = http_json("GET", p.url + "/health/readiness")
        assert status == 503 and "redis" in data["cache"]
        assert chat(p, key)[0] == 200  # limits fail open; spend still goes to PostgreSQL
        redis.start()
        wait_for(lambda: http_json("GET", p.url + "/health/readiness")[0] == 200, message="ready again")
    finally:
        redis.stop()


def test_master_key_and_missing_db_url(stub_upstream, redis_server, work_dir):
    """Without DATABASE_URL the proxy still serves config models with the master key (like LiteLLM without a DB)."""
    p = ProxyProcess(None, redis_server.url, stub_models(stub_upstream.url), work_dir=work_dir / f"nodb-{uuid.uuid4().hex[:4]}")
    try:
        p.start()
        status, data, dummy = chat(p, p.master_key)
        assert status == 200 and data["usage"]["completion_tokens"] == 5
        status, data = p.admin("POST", "/key/generate", {})
        assert status == 500 and data["error"]["type"] == "no_db_connection"
    finally:
        p.terminate()
