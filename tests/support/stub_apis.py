"""The answers of the stub model server for the APIs beyond chat/completions/embeddings, in the shapes vLLM serves.

Pure functions (request dict in, answer dict or event list out) so that unit tests can call them directly;
``tests/support/stub_upstream.py`` puts them on the wire.

Shapes, as vLLM's OpenAI-compatible server answers them:

* OpenAI Responses (``POST /v1/responses``; ``GET /v1/responses/{id}``; ``POST /v1/responses/{id}/cancel``):
  a ``response`` object with ``output`` items (a ``message`` with ``output_text`` parts, or ``function_call``
  items) and ``usage.input_tokens/output_tokens/total_tokens``; streamed as named SSE events
  (``event: response.created`` ... ``event: response.completed``, no ``[DONE]``), each with a
  ``sequence_number``; the usage is in the last event's ``response``. Errors: ``{"error": {...}}``.
* Anthropic Messages (``POST /v1/messages``, ``POST /v1/messages/count_tokens``): a ``message`` with ``content``
  blocks (``text``, ``tool_use``) and ``usage.input_tokens/output_tokens``; streamed as ``message_start`` (with
  ``usage.input_tokens``), ``content_block_start/delta/stop``, ``message_delta`` (with ``usage.output_tokens``
  and the ``stop_reason``), ``message_stop``. Errors: ``{"type": "error", "error": {"type", "message"}}``.
* Audio (``/v1/audio/transcriptions``, ``/v1/audio/translations``): multipart upload; ``{"text", "usage":
  {"type": "duration", "seconds"}}`` for a transcription (seconds rounded up), ``{"text"}`` for a translation;
  ``response_format=text`` answers plain text.
* Rerank (``/rerank``, ``/v1/rerank``, ``/v2/rerank``): ``{"id", "model", "usage": {"total_tokens"}, "results":
  [{"index", "document": {"text"}, "relevance_score"}]}``, best first, cut to ``top_n``.
  Score (``/score``, ``/v1/score``): ``{"id", "object": "list", "created", "model", "data": [{"index", "object":
  "score", "score"}], "usage": {"prompt_tokens", "total_tokens", "completion_tokens": 0}}``.
* ``/tokenize`` ``{"count", "max_model_len", "tokens", "token_strs"}``; ``/detokenize`` ``{"prompt"}``.
* Cohere embed (``/v2/embed``): ``{"texts", "input_type", "embedding_types", "output_dimension"}`` ->
  ``{"id", "embeddings": {"float": [[...]]}, "texts", "meta": {"api_version": {"version": "2"}, "billed_units":
  {"input_tokens"}}, "response_type": "embeddings_by_type"}`` (``float`` and ``base64`` types).

Deterministic numbers, as for chat: a token is a whitespace-separated word. Input tokens are the words of the
instructions/system text and every message or input item (text parts, tool results, function call outputs).
Output tokens are ``max_output_tokens`` (Responses) / ``max_tokens`` (Messages) when given, else the configured
default; the text is ``tok0 tok1 ...``. A tool call is answered instead of text when the request forces one
(Responses ``tool_choice: "required"`` or ``{"type": "function", "name"}``; Messages ``tool_choice`` ``any`` or
``tool``): the first (or the named) tool, with arguments ``{"<each required property>": "tok0"}``; its output
tokens are the configured default. Rerank/score relevance is the share of the query's words found in the
document; usage counts query words once per document plus the document words.
"""

from __future__ import annotations

import base64
import math
import re
import struct
import time
import uuid
import zlib


def words(value) -> int:
    """Words in a string, a content-part list (any ``text``/``input_text``/``output_text`` part), or nested lists."""
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, dict):
        kind = value.get("type") or ("message" if "role" in value else "text")
        if kind in ("text", "input_text", "output_text"):
            return words(value.get("text"))
        if kind == "tool_result":
            return words(value.get("content"))
        if kind == "function_call_output":
            return words(value.get("output"))
        if kind == "message":
            return words(value.get("content"))
        return 0
    if isinstance(value, (list, tuple)):
        return sum(words(v) for v in value)
    return 0


def completion_text(n: int) -> list[str]:
    return [f"tok{i}" for i in range(n)]


def split_text(parts: list[str], chunks: int) -> list[str]:
    """``parts`` (words) joined with spaces and cut into at most ``chunks`` pieces whose concatenation is the text."""
    if not parts:
        return []
    chunks = max(1, min(chunks, len(parts)))
    size, extra = divmod(len(parts), chunks)
    out, start = [], 0
    for i in range(chunks):
        end = start + size + (1 if i < extra else 0)
        out.append((" " if start else "") + " ".join(parts[start:end]))
        start = end
    return out


def _tool_arguments(schema) -> dict:
    required = schema.get("required") if isinstance(schema, dict) else None
    return {name: "tok0" for name in required if isinstance(name, str)} if isinstance(required, list) else {}


# ---- chat completions tool calls ----------------------------------------------------------------------------------

def chat_forced_tool(body: dict):
    """The function a chat request forces (``tool_choice`` ``required`` or ``{"type": "function", "function":
    {"name"}}``), as ``{"name", "parameters"}``, else None."""
    tools = [t.get("function") for t in body.get("tools") or [] if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    choice = body.get("tool_choice")
    if not tools:
        return None
    if choice == "required":
        return tools[0]
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return next((t for t in tools if t.get("name") == choice["function"].get("name")), None)
    return None


def chat_tool_call(tool: dict, seq: int) -> dict:
    return {"id": f"chatcmpl-tool-{uuid.UUID(int=seq).hex[:16]}", "type": "function",
            "function": {"name": tool.get("name"), "arguments": _dumps_compact(_tool_arguments(tool.get("parameters")))}}


# ---- OpenAI Responses ---------------------------------------------------------------------------------------------

def responses_forced_tool(body: dict):
    """The function tool a Responses request forces (``tool_choice`` ``required`` or named), else None."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
    choice = body.get("tool_choice")
    if not tools:
        return None
    if choice == "required":
        return tools[0]
    if isinstance(choice, dict) and choice.get("type") == "function":
        return next((t for t in tools if t.get("name") == choice.get("name")), None)
    return None


def responses_input_tokens(body: dict) -> int:
    return max(1, words(body.get("instructions")) + words(body.get("input")))


def response_usage(input_tokens: int, output_tokens: int) -> dict:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def build_response(body: dict, seq: int, default_tokens: int, created: int | None = None) -> dict:
    """The finished ``response`` object for a Responses request (what a non-streamed call returns)."""
    created = int(time.time()) if created is None else created
    rid = f"resp_{uuid.UUID(int=seq).hex}"
    tool = responses_forced_tool(body)
    max_out = body.get("max_output_tokens")
    max_out = max_out if isinstance(max_out, int) and not isinstance(max_out, bool) and max_out > 0 else None
    status, incomplete = "completed", None
    if tool is not None:
        n_out = default_tokens
        arguments = _dumps_compact(_tool_arguments(tool.get("parameters")))
        output = [{
            "type": "function_call", "id": f"fc_{uuid.UUID(int=seq).hex}", "call_id": f"call_{uuid.UUID(int=seq).hex[:24]}",
            "name": tool.get("name"), "arguments": arguments, "status": "completed",
        }]
    else:
        n_out = max_out or default_tokens
        if max_out:
            status, incomplete = "incomplete", {"reason": "max_output_tokens"}
        text = " ".join(completion_text(n_out))
        output = [{
            "type": "message", "id": f"msg_{uuid.UUID(int=seq).hex}", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
        }]
    return {
        "id": rid, "object": "response", "created_at": created, "model": body.get("model") or "stub-model",
        "status": status, "incomplete_details": incomplete, "error": None,
        "instructions": body.get("instructions"), "max_output_tokens": max_out, "metadata": body.get("metadata"),
        "output": output, "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"), "reasoning": body.get("reasoning"),
        "temperature": body.get("temperature", 1.0), "top_p": body.get("top_p", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}}, "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [], "truncation": body.get("truncation", "disabled"),
        "background": bool(body.get("background")), "store": body.get("store", True) is not False,
        "user": body.get("user"), "usage": response_usage(responses_input_tokens(body), n_out),
    }


def response_stream_events(final: dict, chunks: int) -> list[tuple[str, dict]]:
    """The named events of a streamed Responses call that ends in ``final`` (sequence numbers from 0)."""
    start = dict(final, status="in_progress", output=[], usage=None, incomplete_details=None)
    events: list[tuple[str, dict]] = [("response.created", {"response": start}), ("response.in_progress", {"response": start})]
    for index, item in enumerate(final["output"]):
        if item["type"] == "message":
            text = item["content"][0]["text"]
            events.append(("response.output_item.added", {"output_index": index, "item": dict(item, status="in_progress", content=[])}))
            empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            where = {"item_id": item["id"], "output_index": index, "content_index": 0}
            events.append(("response.content_part.added", {**where, "part": empty}))
            for piece in split_text(text.split(), chunks):
                events.append(("response.output_text.delta", {**where, "delta": piece, "logprobs": []}))
            events.append(("response.output_text.done", {**where, "text": text, "logprobs": []}))
            events.append(("response.content_part.done", {**where, "part": item["content"][0]}))
        else:
            events.append(("response.output_item.added", {"output_index": index, "item": dict(item, arguments="", status="in_progress")}))
            events.append(("response.function_call_arguments.delta", {"item_id": item["id"], "output_index": index, "delta": item["arguments"]}))
            events.append(("response.function_call_arguments.done", {"item_id": item["id"], "output_index": index, "arguments": item["arguments"]}))
        events.append(("response.output_item.done", {"output_index": index, "item": item}))
    events.append(("response.completed", {"response": final}))
    return [(name, {"type": name, "sequence_number": i, **data}) for i, (name, data) in enumerate(events)]


# ---- Anthropic Messages -------------------------------------------------------------------------------------------

def anthropic_forced_tool(body: dict):
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("name")]
    choice = body.get("tool_choice")
    if not tools or not isinstance(choice, dict):
        return None
    if choice.get("type") == "any":
        return tools[0]
    if choice.get("type") == "tool":
        return next((t for t in tools if t.get("name") == choice.get("name")), None)
    return None


def anthropic_input_tokens(body: dict) -> int:
    return max(1, words(body.get("system")) + sum(words(m.get("content")) for m in body.get("messages") or [] if isinstance(m, dict)))


def anthropic_error(err_type: str, message: str) -> dict:
    return {"type": "error", "error": {"type": err_type, "message": message}}


ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    413: "request_too_large", 429: "rate_limit_error", 500: "api_error", 529: "overloaded_error",
}


def anthropic_validate(body: dict, count_only: bool = False) -> str | None:
    """vLLM's request validation for the fields every client sends: a message for a 400, or None."""
    if not isinstance(body.get("model"), str) or not body.get("model"):
        return "model: Field required"
    if not isinstance(body.get("messages"), list):
        return "messages: Field required"
    if not count_only:
        max_tokens = body.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            return "max_tokens: Field required"
        if max_tokens <= 0:
            return "max_tokens: Value error, max_tokens must be positive"
    return None


def build_message(body: dict, seq: int, default_tokens: int) -> dict:
    tool = anthropic_forced_tool(body)
    if tool is not None:
        n_out = default_tokens
        content = [{"type": "tool_use", "id": f"toolu_{uuid.UUID(int=seq).hex[:24]}", "name": tool["name"], "input": _tool_arguments(tool.get("input_schema"))}]
        stop = "tool_use"
    else:
        n_out = body["max_tokens"]
        content = [{"type": "text", "text": " ".join(completion_text(n_out))}]
        stop = "max_tokens"
    return {
        "id": f"chatcmpl-{uuid.UUID(int=seq).hex}", "type": "message", "role": "assistant", "content": content,
        "model": body.get("model"), "stop_reason": stop, "stop_sequence": None,
        "usage": {"input_tokens": anthropic_input_tokens(body), "output_tokens": n_out},
    }


def message_stream_events(final: dict, chunks: int) -> list[tuple[str, dict]]:
    usage = final["usage"]
    start = dict(final, content=[], stop_reason=None, stop_sequence=None, usage={"input_tokens": usage["input_tokens"], "output_tokens": 0})
    events: list[tuple[str, dict]] = [("message_start", {"message": start})]
    for index, block in enumerate(final["content"]):
        if block["type"] == "text":
            events.append(("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}}))
            for piece in split_text(block["text"].split(), chunks):
                events.append(("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": piece}}))
        else:
            events.append(("content_block_start", {"index": index, "content_block": dict(block, input={})}))
            events.append(("content_block_delta", {"index": index, "delta": {"type": "input_json_delta", "partial_json": _dumps_compact(block["input"])}}))
        events.append(("content_block_stop", {"index": index}))
    events.append(("message_delta", {"delta": {"stop_reason": final["stop_reason"], "stop_sequence": None}, "usage": dict(usage)}))
    events.append(("message_stop", {}))
    return [(name, {"type": name, **data}) for name, data in events]


# ---- audio --------------------------------------------------------------------------------------------------------

def wav_seconds(data: bytes) -> float | None:
    """Duration of a RIFF/WAVE file (PCM or any codec with a byte rate), or None when ``data`` is not one."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, byte_rate = 12, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if cid == b"fmt " and size >= 16 and pos + 20 <= len(data):
            byte_rate = struct.unpack("<I", data[pos + 16:pos + 20])[0]
        elif cid == b"data":
            if not byte_rate:
                return None
            return min(size, len(data) - pos - 8) / byte_rate
        pos += 8 + size + (size & 1)
    return None


def make_wav(seconds: float, rate: int = 8000) -> bytes:
    """A silent mono 16-bit PCM WAV file of ``seconds`` (what the audio tests upload)."""
    import io
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(struct.pack("<h", 0) * int(seconds * rate))
    return buf.getvalue()


def form_fields(body: bytes, content_type: str) -> tuple[dict, dict]:
    """A multipart/form-data body as (text fields, files): ``{name: str}``, ``{name: (filename, bytes)}``."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    fields, files = {}, {}
    if not match:
        return fields, files
    delim = b"--" + match.group(1).encode("latin-1")
    for chunk in body.split(delim)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk
        head, _sep, data = chunk.partition(b"\r\n\r\n")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        disp = next((line for line in head.decode("latin-1").split("\r\n") if line.lower().startswith("content-disposition")), "")
        name = re.search(r'\bname="([^"]*)"', disp)
        filename = re.search(r'filename="([^"]*)"', disp)
        if not name:
            continue
        if filename:
            files[name.group(1)] = (filename.group(1), data)
        else:
            fields[name.group(1)] = data.decode("utf-8", "replace")
    return fields, files


def audio_answer(task: str, fields: dict, files: dict, default_tokens: int) -> tuple[int, object]:
    """(status, answer) for a transcription/translation upload: a dict (JSON) or str (``response_format=text``)."""
    if "file" not in files:
        return 400, "file: Field required"
    _name, data = files["file"]
    seconds = wav_seconds(data)
    if seconds is None:
        return 400, "Invalid or unsupported audio file."
    text = " ".join(completion_text(default_tokens))
    fmt = fields.get("response_format") or "json"
    if fmt == "text":
        return 200, text
    if fmt not in ("json", "verbose_json"):
        return 400, f"Currently only support response_format `text`, `json` or `verbose_json`, got {fmt}"
    answer: dict = {"text": text}
    if fmt == "verbose_json":
        answer = {"task": "transcribe" if task == "transcription" else "translate", "language": fields.get("language") or "en",
                  "duration": round(seconds, 3), "text": text, "segments": []}
    if task == "transcription":
        answer["usage"] = {"type": "duration", "seconds": int(math.ceil(seconds))}
    return 200, answer


# ---- rerank / score / tokenize ------------------------------------------------------------------------------------

def _doc_text(doc) -> str:
    if isinstance(doc, dict):
        return str(doc.get("text") or "")
    return str(doc)


def relevance(query: str, doc: str) -> float:
    q = set(query.lower().split())
    d = set(doc.lower().split())
    return round(len(q & d) / len(q), 6) if q else 0.0


def rerank_answer(body: dict, seq: int) -> tuple[int, dict | str]:
    query, docs = body.get("query"), body.get("documents")
    if not isinstance(query, str) or not isinstance(docs, list) or not docs:
        return 400, "'query' must be a string and 'documents' a non-empty list"
    texts = [_doc_text(d) for d in docs]
    results = [{"index": i, "document": {"text": t}, "relevance_score": relevance(query, t)} for i, t in enumerate(texts)]
    results.sort(key=lambda r: (-r["relevance_score"], r["index"]))
    top_n = body.get("top_n")
    if isinstance(top_n, int) and top_n > 0:
        results = results[:top_n]
    tokens = sum(max(1, words(query) + words(t)) for t in texts)
    return 200, {"id": f"rerank-{uuid.UUID(int=seq).hex}", "model": body.get("model"), "usage": {"total_tokens": tokens}, "results": results}


def score_answer(body: dict, seq: int) -> tuple[int, dict | str]:
    first, second = body.get("text_1"), body.get("text_2")
    if first is None or second is None:
        first, second = body.get("queries"), body.get("documents")
    if not isinstance(first, str) or not (isinstance(second, str) or (isinstance(second, list) and second)):
        return 400, "'text_1' must be a string and 'text_2' a string or a non-empty list"
    seconds = [second] if isinstance(second, str) else [_doc_text(s) for s in second]
    data = [{"index": i, "object": "score", "score": relevance(first, t)} for i, t in enumerate(seconds)]
    tokens = sum(max(1, words(first) + words(t)) for t in seconds)
    return 200, {"id": f"score-{uuid.UUID(int=seq).hex}", "object": "list", "created": int(time.time()), "model": body.get("model"),
                 "data": data, "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0, "prompt_tokens_details": None}}


def cohere_embed_answer(body: dict, seq: int, dim: int) -> tuple[int, dict | str]:
    texts = body.get("texts")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        return 400, "'texts' must be a non-empty list of strings"
    kinds = body.get("embedding_types") or ["float"]
    if not isinstance(kinds, list) or any(k not in ("float", "base64") for k in kinds):
        return 400, "embedding_types: only 'float' and 'base64' are served"
    size = body.get("output_dimension") if isinstance(body.get("output_dimension"), int) and body["output_dimension"] > 0 else dim
    vectors = [[round(((zlib.crc32(f"{i}:{t}".encode()) + 7919 * (j + 1)) % 2000) / 1000.0 - 1.0, 3) for j in range(size)] for i, t in enumerate(texts)]
    embeddings: dict = {}
    if "float" in kinds:
        embeddings["float"] = vectors
    if "base64" in kinds:
        embeddings["base64"] = [base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() for v in vectors]
    tokens = sum(max(1, words(t)) for t in texts)
    return 200, {"id": f"embd-{uuid.UUID(int=seq).hex}", "embeddings": embeddings, "texts": texts,
                 "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}}, "response_type": "embeddings_by_type"}


def token_id(word: str) -> int:
    return zlib.crc32(word.encode()) % 32000 + 100


def tokenize_answer(body: dict, vocab: dict, max_model_len: int) -> tuple[int, dict | str]:
    if isinstance(body.get("messages"), list):
        text = " ".join(str(m.get("content") or "") for m in body["messages"] if isinstance(m, dict))
    elif isinstance(body.get("prompt"), str):
        text = body["prompt"]
    else:
        return 400, "'prompt' (a string) or 'messages' is required"
    tokens = []
    for w in text.split():
        tid = token_id(w)
        vocab[tid] = w
        tokens.append(tid)
    strs = [vocab[t] for t in tokens] if body.get("return_token_strs") else None
    return 200, {"count": len(tokens), "max_model_len": max_model_len, "tokens": tokens, "token_strs": strs}


def detokenize_answer(body: dict, vocab: dict) -> tuple[int, dict | str]:
    tokens = body.get("tokens")
    if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
        return 400, "'tokens' must be a list of integers"
    return 200, {"prompt": " ".join(vocab.get(t, f"<unk{t}>") for t in tokens)}


def _dumps_compact(obj) -> str:
    import json

    return json.dumps(obj, separators=(",", ":"))
