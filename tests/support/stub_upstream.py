"""A small, fast OpenAI-compatible model server that stands in for a real model upstream.

Used by the proxy tests and the benchmark. Plain asyncio (uvloop when installed), HTTP/1.1 with
keep-alive and pipelining, ``Content-Length`` and ``chunked`` request bodies, ``Expect: 100-continue``.

Routes
  POST /v1/chat/completions   JSON, or SSE with ``"stream": true`` (role chunk, content chunks, a finish
                              chunk, then a usage chunk with empty ``choices`` when
                              ``stream_options.include_usage`` is true, then ``data: [DONE]``)
  POST /v1/completions        same for text completions
  POST /v1/embeddings         ``encoding_format`` ``float`` or ``base64`` (the ``openai`` client's default)
  GET  /v1/models, /models    the configured model ids
  GET  /health, /v1/health    ``{"status": "ok"}`` (never faulted, never counted)
  POST /v1/responses          OpenAI Responses API, JSON or named SSE events; stored for
  GET  /v1/responses/{id}     retrieval (404 when unknown) and POST /v1/responses/{id}/cancel
                              (400 "Cannot cancel a synchronous response." for a finished one)
  POST /v1/messages           Anthropic Messages API, JSON or SSE; POST /v1/messages/count_tokens
  POST /v1/audio/transcriptions, /v1/audio/translations   multipart WAV upload
  POST /rerank, /v1/rerank, /v2/rerank, /score, /v1/score, /tokenize, /detokenize, /v2/embed (Cohere)
                              (shapes and numbers of all these: ``tests/support/stub_apis.py``)
  POST /docling/..., .../convert/...   echo: received byte count, content type and multipart parts
  GET  /__stub/stats          request counters (see ``Stats``); POST /__stub/reset clears stats and config
  GET|POST /__stub/config     read / merge the fault and behaviour settings (see ``DEFAULT_CONFIG``)

Deterministic usage, so that tests can check spend exactly:
  prompt_tokens      = number of whitespace-separated words in the input (all message contents, the
                       prompt, or each embedding input; a list of token ids counts its length); at least 1
  completion_tokens  = ``max_tokens`` / ``max_completion_tokens`` when given, else ``completion_tokens``
                       from the config (default 5). The reply text is exactly that many words ``tok0 tok1 ...``.
The response echoes the requested ``model``. A chat request that forces a tool (``tool_choice`` ``required`` or
a named function) gets a tool call to it (arguments: each required property set to ``"tok0"``, finish_reason
``tool_calls``, completion_tokens the configured default).

Faults (for data-plane routes), from three sources, first match wins:
  request headers      ``x-stub-fail: 503``, ``x-stub-delay: 0.5`` (seconds), ``x-stub-hang: 1``, ``x-stub-cut: 1``
  model name tokens    ``...-fail-503``, ``...-delay-250ms``, ``...-hang``, ``...-cut`` anywhere in the model
                       name (works through a proxy that does not forward headers: point a deployment at
                       ``openai/stub-fail-503``)
  admin config         ``POST /__stub/config {"fail_status": 503, "fail_count": 2, "delay": 0.5, "hang": true}``
``fail`` answers with an OpenAI-style error JSON (Anthropic-style on the Messages routes) and that status; ``delay`` waits before answering;
``hang`` never answers (until the client goes away); ``cut`` drops the connection without an answer
(for streams: after the first content chunk).

Run: ``python -m tests.support.stub_upstream --host 127.0.0.1 --port P`` or ``StubUpstream().start()``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import os
import re
import signal
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from tests.support import stub_apis

try:  # orjson is faster; plain json works too
    import orjson

    def _dumps(obj) -> bytes:
        return orjson.dumps(obj)

    _loads = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    import json

    def _dumps(obj) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    _loads = json.loads

REPO = Path(__file__).resolve().parents[2]

DEFAULT_CONFIG = {
    "fail_status": None,  # int: answer every data-plane request with this HTTP status
    "fail_count": None,  # int: only fail this many requests, then clear fail_status (None = until changed)
    "delay": 0.0,  # seconds to wait before answering
    "hang": False,  # never answer
    "cut": False,  # drop the connection (streams: after the first content chunk)
    "completion_tokens": 5,  # default completion length when the request has no max_tokens
    "stream_chunks": 4,  # number of content chunks in a stream
    "stream_chunk_delay": 0.0,  # seconds between stream chunks
    "omit_stream_usage": False,  # never send the usage chunk, even when asked for it
    "omit_rerank_usage": False,  # answer rerank/score without "usage" (as servers that bill per query do)
    "embedding_dim": 8,  # default embedding dimension (the request's "dimensions" wins)
    "require_api_key": None,  # str: answer 401 unless "Authorization: Bearer <this>"
    "models": ["stub-model", "stub-embed"],  # ids listed by GET /v1/models
    "max_model_len": 4096,  # reported by /tokenize
}

RECENT_MAX = 100
MAX_HEADER_BYTES = 64 * 1024
_REASONS = {
    100: "Continue", 200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 413: "Payload Too Large", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}
_FAIL_RE = re.compile(r"fail-(\d{3})")
_DELAY_RE = re.compile(r"delay-(\d+)ms")


def count_words(value) -> int:
    """Whitespace-separated words in a string, a list of OpenAI content parts, or nested lists of those."""
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, dict):
        return count_words(value.get("text")) if value.get("type", "text") == "text" else 0
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, int) for v in value):
            return len(value)  # a list of token ids
        return sum(count_words(v) for v in value)
    return 0


def prompt_tokens_for(body: dict, path: str) -> int:
    if path.endswith("/chat/completions"):
        n = sum(count_words(m.get("content")) for m in body.get("messages") or [] if isinstance(m, dict))
    elif path.endswith("/completions"):
        n = count_words(body.get("prompt"))
    else:
        n = count_words(body.get("input"))
    return max(1, n)


def completion_words(n: int) -> list[str]:
    return [f"tok{i}" for i in range(n)]


def _split(seq: list, parts: int) -> list[list]:
    parts = max(1, min(parts, len(seq))) if seq else 1
    size, extra = divmod(len(seq), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(seq[start:end])
        start = end
    return out


def _embedding(text_key: str, index: int, dim: int) -> list[float]:
    seed = zlib.crc32(f"{index}:{text_key}".encode())
    return [round(((seed + 7919 * (j + 1)) % 2000) / 1000.0 - 1.0, 3) for j in range(dim)]


def parse_multipart(body: bytes, content_type: str) -> list[dict]:
    """Split a multipart/form-data body into parts: name, filename, content type, byte count."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        return []
    delim = b"--" + match.group(1).encode("latin-1")
    parts = []
    for chunk in body.split(delim)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk
        head, _sep, data = chunk.partition(b"\r\n\r\n")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            key, _sep, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        disp = headers.get("content-disposition", "")
        name = re.search(r'\bname="([^"]*)"', disp)
        filename = re.search(r'filename="([^"]*)"', disp)
        parts.append({
            "name": name.group(1) if name else None,
            "filename": filename.group(1) if filename else None,
            "content_type": headers.get("content-type"),
            "bytes": len(data),
        })
    return parts


class Request:
    __slots__ = ("method", "path", "query", "version", "headers", "body", "keep_alive")

    def __init__(self, method, path, query, version, headers, body, keep_alive):
        self.method = method
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive


class Stats:
    """Counters for data-plane requests (admin and /health requests are not counted)."""

    def __init__(self):
        self.requests = 0
        self.failed = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.received_bytes = 0
        self.by_path: dict[str, int] = collections.Counter()
        self.by_model: dict[str, int] = collections.Counter()
        self.recent: collections.deque = collections.deque(maxlen=RECENT_MAX)

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "failed": self.failed,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "received_bytes": self.received_bytes,
            "by_path": dict(self.by_path),
            "by_model": dict(self.by_model),
            "recent": list(self.recent),
        }


def _response(status: int, body: bytes, keep_alive: bool, content_type: bytes = b"application/json") -> bytes:
    conn = b"" if keep_alive else b"Connection: close\r\n"
    reason = _REASONS.get(status, "Status").encode()
    return b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n%s" % (status, reason, content_type, len(body), conn, body)


def _error(status: int, message: str, keep_alive: bool, err_type: str = "server_error") -> bytes:
    return _response(status, _dumps({"error": {"message": message, "type": err_type, "param": None, "code": str(status)}}), keep_alive)


def _anthropic_error(status: int, message: str, keep_alive: bool, err_type: str | None = None) -> bytes:
    err_type = err_type if err_type and err_type != "server_error" else stub_apis.ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    return _response(status, _dumps(stub_apis.anthropic_error(err_type, message)), keep_alive)


def _named_event(name: str, obj) -> bytes:
    data = b"event: " + name.encode() + b"\ndata: " + _dumps(obj) + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


JSON_KINDS = ("chat", "completion", "embedding", "responses", "messages", "count_tokens", "rerank", "score", "tokenize", "detokenize",
              "cohere_embed")
ANTHROPIC_KINDS = ("messages", "count_tokens")
_OTHER_KINDS = {
    "/v1/responses": "responses", "/v1/messages": "messages", "/v1/messages/count_tokens": "count_tokens",
    "/v1/audio/transcriptions": "transcription", "/v1/audio/translations": "translation",
    "/rerank": "rerank", "/v1/rerank": "rerank", "/v2/rerank": "rerank", "/score": "score", "/v1/score": "score",
    "/tokenize": "tokenize", "/detokenize": "detokenize", "/v2/embed": "cohere_embed",
}
_RESPONSE_ID = re.compile(r"^/v1/responses/([^/]+)(/cancel)?$")


def _sse_chunk(obj) -> bytes:
    data = b"data: " + (obj if isinstance(obj, bytes) else _dumps(obj)) + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


class StubServer:
    def __init__(self):
        self.config = dict(DEFAULT_CONFIG)
        self.stats = Stats()
        self.seq = 0
        self.responses: dict[str, dict] = {}  # stored Responses API objects by id (vLLM with its response store on)
        self.vocab: dict[int, str] = {}  # token id -> word, so that /detokenize inverts /tokenize

    # ---- dispatch -------------------------------------------------------------------------------------------------
    def handle(self, req: Request, conn: _Connection):
        """Answer ``req``. Returns None when answered synchronously, else a coroutine that answers it."""
        path, method = req.path, req.method
        if path.startswith("/__stub/"):
            return conn.write(self._admin(req))
        if path in ("/health", "/v1/health", "/health/liveliness", "/health/readiness"):
            return conn.write(_response(200, b'{"status":"ok"}', req.keep_alive))
        if path in ("/v1/models", "/models"):
            if method != "GET":
                return conn.write(_error(405, "method not allowed", req.keep_alive, "invalid_request_error"))
            now = int(time.time())
            data = [{"id": m, "object": "model", "created": now, "owned_by": "stub"} for m in self.config["models"]]
            return conn.write(_response(200, _dumps({"object": "list", "data": data}), req.keep_alive))
        stored = _RESPONSE_ID.match(path)
        if stored:
            return conn.write(self._stored_response(req, stored.group(1), bool(stored.group(2))))
        kind = self._kind(path)
        if kind is None:
            return conn.write(_error(404, f"no route for {method} {path}", req.keep_alive, "invalid_request_error"))
        if method != "POST":
            return conn.write(_error(405, "method not allowed", req.keep_alive, "invalid_request_error"))
        return self._data_plane(kind, req, conn)

    @staticmethod
    def _kind(path: str):
        if path in ("/v1/chat/completions", "/chat/completions"):
            return "chat"
        if path in ("/v1/completions", "/completions"):
            return "completion"
        if path in ("/v1/embeddings", "/embeddings"):
            return "embedding"
        if path.startswith("/docling") or "/convert/" in path:
            return "echo"
        return _OTHER_KINDS.get(path)

    def _admin(self, req: Request) -> bytes:
        if req.path == "/__stub/stats":
            return _response(200, _dumps(self.stats.as_dict()), req.keep_alive)
        if req.path == "/__stub/reset" and req.method == "POST":
            self.config = dict(DEFAULT_CONFIG)
            self.stats = Stats()
            self.responses = {}
            return _response(200, _dumps({"config": self.config}), req.keep_alive)
        if req.path == "/__stub/config":
            if req.method == "POST":
                try:
                    update = _loads(req.body or b"{}")
                except ValueError:
                    return _error(400, "invalid JSON", req.keep_alive, "invalid_request_error")
                unknown = sorted(set(update) - set(DEFAULT_CONFIG))
                if unknown:
                    return _error(400, f"unknown config keys: {unknown}", req.keep_alive, "invalid_request_error")
                self.config.update(update)
            return _response(200, _dumps(self.config), req.keep_alive)
        return _error(404, f"no admin route {req.path}", req.keep_alive, "invalid_request_error")

    # ---- data plane -----------------------------------------------------------------------------------------------
    def _data_plane(self, kind: str, req: Request, conn: _Connection):
        stats, cfg, headers = self.stats, self.config, req.headers
        stats.requests += 1
        stats.by_path[req.path] += 1
        stats.received_bytes += len(req.body)
        body: dict = {}
        err = _anthropic_error if kind in ANTHROPIC_KINDS else _error
        if kind in JSON_KINDS:
            try:
                body = _loads(req.body) if req.body else {}
                if not isinstance(body, dict):
                    raise ValueError("not an object")
            except ValueError:
                stats.failed += 1
                return conn.write(err(400, "request body is not a JSON object", req.keep_alive, "invalid_request_error"))
        elif kind in ("transcription", "translation"):
            fields, files = stub_apis.form_fields(req.body, headers.get("content-type", ""))
            body = {"model": fields.get("model", ""), "fields": fields, "files": files}
        model = body.get("model") if isinstance(body.get("model"), str) else ""
        if model:
            stats.by_model[model] += 1
        recorded = body if kind in JSON_KINDS else ({"fields": body["fields"]} if "fields" in body else None)
        stats.recent.append({"method": req.method, "path": req.path, "model": model, "headers": headers, "json": recorded})

        required = cfg["require_api_key"]
        if required and headers.get("authorization", "") != f"Bearer {required}":
            stats.failed += 1
            return conn.write(err(401, "Incorrect API key provided", req.keep_alive, "invalid_request_error"))

        fail, delay, hang, cut = self._faults(headers, model)
        if delay or hang:
            return self._slow(kind, req, body, conn, fail, delay, hang, cut)
        return self._answer(kind, req, body, conn, fail, cut)

    def _faults(self, headers: dict, model: str):
        cfg = self.config
        fail = headers.get("x-stub-fail")
        fail = int(fail) if fail else None
        if fail is None and "fail-" in model:
            m = _FAIL_RE.search(model)
            fail = int(m.group(1)) if m else None
        if fail is None and cfg["fail_status"]:
            fail = int(cfg["fail_status"])
            if cfg["fail_count"] is not None:
                cfg["fail_count"] -= 1
                if cfg["fail_count"] <= 0:
                    cfg["fail_status"] = None
                    cfg["fail_count"] = None
        delay = headers.get("x-stub-delay")
        delay = float(delay) if delay else 0.0
        if not delay and "delay-" in model:
            m = _DELAY_RE.search(model)
            delay = int(m.group(1)) / 1000.0 if m else 0.0
        delay = delay or float(cfg["delay"] or 0.0)
        hang = bool(headers.get("x-stub-hang")) or model.endswith("-hang") or "-hang-" in model or bool(cfg["hang"])
        cut = bool(headers.get("x-stub-cut")) or model.endswith("-cut") or "-cut-" in model or bool(cfg["cut"])
        return fail, delay, hang, cut

    async def _slow(self, kind, req, body, conn, fail, delay, hang, cut):
        stats = self.stats
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            if hang:
                await asyncio.Event().wait()  # until the connection goes away (the task is cancelled then)
            await asyncio.sleep(delay)
            result = self._answer(kind, req, body, conn, fail, cut)
            if result is not None:
                await result
        finally:
            stats.in_flight -= 1

    def _answer(self, kind, req: Request, body: dict, conn: _Connection, fail, cut):
        keep_alive = req.keep_alive
        if fail:
            self.stats.failed += 1
            err = _anthropic_error if kind in ANTHROPIC_KINDS else _error
            return conn.write(err(fail, f"stub upstream failure {fail}", keep_alive))
        stream = bool(body.get("stream")) and kind in ("chat", "completion", "responses", "messages")
        if cut and not stream:
            self.stats.failed += 1
            return conn.abort()
        if kind == "echo":
            return conn.write(self._echo(req))
        if kind == "embedding":
            return conn.write(self._embeddings(req, body))
        if kind not in ("chat", "completion"):
            return self._other(kind, req, body, conn, stream, cut)
        self.seq += 1
        model = body.get("model") or "stub-model"
        prompt = prompt_tokens_for(body, req.path)
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        completion = int(max_tokens) if isinstance(max_tokens, int) and max_tokens > 0 else int(self.config["completion_tokens"])
        finish = "length" if max_tokens else "stop"
        tool = stub_apis.chat_forced_tool(body) if kind == "chat" else None
        if tool is not None:  # a forced tool call: the configured default length, finish_reason tool_calls
            completion, finish = int(self.config["completion_tokens"]), "tool_calls"
        words = completion_words(completion)
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        created = int(time.time())
        if kind == "chat":
            rid, obj = f"chatcmpl-stub-{self.seq}", "chat.completion"
        else:
            rid, obj = f"cmpl-stub-{self.seq}", "text_completion"
        if not stream:
            if tool is not None:
                message = {"role": "assistant", "content": None, "tool_calls": [stub_apis.chat_tool_call(tool, self.seq)]}
                choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            elif kind == "chat":
                choice = {"index": 0, "message": {"role": "assistant", "content": " ".join(words)}, "logprobs": None, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": " ".join(words), "logprobs": None, "finish_reason": finish}
            payload = {"id": rid, "object": obj, "created": created, "model": model, "choices": [choice], "usage": usage}
            return conn.write(_response(200, _dumps(payload), keep_alive))
        return self._stream(kind, req, body, conn, rid, created, model, words, usage, finish, cut)

    def _stream(self, kind, req, body, conn, rid, created, model, words, usage, finish, cut):
        opts = body.get("stream_options") or {}
        with_usage = bool(opts.get("include_usage")) if isinstance(opts, dict) else False
        obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
        base = {"id": rid, "object": obj, "created": created, "model": model}
        if with_usage:
            base["usage"] = None

        def chunk(delta_or_text, finish_reason=None):
            if kind == "chat":
                choice = {"index": 0, "delta": delta_or_text, "logprobs": None, "finish_reason": finish_reason}
            else:
                choice = {"index": 0, "text": delta_or_text, "logprobs": None, "finish_reason": finish_reason}
            return _sse_chunk({**base, "choices": [choice]})

        pieces = []
        if kind == "chat":
            pieces.append(chunk({"role": "assistant", "content": ""}))
        tool = stub_apis.chat_forced_tool(body) if kind == "chat" else None
        groups = [] if tool is not None else _split(words, int(self.config["stream_chunks"]))
        if tool is not None:
            call = stub_apis.chat_tool_call(tool, self.seq)
            head_call = {"index": 0, "id": call["id"], "type": "function", "function": {"name": call["function"]["name"], "arguments": ""}}
            pieces.append(chunk({"tool_calls": [head_call]}))
            pieces.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": call["function"]["arguments"]}}]}))
        for i, group in enumerate(groups):
            text = (" " if i else "") + " ".join(group)
            pieces.append(chunk({"content": text} if kind == "chat" else text))
        pieces.append(chunk({} if kind == "chat" else "", finish))
        if with_usage and not self.config["omit_stream_usage"]:
            pieces.append(_sse_chunk({**base, "choices": [], "usage": usage}))
        pieces.append(_sse_chunk(b"[DONE]"))
        pieces.append(b"0\r\n\r\n")
        return self._send_stream(req, conn, pieces, cut, 2 if kind == "chat" else 1, b"text/event-stream")

    async def _paced(self, conn, head, pieces, gap, keep_alive):
        conn.write(head)
        for i, piece in enumerate(pieces):
            if i:
                await asyncio.sleep(gap)
            conn.write(piece)
        if not keep_alive:
            conn.close()

    def _embeddings(self, req: Request, body: dict) -> bytes:
        raw = body.get("input")
        if isinstance(raw, str) or (isinstance(raw, list) and raw and all(isinstance(v, int) for v in raw)):
            inputs = [raw]
        elif isinstance(raw, list) and raw:
            inputs = raw
        else:
            self.stats.failed += 1
            return _error(400, "'input' must be a non-empty string or list", req.keep_alive, "invalid_request_error")
        dim = body.get("dimensions") or self.config["embedding_dim"]
        b64 = body.get("encoding_format") == "base64"
        data = []
        for i, item in enumerate(inputs):
            vec = _embedding(str(item), i, int(dim))
            emb = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode() if b64 else vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = max(1, sum(count_words(item) for item in inputs))
        payload = {"object": "list", "data": data, "model": body.get("model") or "stub-embed", "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        return _response(200, _dumps(payload), req.keep_alive)

    def _stored_response(self, req: Request, rid: str, cancel: bool) -> bytes:
        if (req.method, cancel) not in (("GET", False), ("POST", True)):
            return _error(405, "method not allowed", req.keep_alive, "invalid_request_error")
        self.stats.requests += 1
        self.stats.by_path[req.path] += 1
        self.stats.recent.append({"method": req.method, "path": req.path, "model": "", "headers": req.headers, "json": None})
        found = self.responses.get(rid)
        if found is None:
            self.stats.failed += 1
            return _error(404, f"Response with id '{rid}' not found.", req.keep_alive, "invalid_request_error")
        if cancel and found["status"] not in ("queued", "in_progress"):
            self.stats.failed += 1
            return _error(400, "Cannot cancel a synchronous response.", req.keep_alive, "invalid_request_error")
        return _response(200, _dumps(found), req.keep_alive)

    def _other(self, kind: str, req: Request, body: dict, conn: _Connection, stream: bool, cut: bool):
        """Responses, Messages, audio, rerank/score and tokenize (see ``tests/support/stub_apis.py``)."""
        keep_alive, cfg = req.keep_alive, self.config
        self.seq += 1
        default = int(cfg["completion_tokens"])
        if kind in ("responses", "messages"):
            if kind == "responses":
                if body.get("input") is None:
                    self.stats.failed += 1
                    return conn.write(_error(400, "input: Field required", keep_alive, "invalid_request_error"))
                final = stub_apis.build_response(body, self.seq, default)
                if final["store"]:
                    self.responses[final["id"]] = final
                events = stub_apis.response_stream_events(final, int(cfg["stream_chunks"])) if stream else None
            else:
                problem = stub_apis.anthropic_validate(body)
                if problem:
                    self.stats.failed += 1
                    return conn.write(_anthropic_error(400, problem, keep_alive))
                final = stub_apis.build_message(body, self.seq, default)
                events = stub_apis.message_stream_events(final, int(cfg["stream_chunks"])) if stream else None
            if not stream:
                return conn.write(_response(200, _dumps(final), keep_alive))
            if cfg["omit_stream_usage"]:  # a server that dies before the last events
                events = events[:-2] if kind == "messages" else events[:-1]
            pieces = [_named_event(name, data) for name, data in events] + [b"0\r\n\r\n"]
            first_delta = next(i for i, (name, _d) in enumerate(events) if name.endswith("delta")) + 1
            return self._send_stream(req, conn, pieces, cut, first_delta)
        if kind == "count_tokens":
            problem = stub_apis.anthropic_validate(body, count_only=True)
            if problem:
                self.stats.failed += 1
                return conn.write(_anthropic_error(400, problem, keep_alive))
            return conn.write(_response(200, _dumps({"input_tokens": stub_apis.anthropic_input_tokens(body)}), keep_alive))
        if kind in ("transcription", "translation"):
            status, answer = stub_apis.audio_answer(kind, body["fields"], body["files"], default)
        elif kind == "rerank":
            status, answer = stub_apis.rerank_answer(body, self.seq)
        elif kind == "score":
            status, answer = stub_apis.score_answer(body, self.seq)
        elif kind == "cohere_embed":
            status, answer = stub_apis.cohere_embed_answer(body, self.seq, int(cfg["embedding_dim"]))
        elif kind == "tokenize":
            status, answer = stub_apis.tokenize_answer(body, self.vocab, int(cfg["max_model_len"]))
        else:
            status, answer = stub_apis.detokenize_answer(body, self.vocab)
        if status != 200:
            self.stats.failed += 1
            return conn.write(_error(status, str(answer), keep_alive, "invalid_request_error"))
        if kind in ("rerank", "score") and cfg["omit_rerank_usage"]:
            answer.pop("usage", None)
        if isinstance(answer, str):
            return conn.write(_response(200, answer.encode(), keep_alive, b"text/plain; charset=utf-8"))
        return conn.write(_response(200, _dumps(answer), keep_alive))

    def _send_stream(self, req: Request, conn: _Connection, pieces: list, cut: bool, first: int,
                     content_type: bytes = b"text/event-stream; charset=utf-8"):
        """Send a chunked SSE answer; ``cut``: only the first ``first`` pieces, then drop the connection."""
        head = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n" % content_type
        head += b"\r\n" if req.keep_alive else b"Connection: close\r\n\r\n"
        if cut:
            self.stats.failed += 1
            conn.write(head + b"".join(pieces[:first]))
            return conn.abort()
        gap = float(self.config["stream_chunk_delay"] or 0.0)
        if not gap:
            return conn.write(head + b"".join(pieces))
        return self._paced(conn, head, pieces, gap, req.keep_alive)

    def _echo(self, req: Request) -> bytes:
        ctype = req.headers.get("content-type", "")
        payload = {
            "path": req.path,
            "query": req.query,
            "method": req.method,
            "content_type": ctype,
            "received_bytes": len(req.body),
            "parts": parse_multipart(req.body, ctype) if ctype.startswith("multipart/") else [],
            "authorization": req.headers.get("authorization"),
        }
        return _response(200, _dumps(payload), req.keep_alive)


class _Connection(asyncio.Protocol):
    """One client connection: parses pipelined HTTP/1.1 requests and answers them in order."""

    def __init__(self, server: StubServer):
        self.server = server
        self.transport = None
        self.buf = bytearray()
        self.head = None  # (method, path, query, version, headers, keep_alive) of the request being read
        self.length = 0  # Content-Length of the body being read; -1 = chunked
        self.body = bytearray()
        self.chunk_left = None  # bytes left of the current chunk (+2 for its CRLF); None = expecting a size line
        self.task = None
        self.closed = False

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.closed = True
        if self.task is not None:
            self.task.cancel()

    def data_received(self, data):
        self.buf += data
        if self.task is None:
            self._process()

    def write(self, data: bytes):
        if not self.closed:
            self.transport.write(data)
        return None

    def close(self):
        if not self.closed:
            self.closed = True
            self.transport.close()

    def abort(self):
        if not self.closed:
            self.closed = True
            self.transport.abort()
        return None

    def _process(self):
        while not self.closed:
            req = self._parse()
            if req is None:
                return
            result = self.server.handle(req, self)
            if result is not None:
                self.task = asyncio.get_running_loop().create_task(self._finish(result, req))
                return
            if not req.keep_alive:
                self.close()
                return

    async def _finish(self, coro, req: Request):
        try:
            await coro
        except asyncio.CancelledError:
            return
        except Exception as exc:  # keep the server alive; tell the client
            self.write(_error(500, f"stub error: {exc!r}", False))
            self.close()
            return
        finally:
            self.task = None
        if not req.keep_alive:
            self.close()
        elif not self.closed and self.buf:
            self._process()

    def _fail(self, status: int, message: str):
        self.write(_error(status, message, False, "invalid_request_error"))
        self.close()

    def _parse(self):
        buf = self.buf
        if self.head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEADER_BYTES:
                    self._fail(431, "request headers too large")
                return None
            lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
            del buf[: end + 4]
            try:
                method, target, version = lines[0].split(" ", 2)
            except ValueError:
                self._fail(400, "bad request line")
                return None
            headers = {}
            for line in lines[1:]:
                key, _sep, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
            path, _sep, query = target.partition("?")
            conn_hdr = headers.get("connection", "").lower()
            keep_alive = "close" not in conn_hdr if version == "HTTP/1.1" else "keep-alive" in conn_hdr
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self.length = -1
                self.chunk_left = None
            else:
                try:
                    self.length = int(headers.get("content-length") or 0)
                except ValueError:
                    self._fail(400, "bad Content-Length")
                    return None
            if headers.get("expect", "").lower() == "100-continue":
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.head = (method, path, query, version, headers, keep_alive)
            self.body = bytearray()
        if self.length >= 0:
            if len(buf) < self.length:
                return None
            body = bytes(buf[: self.length])
            del buf[: self.length]
        else:
            while True:
                if self.chunk_left is None:
                    eol = buf.find(b"\r\n")
                    if eol < 0:
                        return None
                    try:
                        size = int(bytes(buf[:eol]).split(b";", 1)[0].strip(), 16)
                    except ValueError:
                        self._fail(400, "bad chunk size")
                        return None
                    del buf[: eol + 2]
                    if size == 0:
                        self.chunk_left = 0
                    else:
                        self.chunk_left = size + 2
                if self.chunk_left == 0:  # trailers, then an empty line
                    if buf.startswith(b"\r\n"):
                        del buf[:2]
                        break
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        return None
                    del buf[: end + 4]
                    break
                if len(buf) < self.chunk_left:
                    return None
                self.body += buf[: self.chunk_left - 2]
                del buf[: self.chunk_left]
                self.chunk_left = None
            body = bytes(self.body)
            self.body = bytearray()
        method, path, query, version, headers, keep_alive = self.head
        self.head = None
        return Request(method, path, query, version, headers, body, keep_alive)


async def serve(host: str, port: int, ready_line: bool = True) -> None:
    loop = asyncio.get_running_loop()
    server = StubServer()
    srv = await loop.create_server(lambda: _Connection(server), host, port, reuse_address=True, backlog=4096)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-main thread
            pass
    if ready_line:
        bound = srv.sockets[0].getsockname()[1]
        print(f"stub upstream listening on http://{host}:{bound}", flush=True)
    try:
        await stop
    finally:
        srv.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="OpenAI-compatible stub model server for tests and benchmarks")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port (printed on stdout)")
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - depends on the environment
        pass
    asyncio.run(serve(args.host, args.port))
    return 0


class StubUpstream:
    """Runs the stub as a subprocess: ``StubUpstream().start()`` ... ``.stop()`` (or use it as a context manager)."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", log_path: str | os.PathLike | None = None, python: str | None = None):
        self.host = host
        self._fixed_port = port
        self.port = port
        self.log_path = log_path
        self.python = python or sys.executable
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The OpenAI base URL (``http://127.0.0.1:P/v1``)."""
        return f"{self.base_url}/v1"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout: float = 20.0) -> StubUpstream:
        from tests.support.services import free_port

        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        for _attempt in range(3):
            self.port = self._fixed_port or free_port()
            out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
            try:
                self.proc = subprocess.Popen(
                    [self.python, "-m", "tests.support.stub_upstream", "--host", self.host, "--port", str(self.port)],
                    cwd=str(REPO), env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True,
                )
            finally:
                if out is not subprocess.DEVNULL:
                    out.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    with urllib.request.urlopen(f"{self.base_url}/health", timeout=1) as resp:
                        if resp.status == 200:
                            return self
                except (urllib.error.URLError, OSError):
                    time.sleep(0.03)
            self.stop()
            if self._fixed_port:
                break
        raise RuntimeError(f"stub upstream did not start on {self.host}:{self.port}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def _call(self, method: str, path: str, payload: dict | None = None) -> dict:
        data = _dumps(payload) if payload is not None else None
        req = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return _loads(resp.read())

    def configure(self, **settings) -> dict:
        """Merge fault/behaviour settings (keys of ``DEFAULT_CONFIG``); returns the whole config."""
        return self._call("POST", "/__stub/config", settings)

    def reset(self) -> dict:
        """Clear all counters and restore the default config."""
        return self._call("POST", "/__stub/reset", {})

    def stats(self) -> dict:
        return self._call("GET", "/__stub/stats")

    def __enter__(self) -> StubUpstream:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
