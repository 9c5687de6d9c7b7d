"""Counting on the request path: this process's counters, what a handler reports of its answer, and the outermost
middleware that counts every answer of the LLM and pass-through routes (see the package's docstring)."""

from __future__ import annotations

import asyncio
import contextvars
from bisect import bisect_left
from typing import Optional

from aiohttp import web

from litemaas_proxy.auth import MASTER

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
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


def bump(store: dict, key, value=1) -> None:
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
    bump(_rate_limited, (model, subject, headers.get("rate_limit_type", NO_VALUE), _alias(_answer.get(), entry)))


def guardrail(name: str, mode: str, outcome: str) -> None:
    bump(_guardrails, (name, mode, outcome))


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
