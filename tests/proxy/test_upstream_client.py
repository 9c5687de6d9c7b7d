"""The proxy's lean upstream HTTP client and Redis client, against the stub upstream and a real Redis (no proxy process)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "files" / "proxy"))

from litemaas_proxy.fastredis import FastRedis, RedisUnavailable  # noqa: E402
from litemaas_proxy.upstream import UpstreamClient, UpstreamError, UpstreamTimeout, render_headers  # noqa: E402

HEADERS = render_headers({"Content-Type": "application/json"})


def run(coro):
    return asyncio.run(coro)


def test_json_keepalive_and_streaming(stub_upstream):
    async def main():
        client = UpstreamClient()
        url = stub_upstream.url + "/chat/completions"
        for i in range(3):
            resp = await client.post(url, orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "a b c"}], "max_tokens": i + 1}),
                                     HEADERS, 10)
            assert resp.status == 200
            data = orjson.loads(await resp.read())
            assert data["usage"] == {"prompt_tokens": 3, "completion_tokens": i + 1, "total_tokens": i + 4}
        pool = next(iter(client.pools.values()))
        assert len(pool.idle) == 1  # one connection, reused
        resp = await client.post(url, orjson.dumps({"model": "m", "messages": [], "stream": True, "stream_options": {"include_usage": True}}),
                                 HEADERS, 10)
        assert resp.status == 200 and resp.headers["content-type"] == "text/event-stream"
        body = b"".join([c async for c in resp.iter_chunks()])
        events = [e for e in body.split(b"\n\n") if e]
        assert events[-1] == b"data: [DONE]" and b'"usage":{"prompt_tokens":1' in events[-2]
        resp = await client.post(stub_upstream.url + "/nope", b"{}", HEADERS, 10)
        assert resp.status == 404 and b"no route" in await resp.read()
        await client.close()

    run(main())


def test_errors(stub_upstream):
    from tests.support.services import free_port

    async def main():
        client = UpstreamClient(connect_timeout=2)
        with pytest.raises(UpstreamError) as exc:
            await client.post(f"http://127.0.0.1:{free_port()}/v1/chat/completions", b"{}", HEADERS, 5)
        assert exc.value.connect
        with pytest.raises(UpstreamTimeout):
            await client.post(stub_upstream.url + "/chat/completions", orjson.dumps({"model": "stub-hang", "messages": []}), HEADERS, 0.3)
        with pytest.raises(UpstreamError) as exc:
            await client.post(stub_upstream.url + "/chat/completions", orjson.dumps({"model": "stub-cut", "messages": []}), HEADERS, 5)
        assert not exc.value.connect
        resp = await client.post(stub_upstream.url + "/chat/completions", orjson.dumps({"model": "stub-cut", "messages": [], "stream": True}),
                                 HEADERS, 5)
        got = []
        with pytest.raises(UpstreamError):
            async for chunk in resp.iter_chunks():
                got.append(chunk)
        assert b"tok0" in b"".join(got)
        # The client still works after all that.
        resp = await client.post(stub_upstream.url + "/chat/completions", orjson.dumps({"model": "m", "messages": []}), HEADERS, 5)
        assert resp.status == 200
        await client.close()

    run(main())


def test_fast_redis(redis_server):
    async def main():
        r = FastRedis(redis_server.url)
        assert await r.execute("PING") == b"PONG"
        results = await asyncio.gather(*[r.execute("INCR", "litemaas:test:fast") for dummy in range(50)])
        assert sorted(results)[-1] - sorted(results)[0] == 49
        assert await r.run_script("return ARGV[1] .. KEYS[1]", ["k"], ["v"]) == b"vk"
        await r.close()
        down = FastRedis("redis://127.0.0.1:1/0", connect_timeout=0.5)
        with pytest.raises(RedisUnavailable):
            await down.execute("PING")
        await down.close()

    run(main())
