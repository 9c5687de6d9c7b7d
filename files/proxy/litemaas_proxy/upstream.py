"""A lean HTTP/1.1 client for the model servers: keep-alive pool per origin, one request per connection
at a time, Content-Length / chunked / read-until-close bodies, incremental delivery for streams.

The general-purpose aiohttp client spends several times the network round trip in CPU per request
(request/response objects, multidicts, cookie jar, tracing hooks); this one does only what a reverse
proxy to OpenAI-compatible servers needs.
"""

from __future__ import annotations

import asyncio
import collections
import ssl as ssl_lib
from typing import Optional
from urllib.parse import urlsplit


class UpstreamError(ConnectionError):
    """The connection failed or broke before the response was complete."""

    def __init__(self, message: str, connect: bool = False):
        super().__init__(message)
        self.connect = connect


class UpstreamTimeout(asyncio.TimeoutError):
    pass


class Response:
    __slots__ = ("status", "headers", "_chunks", "_done", "_error", "_waiter", "_conn")

    def __init__(self):
        self.status = 0
        self.headers: dict = {}
        self._chunks: collections.deque = collections.deque()
        self._done = False
        self._error: Optional[BaseException] = None
        self._waiter: Optional[asyncio.Future] = None
        self._conn = None

    # called by the protocol
    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._wake()

    def _finish(self, error: Optional[BaseException] = None) -> None:
        if self._done:
            return
        self._done = True
        self._error = error
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def read(self) -> bytes:
        while not self._done:
            await self._wait()
        if self._error is not None:
            raise self._error
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data

    async def iter_chunks(self):
        while True:
            while self._chunks:
                yield self._chunks.popleft()
            if self._done:
                if self._error is not None:
                    raise self._error
                return
            await self._wait()

    def close(self) -> None:
        """Abandon the response (e.g. the client went away): the connection is not reused."""
        if not self._done and self._conn is not None:
            self._conn.abort()


class _Conn(asyncio.Protocol):
    def __init__(self, pool: Pool):
        self.pool = pool
        self.transport = None
        self.closed = False
        self.resp: Optional[Response] = None
        self.head_future: Optional[asyncio.Future] = None
        self.buf = bytearray()
        self.state = 0  # 0 idle, 1 head, 2 length body, 3 chunked body, 4 read until close
        self.remaining = 0
        self.chunk_left: Optional[int] = None
        self.keep_alive = True
        self.received = False
        self.timer = None

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.state == 4 and self.resp is not None:
            self.resp._finish()
        elif self.state:
            err = UpstreamError(f"upstream closed the connection{': ' + str(exc) if exc else ''}")
            self._fail(err)
        self.state = 0
        self.pool._discard(self)

    def abort(self, error: Optional[BaseException] = None) -> None:
        if error is not None:
            self._fail(error)
        if not self.closed:
            self.closed = True
            self.transport.abort()

    def _fail(self, err: BaseException) -> None:
        if self.head_future is not None and not self.head_future.done():
            self.head_future.set_exception(err)
        elif self.resp is not None:
            self.resp._finish(err)
        self.state = 0

    def start(self, payload: bytes, timeout: float) -> tuple:
        self.resp = Response()
        self.resp._conn = self
        self.head_future = asyncio.get_running_loop().create_future()
        self.buf.clear()
        self.state = 1
        self.received = False
        self.keep_alive = True
        self.timer = asyncio.get_running_loop().call_later(timeout, self._timeout, timeout)
        self.transport.write(payload)
        return self.resp, self.head_future

    def _timeout(self, timeout: float) -> None:
        self.timer = None
        self.abort(UpstreamTimeout(f"no complete answer within {timeout}s"))

    def data_received(self, data):
        self.received = True
        if self.state == 1:
            self.buf += data
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > 65536:
                    self.abort(UpstreamError("upstream response headers too large"))
                return
            if not self._parse_head(bytes(self.buf[:end])):
                return
            rest = bytes(self.buf[end + 4:])
            self.buf.clear()
            if not self.head_future.done():
                self.head_future.set_result(self.resp)
            if self.state == 0:
                self._complete()
                return
            if rest:
                self._body(rest)
            return
        if self.state:
            self._body(data)

    def _parse_head(self, head: bytes) -> bool:
        lines = head.split(b"\r\n")
        try:
            version, code = lines[0].split(b" ", 2)[:2]
            status = int(code)
        except ValueError:
            self.abort(UpstreamError("upstream sent an invalid HTTP status line"))
            return False
        headers = {}
        for line in lines[1:]:
            name, dummy, value = line.partition(b":")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        resp = self.resp
        resp.status = status
        resp.headers = headers
        conn_hdr = headers.get("connection", "").lower()
        self.keep_alive = ("close" not in conn_hdr) if version == b"HTTP/1.1" else ("keep-alive" in conn_hdr)
        if status in (204, 304) or 100 <= status < 200:
            self.state = 0
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self.state = 3
            self.chunk_left = None
        elif "content-length" in headers:
            self.remaining = int(headers["content-length"])
            self.state = 2 if self.remaining else 0
        else:
            self.state = 4
            self.keep_alive = False
        return True

    def _body(self, data: bytes) -> None:
        resp = self.resp
        if self.state == 2:
            if len(data) >= self.remaining:
                resp._feed(data[: self.remaining])
                self.remaining = 0
                self._complete()
            else:
                self.remaining -= len(data)
                resp._feed(data)
        elif self.state == 4:
            resp._feed(data)
        elif self.state == 3:
            self.buf += data
            self._chunked()

    def _chunked(self) -> None:
        buf = self.buf
        out = []
        while True:
            if self.chunk_left is None:
                eol = buf.find(b"\r\n")
                if eol < 0:
                    break
                try:
                    size = int(bytes(buf[:eol]).split(b";", 1)[0].strip(), 16)
                except ValueError:
                    self.abort(UpstreamError("upstream sent an invalid chunk size"))
                    return
                del buf[: eol + 2]
                self.chunk_left = size + 2 if size else 0
            if self.chunk_left == 0:
                # last chunk: optional trailers, then an empty line
                if buf.startswith(b"\r\n"):
                    del buf[:2]
                else:
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    del buf[: end + 4]
                if out:
                    self.resp._feed(b"".join(out))
                self._complete()
                return
            if len(buf) < self.chunk_left:
                avail = min(len(buf), self.chunk_left - 2)  # deliver partial chunk data at once (streams)
                if avail > 0:
                    out.append(bytes(buf[:avail]))
                    del buf[:avail]
                    self.chunk_left -= avail
                break
            if self.chunk_left > 2:
                out.append(bytes(buf[: self.chunk_left - 2]))
            del buf[: self.chunk_left]
            self.chunk_left = None
        if out:
            self.resp._feed(b"".join(out))

    def _complete(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        resp = self.resp
        self.state = 0
        self.resp = None
        self.head_future = None
        if self.keep_alive and not self.closed:
            self.pool._release(self)
        else:
            self.closed = True
            self.transport.close()
        resp._finish()


class Pool:
    """Idle keep-alive connections of one origin (scheme, host, port)."""

    def __init__(self, client: UpstreamClient, scheme: str, host: str, port: int):
        self.client = client
        self.host = host
        self.port = port
        self.ssl = ssl_lib.create_default_context() if scheme == "https" else None
        self.idle: list = []
        self.host_header = host if port in (80, 443) else f"{host}:{port}"

    def _release(self, conn: _Conn) -> None:
        if len(self.idle) < self.client.max_idle:
            self.idle.append(conn)
        else:
            conn.closed = True
            conn.transport.close()

    def _discard(self, conn: _Conn) -> None:
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    async def connect(self, timeout: float) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            dummy, conn = await asyncio.wait_for(loop.create_connection(lambda: _Conn(self), self.host, self.port, ssl=self.ssl), timeout)
        except asyncio.TimeoutError:
            raise UpstreamError(f"connect to {self.host}:{self.port} timed out after {timeout}s", connect=True) from None
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}", connect=True) from None
        return conn


class UpstreamClient:
    def __init__(self, connect_timeout: float = 10.0, max_idle: int = 256):
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self.pools: dict = {}
        self._targets: dict = {}

    def _target(self, url: str) -> tuple:
        target = self._targets.get(url)
        if target is None:
            parts = urlsplit(url)
            scheme = parts.scheme or "http"
            port = parts.port or (443 if scheme == "https" else 80)
            key = (scheme, parts.hostname, port)
            pool = self.pools.get(key)
            if pool is None:
                pool = self.pools[key] = Pool(self, scheme, parts.hostname, port)
            path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
            target = self._targets[url] = (pool, path.encode())
        return target

    async def post(self, url: str, body: bytes, headers: bytes, timeout: float) -> Response:
        """POST ``body``; ``headers`` are pre-rendered ``Name: value\\r\\n`` lines. Returns once the status and headers arrived."""
        return await self.request("POST", url, body, headers, timeout)

    async def send(self, method: str, url: str, body: bytes, headers: bytes, timeout: float) -> tuple:
        """One whole request: (status, body bytes)."""
        resp = await self.request(method, url, body, headers, timeout)
        return resp.status, await resp.read()

    async def request(self, method: str, url: str, body: bytes, headers: bytes, timeout: float) -> Response:
        pool, path = self._target(url)
        payload = b"%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n%s\r\n%s" % (method.encode(), path, pool.host_header.encode(), len(body), headers, body)
        for attempt in range(2):
            reused = bool(pool.idle)
            conn = pool.idle.pop() if reused else await pool.connect(self.connect_timeout)
            resp, head = conn.start(payload, timeout)
            try:
                return await head
            except UpstreamError:
                # A kept-alive connection the server had already closed: retry once on a fresh one.
                if reused and not conn.received and attempt == 0:
                    continue
                raise
        raise UpstreamError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        for pool in self.pools.values():
            for conn in pool.idle:
                conn.closed = True
                conn.transport.close()
            pool.idle.clear()


def render_headers(headers: dict) -> bytes:
    return b"".join(b"%s: %s\r\n" % (k.encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items())
