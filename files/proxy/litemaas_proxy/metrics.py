"""Prometheus metrics at ``/metrics``, with LiteLLM's metric names where LiteLLM has one.

Long file: the counting, the merge across workers and the exposition share the stores' shapes; they are to move
into modules of their own with the data plane's restructuring.

**Every answer is counted once, with the status the client got.** The outermost middleware (:func:`count_answers`)
counts each answer of the LLM and pass-through routes: successes, and refusals the handlers never see (401 for a
missing or unknown key, 503 while the database cannot verify a key) or raise before routing (400 for an unknown
model or a bad body, 403, 429). A handler that knows more tells it through :func:`success` / :func:`failure`
(the public model name, tokens, spend, and the status of a stream that failed after its 200 headers were sent).
Labels stay bounded: ``requested_model`` is a model the proxy serves or ``None`` (never a name an unknown caller
made up), ``route`` the route template (``/openai/deployments/{deployment}/...``), ``api_key_alias`` only from a
key that authenticated, and only with ``LITEMAAS_METRICS_KEY_ALIAS=true`` (or ``litellm_settings.metrics_key_alias:
true``), because every key then becomes a set of series.

**The numbers are the pod's, whatever the number of workers.** The request path only bumps plain dict counters in
its own process. With ``--workers N`` each worker also listens on an abstract Unix socket (``\\0litemaas-metrics-
<group>-<index>``, private to the pod's network namespace: no volume, no file); the worker a scrape lands on asks
the others for their numbers and answers with the sum. Counters and histograms are summed; gauges are combined by
meaning (:data:`GAUGES`): backlogs and requests in flight summed, a deployment's cooldown state the highest any
worker reports. A worker that stops answering keeps its last counters in the sum (so the pod's counters never go
back); its gauges are dropped. ``litellm_settings.require_auth_for_metrics_endpoint: true`` makes ``/metrics`` ask
for a valid key.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import socket
from bisect import bisect_left
from dataclasses import dataclass
from typing import Optional

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from litemaas_proxy.auth import MASTER

log = logging.getLogger("litemaas_proxy.metrics")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
PEER_TIMEOUT = 2.0  # seconds a scrape waits for another worker's numbers
NO_VALUE = "None"  # the label value for "not known" (LiteLLM's)

# Counters of this process, bumped on the request path (plain dicts: a tuple key and an addition).
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

COUNTERS = {"requests": _requests, "failed": _failed, "spend": _spend, "input_tokens": _input_tokens, "output_tokens": _output_tokens,
            "rate_limited": _rate_limited, "guardrails": _guardrails}
HISTOGRAMS = {"latency": _latency, "ttft": _ttft}

# How the pod's value of each process-level gauge is made from its workers' values.
GAUGES = {
    "litellm_in_memory_spend_update_queue_size": sum,  # records waiting in any worker wait in the pod
    "litemaas_spend_records_on_disk": sum,  # likewise those held only in a journal on disk
}
DEPLOYMENT_STATE = max  # a deployment cooling down in one worker is reported as cooling down
DEPLOYMENT_IN_FLIGHT = sum


class Answer:
    """What the handler of one counted request reported (the middleware counts it when the answer is out)."""

    __slots__ = ("key_alias", "status", "model", "route", "entry")

    def __init__(self, key_alias: bool):
        self.key_alias = key_alias
        self.status: Optional[str] = None
        self.model: Optional[str] = None
        self.route: Optional[str] = None
        self.entry = None


_answer: contextvars.ContextVar = contextvars.ContextVar("litemaas_metrics_answer", default=None)


@dataclass(frozen=True)
class Worker:
    """This process's place among the workers of one proxy (``cli.main`` makes one per forked worker)."""

    group: str
    index: int
    count: int

    def address(self, index: int) -> str:
        return f"\0litemaas-metrics-{self.group}-{index}"


COUNTED_KEY = web.AppKey("litemaas_metrics_counted", dict)
STATE_KEY = web.AppKey("litemaas_metrics_state", object)


def _alias(answer: Optional[Answer], entry) -> str:
    if answer is None or not answer.key_alias or entry is None or entry is MASTER:
        return NO_VALUE
    return entry.key.get("key_alias") or NO_VALUE


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


def _count(model: str, route: str, status: str, alias: str) -> None:
    key = (model, route, status, alias)
    _requests[key] = _requests.get(key, 0) + 1
    if status[0] in "45":
        _failed[key] = _failed.get(key, 0) + 1


def _report(entry, model, route: str, status: Optional[str]) -> None:
    """The handler's account of its answer: kept for the middleware, or counted at once outside a counted request.
    ``status`` None: the status of the response the handler returns."""
    answer = _answer.get()
    if answer is None:
        _count(model or NO_VALUE, _route(route), status or "200", NO_VALUE)
        return
    answer.status, answer.model, answer.route, answer.entry = status, model, route, entry


# ---------------------------------------------------------------- called on the request path
def success(entry, model: str, route: str, prompt: int, completion: int, cost: float, latency: float) -> None:
    _report(entry, model, route, None)
    key = (model, _alias(_answer.get(), entry))
    if cost:
        _spend[key] = _spend.get(key, 0) + cost
    if prompt:
        _input_tokens[key] = _input_tokens.get(key, 0) + prompt
    if completion:
        _output_tokens[key] = _output_tokens.get(key, 0) + completion
    _observe(_latency, LATENCY_BUCKETS, model, latency)


def failure(entry, model: str, route: str, status) -> None:
    _report(entry, model, route, str(status))


def first_token(model: str, seconds: float) -> None:
    _observe(_ttft, TTFT_BUCKETS, model, seconds)


def rate_limited(entry, model: str, route: str, exc) -> None:
    """A 429 from the limiter: counted as a failed request and as a rate-limit rejection (subject and limit type).
    Anything else the limiter raises (503 while Redis is away in the closed failure mode) is only a failed request,
    so the rate-limit alerts do not fire on a Redis outage."""
    failure(entry, model, route, exc.status)
    if exc.status != 429:
        return
    headers = exc.headers or {}
    subject = NO_VALUE
    for name in headers:
        if name.startswith("x-ratelimit-") and "-limit-" in name:
            subject = name[len("x-ratelimit-"):name.index("-limit-")]
            break
    _bump(_rate_limited, (model, subject, headers.get("rate_limit_type", NO_VALUE), _alias(_answer.get(), entry)))


def guardrail(name: str, mode: str, outcome: str) -> None:
    _bump(_guardrails, (name, mode, outcome))


@web.middleware
async def count_answers(request: web.Request, handler):
    """Count every answer of the LLM and pass-through routes with the status the client got (outermost middleware)."""
    route = request.match_info.route
    template = request.app[COUNTED_KEY].get(route)
    if template is None:
        return await handler(request)
    state = request.app[STATE_KEY]
    answer = Answer(state.key_alias)
    token = _answer.set(answer)
    status = None
    try:
        response = await handler(request)
        status = str(response.status)
        return response
    except web.HTTPException as exc:
        status = str(exc.status)
        raise
    except asyncio.CancelledError:  # the client went away before an answer: nothing was answered
        raise
    except Exception:
        status = "500"  # aiohttp answers an error that escapes every middleware with 500
        raise
    finally:
        _answer.reset(token)
        if status is not None:
            if answer.status is not None:  # the handler's account wins: a stream that failed after its 200 headers
                status = answer.status
            model = answer.model or request.get("litemaas_model")
            # Only names the proxy serves become label values; anything else a caller sends is "None".
            if model is not None and model not in state.proxy.router.groups:
                model = NO_VALUE
            entry = answer.entry if answer.entry is not None else request.get("litemaas_caller")
            _count(model or NO_VALUE, _route(answer.route) if answer.route else template, status, _alias(answer, entry))


# ---------------------------------------------------------------- snapshots: this worker's numbers, merged across workers
def _rows(store: dict) -> list:
    return [[list(k) if isinstance(k, tuple) else k, v] for k, v in list(store.items())]


def local_snapshot(proxy) -> dict:
    """This process's numbers as plain JSON-able data."""
    deployments = []
    fallbacks_ok: list = []
    fallbacks_bad: list = []
    router = proxy.router
    for dep in list(router.by_id.values()):
        st = dep.state
        deployments.append([[dep.model_name, dep.id, dep.upstream_model, dep.api_base, dep.provider], 2 if st.cooling() else 0, st.in_flight,
                            st.requests, st.successes, st.cooldowns, dict(st.errors)])
    fallbacks_ok = [[list(k), n] for k, n in list(router.fallback_successes.items())]
    fallbacks_bad = [[list(k), n] for k, n in list(router.fallback_failures.items())]
    lookups = getattr(proxy, "lookups", None)
    return {
        "counters": {name: _rows(store) for name, store in COUNTERS.items()},
        "histograms": {name: _rows(store) for name, store in HISTOGRAMS.items()},
        "deployments": deployments, "fallbacks_ok": fallbacks_ok, "fallbacks_bad": fallbacks_bad,
        "lookups": [lookups.lookups, lookups.batches] if lookups is not None else [0, 0],
        "gauges": {"litellm_in_memory_spend_update_queue_size": proxy.spend.pending_records,
                   "litemaas_spend_records_on_disk": proxy.spend.on_disk_records},
    }


def _key(k):
    return tuple(k) if isinstance(k, list) else k


def merge(snapshots: list, live: list) -> dict:
    """The pod's numbers from each worker's snapshot. ``live[i]`` is false for a worker that did not answer this time
    (its counters are kept from its last answer, its gauges are left out)."""
    counters: dict = {name: {} for name in COUNTERS}
    histograms: dict = {name: {} for name in HISTOGRAMS}
    deployments: dict = {}
    fb_ok: dict = {}
    fb_bad: dict = {}
    lookups = [0, 0]
    gauges: dict = {name: [] for name in GAUGES}
    for snap, alive in zip(snapshots, live):
        for name, rows in snap["counters"].items():
            store = counters.setdefault(name, {})
            for k, v in rows:
                _bump(store, _key(k), v)
        for name, rows in snap["histograms"].items():
            store = histograms.setdefault(name, {})
            for k, row in rows:
                have = store.get(k)
                store[k] = list(row) if have is None else [a + b for a, b in zip(have, row)]
        for labels, state, in_flight, requests, successes, cooldowns, errors in snap["deployments"]:
            d = deployments.get(tuple(labels))
            if d is None:
                d = deployments[tuple(labels)] = {"state": [], "in_flight": [], "requests": 0, "successes": 0, "cooldowns": 0, "errors": {}}
            if alive:
                d["state"].append(state)
                d["in_flight"].append(in_flight)
            d["requests"] += requests
            d["successes"] += successes
            d["cooldowns"] += cooldowns
            for reason, n in errors.items():
                _bump(d["errors"], reason, n)
        for k, n in snap["fallbacks_ok"]:
            _bump(fb_ok, tuple(k), n)
        for k, n in snap["fallbacks_bad"]:
            _bump(fb_bad, tuple(k), n)
        lookups[0] += snap["lookups"][0]
        lookups[1] += snap["lookups"][1]
        if alive:
            for name, value in snap["gauges"].items():
                gauges.setdefault(name, []).append(value)
    for d in deployments.values():
        d["state"] = DEPLOYMENT_STATE(d["state"]) if d["state"] else 0
        d["in_flight"] = DEPLOYMENT_IN_FLIGHT(d["in_flight"])
    return {"counters": counters, "histograms": histograms, "deployments": deployments, "fallbacks_ok": fb_ok, "fallbacks_bad": fb_bad,
            "lookups": lookups, "gauges": {name: GAUGES.get(name, sum)(values) for name, values in gauges.items()}}


class MetricsState:
    """Per application: the proxy, the label settings, and the link to the other workers."""

    def __init__(self, proxy, worker: Optional[Worker]):
        self.proxy = proxy
        self.key_alias = bool(proxy.settings.metrics_key_alias)
        self.worker = worker
        self.server = None
        self.last: dict = {}  # worker index -> its last snapshot

    async def start(self) -> None:
        if self.worker is None or self.worker.count <= 1:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self.worker.address(self.worker.index))
        self.server = await asyncio.start_unix_server(self._serve_peer, sock=sock)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    async def _serve_peer(self, reader, writer) -> None:
        try:
            writer.write(orjson.dumps(local_snapshot(self.proxy)))
            await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def _ask(self, index: int):
        # Connected by hand: uvloop's open_unix_connection() refuses abstract names (OSError 22).
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, self.worker.address(index))
        except BaseException:
            sock.close()
            raise
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        try:
            return orjson.loads(await reader.read())
        finally:
            writer.close()

    async def pod_snapshot(self) -> dict:
        own = local_snapshot(self.proxy)
        if self.server is None:
            return merge([own], [True])
        others = [i for i in range(self.worker.count) if i != self.worker.index]
        results = await asyncio.gather(*(asyncio.wait_for(self._ask(i), PEER_TIMEOUT) for i in others), return_exceptions=True)
        snapshots, live = [own], [True]
        for index, result in zip(others, results):
            if isinstance(result, dict):
                self.last[index] = result
                snapshots.append(result)
                live.append(True)
            else:
                log.warning("worker %d did not report its metrics (%s: %s)%s", index, type(result).__name__, result,
                            "; its last counters are used" if index in self.last else "")
                if index in self.last:
                    snapshots.append(self.last[index])
                    live.append(False)
        return merge(snapshots, live)


# ---------------------------------------------------------------- rendered on scrape
def families(pod: dict, key_alias: bool) -> list:
    """Prometheus metric families of the pod's numbers (``merge`` output)."""
    alias = ["api_key_alias"] if key_alias else []

    def fold(store: dict, n: int) -> dict:
        """Drop the alias (the last key field) when the label is off, adding up what it separated."""
        if key_alias:
            return store
        out: dict = {}
        for k, v in store.items():
            _bump(out, k[:n], v)
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
        _bump(totals, k, v)
    for k, v in fold(c["output_tokens"], 1).items():
        outp.add_metric(list(k), v)
        _bump(totals, k, v)
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
    from litemaas_proxy.api.routes import KEY, PUBLIC, Route

    level = KEY if proxy.settings.metrics_require_auth else PUBLIC
    return [Route("GET", "/metrics", handle_metrics, level), Route("GET", "/metrics/", handle_metrics, level)]


def install(app: web.Application, proxy, counted: list, worker: Optional[Worker] = None) -> None:
    """Add ``/metrics``, the answer-counting middleware (outermost) for the ``counted`` routes (:class:`Route` entries
    already installed), and the link to the other workers."""
    from litemaas_proxy.api import routes as route_table

    route_table.install(app, routes(proxy))
    handlers = {r.handler for r in counted}
    app[COUNTED_KEY] = {aio: aio.resource.canonical for aio in app.router.routes() if aio.handler in handlers and aio.resource is not None}
    app[STATE_KEY] = MetricsState(proxy, worker)
    app.middlewares.insert(0, count_answers)
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)


async def _start(app: web.Application) -> None:
    await app[STATE_KEY].start()


async def _stop(app: web.Application) -> None:
    await app[STATE_KEY].stop()


def worker_group() -> str:
    """An id shared by the workers of one proxy process (the parent's pid and a random part)."""
    return f"{os.getpid()}-{os.urandom(4).hex()}"
