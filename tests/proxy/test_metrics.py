"""/metrics in Prometheus text format: requests, latency and time-to-first-token histograms, tokens, spend,
rate-limit rejections, upstream errors; the key alias label only behind its setting."""

from __future__ import annotations

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.proxy.conftest import INPUT_COST, OUTPUT_COST, chat, client, new_key, uid
from tests.support.proxy import http_json

ROUTE = "/v1/chat/completions"


def scrape(p) -> dict:
    """{sample name: {frozenset(labels): value}} from the proxy's /metrics (also checks it parses as Prometheus text)."""
    status, text, headers = http_json("GET", p.url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    out: dict = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return out


def value(samples: dict, name: str, **labels) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for k, v in samples.get(name, {}).items() if want <= k)


@pytest.fixture(scope="module")
def mp(proxy_factory, stub_upstream):
    models = [{"model_name": m, "litellm_params": {"model": f"openai/{up}", "api_base": stub_upstream.url, "input_cost_per_token": INPUT_COST,
                                                   "output_cost_per_token": OUTPUT_COST}, "model_info": {"id": m}}
              for m, up in (("metered", "stub-model"), ("flaky", "flaky-fail-503"))]
    return proxy_factory(database=uid("metrics").replace("-", "_"), models=models, env={"LITEMAAS_METRICS_KEY_ALIAS": "true"})


def test_requests_tokens_spend_latency_by_model_and_key_alias(mp):
    alias = uid("alias")
    key = new_key(mp, key_alias=alias)
    c = client(mp, key)
    for dummy in range(3):
        c.chat.completions.create(model="metered", messages=[{"role": "user", "content": "one two three"}], max_tokens=4)
    m = scrape(mp)
    sel = {"requested_model": "metered", "route": ROUTE, "api_key_alias": alias}
    assert value(m, "litellm_proxy_total_requests_metric_total", status_code="200", **sel) == 3
    assert value(m, "litellm_input_tokens_metric_total", model="metered", api_key_alias=alias) == 9
    assert value(m, "litellm_output_tokens_metric_total", model="metered", api_key_alias=alias) == 12
    assert value(m, "litellm_total_tokens_metric_total", model="metered", api_key_alias=alias) == 21
    assert value(m, "litellm_spend_metric_total", model="metered", api_key_alias=alias) == pytest.approx(3 * (3 * INPUT_COST + 4 * OUTPUT_COST))
    assert value(m, "litellm_request_total_latency_metric_count", model="metered") >= 3
    assert value(m, "litellm_request_total_latency_metric_bucket", model="metered", le="+Inf") == value(
        m, "litellm_request_total_latency_metric_count", model="metered")
    assert value(m, "litellm_request_total_latency_metric_sum", model="metered") > 0
    ok = value(m, "litellm_deployment_success_responses_total", model_id="metered")
    assert ok >= 3 and value(m, "litellm_deployment_total_requests_total", model_id="metered") == ok


def test_time_to_first_token_for_streams(mp):
    key = new_key(mp)
    before = value(scrape(mp), "litellm_llm_api_time_to_first_token_metric_count", model="metered")
    for dummy in range(2):
        list(client(mp, key).chat.completions.create(model="metered", messages=[{"role": "user", "content": "x"}], stream=True))
    m = scrape(mp)
    assert value(m, "litellm_llm_api_time_to_first_token_metric_count", model="metered") == before + 2
    assert value(m, "litellm_llm_api_time_to_first_token_metric_bucket", model="metered", le="+Inf") == before + 2


def test_rate_limit_rejections(mp):
    alias = uid("limited")
    key = new_key(mp, key_alias=alias, rpm_limit=1)
    c = client(mp, key)
    c.chat.completions.create(model="metered", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.RateLimitError):
        c.chat.completions.create(model="metered", messages=[{"role": "user", "content": "x"}])
    m = scrape(mp)
    assert value(m, "litemaas_rate_limit_rejections_total", requested_model="metered", subject="api_key", limit_type="requests",
                 api_key_alias=alias) == 1
    assert value(m, "litellm_proxy_failed_requests_metric_total", requested_model="metered", status_code="429", api_key_alias=alias) == 1


def test_upstream_errors_by_deployment_and_status(mp):
    key = new_key(mp)
    with pytest.raises(openai.APIStatusError):
        client(mp, key).chat.completions.create(model="flaky", messages=[{"role": "user", "content": "x"}])
    m = scrape(mp)
    assert value(m, "litellm_deployment_failure_responses_total", model_id="flaky", exception_status="503") >= 1
    assert value(m, "litellm_proxy_failed_requests_metric_total", requested_model="flaky", status_code="503") >= 1
    # The deployment state gauge and the cooldown counter exist for every deployment.
    assert [v for k, v in m["litellm_deployment_state"].items() if ("model_id", "metered") in k] == [0.0]
    assert [v for k, v in m["litellm_deployment_cooled_down_total"].items() if ("model_id", "metered") in k] == [0.0]


def test_no_key_alias_label_by_default(proxy):
    key = new_key(proxy, key_alias=uid("hidden"))
    client(proxy, key).chat.completions.create(model="stub-model", messages=[{"role": "user", "content": "x"}])
    m = scrape(proxy)
    labels = {name for k in m["litellm_proxy_total_requests_metric_total"] for name, dummy in k}
    assert labels == {"requested_model", "route", "status_code"}
    assert all("api_key_alias" not in dict(k) for k in m["litellm_spend_metric_total"])


def test_azure_style_routes_get_a_bounded_label(mp):
    key = new_key(mp)
    for name in ("dep-one", "dep-two"):
        status, dummy, dummy = http_json("POST", mp.url + f"/openai/deployments/{name}/chat/completions",
                                         {"model": "metered", "messages": [{"role": "user", "content": "x"}]}, {"Authorization": f"Bearer {key}"})
        assert status == 200
    routes = {dict(k)["route"] for k in scrape(mp)["litellm_proxy_total_requests_metric_total"]}
    assert "/openai/deployments/{deployment}/chat/completions" in routes
    assert not any("dep-one" in r or "dep-two" in r for r in routes)


def test_metrics_can_require_a_key(proxy_factory):
    p = proxy_factory(database=uid("metricsauth").replace("-", "_"), config_extra={"litellm_settings": {"require_auth_for_metrics_endpoint": True}})
    assert http_json("GET", p.url + "/metrics")[0] == 401
    assert http_json("GET", p.url + "/metrics", headers={"Authorization": "Bearer sk-wrong"})[0] == 401
    status, text, dummy = http_json("GET", p.url + "/metrics", headers={"Authorization": f"Bearer {new_key(p)}"})
    assert status == 200 and "litellm_proxy_total_requests_metric" in text


def _statuses(samples: dict, name: str = "litellm_proxy_total_requests_metric_total", **labels) -> dict:
    """{status_code: count} of the samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    out: dict = {}
    for k, v in samples.get(name, {}).items():
        if want <= k:
            code = dict(k)["status_code"]
            out[code] = out.get(code, 0) + v
    return out


def test_refusals_before_routing_are_counted_with_bounded_labels(mp):
    """401 (no key, unknown key, not a virtual key), 400 (unknown model, no model) are counted like every other answer;
    a model name the proxy does not serve never becomes a label value, and neither does a presented key."""
    before = scrape(mp)
    headers = {"Authorization": "Bearer sk-guessed-0000"}
    body = {"model": "made-up-model-name", "messages": [{"role": "user", "content": "x"}]}
    got = [http_json("POST", mp.url + ROUTE, body, headers)[0],
           http_json("POST", mp.url + ROUTE, body)[0],
           http_json("POST", mp.url + ROUTE, body, {"Authorization": "Bearer not-a-virtual-key"})[0]]
    key = new_key(mp)
    got += [http_json("POST", mp.url + ROUTE, body, {"Authorization": f"Bearer {key}"})[0],
            http_json("POST", mp.url + ROUTE, {"messages": []}, {"Authorization": f"Bearer {key}"})[0]]
    assert got == [401, 401, 401, 400, 400]
    after = scrape(mp)
    delta = {code: n - _statuses(before, requested_model="None", route=ROUTE).get(code, 0)
             for code, n in _statuses(after, requested_model="None", route=ROUTE).items()}
    assert {c: n for c, n in delta.items() if n} == {"401": 3, "400": 2}
    failed = {code: n - _statuses(before, "litellm_proxy_failed_requests_metric_total", requested_model="None").get(code, 0)
              for code, n in _statuses(after, "litellm_proxy_failed_requests_metric_total", requested_model="None").items()}
    assert {c: n for c, n in failed.items() if n} == {"401": 3, "400": 2}
    text = http_json("GET", mp.url + "/metrics")[1]
    assert "made-up-model-name" not in text and "sk-guessed" not in text and "not-a-virtual-key" not in text


def test_key_refused_while_the_database_is_unreachable_is_counted(proxy_factory, redis_server):
    """A key the proxy has not cached cannot be verified without PostgreSQL: the 503 it answers is counted."""
    from tests.support.services import free_port

    p = proxy_factory(dsn=f"postgresql://nobody@127.0.0.1:{free_port()}/none", start=False)
    p.start(wait_ready=False)
    statuses = [chat(p, "sk-not-cached-" + str(i))[0] for i in range(4)]
    assert statuses == [503] * 4
    assert _statuses(scrape(p), requested_model="None", route=ROUTE) == {"503": 4}


def _worker_snapshots(p) -> list:
    """Each worker's own numbers, read from its abstract metrics socket (the way a scraped worker reads them)."""
    import json
    import socket

    names = []
    with open("/proc/net/unix") as fh:
        for line in fh:
            path = line.split()[-1]
            if path.startswith(f"@litemaas-metrics-{p.pid}-"):
                names.append(path)
    out = []
    for name in sorted(set(names)):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect("\0" + name[1:])
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        out.append(json.loads(data))
    return out


def _snapshot_statuses(snap: dict) -> dict:
    out: dict = {}
    for labels, n in snap["counters"]["requests"]:
        out[labels[2]] = out.get(labels[2], 0) + n
    return out


def test_two_workers_report_the_pods_numbers(proxy_factory, stub_upstream):
    """With 2 workers, whichever worker answers /metrics reports the sum of both; each worker did serve requests."""
    p = proxy_factory(database=uid("metrics2w").replace("-", "_"), workers=2)
    key = new_key(p)
    sent: dict = {}
    for i in range(60):
        status = chat(p, key if i % 3 else "sk-wrong-key")[0]
        sent[str(status)] = sent.get(str(status), 0) + 1
    assert sent == {"200": 40, "401": 20}
    workers = _worker_snapshots(p)
    assert len(workers) == 2
    per_worker = [_snapshot_statuses(w) for w in workers]
    assert all(sum(s.values()) > 0 for s in per_worker), per_worker  # both served some
    for dummy in range(4):  # new connections: any worker may answer the scrape
        assert _statuses(scrape(p), route=ROUTE) == sent
    m = scrape(p)
    assert value(m, "litellm_deployment_success_responses_total", model_group="stub-model") == 40
    assert value(m, "litellm_input_tokens_metric_total", model="stub-model") == 40 * 2


def _snap(requests: int, queue: int, state: int, in_flight: int, on_disk: int = 0) -> dict:
    labels = ["m", "m-1", "openai/m", "http://up/v1", "openai"]
    return {"counters": {"requests": [[["m", ROUTE, "200", "None"], requests]]}, "histograms": {"latency": [["m", [1, 0, 0.5]]]},
            "deployments": [[labels, state, in_flight, requests, requests, 0, {"503": 1}]], "fallbacks_ok": [], "fallbacks_bad": [],
            "lookups": [1, 1], "gauges": {"litellm_in_memory_spend_update_queue_size": queue, "litemaas_spend_records_on_disk": on_disk}}


def test_merge_adds_counters_and_combines_gauges_by_meaning():
    """Counters and histograms add up; the spend backlog and requests in flight add up; a deployment cooling down in
    one worker is cooling down for the pod; a worker that stopped answering keeps its counters but not its gauges."""
    from litemaas_proxy.metrics import merge

    pod = merge([_snap(3, 10, 0, 1, 2), _snap(4, 5, 2, 2, 3), _snap(7, 1000, 2, 9, 100)], [True, True, False])
    assert pod["counters"]["requests"] == {("m", ROUTE, "200", "None"): 14}
    assert pod["histograms"]["latency"] == {"m": [3, 0, 1.5]}
    assert pod["gauges"] == {"litellm_in_memory_spend_update_queue_size": 15, "litemaas_spend_records_on_disk": 5}
    dep = pod["deployments"][("m", "m-1", "openai/m", "http://up/v1", "openai")]
    assert dep == {"state": 2, "in_flight": 3, "requests": 14, "successes": 14, "cooldowns": 0, "errors": {"503": 3}}
    assert pod["lookups"] == [3, 3]
    assert merge([_snap(1, 0, 0, 0)], [True])["deployments"][("m", "m-1", "openai/m", "http://up/v1", "openai")]["state"] == 0
