"""/metrics in Prometheus text format: requests, latency and time-to-first-token histograms, tokens, spend,
rate-limit rejections, upstream errors; the key alias label only behind its setting."""

from __future__ import annotations

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.proxy.conftest import INPUT_COST, OUTPUT_COST, client, new_key, uid
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
