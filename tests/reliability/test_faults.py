"""Faults under load: Redis stopped, PostgreSQL restarted, upstream down/slow/timing out, SIGTERM, Redis FLUSHALL.

Each test keeps background load (tests/reliability/conftest.py ``Load``: threads with keep-alive connections) running
through the fault and checks what the clients got and what PostgreSQL recorded. tests/proxy proves the single-request
behaviour; these add the "while traffic is flowing" part. No timing assertions: waits are generous polling deadlines.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from litemaas_proxy.config import load_settings
from tests.proxy.conftest import chat, new_key, uid, wait_for
from tests.reliability.conftest import Load, assert_spend_matches, is_error_shape, recorded_spend
from tests.support.proxy import INPUT_COST, OUTPUT_COST, http_json
from tests.support.stub_upstream import StubUpstream


def dbname(prefix: str) -> str:
    return uid(prefix).replace("-", "_")


def readiness(p) -> int:
    return http_json("GET", p.url + "/health/readiness")[0]


def liveliness(p) -> int:
    return http_json("GET", p.url + "/health/liveliness")[0]


def model_health(p, model_id: str) -> dict:
    status, data = p.admin("GET", f"/model/info?litellm_model_id={model_id}")
    assert status == 200, data
    return data["data"][0]["model_info"]["health"]


# ---------------------------------------------------------------- Redis stopped mid-load

def test_redis_failure_mode_setting_is_read_from_env_and_config(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("general_settings:\n  redis_failure_mode: closed\n")
    assert load_settings(None, env={}).redis_failure_mode == "open"  # the default keeps today's behaviour
    assert load_settings(str(cfg), env={}).redis_failure_mode == "closed"
    assert load_settings(str(cfg), env={"LITEMAAS_REDIS_FAILURE_MODE": "Open"}).redis_failure_mode == "open"  # the environment wins
    with pytest.raises(ValueError, match="redis failure mode"):
        load_settings(None, env={"LITEMAAS_REDIS_FAILURE_MODE": "half-open"})


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_redis_stopped_mid_load(proxy_factory, own_redis, mode):
    # "closed" comes from the config file's general_settings, "open" is the default (no setting at all).
    extra = {"general_settings": {"redis_failure_mode": "closed"}} if mode == "closed" else {}
    p = proxy_factory(database=dbname(f"redis_{mode}"), redis_url=own_redis.url, config_extra=extra)
    limited = [new_key(p, rpm_limit=1_000_000, key_alias=uid("rl")) for dummy in range(2)]
    unlimited = new_key(p, key_alias=uid("free"))  # no limits: never needs a Redis check
    load = Load(p.url, limited, threads=3).start()
    try:
        load.wait_more(20, "load before the outage", status="200")
        own_redis.stop()
        assert readiness(p) == 503
        if mode == "open":
            mark = load.wait_more(30, "load while Redis is down")
            assert set(load.since(mark)) == {"200"}, load.since(mark)  # limits fail open: traffic flows unchecked
            status, data, dummy = chat(p, limited[0], max_tokens=4)
            load.record(str(status), limited[0], data)
            assert status == 200, data
        else:
            mark = load.wait_more(20, "503s while Redis is down", status="503")
            assert set(load.since(mark)) <= {"200", "503"}  # a 200 can only be a request admitted before the outage
            status, data, headers = chat(p, limited[0])
            assert status == 503 and is_error_shape(data) and data["error"]["code"] == "503", data
            assert "Redis" in data["error"]["message"] and headers.get("retry-after") == "1"
            # The 503s count as failed requests, not as rate-limit rejections (the rejection alert must not fire).
            import urllib.request

            with urllib.request.urlopen(p.url + "/metrics", timeout=30) as resp:
                exposition = resp.read().decode()
            assert 'status_code="503"' in exposition
            assert not [line for line in exposition.splitlines() if line.startswith("litemaas_rate_limit_rejections_total{")], exposition
        assert chat(p, unlimited)[0] == 200  # keys without limits are not affected in either mode
        assert liveliness(p) == 200  # the proxy stays up
        own_redis.start()
        wait_for(lambda: readiness(p) == 200, timeout=30, message="ready after Redis returned")
        load.wait_more(20, "load after Redis returned", status="200")
    finally:
        load.stop()
    assert not load.bad, load.bad[:3]
    assert load.statuses["conn"] == 0
    # Limits are enforced again once Redis is back.
    probe = new_key(p, rpm_limit=3)
    assert [chat(p, probe)[0] for dummy in range(4)] == [200, 200, 200, 429]
    # Nothing refused was charged; everything answered was.
    assert p.terminate() == 0
    assert_spend_matches(p.dsn, load.usage, limited)


def test_parallel_slots_stay_exact_across_a_redis_outage(own_redis):
    """The limiter against a real Redis that becomes unreachable: slot releases that could not be sent are applied
    once it is back, and requests admitted unchecked (mode open) release nothing, so max_parallel_requests stays exact."""
    import asyncio

    from litemaas_proxy.errors import ProxyError
    from litemaas_proxy.fastredis import FastRedis
    from litemaas_proxy.limits import Descriptor, Limiter, build_args
    from tests.support.services import free_port

    async def scenario():
        live, dead = FastRedis(own_redis.url), FastRedis(f"redis://127.0.0.1:{free_port()}/0")
        limiter = Limiter(live, 60, failure_mode="open")
        descs = [Descriptor("api_key", uid("par"), None, None, 2)]
        keys, argv = build_args(descs, 60)
        try:
            assert await limiter.check(descs, keys, argv) is not None  # A1 takes a slot
            assert await limiter.check(descs, keys, argv) is not None  # A2 takes the second slot
            limiter.client = dead  # Redis unreachable from here on
            assert await limiter.check(descs, keys, argv) is None  # B is admitted unchecked (fail open): no slot
            limiter.post(descs, keys, 0, True)  # B ends
            limiter.post(descs, keys, 0, True)  # A1 ends: its slot must be given back
            await limiter.flush()
            limiter.client = live  # Redis is back; A2 is still in flight
            assert await limiter.check(descs, keys, argv) is not None  # one slot is free (A1's)
            with pytest.raises(ProxyError) as err:
                await limiter.check(descs, keys, argv)  # both slots taken (A2 and the new one)
            assert err.value.status == 429 and "max_parallel_requests" in err.value.message
        finally:
            await live.close()
            await dead.close()

    asyncio.run(scenario())


# ---------------------------------------------------------------- PostgreSQL restarted mid-load

def test_postgres_restarted_mid_load_loses_no_spend_and_cached_keys_keep_working(proxy_factory, own_pg):
    dsn = own_pg.create_database("litellm_db")
    # A short key cache TTL that the outage outlasts several times: cached keys are served stale while the database is away.
    p = proxy_factory(dsn=dsn, env={"LITEMAAS_KEY_CACHE_TTL": "0.5"})
    keys = [new_key(p, key_alias=uid("pg"), rpm_limit=1_000_000) for dummy in range(3)]
    unused = new_key(p, key_alias=uid("pg-unused"))  # exists, but never authenticated on this proxy before the outage
    load = Load(p.url, keys, threads=3).start()
    try:
        load.wait_more(30, "load before the outage", status="200")
        own_pg.stop()
        assert readiness(p) == 503
        time.sleep(1.5)  # longer than the key cache TTL: the entries are stale now and every reload fails
        mark = load.wait_more(30, "load while PostgreSQL is down")
        assert set(load.since(mark)) == {"200"}, load.since(mark)
        status, data, dummy = chat(p, keys[0], max_tokens=4)
        load.record(str(status), keys[0], data)
        assert status == 200, data
        # A key that is not in the cache cannot be verified: a clear 503, not a 401.
        status, data, dummy = chat(p, unused)
        assert status == 503 and is_error_shape(data) and data["error"]["type"] == "no_db_connection", data
        own_pg.start()
        wait_for(lambda: readiness(p) == 200, timeout=60, interval=0.2, message="ready after PostgreSQL returned")
        load.wait_more(30, "load after PostgreSQL returned", status="200")
        assert chat(p, unused)[0] == 200
    finally:
        load.stop()
    assert not load.bad, load.bad[:3]
    assert set(load.statuses) == {"200"}, load.statuses
    assert p.terminate() == 0  # SIGTERM: whatever is still buffered is flushed
    assert_spend_matches(dsn, load.usage, keys)


def test_cached_keys_stop_authenticating_after_the_stale_bound(proxy_factory, own_pg):
    # LITEMAAS_KEY_STALE_MAX bounds how long a cached key is trusted while the database cannot confirm it
    # (a key revoked just before the outage must not work for the whole outage).
    dsn = own_pg.create_database("litellm_db")
    p = proxy_factory(dsn=dsn, env={"LITEMAAS_KEY_CACHE_TTL": "0.2", "LITEMAAS_KEY_STALE_MAX": "2"})
    key = new_key(p, key_alias=uid("stale"))
    assert chat(p, key, max_tokens=2)[0] == 200
    own_pg.stop()
    try:
        def refused():
            status, data, dummy = chat(p, key, max_tokens=2)
            return (status, data) if status != 200 else None

        # First served from the stale entry, then refused once the bound has passed: a clear 503, not a 401.
        status, data = wait_for(refused, timeout=60, interval=0.2, message="the cached key to be refused after the stale bound")
        assert status == 503 and is_error_shape(data) and data["error"]["type"] == "no_db_connection", data
    finally:
        own_pg.start()
    wait_for(lambda: chat(p, key, max_tokens=2)[0] == 200, timeout=60, interval=0.2, message="the key to work again after PostgreSQL returned")
    # After a successful reload the bound starts afresh.
    assert chat(p, key, max_tokens=2)[0] == 200


# ---------------------------------------------------------------- upstream down, failing, slow, timing out

@pytest.fixture
def fault_stub(work_dir):
    stub = StubUpstream(log_path=work_dir / f"stub-fault-{uid()}.log").start()
    yield stub
    stub.stop()


def errors_logged(log_path, most: int = 3) -> str:
    """The first ``most`` tracebacks or unhandled-error records of a proxy's log, each with the lines after it."""
    lines = log_path.read_text(errors="replace").splitlines()
    found = [i for i, line in enumerate(lines) if "Traceback" in line or "unhandled" in line.lower()][:most]
    return "\n---\n".join("\n".join(lines[i:i + 25]) for i in found) or "(no traceback in the proxy's log)"


def test_upstream_faults_mid_load_give_clear_errors_charge_nothing_and_recover(proxy_factory, stub_upstream, fault_stub):
    fault_dep = {"model_name": "fault-model", "litellm_params": {"model": "openai/stub-model", "api_base": fault_stub.url, "api_key": "sk-upstream",
                                                                 "input_cost_per_token": INPUT_COST, "output_cost_per_token": OUTPUT_COST,
                                                                 "timeout": 1},
                 "model_info": {"id": "fault-dep", "mode": "chat"}}
    from tests.support.proxy import stub_models

    p = proxy_factory(database=dbname("upstream"), models=stub_models(stub_upstream.url) + [fault_dep],
                      config_extra={"router_settings": {"num_retries": 0, "allowed_fails": 1, "cooldown_time": 1}})
    healthy_key, fault_key, probe_key = (new_key(p, key_alias=uid(n)) for n in ("ok", "fault", "probe"))
    healthy = Load(p.url, [healthy_key], threads=2).start()  # another model on another upstream: unaffected throughout
    faulty = Load(p.url, [fault_key], model="fault-model", threads=2).start()  # traffic into the faults
    probe_usage = {probe_key: [0, 0, 0]}

    def probe(expect: int):
        status, data, dummy = chat(p, probe_key, model="fault-model", max_tokens=3)
        assert status == expect, (status, data)
        if status == 200:
            u = probe_usage[probe_key]
            u[0] += 1
            u[1] += data["usage"]["prompt_tokens"]
            u[2] += data["usage"]["completion_tokens"]
        else:
            assert is_error_shape(data) and data["error"]["code"] == str(expect), data
        return data

    def cooldowns() -> int:
        return model_health(p, "fault-dep")["cooldowns"]

    try:
        faulty.wait_more(10, "traffic to the fault model", status="200")
        probe(200)
        # Upstream answers 500: 502 for the client, the deployment is cooled down.
        before = cooldowns()
        fault_stub.configure(fail_status=500)
        faulty.wait_more(5, "502s from a failing upstream", status="502")
        probe(502)
        assert cooldowns() > before
        # Slow, but within the deployment timeout (1 s): answered and charged.
        fault_stub.configure(fail_status=None, delay=0.2)
        faulty.wait_more(5, "slow upstream answers", status="200")
        probe(200)
        # Slower than the timeout: 504.
        fault_stub.configure(delay=3)
        faulty.wait_more(3, "504s from a timing-out upstream", status="504")
        probe(504)
        assert model_health(p, "fault-dep")["last_error"] == "timeout"
        # Down (connection refused): 503.
        port = fault_stub.port
        fault_stub.stop()
        faulty.wait_more(5, "503s from an upstream that is down", status="503")
        probe(503)
        # Back: after the cooldown the deployment serves again and reports healthy.
        restarted = StubUpstream(port=port, log_path=fault_stub.log_path).start()
        fault_stub.proc = restarted.proc
        faulty.wait_more(10, "fault model recovered", status="200")
        wait_for(lambda: model_health(p, "fault-dep")["status"] == "healthy", timeout=30, interval=0.2, message="deployment healthy again")
        probe(200)
    finally:
        faulty.stop()
        healthy.stop()
    assert not faulty.bad and not healthy.bad, (faulty.bad[:3], healthy.bad[:3])
    assert set(healthy.statuses) == {"200"}, healthy.statuses
    unexpected = {status: faulty.first.get(status) for status in set(faulty.statuses) - {"200", "502", "503", "504"}}
    assert not unexpected, (faulty.statuses, unexpected, errors_logged(p.log_path))
    assert p.terminate() == 0
    # Nothing charged for the failures: the database holds exactly the usage of the 200s (failure rows carry no tokens and no spend).
    assert_spend_matches(p.dsn, healthy.usage, [healthy_key])
    assert_spend_matches(p.dsn, faulty.usage, [fault_key])
    assert_spend_matches(p.dsn, probe_usage, [probe_key])
    assert probe_usage[probe_key][0] == 3


# ---------------------------------------------------------------- SIGTERM during load

def test_sigterm_during_load_finishes_in_flight_requests_and_flushes_their_spend(proxy_factory, stub_upstream):
    from tests.support.proxy import stub_models

    slow = {"model_name": "slow-model", "litellm_params": {"model": "openai/stub-model-delay-1500ms", "api_base": stub_upstream.url,
                                                           "api_key": "sk-upstream", "input_cost_per_token": INPUT_COST,
                                                           "output_cost_per_token": OUTPUT_COST},
            "model_info": {"id": "slow-dep", "mode": "chat"}}
    # Spend is written only at shutdown (flush interval one hour): what reaches the database was flushed by SIGTERM.
    p = proxy_factory(database=dbname("sigterm"), models=stub_models(stub_upstream.url) + [slow], env={"LITEMAAS_SPEND_FLUSH_INTERVAL": "3600"})
    fast_keys = [new_key(p, key_alias=uid("fast"), rpm_limit=1_000_000) for dummy in range(2)]
    slow_key = new_key(p, key_alias=uid("slow"))
    fast = Load(p.url, fast_keys, threads=2).start()
    slow_load = Load(p.url, [slow_key], model="slow-model", threads=4, pause=0).start()
    try:
        fast.wait_more(20, "fast load", status="200")
        wait_for(lambda: model_health(p, "slow-dep")["in_flight"] == 4, timeout=30, message="four slow requests in flight")
        mark = slow_load.count()
        proc = p.proc
        proc.send_signal(signal.SIGTERM)
        # The four requests in flight at SIGTERM are answered (the stub takes 1.5 s); new connections are refused meanwhile.
        wait_for(lambda: slow_load.since(mark)["200"] >= 4, timeout=30, message="in-flight slow requests answered")
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the proxy did not exit after SIGTERM; log:\n{p.log_tail()}") from None
    finally:
        fast.stop()
        slow_load.stop()
    p.proc = None
    assert code == 0, p.log_tail()
    # Every answer the clients got is a 200 with usage; after the listener closed, only connection failures (no answer at all).
    for load in (fast, slow_load):
        assert not load.bad, load.bad[:3]
        assert set(load.statuses) <= {"200", "conn"}, load.statuses
    assert slow_load.since(mark)["200"] >= 4
    # The spend of every answered request, including the in-flight ones, was flushed at shutdown.
    assert_spend_matches(p.dsn, fast.usage, fast_keys)
    assert_spend_matches(p.dsn, slow_load.usage, [slow_key])


# ---------------------------------------------------------------- Redis FLUSHALL mid-load

def test_redis_flushall_mid_load_resets_limits_and_loses_nothing(proxy_factory, own_redis):
    import redis as redis_py

    p = proxy_factory(database=dbname("flushall"), redis_url=own_redis.url)
    keys = [new_key(p, key_alias=uid("fl"), rpm_limit=1_000_000, tpm_limit=1_000_000_000) for dummy in range(3)]
    capped = new_key(p, key_alias=uid("capped"), rpm_limit=3)
    load = Load(p.url, keys, threads=3).start()
    try:
        load.wait_more(20, "load before FLUSHALL", status="200")
        assert [chat(p, capped)[0] for dummy in range(4)] == [200, 200, 200, 429]
        client = redis_py.Redis.from_url(own_redis.url)
        try:
            assert any(k.startswith(b"litemaas:rl:") for k in client.keys("*"))
            client.flushall()
        finally:
            client.close()
        # The current windows are gone: the capped key may send again, and its new window counts from zero.
        assert [chat(p, capped)[0] for dummy in range(4)] == [200, 200, 200, 429]
        load.wait_more(20, "load after FLUSHALL", status="200")
    finally:
        load.stop()
    assert not load.bad, load.bad[:3]
    assert set(load.statuses) == {"200"}, load.statuses
    # Nothing durable lived in Redis: keys still exist and authenticate, spend is complete.
    for key in keys + [capped]:
        assert p.admin("GET", f"/key/info?key={key}")[0] == 200
    assert p.terminate() == 0
    assert_spend_matches(p.dsn, load.usage, keys)
    assert recorded_spend(p.dsn, [capped])[capped][0] == 6
