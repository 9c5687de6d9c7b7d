"""The relay of one LLM answer, alone: ``relay_json`` and ``relay_stream`` (files/proxy/litemaas_proxy/api/relay.py)
handed an upstream answer object made by the test, inside a real aiohttp server, with the proxy's real router,
guardrails and spend writer (journal off: the records stay in memory, where the test reads them)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "files" / "proxy"))

from litemaas_proxy import guardrails  # noqa: E402
from litemaas_proxy.api import relay  # noqa: E402
from litemaas_proxy.api.context import RequestContext  # noqa: E402
from litemaas_proxy.api.data import CHAT, EMBEDDINGS  # noqa: E402
from litemaas_proxy.app import Proxy  # noqa: E402
from litemaas_proxy.auth import MASTER, hash_token  # noqa: E402
from litemaas_proxy.config import load_settings  # noqa: E402
from litemaas_proxy.errors import ProxyError  # noqa: E402
from litemaas_proxy.routing import Deployment  # noqa: E402
from litemaas_proxy.upstream import UpstreamError  # noqa: E402

MASTER_KEY = "sk-relay-master"
API_BASE = "http://model.example:8000/v1"
# Spend-record fields (spend.make_record): cost, total, prompt, completion tokens, ..., status
COST, TOTAL, PROMPT, COMPLETION, STATUS = 3, 4, 5, 6, 17
# The proxy keeps a request's state under string keys (request["litemaas_caller"]), as this test's handler does.
pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")


class FakeUpstream:
    """An upstream answer as the relay reads it (upstream.Response): ``read()``, ``iter_chunks()``, ``close()``."""

    def __init__(self, body: bytes = b"", chunks=(), fail: BaseException = None):
        self.status = 200
        self.body = body
        self.chunks = list(chunks)
        self.fail = fail
        self.closed = False

    async def read(self) -> bytes:
        return self.body

    async def iter_chunks(self):
        for chunk in self.chunks:
            yield chunk
        if self.fail is not None:
            raise self.fail

    def close(self) -> None:
        self.closed = True


def make_proxy(tmp_path) -> Proxy:
    proxy = Proxy(load_settings(None, env={"LITELLM_MASTER_KEY": MASTER_KEY, "LITEMAAS_SPILL_DIR": str(tmp_path)}))
    guardrails.setup(None, proxy)
    proxy.spend.enabled = True  # as with a database; the journal is not opened, so records stay in memory
    return proxy


DEP = Deployment("dep-1", "m", {"model": "openai/upstream-m", "api_base": API_BASE, "input_cost_per_token": 0.001,
                                "output_cost_per_token": 0.002}, {}, False)


def relay_through_server(proxy, api, body: dict, upstream: FakeUpstream, stream: bool, wants_usage: bool = False):
    """Serve one request whose handler relays ``upstream`` with ``api``; return (status, headers, body, ctx)."""
    seen = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        request["litemaas_caller"] = MASTER  # the route guard's part
        ctx = RequestContext(request, api.call_type, api.upstream_path)
        ctx.model, ctx.body, ctx.deployment, ctx.stream, ctx.wants_usage = "m", body, DEP, stream, wants_usage
        seen["ctx"] = ctx
        try:
            if stream:
                return await relay.relay_stream(proxy, ctx, api, upstream)
            return await relay.relay_json(proxy, ctx, api, upstream)
        except ProxyError as exc:
            seen["error"] = exc
            return exc.response()

    async def go():
        app = web.Application()
        app.router.add_post("/relay", handler)
        async with TestServer(app) as server:
            async with aiohttp.ClientSession() as session:
                async with session.post(server.make_url("/relay"), json=body) as resp:
                    return resp.status, dict(resp.headers), await resp.read()

    status, headers, content = asyncio.run(go())
    return status, headers, content, seen


def records(proxy) -> list:
    return list(proxy.spend.current.records)


def test_relay_json_sends_the_answer_and_accounts_its_usage(tmp_path):
    proxy = make_proxy(tmp_path)
    answer = orjson.dumps({"id": "c1", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
                           "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})
    status, headers, content, seen = relay_through_server(proxy, CHAT, {"model": "m", "messages": [{"role": "user", "content": "x"}]},
                                                          FakeUpstream(answer), stream=False)
    assert status == 200
    assert content == answer  # relayed byte for byte
    assert headers["Content-Type"] == "application/json"
    assert headers["x-litellm-model-id"] == "dep-1" and headers["x-litellm-model-group"] == "m"
    assert headers["x-litellm-response-cost"] == repr(10 * 0.001 + 5 * 0.002)
    assert seen["ctx"].tokens == 15
    [rec] = records(proxy)
    assert (rec[COST], rec[TOTAL], rec[PROMPT], rec[COMPLETION], rec[STATUS]) == (10 * 0.001 + 5 * 0.002, 15, 10, 5, "success")
    assert rec[2] == hash_token(MASTER_KEY)  # the master key's rows carry its hash


def test_relay_json_counts_total_tokens_when_that_is_all_the_usage_says(tmp_path):
    proxy = make_proxy(tmp_path)
    answer = orjson.dumps({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}],
                           "usage": {"total_tokens": 7}})
    status, headers, content, seen = relay_through_server(proxy, EMBEDDINGS, {"model": "m", "input": "x"}, FakeUpstream(answer), stream=False)
    assert (status, content) == (200, answer)
    [rec] = records(proxy)
    assert (rec[PROMPT], rec[COMPLETION], rec[STATUS]) == (7, 0, "success")


def test_relay_json_refuses_an_answer_that_is_not_json(tmp_path):
    proxy = make_proxy(tmp_path)
    status, headers, content, seen = relay_through_server(proxy, CHAT, {"model": "m", "messages": []}, FakeUpstream(b"<html>oops"), stream=False)
    assert status == 502
    message = f"Upstream model server returned invalid JSON: {API_BASE} (model=m)"
    assert orjson.loads(content)["error"] == {"message": message, "type": "upstream_error", "param": "None", "code": "502"}
    assert records(proxy) == []  # nothing charged


def sse(data) -> bytes:
    return b"data: " + (data if isinstance(data, bytes) else orjson.dumps(data)) + b"\n\n"


def chunk(text: str) -> dict:
    return {"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}


USAGE_EVENT = sse({"id": "c1", "object": "chat.completion.chunk", "choices": [],
                   "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})


@pytest.mark.parametrize("wants_usage", [False, True])
def test_relay_stream_forwards_events_and_keeps_the_usage_event_from_a_caller_that_did_not_ask(tmp_path, wants_usage):
    proxy = make_proxy(tmp_path)
    events = [sse(chunk("Hel")), sse(chunk("lo")), USAGE_EVENT, sse(b"[DONE]")]
    # chunks split mid-event, as the network delivers them
    raw = b"".join(events)
    upstream = FakeUpstream(chunks=[raw[:10], raw[10:45], raw[45:]])
    status, headers, content, seen = relay_through_server(proxy, CHAT, {"model": "m", "messages": [{"role": "user", "content": "x"}],
                                                                        "stream": True}, upstream, stream=True, wants_usage=wants_usage)
    assert status == 200
    assert headers["Content-Type"] == "text/event-stream" and headers["Cache-Control"] == "no-cache"
    assert "x-litellm-response-cost" not in headers  # not known when the headers are sent
    expected = events if wants_usage else [e for e in events if e is not USAGE_EVENT]
    assert content == b"".join(expected)
    [rec] = records(proxy)
    assert (rec[PROMPT], rec[COMPLETION], rec[STATUS]) == (3, 2, "success")
    assert seen["ctx"].tokens == 5


def test_relay_stream_without_usage_estimates_it_from_the_text(tmp_path):
    proxy = make_proxy(tmp_path)
    events = [sse(chunk("abcdefgh")), sse(chunk("ij")), sse(b"[DONE]")]
    body = {"model": "m", "messages": [{"role": "user", "content": "twelve chars"}], "stream": True}
    status, headers, content, seen = relay_through_server(proxy, CHAT, body, FakeUpstream(chunks=events), stream=True)
    assert (status, content) == (200, b"".join(events))
    [rec] = records(proxy)
    # ~4 characters a token: 12 characters of prompt -> 3, 10 of completion -> 3
    assert (rec[PROMPT], rec[COMPLETION], rec[STATUS]) == (3, 3, "success")


def test_relay_stream_broken_off_reports_in_band_and_charges_nothing(tmp_path):
    proxy = make_proxy(tmp_path)
    first = sse(chunk("Hel"))
    upstream = FakeUpstream(chunks=[first], fail=UpstreamError("connection reset"))
    status, headers, content, seen = relay_through_server(proxy, CHAT, {"model": "m", "messages": [], "stream": True}, upstream, stream=True)
    assert status == 200  # the headers were sent before the failure
    assert content.startswith(first)
    error = orjson.loads(content[len(first):].removeprefix(b"data: ").strip())
    assert error == {"error": {"message": f"Upstream model server broke off the stream: {API_BASE} (model=m): UpstreamError",
                               "type": "upstream_error", "param": "None", "code": "502"}}
    [rec] = records(proxy)
    assert (rec[COST], rec[PROMPT], rec[COMPLETION], rec[STATUS]) == (0.0, 0, 0, "failure")
    assert seen["ctx"].tokens == 0


def test_route_handlers_are_module_level_functions_found_by_name(tmp_path):
    """Each data-plane and pass-through route's handler is a function of its module, importable by its name (so a
    traceback names it), not a closure made per application."""
    from litemaas_proxy.api import data, passthrough

    table = {(r.method, r.path): r.handler for r in data.ROUTES}
    assert table[("POST", "/v1/chat/completions")] is data.chat_completions
    assert table[("POST", "/chat/completions")] is data.chat_completions
    assert table[("POST", "/engines/{engine}/chat/completions")] is data.chat_completions
    assert table[("POST", "/v1/completions")] is data.completions
    assert table[("POST", "/openai/deployments/{deployment}/embeddings")] is data.embeddings
    assert table[("GET", "/v1/models")] is data.list_models
    assert table[("GET", "/v1/models/{model_id:.+}")] is data.get_model
    config = tmp_path / "config.yaml"
    config.write_text("general_settings:\n  passthrough_prefixes: [ocr]\n", encoding="utf-8")
    settings = load_settings(str(config), env={})
    through = passthrough.routes(settings)
    assert [(r.method, r.path) for r in through] == [("*", "/docling/{tail:.*}"), ("*", "/ocr/{tail:.*}")]
    for module, route in [(data, r) for r in data.ROUTES] + [(passthrough, r) for r in through]:
        assert "<locals>" not in route.handler.__qualname__
        assert getattr(module, route.handler.__name__) is route.handler
