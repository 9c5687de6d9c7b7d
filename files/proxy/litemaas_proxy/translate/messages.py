"""Anthropic Messages API <-> chat completions.

Carried over: ``system`` (a string or text blocks); ``messages`` with ``text``, ``image`` (base64 or URL),
``tool_use`` and ``tool_result`` blocks (``thinking`` / ``redacted_thinking`` blocks a client sends back are
skipped); custom ``tools`` and ``tool_choice`` (``auto``, ``any``, ``tool``, ``none``,
``disable_parallel_tool_use``); ``max_tokens``, ``stop_sequences``, ``temperature``, ``top_p``, ``top_k``,
``metadata.user_id``; ``stream``. Not carried over (400 naming the field): ``document`` / ``search_result`` /
``container_upload`` blocks, server tools (web search, code execution, computer use, bash and text editor tool
types), ``mcp_servers``, ``container``. ``thinking`` is not forwarded (the model's own reasoning, if its server
streams it, comes back as ``thinking`` blocks).
"""

from __future__ import annotations

import uuid

import orjson

from litemaas_proxy.translate import NotTranslatable, chat_usage, parse_arguments, sse_event

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use", "content_filter": "refusal"}
ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error", 403: "permission_error",
    404: "not_found_error", 408: "timeout_error", 413: "request_too_large", 429: "rate_limit_error",
    500: "api_error", 502: "api_error", 503: "overloaded_error", 504: "timeout_error", 529: "overloaded_error",
}
_REFUSED = ("mcp_servers", "container")


def _refuse(field: str, why: str):
    raise NotTranslatable(f"{field} is not supported for this model (its Messages API is translated to chat completions): {why}", field)


def error_body(status: int, message: str) -> dict:
    """Anthropic's error shape, which its clients parse to show the message."""
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error"), "message": message}}


def _text_of(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text") or "" for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def _image(block: dict, where: str) -> dict:
    source = block.get("source") if isinstance(block.get("source"), dict) else {}
    if source.get("type") == "url":
        return {"type": "image_url", "image_url": {"url": source.get("url")}}
    if source.get("type") == "base64":
        return {"type": "image_url", "image_url": {"url": f"data:{source.get('media_type') or 'image/png'};base64,{source.get('data') or ''}"}}
    _refuse(f"{where}.source.type", "images must be base64 or url sources")


def _tool_result_content(content, where: str):
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for i, block in enumerate(content if isinstance(content, list) else []):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": block.get("text") or ""})
        elif kind == "image":
            parts.append(_image(block, f"{where}[{i}]"))
        else:
            _refuse(f"{where}[{i}].type", f"tool result block type {kind!r} has no chat completions equivalent")
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def request_to_chat(body: dict, count_only: bool = False) -> dict:
    """The chat completions request for a Messages API request ``body`` (``count_only``: for count_tokens)."""
    for field in _REFUSED:
        if body.get(field):
            _refuse(field, "it runs on Anthropic's servers")
    messages: list = []
    system = body.get("system")
    if system:
        text = _text_of(system)
        if text:
            messages.append({"role": "system", "content": text})
    source = body.get("messages")
    if not isinstance(source, list):
        raise NotTranslatable("messages: Field required (a list of messages)", "messages")
    for i, msg in enumerate(source):
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
            _refuse(f"messages[{i}].role", "each message needs role user or assistant")
        role, content = msg["role"], msg.get("content")
        if isinstance(content, str):
            messages.append({"role": role, "content": content})
            continue
        if not isinstance(content, list):
            _refuse(f"messages[{i}].content", "content must be a string or a list of blocks")
        parts, calls, results = [], [], []
        for j, block in enumerate(content):
            where = f"messages[{i}].content[{j}]"
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                parts.append({"type": "text", "text": block.get("text") or ""})
            elif kind == "image":
                parts.append(_image(block, where))
            elif kind == "tool_use":
                calls.append({"id": block.get("id"), "type": "function",
                              "function": {"name": block.get("name"), "arguments": orjson.dumps(block.get("input") or {}).decode()}})
            elif kind == "tool_result":
                text = _tool_result_content(block.get("content"), f"{where}.content")
                if block.get("is_error") and isinstance(text, str):
                    text = f"Error: {text}"
                results.append({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text})
            elif kind in ("thinking", "redacted_thinking"):
                continue
            else:
                _refuse(f"{where}.type", f"block type {kind!r} has no chat completions equivalent")
        messages.extend(results)
        if parts or calls:
            text_only = all(p["type"] == "text" for p in parts)
            out = {"role": role, "content": ("".join(p["text"] for p in parts) if text_only else parts) if parts else None}
            if calls:
                out["tool_calls"] = calls
            messages.append(out)
    chat: dict = {"model": body.get("model"), "messages": messages}
    tools = body.get("tools")
    if tools:
        chat["tools"] = []
        for i, tool in enumerate(tools):
            kind = tool.get("type") if isinstance(tool, dict) else None
            if not isinstance(tool, dict) or kind not in (None, "custom") or "input_schema" not in tool:
                _refuse(f"tools[{i}].type", f"server tool {kind!r} runs on Anthropic's servers; only custom tools (name, input_schema) are translated")
            function = {"name": tool.get("name"), "parameters": tool.get("input_schema") or {"type": "object"}}
            if tool.get("description"):
                function["description"] = tool["description"]
            chat["tools"].append({"type": "function", "function": function})
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "tool":
            chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
        elif kind in ("auto", "any", "none"):
            chat["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
        else:
            _refuse("tool_choice.type", f"tool_choice {kind!r} is not one of auto, any, tool, none")
        if choice.get("disable_parallel_tool_use") and tools:
            chat["parallel_tool_calls"] = False
    if count_only:
        return chat
    if body.get("max_tokens") is not None:
        chat["max_tokens"] = body["max_tokens"]
    if body.get("stop_sequences"):
        chat["stop"] = body["stop_sequences"]
    for field in ("temperature", "top_p", "top_k"):
        if body.get(field) is not None:
            chat[field] = body[field]
    user = (body.get("metadata") or {}).get("user_id") if isinstance(body.get("metadata"), dict) else None
    if isinstance(user, str):
        chat["user"] = user
    if body.get("stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


def _stop(finish_reason, stop_value) -> tuple:
    if finish_reason == "stop" and isinstance(stop_value, str):
        return "stop_sequence", stop_value
    return STOP_REASONS.get(finish_reason, "end_turn"), None


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"


def chat_to_message(body: dict, chat: dict) -> dict:
    """The Messages API ``message`` for a chat completion ``chat`` answering request ``body``."""
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append({"type": "tool_use", "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}", "name": function.get("name"),
                        "input": parse_arguments(function.get("arguments"))})
    stop_reason, stop_sequence = _stop(choice.get("finish_reason"), choice.get("stop_reason"))
    prompt, completion, _cached, _reasoning = chat_usage(chat.get("usage"))
    return {
        "id": new_message_id(), "type": "message", "role": "assistant", "model": body.get("model") or chat.get("model"),
        "content": content, "stop_reason": stop_reason, "stop_sequence": stop_sequence,
        "usage": {"input_tokens": prompt, "output_tokens": completion},
    }


class MessagesStream:
    """Turns a chat completions stream (chunks as dicts, then :meth:`close`) into Messages API events.

    ``message_start`` carries ``usage.input_tokens`` when the server reports usage on every chunk, else 0; the
    final ``message_delta`` carries both ``input_tokens`` and ``output_tokens`` from the server's usage chunk."""

    def __init__(self, body: dict):
        self.body = body
        self.id = new_message_id()
        self.usage = None
        self.finish_reason = None
        self.stop_value = None
        self.started = False
        self.closed = False
        self.index = -1
        self.block = None  # ("text" | "thinking" | "tool", tool position)
        self.tools: dict[int, int] = {}

    def start(self, usage=None) -> bytes:
        if self.started:
            return b""
        self.started = True
        prompt = chat_usage(usage)[0]
        message = {"id": self.id, "type": "message", "role": "assistant", "model": self.body.get("model"), "content": [],
                   "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": prompt, "output_tokens": 0}}
        return sse_event("message_start", {"type": "message_start", "message": message})

    def _stop_block(self) -> bytes:
        if self.block is None:
            return b""
        out = b""
        if self.block[0] == "thinking":
            out += sse_event("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": {"type": "signature_delta", "signature": ""}})
        self.block = None
        return out + sse_event("content_block_stop", {"type": "content_block_stop", "index": self.index})

    def _start_block(self, key: tuple, block: dict) -> bytes:
        out = self._stop_block()
        self.index += 1
        self.block = key
        return out + sse_event("content_block_start", {"type": "content_block_start", "index": self.index, "content_block": block})

    def _delta(self, delta: dict) -> bytes:
        return sse_event("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta})

    def feed(self, chunk: dict) -> bytes:
        out = self.start(chunk.get("usage"))
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                if self.block is None or self.block[0] != "thinking":
                    out += self._start_block(("thinking", None), {"type": "thinking", "thinking": "", "signature": ""})
                out += self._delta({"type": "thinking_delta", "thinking": reasoning})
            if delta.get("content"):
                if self.block is None or self.block[0] != "text":
                    out += self._start_block(("text", None), {"type": "text", "text": ""})
                out += self._delta({"type": "text_delta", "text": delta["content"]})
            for call in delta.get("tool_calls") or []:
                position = call.get("index", 0)
                function = call.get("function") or {}
                if self.block != ("tool", position):
                    if position in self.tools:  # a late fragment of an earlier call: Anthropic streams blocks one by one
                        continue
                    block = {"type": "tool_use", "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}", "name": function.get("name"), "input": {}}
                    out += self._start_block(("tool", position), block)
                    self.tools[position] = self.index
                if function.get("arguments"):
                    out += self._delta({"type": "input_json_delta", "partial_json": function["arguments"]})
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
                self.stop_value = choice.get("stop_reason")
        return out

    def close(self) -> bytes:
        if self.closed:
            return b""
        self.closed = True
        out = self.start(self.usage) + self._stop_block()
        stop_reason, stop_sequence = _stop(self.finish_reason, self.stop_value)
        prompt, completion, _cached, _reasoning = chat_usage(self.usage)
        out += sse_event("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                                           "usage": {"input_tokens": prompt, "output_tokens": completion}})
        return out + sse_event("message_stop", {"type": "message_stop"})

    def error(self, status: int, message: str) -> bytes:
        """An ``error`` event for a stream that broke off (Anthropic's clients raise it with the message)."""
        self.closed = True
        return sse_event("error", error_body(status, message))

    def tokens(self) -> tuple[int, int]:
        prompt, completion, _cached, _reasoning = chat_usage(self.usage)
        return prompt, completion


def count_tokens_chat(body: dict) -> dict:
    """The chat request whose prompt_tokens answer ``/v1/messages/count_tokens`` on a translated model."""
    chat = request_to_chat(body, count_only=True)
    chat["max_tokens"] = 1
    return chat
