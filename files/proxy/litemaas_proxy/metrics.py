"""Prometheus metrics (LiteLLM's metric names for the basic counters)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter("litellm_proxy_total_requests_metric", "Requests to the proxy's LLM routes", ["requested_model", "route", "status_code"],
                   registry=REGISTRY)
FAILED = Counter("litellm_proxy_failed_requests_metric", "Failed requests to the proxy's LLM routes", ["requested_model", "route", "status_code"],
                 registry=REGISTRY)
SPEND = Counter("litellm_spend_metric", "Spend in USD", ["model"], registry=REGISTRY)
TOKENS = Counter("litellm_total_tokens_metric", "Total tokens", ["model"], registry=REGISTRY)
INPUT_TOKENS = Counter("litellm_input_tokens_metric", "Prompt tokens", ["model"], registry=REGISTRY)
OUTPUT_TOKENS = Counter("litellm_output_tokens_metric", "Completion tokens", ["model"], registry=REGISTRY)
LATENCY = Histogram("litellm_request_total_latency_metric", "Request latency in seconds", ["model"], registry=REGISTRY,
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600))
SPEND_QUEUE = Gauge("litellm_in_memory_spend_update_queue_size", "Spend records waiting to be written to the database", registry=REGISTRY)


def setup(app: web.Application, proxy) -> None:
    async def handle_metrics(request: web.Request) -> web.Response:
        SPEND_QUEUE.set(len(proxy.spend.buffer))
        resp = web.Response(body=generate_latest(REGISTRY))
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/metrics/", handle_metrics)
