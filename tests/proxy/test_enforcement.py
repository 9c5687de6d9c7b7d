"""Enforcement: allowed models, expiry, blocked, budgets (+ resets), RPM, TPM, max parallel requests, shared across replicas."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from tests.proxy.conftest import chat, db_value, new_key, uid, wait_for


def test_models_restriction(proxy):
    key = new_key(proxy, models=["stub-model"])
    assert chat(proxy, key, model="stub-model")[0] == 200
    status, data, dummy = chat(proxy, key, model="granite-3-8b")
    assert status == 401
    assert data["error"]["type"] == "key_model_access_denied" and data["error"]["param"] == "model" and data["error"]["code"] == "401"
    open_key = new_key(proxy, models=[])
    assert chat(proxy, open_key, model="granite-3-8b")[0] == 200


def test_team_models_restriction(proxy):
    team = uid("team")
    assert proxy.admin("POST", "/team/new", {"team_id": team, "models": ["granite-3-8b"]})[0] == 200
    key = new_key(proxy, team_id=team)
    assert chat(proxy, key, model="granite-3-8b")[0] == 200
    status, data, dummy = chat(proxy, key, model="stub-model")
    assert status == 401 and data["error"]["type"] == "team_model_access_denied"


def test_expired_key_is_400(proxy):
    key = new_key(proxy, duration="1h")
    assert chat(proxy, key)[0] == 200
    past = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    assert proxy.admin("POST", "/key/update", {"key": key, "expires": past})[0] == 200
    status, data, dummy = chat(proxy, key)
    assert status == 400
    assert data["error"]["type"] == "expired_key" and "Expired Key" in data["error"]["message"] and data["error"]["code"] == "400"
    assert proxy.admin("POST", "/key/update", {"key": key, "duration": "-1"})[0] == 200
    assert chat(proxy, key)[0] == 200


def test_blocked_key_is_401(proxy):
    key = new_key(proxy)
    assert chat(proxy, key)[0] == 200
    assert proxy.admin("POST", "/key/block", {"key": key})[0] == 200
    status, data, dummy = chat(proxy, key)
    assert status == 401 and "Key is blocked" in data["error"]["message"]
    assert proxy.admin("POST", "/key/unblock", {"key": key})[0] == 200
    assert chat(proxy, key)[0] == 200


def test_key_budget(proxy):
    # One request costs 2e-6 * 5 + 1e-6 * 2 = 1.2e-5; the budget allows the first, not the second.
    key = new_key(proxy, max_budget=1e-5)
    assert chat(proxy, key)[0] == 200
    status, data, dummy = chat(proxy, key)
    assert status == 400
    assert data["error"]["type"] == "budget_exceeded" and "Budget has been exceeded" in data["error"]["message"]
    # Raising the budget lets it through again.
    assert proxy.admin("POST", "/key/update", {"key": key, "max_budget": 1})[0] == 200
    assert chat(proxy, key)[0] == 200
    # Resetting spend (the portal's "reset spend") also does.
    assert proxy.admin("POST", "/key/update", {"key": key, "max_budget": 1e-5})[0] == 200
    wait_for(lambda: chat(proxy, key)[0] == 400, message="budget applied")
    assert proxy.admin("POST", "/key/update", {"key": key, "spend": 0})[0] == 200
    wait_for(lambda: chat(proxy, key)[0] == 200, message="spend reset")


def test_user_budget(proxy):
    user = uid("ub")
    assert proxy.admin("POST", "/user/new", {"user_id": user, "max_budget": 1e-5, "auto_create_key": False})[0] == 200
    k1, k2 = new_key(proxy, user_id=user), new_key(proxy, user_id=user)
    assert chat(proxy, k1)[0] == 200
    # Spend is counted per user across keys once written (flushed every 0.2 s in tests).

    def refused():
        status, data, dummy = chat(proxy, k2)
        return status == 400 and "ExceededBudget" in data["error"]["message"]
    wait_for(refused, message="user budget enforced")


def test_budget_duration_resets_spend(proxy_factory):
    p = proxy_factory(database="proxy_budget_reset", env={"LITEMAAS_BUDGET_RESET_INTERVAL": "0.3"})
    key = new_key(p, max_budget=1e-5, budget_duration="2s")
    assert chat(p, key)[0] == 200
    assert chat(p, key)[0] == 400
    wait_for(lambda: chat(p, key)[0] == 200, timeout=30, interval=0.2, message="budget reset")
    info = p.admin("GET", f"/key/info?key={key}")[1]["info"]
    assert datetime.fromisoformat(info["budget_reset_at"]) > datetime.now(timezone.utc) - timedelta(seconds=1)


def test_rpm_limit(proxy):
    key = new_key(proxy, rpm_limit=2)
    status, dummy, headers = chat(proxy, key)
    assert status == 200
    assert headers["x-ratelimit-api_key-limit-requests"] == "2" and headers["x-ratelimit-api_key-remaining-requests"] == "1"
    assert chat(proxy, key)[0] == 200
    status, data, headers = chat(proxy, key)
    assert status == 429
    assert data["error"]["code"] == "429"
    assert data["error"]["message"].startswith("Rate limit exceeded for api_key: ")
    assert "Limit type: requests. Current limit: 2, Remaining: 0." in data["error"]["message"]
    assert int(headers["retry-after"]) <= 60 and headers["rate_limit_type"] == "requests"


def test_tpm_limit(proxy):
    # Each request uses 2 + 5 = 7 tokens: #1 (0 used) and #2 (7 used, 7 + 1 <= 10) pass, #3 (14 used) is refused.
    key = new_key(proxy, tpm_limit=10)
    assert chat(proxy, key)[0] == 200
    assert chat(proxy, key)[0] == 200
    status, data, dummy = chat(proxy, key)
    assert status == 429 and "Limit type: tokens" in data["error"]["message"]


def test_user_rpm_limit_spans_keys(proxy):
    user = uid("urpm")
    assert proxy.admin("POST", "/user/new", {"user_id": user, "rpm_limit": 2, "auto_create_key": False})[0] == 200
    k1, k2 = new_key(proxy, user_id=user), new_key(proxy, user_id=user)
    assert chat(proxy, k1)[0] == 200
    assert chat(proxy, k2)[0] == 200
    status, data, dummy = chat(proxy, k1)
    assert status == 429 and f"Rate limit exceeded for user: {user}" in data["error"]["message"]


def test_max_parallel_requests(proxy, db_model, stub_upstream):
    model = db_model("stub-delay-1500ms")
    key = new_key(proxy, max_parallel_requests=1)
    results = {}

    def first():
        results["first"] = chat(proxy, key, model=model)[0]

    before = stub_upstream.stats()["by_model"].get("stub-delay-1500ms", 0)
    t = threading.Thread(target=first)
    t.start()
    try:
        wait_for(lambda: stub_upstream.stats()["by_model"].get("stub-delay-1500ms", 0) > before, message="first request at the upstream")
        status, data, dummy = chat(proxy, key, model=model)
        assert status == 429 and "max_parallel_requests" in data["error"]["message"]
    finally:
        t.join()
    assert results["first"] == 200
    # The slot is released after the response.
    assert chat(proxy, key, model=model)[0] == 200


def test_two_replicas_share_one_rpm_limit(proxy, proxy_factory):
    other = proxy_factory(dsn=proxy.dsn)
    key = new_key(proxy, rpm_limit=3)
    assert chat(proxy, key)[0] == 200
    assert chat(other, key)[0] == 200
    assert chat(proxy, key)[0] == 200
    assert chat(other, key)[0] == 429
    assert chat(proxy, key)[0] == 429
    # A change on one replica reaches the other at once (Redis pub/sub invalidation).
    key2 = new_key(proxy)
    assert chat(other, key2)[0] == 200
    assert proxy.admin("POST", "/key/block", {"key": key2})[0] == 200
    wait_for(lambda: chat(other, key2)[0] == 401, timeout=5, message="block seen by the other replica")


def test_redis_flushall_loses_nothing_durable(proxy_factory, work_dir, pg_server):
    from tests.support.services import RedisServer

    redis = RedisServer(work_dir / f"redis-flush-{uuid.uuid4().hex[:6]}").start()
    try:
        p = proxy_factory(database="proxy_flushall", redis_url=redis.url)
        key = new_key(p, key_alias=uid("flush"), rpm_limit=100)
        assert chat(p, key)[0] == 200
        import redis as redis_lib

        redis_lib.Redis.from_url(redis.url).flushall()
        assert chat(p, key)[0] == 200
        token = p.admin("GET", f"/key/info?key={key}")[1]["info"]
        assert token["rpm_limit"] == 100
        wait_for(lambda: db_value(p.dsn, 'SELECT count(*) FROM "LiteLLM_SpendLogs" WHERE metadata->>\'user_api_key_alias\' = %s', token["key_alias"]) == 2,
                 message="both requests logged")
    finally:
        redis.stop()


@pytest.mark.parametrize("field", ["rpm_limit", "tpm_limit", "max_parallel_requests"])
def test_limits_validation(proxy, field):
    status, data = proxy.admin("POST", "/key/generate", {field: -1})
    assert status == 400 and data["error"]["param"] == field
