"""Prometheus metrics at ``/metrics``, with LiteLLM's metric names where LiteLLM has one.

The request path only bumps plain dict counters (a tuple key and an addition); the Prometheus text is built
from them, and from the router's per-deployment counters, when ``/metrics`` is scraped. Counters are per
process: with ``--workers N`` each worker reports its own, like LiteLLM without ``PROMETHEUS_MULTIPROC_DIR``.

Labels: ``requested_model``/``model`` is the public model name. The key alias (``api_key_alias``) is added to
the request, spend, token and rate-limit series only when ``LITEMAAS_METRICS_KEY_ALIAS=true`` (or
``litellm_settings.metrics_key_alias: true``), because every key then becomes a set of series.
``litellm_settings.require_auth_for_metrics_endpoint: true`` makes ``/metrics`` ask for a valid key.
"""

from __future__ import annotations

from bisect import bisect_left

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from litemaas_proxy.auth import MASTER

REGISTRY = CollectorRegistry(auto_describe=False)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

KEY_ALIAS = False  # set by routes() from the settings

# (requested_model, route, status_code, api_key_alias) -> count
_requests: dict = {}
_failed: dict = {}
# (model, api_key_alias) -> value
_spend: dict = {}
_input_tokens: dict = {}
_output_tokens: dict = {}
# model -> [bucket counts..., +Inf count, sum]
_latency: dict = {}
_ttft: dict = {}
# (requested_model, subject, limit_type, api_key_alias) -> count
_rate_limited: dict = {}
# (guardrail_name, mode, outcome) -> count
_guardrails: dict = {}

_proxy = None


def _alias(entry) -> str:
    if not KEY_ALIAS or entry is None or entry is MASTER:
        return "None"
    return entry.key.get("key_alias") or "None"


def _route(route: str) -> str:
    """Bounded route label: the Azure-style paths carry a client-chosen deployment name."""
    if route.startswith(("/openai/deployments/", "/engines/")):
        head, dummy, rest = route.lstrip("/").partition("/")
        if head == "openai":
            dummy, dummy, rest = rest.partition("/")
            return "/openai/deployments/{deployment}/" + rest.partition("/")[2]
        return "/engines/{engine}/" + rest.partition("/")[2]
    return route


def _bump(store: dict, key, value=1) -> None:
    store[key] = store.get(key, 0) + value


def _observe(store: dict, buckets: tuple, model: str, value: float) -> None:
    row = store.get(model)
    if row is None:
        row = store[model] = [0] * (len(buckets) + 1) + [0.0]
    row[bisect_left(buckets, value)] += 1
    row[-1] += value


# ---------------------------------------------------------------- called on the request path
def success(entry, model: str, route: str, prompt: int, completion: int, cost: float, latency: float) -> None:
    alias = "None" if not KEY_ALIAS or entry is MASTER else (entry.key.get("key_alias") or "None")
    if route[1] in "oe":
        route = _route(route)
    key = (model, route, "200", alias)
    _requests[key] = _requests.get(key, 0) + 1
    key = (model, alias)
    if cost:
        _spend[key] = _spend.get(key, 0) + cost
    if prompt:
        _input_tokens[key] = _input_tokens.get(key, 0) + prompt
    if completion:
        _output_tokens[key] = _output_tokens.get(key, 0) + completion
    row = _latency.get(model)
    if row is None:
        row = _latency[model] = [0] * (len(LATENCY_BUCKETS) + 1) + [0.0]
    row[bisect_left(LATENCY_BUCKETS, latency)] += 1
    row[-1] += latency


def failure(entry, model: str, route: str, status) -> None:
    key = (model or "None", _route(route), str(status), _alias(entry))
    _requests[key] = _requests.get(key, 0) + 1
    _failed[key] = _failed.get(key, 0) + 1


def first_token(model: str, seconds: float) -> None:
    _observe(_ttft, TTFT_BUCKETS, model, seconds)


def rate_limited(entry, model: str, route: str, exc) -> None:
    """A 429 from the limiter: counted as a failed request and as a rate-limit rejection (subject and limit type).
    Anything else the limiter raises (503 while Redis is away in the closed failure mode) is only a failed request,
    so the rate-limit alerts do not fire on a Redis outage."""
    if exc.status != 429:
        failure(entry, model, route, exc.status)
        return
    headers = exc.headers or {}
    subject = "None"
    for name in headers:
        if name.startswith("x-ratelimit-") and "-limit-" in name:
            subject = name[len("x-ratelimit-"):name.index("-limit-")]
            break
    alias = _alias(entry)
    _bump(_rate_limited, (model, subject, headers.get("rate_limit_type", "None"), alias))
    failure(entry, model, route, exc.status)


def guardrail(name: str, mode: str, outcome: str) -> None:
    _bump(_guardrails, (name, mode, outcome))


# ---------------------------------------------------------------- rendered on scrape
class _Collector:
    def collect(self):
        alias = ["api_key_alias"] if KEY_ALIAS else []

        def lab(values: tuple, n: int) -> list:
            return list(values[:n]) + (list(values[n:]) if KEY_ALIAS else [])

        req = CounterMetricFamily("litellm_proxy_total_requests_metric", "Requests to the proxy's LLM and pass-through routes",
                                  labels=["requested_model", "route", "status_code"] + alias)
        for k, v in list(_requests.items()):
            req.add_metric(lab(k, 3), v)
        yield req
        failed = CounterMetricFamily("litellm_proxy_failed_requests_metric", "Failed requests to the proxy's LLM and pass-through routes",
                                     labels=["requested_model", "route", "status_code"] + alias)
        for k, v in list(_failed.items()):
            failed.add_metric(lab(k, 3), v)
        yield failed

        spend = CounterMetricFamily("litellm_spend_metric", "Spend in USD", labels=["model"] + alias)
        total = CounterMetricFamily("litellm_total_tokens_metric", "Prompt + completion tokens", labels=["model"] + alias)
        inp = CounterMetricFamily("litellm_input_tokens_metric", "Prompt tokens", labels=["model"] + alias)
        out = CounterMetricFamily("litellm_output_tokens_metric", "Completion tokens", labels=["model"] + alias)
        for k, v in list(_spend.items()):
            spend.add_metric(lab(k, 1), v)
        totals: dict = {}
        for k, v in list(_input_tokens.items()):
            inp.add_metric(lab(k, 1), v)
            totals[k] = totals.get(k, 0) + v
        for k, v in list(_output_tokens.items()):
            out.add_metric(lab(k, 1), v)
            totals[k] = totals.get(k, 0) + v
        for k, v in totals.items():
            total.add_metric(lab(k, 1), v)
        yield spend
        yield total
        yield inp
        yield out

        yield _histogram("litellm_request_total_latency_metric", "Request latency in seconds (to the end of the response)", _latency,
                         LATENCY_BUCKETS)
        yield _histogram("litellm_llm_api_time_to_first_token_metric", "Time to the first streamed chunk in seconds", _ttft, TTFT_BUCKETS)

        rl = CounterMetricFamily("litemaas_rate_limit_rejections", "Requests refused with 429 by the RPM/TPM/parallel limits",
                                 labels=["requested_model", "subject", "limit_type"] + alias)
        for k, v in list(_rate_limited.items()):
            rl.add_metric(lab(k, 3), v)
        yield rl
        gr = CounterMetricFamily("litellm_guardrail_requests", "Guardrail checks by outcome (passed, blocked, masked)",
                                 labels=["guardrail_name", "mode", "outcome"])
        for k, v in list(_guardrails.items()):
            gr.add_metric(list(k), v)
        yield gr

        yield from _deployment_families()

        queue = GaugeMetricFamily("litellm_in_memory_spend_update_queue_size", "Spend records waiting to be written to the database")
        queue.add_metric([], _proxy.spend.pending_records if _proxy is not None else 0)
        yield queue
        yield GaugeMetricFamily("litemaas_spend_records_on_disk", "Spend records waiting only in the journal on disk (memory cap reached, or adopted)",
                                value=_proxy.spend.on_disk_records if _proxy is not None else 0)

        lookups = getattr(_proxy, "lookups", None)
        yield CounterMetricFamily("litemaas_key_lookups", "Keys looked up in the database on a key-cache miss (concurrent misses of one key count once)",
                                  value=lookups.lookups if lookups is not None else 0)
        yield CounterMetricFamily("litemaas_key_lookup_batches", "Database queries made for those lookups (keys missed together share one)",
                                  value=lookups.batches if lookups is not None else 0)


def _histogram(name: str, doc: str, store: dict, buckets: tuple):
    fam = HistogramMetricFamily(name, doc, labels=["model"])
    for model, row in list(store.items()):
        cum, out = 0, []
        for i, le in enumerate(buckets):
            cum += row[i]
            out.append((repr(float(le)), cum))
        cum += row[len(buckets)]
        out.append(("+Inf", cum))
        fam.add_metric([model], out, row[-1])
    return fam


def _deployment_families():
    labels = ["model_group", "model_id", "litellm_model_name", "api_base", "api_provider"]
    state = GaugeMetricFamily("litellm_deployment_state", "Deployment state: 0 healthy, 2 cooling down after failures", labels=labels)
    in_flight = GaugeMetricFamily("litemaas_deployment_in_flight", "Requests in flight to the deployment (this process)", labels=labels)
    total = CounterMetricFamily("litellm_deployment_total_requests", "Attempts sent to the deployment (retries included)", labels=labels)
    ok = CounterMetricFamily("litellm_deployment_success_responses", "Successful responses from the deployment", labels=labels)
    bad = CounterMetricFamily("litellm_deployment_failure_responses", "Upstream errors: connection failures, timeouts, HTTP 5xx",
                              labels=labels + ["exception_status"])
    cooled = CounterMetricFamily("litellm_deployment_cooled_down", "Times the deployment was put in cooldown", labels=labels)
    fb_ok = CounterMetricFamily("litellm_deployment_successful_fallbacks", "Requests answered by a fallback model group",
                                labels=["requested_model", "fallback_model"])
    fb_bad = CounterMetricFamily("litellm_deployment_failed_fallbacks", "Requests that failed on their model group and on every fallback",
                                 labels=["requested_model", "fallback_model"])
    router = _proxy.router if _proxy is not None else None
    if router is not None:
        for dep in list(router.by_id.values()):
            st = dep.state
            values = [dep.model_name, dep.id, dep.upstream_model, dep.api_base, dep.provider]
            state.add_metric(values, 2 if st.cooling() else 0)
            in_flight.add_metric(values, st.in_flight)
            total.add_metric(values, st.requests)
            ok.add_metric(values, st.successes)
            cooled.add_metric(values, st.cooldowns)
            for reason, n in list(st.errors.items()):
                bad.add_metric(values + [reason], n)
        for (requested, fallback), n in list(router.fallback_successes.items()):
            fb_ok.add_metric([requested, fallback], n)
        for (requested, fallback), n in list(router.fallback_failures.items()):
            fb_bad.add_metric([requested, fallback], n)
    yield from (state, in_flight, total, ok, bad, cooled, fb_ok, fb_bad)


REGISTRY.register(_Collector())


async def handle_metrics(request: web.Request) -> web.Response:
    resp = web.Response(body=generate_latest(REGISTRY))
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


def routes(proxy) -> list:
    """``/metrics``: public, or any valid key or the master key when require_auth_for_metrics_endpoint is on (like LiteLLM)."""
    from litemaas_proxy.api.routes import KEY, PUBLIC, Route

    global KEY_ALIAS, _proxy
    _proxy = proxy
    KEY_ALIAS = proxy.settings.metrics_key_alias
    level = KEY if proxy.settings.metrics_require_auth else PUBLIC
    return [Route("GET", "/metrics", handle_metrics, level), Route("GET", "/metrics/", handle_metrics, level)]
