"""Prometheus metrics at ``/metrics``, with LiteLLM's metric names where LiteLLM has one.

In three parts: :mod:`.counting` (the request path: this process's counters and the answer-counting middleware),
:mod:`.workers` (this process's snapshot, the merge of the workers' snapshots into the pod's numbers, the link
between workers) and :mod:`.exposition` (Prometheus families of the pod's numbers, ``/metrics``). This package
re-exports what the rest of the proxy calls and :func:`install`s the three on an application.

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

from typing import Optional

from aiohttp import web

from litemaas_proxy.api import routes as route_table
from litemaas_proxy.metrics.counting import (
    COUNTED_KEY,
    NO_VALUE,
    STATE_KEY,
    count_answers,
    failure,
    first_token,
    guardrail,
    rate_limited,
    success,
)
from litemaas_proxy.metrics.exposition import families, handle_metrics, render, routes
from litemaas_proxy.metrics.workers import MetricsState, Worker, local_snapshot, merge, worker_group

__all__ = ["NO_VALUE", "Worker", "count_answers", "failure", "families", "first_token", "guardrail", "handle_metrics", "install", "local_snapshot",
           "merge", "rate_limited", "render", "routes", "success", "worker_group"]


def install(app: web.Application, proxy, counted: list, worker: Optional[Worker] = None) -> None:
    """Add ``/metrics``, the answer-counting middleware (outermost) for the ``counted`` routes (:class:`Route` entries
    already installed), and the link to the other workers."""
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
