"""Exposition: the pod's numbers (``workers.merge`` output) as Prometheus metric families, and ``/metrics``."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from litemaas_proxy.api.routes import KEY, PUBLIC, Route
from litemaas_proxy.metrics.counting import LATENCY_BUCKETS, STATE_KEY, TTFT_BUCKETS, bump


def families(pod: dict, key_alias: bool) -> list:
    """Prometheus metric families of the pod's numbers (``merge`` output)."""
    alias = ["api_key_alias"] if key_alias else []

    def fold(store: dict, n: int) -> dict:
        """Drop the alias (the last key field) when the label is off, adding up what it separated."""
        if key_alias:
            return store
        out: dict = {}
        for k, v in store.items():
            bump(out, k[:n], v)
        return out

    c = pod["counters"]
    out = []
    req = CounterMetricFamily("litellm_proxy_total_requests_metric", "Answers of the proxy's LLM and pass-through routes, by the status sent",
                              labels=["requested_model", "route", "status_code"] + alias)
    for k, v in fold(c["requests"], 3).items():
        req.add_metric(list(k), v)
    out.append(req)
    failed = CounterMetricFamily("litellm_proxy_failed_requests_metric", "Answers of the LLM and pass-through routes with a 4xx or 5xx status",
                                 labels=["requested_model", "route", "status_code"] + alias)
    for k, v in fold(c["failed"], 3).items():
        failed.add_metric(list(k), v)
    out.append(failed)

    spend = CounterMetricFamily("litellm_spend_metric", "Spend in USD", labels=["model"] + alias)
    total = CounterMetricFamily("litellm_total_tokens_metric", "Prompt + completion tokens", labels=["model"] + alias)
    inp = CounterMetricFamily("litellm_input_tokens_metric", "Prompt tokens", labels=["model"] + alias)
    outp = CounterMetricFamily("litellm_output_tokens_metric", "Completion tokens", labels=["model"] + alias)
    for k, v in fold(c["spend"], 1).items():
        spend.add_metric(list(k), v)
    totals: dict = {}
    for k, v in fold(c["input_tokens"], 1).items():
        inp.add_metric(list(k), v)
        bump(totals, k, v)
    for k, v in fold(c["output_tokens"], 1).items():
        outp.add_metric(list(k), v)
        bump(totals, k, v)
    for k, v in totals.items():
        total.add_metric(list(k), v)
    out += [spend, total, inp, outp]

    h = pod["histograms"]
    out.append(_histogram("litellm_request_total_latency_metric", "Request latency in seconds (to the end of the response)", h["latency"],
                          LATENCY_BUCKETS))
    out.append(_histogram("litellm_llm_api_time_to_first_token_metric", "Time to the first streamed chunk in seconds", h["ttft"], TTFT_BUCKETS))

    rl = CounterMetricFamily("litemaas_rate_limit_rejections", "Requests refused with 429 by the RPM/TPM/parallel limits",
                             labels=["requested_model", "subject", "limit_type"] + alias)
    for k, v in fold(c["rate_limited"], 3).items():
        rl.add_metric(list(k), v)
    out.append(rl)
    gr = CounterMetricFamily("litellm_guardrail_requests", "Guardrail checks by outcome (passed, blocked, masked)",
                             labels=["guardrail_name", "mode", "outcome"])
    for k, v in c["guardrails"].items():
        gr.add_metric(list(k), v)
    out.append(gr)

    out += _deployment_families(pod)

    queue = GaugeMetricFamily("litellm_in_memory_spend_update_queue_size", "Spend records waiting to be written to the database (all workers)")
    queue.add_metric([], pod["gauges"].get("litellm_in_memory_spend_update_queue_size", 0))
    out.append(queue)
    out.append(GaugeMetricFamily("litemaas_spend_records_on_disk", "Spend records waiting only in a journal on disk (memory cap reached, or adopted)",
                                 value=pod["gauges"].get("litemaas_spend_records_on_disk", 0)))
    out.append(CounterMetricFamily("litemaas_key_lookups", "Keys looked up in the database on a key-cache miss (concurrent misses of one key count once)",
                                   value=pod["lookups"][0]))
    out.append(CounterMetricFamily("litemaas_key_lookup_batches", "Database queries made for those lookups (keys missed together share one)",
                                   value=pod["lookups"][1]))
    return out


def _histogram(name: str, doc: str, store: dict, buckets: tuple):
    fam = HistogramMetricFamily(name, doc, labels=["model"])
    for model, row in store.items():
        cum, out = 0, []
        for i, le in enumerate(buckets):
            cum += row[i]
            out.append((repr(float(le)), cum))
        cum += row[len(buckets)]
        out.append(("+Inf", cum))
        fam.add_metric([model], out, row[-1])
    return fam


def _deployment_families(pod: dict) -> list:
    labels = ["model_group", "model_id", "litellm_model_name", "api_base", "api_provider"]
    state = GaugeMetricFamily("litellm_deployment_state", "Deployment state: 0 healthy, 2 cooling down after failures (in any worker)", labels=labels)
    in_flight = GaugeMetricFamily("litemaas_deployment_in_flight", "Requests in flight to the deployment (all workers)", labels=labels)
    total = CounterMetricFamily("litellm_deployment_total_requests", "Attempts sent to the deployment (retries included)", labels=labels)
    ok = CounterMetricFamily("litellm_deployment_success_responses", "Successful responses from the deployment", labels=labels)
    bad = CounterMetricFamily("litellm_deployment_failure_responses", "Upstream errors: connection failures, timeouts, HTTP 5xx",
                              labels=labels + ["exception_status"])
    cooled = CounterMetricFamily("litellm_deployment_cooled_down", "Times the deployment was put in cooldown", labels=labels)
    fb_ok = CounterMetricFamily("litellm_deployment_successful_fallbacks", "Requests answered by a fallback model group",
                                labels=["requested_model", "fallback_model"])
    fb_bad = CounterMetricFamily("litellm_deployment_failed_fallbacks", "Requests that failed on their model group and on every fallback",
                                 labels=["requested_model", "fallback_model"])
    for values, d in pod["deployments"].items():
        values = list(values)
        state.add_metric(values, d["state"])
        in_flight.add_metric(values, d["in_flight"])
        total.add_metric(values, d["requests"])
        ok.add_metric(values, d["successes"])
        cooled.add_metric(values, d["cooldowns"])
        for reason, n in d["errors"].items():
            bad.add_metric(values + [reason], n)
    for k, n in pod["fallbacks_ok"].items():
        fb_ok.add_metric(list(k), n)
    for k, n in pod["fallbacks_bad"].items():
        fb_bad.add_metric(list(k), n)
    return [state, in_flight, total, ok, bad, cooled, fb_ok, fb_bad]


class _Families:
    """A one-shot collector for ``generate_latest``."""

    def __init__(self, fams: list):
        self.fams = fams

    def collect(self):
        return self.fams


def render(pod: dict, key_alias: bool) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families(pod, key_alias)))
    return generate_latest(registry)


async def handle_metrics(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body = render(await state.pod_snapshot(), state.key_alias)
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


def routes(proxy) -> list:
    """``/metrics``: public, or any valid key or the master key when require_auth_for_metrics_endpoint is on (like LiteLLM)."""
    level = KEY if proxy.settings.metrics_require_auth else PUBLIC
    return [Route("GET", "/metrics", handle_metrics, level), Route("GET", "/metrics/", handle_metrics, level)]
