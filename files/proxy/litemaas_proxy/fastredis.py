"""A minimal pipelined Redis client for the hot path (one EVALSHA per request).

redis-py's asyncio client costs several times the network round trip in CPU per command (connection
pool checkout, command packing, a timeout wrapper per read). This client keeps one connection,
pipelines every command on it, parses replies with hiredis and enforces timeouts with one watchdog.
redis-py is still used for everything else (pub/sub, readiness, publish).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import ssl as ssl_lib
import time
from typing import Optional
from urllib.parse import unquote, urlparse

import hiredis


class RedisUnavailable(ConnectionError):
    pass


def _pack(args) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        else:
            data = str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Conn(asyncio.Protocol):
    def __init__(self):
        self.transport = None
        self.reader = hiredis.Reader()
        self.waiters: collections.deque = collections.deque()
        self.closed = False
        self.on_push = None  # pub/sub connections: callback for pushed messages
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.reader.feed(data)
        waiters = self.waiters
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            if self.on_push is not None and isinstance(reply, list) and reply and reply[0] in (b"message", b"pmessage"):
                self.on_push(reply)
                continue
            if not waiters:
                continue
            fut, dummy = waiters.popleft()
            if not fut.done():
                fut.set_result(reply)

    def connection_lost(self, exc):
        self.closed = True
        if not self.lost.done():
            self.lost.set_result(None)
        err = RedisUnavailable(f"Redis connection lost: {exc}")
        while self.waiters:
            fut, dummy = self.waiters.popleft()
            if not fut.done():
                fut.set_exception(err)

    def send(self, payload: bytes) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self.waiters.append((fut, time.monotonic()))
        self.transport.write(payload)
        return fut


class FastRedis:
    def __init__(self, url: str, timeout: float = 5.0, connect_timeout: float = 2.0):
        parsed = urlparse(url)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 6379
        self.username = unquote(parsed.username) if parsed.username else None
        self.password = unquote(parsed.password) if parsed.password else None
        path = (parsed.path or "/").lstrip("/")
        self.db = int(path) if path.isdigit() else 0
        self.ssl = ssl_lib.create_default_context() if parsed.scheme == "rediss" else None
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.conn: Optional[_Conn] = None
        self._connecting: Optional[asyncio.Future] = None
        self._watchdog = None
        self._shas: dict = {}
        self._down_until = 0.0

    async def _connect(self) -> _Conn:
        conn = await self._open()
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().create_task(self._watch())
        return conn

    async def _open(self) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            dummy, conn = await asyncio.wait_for(loop.create_connection(_Conn, self.host, self.port, ssl=self.ssl), self.connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise RedisUnavailable(f"cannot connect to Redis at {self.host}:{self.port}: {exc}") from None
        setup = []
        if self.password:
            setup.append(("AUTH", self.username, self.password) if self.username else ("AUTH", self.password))
        if self.db:
            setup.append(("SELECT", self.db))
        for args in setup:
            reply = await asyncio.wait_for(conn.send(_pack(args)), self.timeout)
            if isinstance(reply, hiredis.ReplyError):
                conn.transport.close()
                raise RedisUnavailable(f"Redis {args[0]} failed: {reply}")
        return conn

    async def _get(self) -> _Conn:
        conn = self.conn
        if conn is not None and not conn.closed:
            return conn
        if time.monotonic() < self._down_until:
            raise RedisUnavailable("Redis unavailable (retrying shortly)")
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
            try:
                self.conn = await self._connecting
            except Exception:
                self._down_until = time.monotonic() + 1.0  # fail fast for a second instead of queueing connects
                raise
            finally:
                self._connecting = None
            return self.conn
        return await asyncio.shield(self._connecting)

    async def _watch(self) -> None:
        """Close a connection whose oldest pending reply is overdue (its waiters then fail)."""
        while True:
            await asyncio.sleep(max(0.2, self.timeout / 4))
            conn = self.conn
            if conn is not None and not conn.closed and conn.waiters:
                if time.monotonic() - conn.waiters[0][1] > self.timeout:
                    conn.transport.abort()

    async def execute(self, *args):
        conn = self.conn
        if conn is None or conn.closed:
            conn = await self._get()
        reply = await conn.send(_pack(args))
        if isinstance(reply, hiredis.ReplyError):
            raise reply
        return reply

    async def run_script(self, script: str, keys: list, args: list):
        sha = self._shas.get(script)
        if sha is None:
            sha = self._shas[script] = hashlib.sha1(script.encode()).hexdigest()
        try:
            return await self.execute("EVALSHA", sha, len(keys), *keys, *args)
        except hiredis.ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            return await self.execute("EVAL", script, len(keys), *keys, *args)

    async def ping(self):
        return await self.execute("PING")

    async def publish(self, channel: str, message: str):
        return await self.execute("PUBLISH", channel, message)

    async def subscribe_forever(self, channel: str, callback, on_reconnect=None, ping_interval: float = 15.0) -> None:
        """Deliver every message on ``channel`` to ``callback(str)``, reconnecting as needed (run as a task, cancel to stop).
        ``on_reconnect()`` is called after a re-subscription, when messages may have been missed."""
        first = True
        while True:
            conn = None
            try:
                conn = await self._open()
                conn.on_push = lambda reply: callback(reply[-1].decode() if isinstance(reply[-1], bytes) else str(reply[-1]))
                reply = await asyncio.wait_for(conn.send(_pack(("SUBSCRIBE", channel))), self.timeout)
                if isinstance(reply, hiredis.ReplyError):
                    raise RedisUnavailable(f"SUBSCRIBE failed: {reply}")
                if not first and on_reconnect is not None:
                    on_reconnect()
                first = False
                while not conn.closed:
                    try:
                        await asyncio.wait_for(asyncio.shield(conn.lost), ping_interval)
                    except asyncio.TimeoutError:
                        # Quiet channel: make sure the connection is still alive.
                        await asyncio.wait_for(conn.send(_pack(("PING",))), self.timeout)
            except asyncio.CancelledError:
                raise
            except Exception:
                first = False
                await asyncio.sleep(1.0)
            finally:
                if conn is not None and not conn.closed:
                    conn.transport.abort()

    async def aclose(self) -> None:
        await self.close()

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self.conn is not None and not self.conn.closed:
            self.conn.transport.close()
