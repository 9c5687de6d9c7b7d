"""Routing across several deployments of one model name, with two real stub upstreams: round-robin, least-busy,
cooldown of a failing deployment and its return, bounded retries that charge once, fallbacks to another model group."""

from __future__ import annotations

import hashlib
import threading

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.proxy.conftest import INPUT_COST, OUTPUT_COST, client, db_value, new_key, uid, wait_for
from tests.proxy.test_guardrails import start_fails
from tests.support.proxy import http_json
from tests.support.stub_upstream import StubUpstream


@pytest.fixture(scope="module")
def stubs(work_dir):
    a = StubUpstream(log_path=work_dir / "stub_routing_a.log").start()
    b = StubUpstream(log_path=work_dir / "stub_routing_b.log").start()
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture
def fresh(stubs):
    for s in stubs:
        s.reset()
    return stubs


def deployment(name: str, stub, upstream: str = "stub-model", **params) -> dict:
    return {"model_name": name, "litellm_params": {"model": f"openai/{upstream}", "api_base": stub.url, "api_key": "sk-upstream",
                                                   "input_cost_per_token": INPUT_COST, "output_cost_per_token": OUTPUT_COST, **params},
            "model_info": {"mode": "chat"}}


def two_deployments(name: str, stubs, **params) -> list:
    """Deployment A on the first stub, B on the second, with model ids ``<name>-a`` and ``<name>-b``."""
    out = []
    for suffix, stub in (("a", stubs[0]), ("b", stubs[1])):
        dep = deployment(name, stub, **params)
        dep["model_info"]["id"] = f"{name}-{suffix}"
        out.append(dep)
    return out


def make_proxy(proxy_factory, stubs, router_settings: dict, extra_models: list = (), **params):
    models = two_deployments("lb-model", stubs, **params) + list(extra_models)
    return proxy_factory(database=uid("routing").replace("-", "_"), models=models, config_extra={"router_settings": router_settings})


def ask(p, key: str, model: str = "lb-model", content: str = "one two three"):
    return http_json("POST", p.url + "/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": content}]},
                     {"Authorization": f"Bearer {key}"})


def health(p, model_id: str) -> dict:
    status, data = p.admin("GET", f"/model/info?litellm_model_id={model_id}")
    assert status == 200, data
    return data["data"][0]["model_info"]


def samples(p, name: str) -> dict:
    dummy, text, dummy = http_json("GET", p.url + "/metrics")
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def cooling_proxy(proxy_factory, stubs):
    """Round-robin; one failure cools a deployment down for 10 minutes."""
    return make_proxy(proxy_factory, stubs, {"routing_strategy": "simple-shuffle", "num_retries": 1, "allowed_fails": 1, "cooldown_time": 600})


def test_round_robin_spreads_requests_evenly(proxy_factory, fresh):
    a, b = fresh
    rr_proxy = cooling_proxy(proxy_factory, fresh)
    key = new_key(rr_proxy)
    for dummy in range(10):
        assert ask(rr_proxy, key)[0] == 200
    assert a.stats()["requests"] == 5 and b.stats()["requests"] == 5
    info = health(rr_proxy, "lb-model-a")
    assert info["routing_strategy"] == "round-robin" and info["deployments_in_group"] == 2
    assert info["health"]["status"] == "healthy" and info["health"]["successes"] >= 5


def test_least_busy_avoids_the_deployment_with_a_request_in_flight(proxy_factory, fresh):
    a, b = fresh
    p = make_proxy(proxy_factory, fresh, {"routing_strategy": "least-busy", "num_retries": 0}, timeout=8)
    key = new_key(p)
    for s in fresh:
        s.configure(hang=True)
    # One request that the upstream never answers (until the deployment timeout): it stays in flight on one deployment.
    held = threading.Thread(target=ask, args=(p, key), daemon=True)
    held.start()
    busy = wait_for(lambda: next((s for s in fresh if s.stats()["in_flight"] == 1), None), message="a request in flight")
    idle = b if busy is a else a
    for s in fresh:
        s.configure(hang=False)
    busy_id = "lb-model-a" if busy is a else "lb-model-b"
    assert health(p, busy_id)["health"]["in_flight"] == 1
    for dummy in range(4):
        assert ask(p, key)[0] == 200
    assert idle.stats()["requests"] == 4 and busy.stats()["requests"] == 1
    info = health(p, busy_id)
    assert info["routing_strategy"] == "least-busy"
    assert info["health"]["in_flight"] == 1, "the held request ended early (deployment timeout 8 s): the machine is too slow for this test"
    held.join(30)
    assert not held.is_alive()
    assert health(p, busy_id)["health"]["in_flight"] == 0
    assert health(p, busy_id)["health"]["last_error"] == "timeout"


def test_failing_deployment_is_cooled_down_and_requests_still_succeed(proxy_factory, fresh):
    a, b = fresh
    rr_proxy = cooling_proxy(proxy_factory, fresh)
    a.configure(fail_status=503)
    key = new_key(rr_proxy, key_alias=uid("cool"))
    for dummy in range(6):
        status, data, headers = ask(rr_proxy, key)
        assert status == 200, data
        assert headers["x-litellm-model-id"] == "lb-model-b"
    # The first failure (allowed_fails=1) cooled deployment A down: it got exactly one attempt, B answered everything.
    assert a.stats()["requests"] == 1 and b.stats()["requests"] == 6
    info = health(rr_proxy, "lb-model-a")["health"]
    assert info["status"] == "cooldown" and info["cooldowns"] == 1 and info["cooldown_remaining_seconds"] > 0
    assert "503" in info["last_error"]
    cooled = samples(rr_proxy, "litellm_deployment_cooled_down_total")
    assert [v for k, v in cooled.items() if ("model_id", "lb-model-a") in k] == [1.0]
    state = samples(rr_proxy, "litellm_deployment_state")
    assert [v for k, v in state.items() if ("model_id", "lb-model-a") in k] == [2.0]
    failures = samples(rr_proxy, "litellm_deployment_failure_responses_total")
    assert [v for k, v in failures.items() if ("model_id", "lb-model-a") in k and ("exception_status", "503") in k] == [1.0]


def test_cooled_down_deployment_comes_back_after_the_cooldown(proxy_factory, fresh):
    a, b = fresh
    p = make_proxy(proxy_factory, fresh, {"num_retries": 1, "allowed_fails": 1, "cooldown_time": 1})
    key = new_key(p)
    a.configure(fail_status=503, fail_count=1)
    assert ask(p, key)[0] == 200 and ask(p, key)[0] == 200
    assert a.stats()["failed"] == 1
    # After the cooldown A is in the rotation again (the stub answers normally now).
    wait_for(lambda: ask(p, key)[0] == 200 and a.stats()["requests"] > 1 and a.stats()["failed"] == 1, timeout=30, interval=0.2,
             message="deployment A back in rotation")
    assert health(p, "lb-model-a")["health"]["status"] == "healthy"


def token_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def test_retries_are_bounded_and_charge_once(proxy_factory, fresh):
    a, b = fresh
    p = make_proxy(proxy_factory, fresh, {"num_retries": 1, "allowed_fails": 1000},
                   extra_models=[deployment("broken", a, "broken-fail-503"), deployment("broken", b, "broken-fail-502"),
                                 deployment("broken", b, "broken-fail-500")])
    key = new_key(p)
    # Every deployment of "broken" fails: two attempts (1 + num_retries) of the three, then the error; nothing is charged.
    with pytest.raises(openai.APIStatusError) as err:
        client(p, key).chat.completions.create(model="broken", messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code in (502, 503)
    assert a.stats()["requests"] + b.stats()["requests"] == 2
    # Deployment A of lb-model fails, B answers: every request succeeds, half of them after a retry, and each is charged once.
    fresh[0].reset()
    fresh[1].reset()
    a.configure(fail_status=503)
    key2 = new_key(p)
    retried = []
    for dummy in range(4):
        status, data, headers = ask(p, key2, content="a b c d")
        assert status == 200, data
        assert headers["x-litellm-model-id"] == "lb-model-b"
        retried.append(headers.get("x-litellm-attempted-retries"))
    assert retried == ["1", None, "1", None]  # round-robin starts at A every other request
    assert a.stats()["requests"] == 2 and b.stats()["requests"] == 4
    expected = 4 * INPUT_COST + 5 * OUTPUT_COST
    wait_for(lambda: db_value(p.dsn, 'SELECT count(*) FROM "LiteLLM_SpendLogs" WHERE api_key = %s', token_of(key2)) == 4, message="spend rows")
    spent = db_value(p.dsn, 'SELECT spend FROM "LiteLLM_VerificationToken" WHERE token = %s', token_of(key2))
    assert spent == pytest.approx(4 * expected)
    assert db_value(p.dsn, 'SELECT count(*) FROM "LiteLLM_SpendLogs" WHERE api_key = %s AND status = %s', token_of(key2), "success") == 4
    # The request that failed everywhere left one failure row and cost nothing.
    wait_for(lambda: db_value(p.dsn, 'SELECT count(*) FROM "LiteLLM_SpendLogs" WHERE api_key = %s', token_of(key)) == 1, message="failure row")
    assert db_value(p.dsn, 'SELECT status || \':\' || spend FROM "LiteLLM_SpendLogs" WHERE api_key = %s', token_of(key)) == "failure:0"
    # The failed attempts are visible per deployment, and A was never cooled down (allowed_fails is high).
    info = health(p, "lb-model-a")["health"]
    assert info["failures"] == 2 and info["cooldowns"] == 0 and info["status"] == "healthy"


def test_fallback_to_another_model_group(proxy_factory, fresh):
    a, b = fresh
    p = proxy_factory(database=uid("fallback").replace("-", "_"),
                      models=[deployment("primary", a, "primary-fail-503"), deployment("backup", b, "backup-ok"),
                              deployment("nothing-works", a, "nw-fail-500"), deployment("also-broken", b, "ab-fail-503")],
                      config_extra={"router_settings": {"num_retries": 0, "fallbacks": [{"primary": ["backup"]}, {"nothing-works": ["also-broken"]}]}})
    key = new_key(p, models=["primary", "nothing-works"])
    raw = client(p, key).chat.completions.with_raw_response.create(model="primary", messages=[{"role": "user", "content": "one two"}])
    assert raw.parse().choices[0].message.content == "tok0 tok1 tok2 tok3 tok4"
    assert raw.headers["x-litellm-model-group"] == "backup"
    assert raw.headers["x-litellm-attempted-fallbacks"] == "1" and raw.headers["x-litellm-attempted-retries"] == "1"
    assert a.stats()["by_model"] == {"primary-fail-503": 1} and b.stats()["by_model"] == {"backup-ok": 1}
    assert float(raw.headers["x-litellm-response-cost"]) == pytest.approx(2 * INPUT_COST + 5 * OUTPUT_COST)
    with pytest.raises(openai.APIStatusError):
        client(p, key).chat.completions.create(model="nothing-works", messages=[{"role": "user", "content": "x"}])
    assert a.stats()["by_model"]["nw-fail-500"] == 1 and b.stats()["by_model"]["ab-fail-503"] == 1
    status, data = p.admin("GET", "/model/info")
    by_name = {d["model_name"]: d["model_info"] for d in data["data"]}
    assert by_name["primary"]["fallbacks"] == ["backup"] and by_name["backup"]["fallbacks"] == []
    ok = samples(p, "litellm_deployment_successful_fallbacks_total")
    assert ok == {(("fallback_model", "backup"), ("requested_model", "primary")): 1.0}
    bad = samples(p, "litellm_deployment_failed_fallbacks_total")
    assert bad == {(("fallback_model", "also-broken"), ("requested_model", "nothing-works")): 1.0}


def test_unknown_routing_strategy_stops_the_proxy_from_starting(proxy_factory, stubs):
    p = proxy_factory(database=uid("badstrategy").replace("-", "_"), models=two_deployments("lb-model", stubs),
                      config_extra={"router_settings": {"routing_strategy": "cheapest-first"}}, start=False)
    assert "routing_strategy='cheapest-first' is not supported" in start_fails(p)


# ---------------------------------------------------------------- the router's pure logic (no processes)

def _router_module():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "files" / "proxy"))
    from litemaas_proxy import routing

    return routing


def _deps(routing, name: str, n: int) -> list:
    return [routing.Deployment(f"{name}-{i}", name, {"model": f"openai/{name}", "api_base": f"http://h{i}/v1"}, {}, True) for i in range(n)]


def test_router_state_survives_a_model_reload():
    routing = _router_module()
    r = routing.Router(cooldown_time=60, allowed_fails=2)
    first = _deps(routing, "g", 2)
    r.set_deployments([], first)
    r.acquire(first[0])
    r.report_failure(first[0], "503", "HTTP 503")
    r.report_failure(first[0], "503", "HTTP 503")
    reloaded = _deps(routing, "g", 2)  # new objects for the same model ids, as every periodic reload makes
    r.set_deployments([], reloaded)
    h = reloaded[0].as_model_info()["model_info"]["health"]
    assert h["status"] == "cooldown" and h["cooldowns"] == 1 and h["in_flight"] == 1 and h["failures"] == 2
    r.release(first[0])  # a request that started before the reload ends: the shared state sees it
    assert reloaded[0].state.in_flight == 0
    assert [d.id for d in r.candidates("g")] == ["g-1", "g-0"]  # the cooling one only as the last resort


def test_router_orders_by_in_flight_for_least_busy_and_rotates_otherwise():
    routing = _router_module()
    rr = routing.Router()
    deps = _deps(routing, "g", 3)
    rr.set_deployments([], deps)
    assert [rr.candidates("g")[0].id for dummy in range(4)] == ["g-0", "g-1", "g-2", "g-0"]
    lb = routing.Router(routing_strategy="least-busy")
    lb.set_deployments([], deps)
    lb.acquire(deps[0])
    lb.acquire(deps[0])
    lb.acquire(deps[1])
    assert [lb.candidates("g")[0].id for dummy in range(3)] == ["g-2", "g-2", "g-2"]
    assert [d.id for d in lb.candidates("g")] == ["g-2", "g-1", "g-0"]


def test_plan_bounds_attempts_and_appends_fallback_groups():
    routing = _router_module()
    r = routing.Router(fallbacks=[{"g": ["h", "missing"]}])
    r.set_deployments([], _deps(routing, "g", 3) + _deps(routing, "h", 2))
    assert [d.id for d in r.plan("g", r.groups["g"], 1)] == ["g-0", "g-1", "h-0", "h-1"]
    assert [d.id for d in r.plan("g", r.groups["g"], 0)] == ["g-0", "h-1"]
    assert r.fallback_failures == {("g", "h"): 2}  # both plans ran to the end: every attempt failed
    assert [d.id for d in r.plan("h", r.groups["h"], 5)] == ["h-0", "h-1"]
    assert r.groups["g"][0].as_model_info()["model_info"]["fallbacks"] == ["h", "missing"]
