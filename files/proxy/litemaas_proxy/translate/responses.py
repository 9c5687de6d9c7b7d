"""OpenAI Responses API <-> chat completions.

Carried over: ``instructions``; ``input`` as a string or a list of items (messages with ``input_text`` /
``output_text`` / ``input_image`` parts, ``function_call`` and ``function_call_output`` items; ``reasoning``
items are skipped); function ``tools`` and ``tool_choice``; ``max_output_tokens``, ``temperature``, ``top_p``,
``parallel_tool_calls``, ``user``, ``text.format`` (json_schema / json_object), ``reasoning.effort``; ``stream``.
Ignored: ``include``, ``store`` (nothing is stored), ``prompt_cache_key``, ``text.verbosity``, ``truncation``.
Not carried over (400 naming the field): ``previous_response_id`` and ``conversation`` (the server keeps no
history), ``background``, built-in tools (web/file search, computer use, code interpreter, MCP, image generation)
and free-form ``custom`` tools, ``input_file`` parts and item types other than the above. A translated response is not stored: it cannot be
retrieved or cancelled later (``store`` answers ``false``).
"""

from __future__ import annotations

import time
import uuid

from litemaas_proxy.translate import NotTranslatable, chat_usage, sse_event

_PASSED = ("temperature", "top_p", "parallel_tool_calls", "user", "top_logprobs", "seed")
_REFUSED = {
    "previous_response_id": "previous_response_id needs the response history, which this model's server does not keep",
    "conversation": "conversation needs the response history, which this model's server does not keep",
    "background": "background responses need a server that runs them; this model's server answers chat completions only",
}


def _refuse(field: str, why: str):
    raise NotTranslatable(f"{field} is not supported for this model (its Responses API is translated to chat completions): {why}", field)


def _content_parts(content, where: str) -> object:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        _refuse(where, "content must be a string or a list of parts")
    parts = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": part.get("text") or ""})
        elif kind == "refusal":
            parts.append({"type": "text", "text": part.get("refusal") or ""})
        elif kind == "input_image":
            url = part.get("image_url")
            if not url:
                _refuse(f"{where}[{i}].file_id", "images must be given as image_url (a URL or data: URL)")
            image = {"url": url}
            if part.get("detail"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            _refuse(f"{where}[{i}].type", f"content part type {kind!r} has no chat completions equivalent")
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def request_to_chat(body: dict) -> dict:
    """The chat completions request for a Responses API request ``body`` (a dict already checked to be one)."""
    for field, why in _REFUSED.items():
        if body.get(field):
            _refuse(field, why)
    messages: list = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": body["instructions"]})
    items = body.get("input")
    if isinstance(items, str):
        messages.append({"role": "user", "content": items})
    elif isinstance(items, list):
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                _refuse(f"input[{i}]", "each input item must be an object")
            kind = item.get("type") or ("message" if "role" in item else None)
            if kind == "message":
                role = item.get("role")
                if role not in ("user", "assistant", "system", "developer"):
                    _refuse(f"input[{i}].role", f"role {role!r} is not one of user, assistant, system, developer")
                messages.append({"role": "system" if role == "developer" else role, "content": _content_parts(item.get("content"), f"input[{i}].content")})
            elif kind == "function_call":
                call = {"id": item.get("call_id") or item.get("id"), "type": "function",
                        "function": {"name": item.get("name"), "arguments": item.get("arguments") or "{}"}}
                last = messages[-1] if messages else None
                if last is not None and last["role"] == "assistant" and last.get("tool_calls") is not None and not last.get("content"):
                    last["tool_calls"].append(call)
                else:
                    messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            elif kind == "function_call_output":
                output = item.get("output")
                content = output if isinstance(output, str) else _content_parts(output, f"input[{i}].output")
                messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": content})
            elif kind == "reasoning":
                continue
            else:
                _refuse(f"input[{i}].type", f"input item type {kind!r} has no chat completions equivalent")
    else:
        raise NotTranslatable("input is required: a string or a list of input items", "input")
    chat: dict = {"model": body.get("model"), "messages": messages}
    for field in _PASSED:
        if body.get(field) is not None:
            chat[field] = body[field]
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    tools = body.get("tools")
    if tools:
        chat["tools"] = []
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or tool.get("type") != "function":
                kind = tool.get("type") if isinstance(tool, dict) else tool
                _refuse(f"tools[{i}].type", f"tool type {kind!r} (a built-in or free-form tool) has no chat completions equivalent; "
                                            "only function tools are translated")
            function = {"name": tool.get("name"), "parameters": tool.get("parameters") or {"type": "object", "properties": {}}}
            if tool.get("description"):
                function["description"] = tool["description"]
            if tool.get("strict") is not None:
                function["strict"] = tool["strict"]
            chat["tools"].append({"type": "function", "function": function})
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        chat["tool_choice"] = choice
    elif isinstance(choice, dict):
        if choice.get("type") != "function":
            _refuse("tool_choice.type", f"tool_choice {choice.get('type')!r} names a built-in tool; only function tools are translated")
        chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = {"name": fmt.get("name") or "response", "schema": fmt.get("schema") or {}}
        if fmt.get("strict") is not None:
            schema["strict"] = fmt["strict"]
        chat["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort"):
        chat["reasoning_effort"] = reasoning["effort"]
    if body.get("stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


def new_response_id() -> str:
    return f"resp_{uuid.uuid4().hex}"


def usage_of(chat_usage_obj) -> dict:
    prompt, completion, cached, reasoning = chat_usage(chat_usage_obj)
    return {
        "input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + completion,
    }


def _shell(body: dict, rid: str, created: int, model: str) -> dict:
    """The request-echo fields of a response object, as OpenAI and vLLM return them."""
    return {
        "id": rid, "object": "response", "created_at": created, "model": model, "status": "in_progress",
        "incomplete_details": None, "error": None, "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"), "metadata": body.get("metadata"), "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True), "previous_response_id": None,
        "reasoning": body.get("reasoning"), "temperature": body.get("temperature"), "top_p": body.get("top_p"),
        "text": body.get("text") or {"format": {"type": "text"}}, "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [], "truncation": body.get("truncation", "disabled"), "background": False,
        "store": False, "user": body.get("user"), "usage": None,
    }


def _finish(response: dict, finish_reason) -> None:
    if finish_reason == "length":
        response["status"], response["incomplete_details"] = "incomplete", {"reason": "max_output_tokens"}
    elif finish_reason == "content_filter":
        response["status"], response["incomplete_details"] = "incomplete", {"reason": "content_filter"}
    else:
        response["status"] = "completed"


def _reasoning_of(obj: dict):
    value = obj.get("reasoning_content")
    return value if value is not None else obj.get("reasoning")


def chat_to_response(body: dict, chat: dict, rid: str | None = None) -> dict:
    """The Responses API object for a chat completion ``chat`` answering request ``body``."""
    rid = rid or new_response_id()
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    response = _shell(body, rid, int(chat.get("created") or time.time()), body.get("model") or chat.get("model"))
    output = response["output"]
    reasoning = _reasoning_of(message)
    if reasoning:
        output.append({"type": "reasoning", "id": f"rs_{uuid.uuid4().hex}", "summary": [], "status": "completed",
                       "content": [{"type": "reasoning_text", "text": reasoning}]})
    if message.get("content"):
        output.append({"type": "message", "id": f"msg_{uuid.uuid4().hex}", "role": "assistant", "status": "completed",
                       "content": [{"type": "output_text", "text": message["content"], "annotations": [], "logprobs": []}]})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        output.append({"type": "function_call", "id": f"fc_{uuid.uuid4().hex}", "call_id": call.get("id"),
                       "name": function.get("name"), "arguments": function.get("arguments") or "", "status": "completed"})
    _finish(response, choice.get("finish_reason"))
    response["usage"] = usage_of(chat.get("usage"))
    return response


class ResponsesStream:
    """Turns a chat completions stream (its chunks as dicts, then :meth:`close`) into Responses API events.

    ``feed(chunk)`` and ``close()`` return the SSE bytes to send; ``usage`` holds (prompt, completion) once the
    final usage chunk arrived; ``response`` is the response object as sent in the last event."""

    def __init__(self, body: dict, rid: str | None = None, created: int | None = None):
        self.body = body
        self.response = _shell(body, rid or new_response_id(), created or int(time.time()), body.get("model"))
        self.seq = 0
        self.usage = None
        self.finish_reason = None
        self.started = False
        self.closed = False
        self.items: list[dict] = []  # output items in order; each {"item", "kind", "text"/"args"}
        self.text_item = None
        self.reasoning_item = None
        self.calls: dict[int, dict] = {}

    def _event(self, name: str, data: dict) -> bytes:
        out = sse_event(name, {"type": name, "sequence_number": self.seq, **data})
        self.seq += 1
        return out

    def start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        snapshot = dict(self.response, output=[])
        return self._event("response.created", {"response": snapshot}) + self._event("response.in_progress", {"response": snapshot})

    def _open(self, item: dict, kind: str) -> tuple[dict, bytes]:
        entry = {"item": item, "kind": kind, "index": len(self.items), "text": ""}
        self.items.append(entry)
        shown = dict(item, status="in_progress")
        if kind == "message":
            shown["content"] = []
        return entry, self._event("response.output_item.added", {"output_index": entry["index"], "item": shown})

    def _close_entry(self, entry: dict) -> bytes:
        item, index, out = entry["item"], entry["index"], b""
        if entry.get("done"):
            return b""
        entry["done"] = True
        if entry["kind"] == "message":
            part = {"type": "output_text", "text": entry["text"], "annotations": [], "logprobs": []}
            where = {"item_id": item["id"], "output_index": index, "content_index": 0}
            out += self._event("response.output_text.done", {**where, "text": entry["text"], "logprobs": []})
            out += self._event("response.content_part.done", {**where, "part": part})
            item["content"] = [part]
        elif entry["kind"] == "reasoning":
            where = {"item_id": item["id"], "output_index": index, "content_index": 0}
            out += self._event("response.reasoning_text.done", {**where, "text": entry["text"]})
            item["content"] = [{"type": "reasoning_text", "text": entry["text"]}]
        else:
            item["arguments"] = entry["text"]
            out += self._event("response.function_call_arguments.done", {"item_id": item["id"], "output_index": index, "arguments": entry["text"]})
        item["status"] = "completed"
        return out + self._event("response.output_item.done", {"output_index": index, "item": item})

    def feed(self, chunk: dict) -> bytes:
        out = self.start()
        if isinstance(chunk.get("usage"), dict) and not chunk.get("choices"):
            self.usage = chunk["usage"]
        elif isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = _reasoning_of(delta)
            if reasoning:
                if self.reasoning_item is None or self.reasoning_item.get("done"):
                    self.reasoning_item, opened = self._open({"type": "reasoning", "id": f"rs_{uuid.uuid4().hex}", "summary": []}, "reasoning")
                    out += opened
                entry = self.reasoning_item
                entry["text"] += reasoning
                where = {"item_id": entry["item"]["id"], "output_index": entry["index"], "content_index": 0}
                out += self._event("response.reasoning_text.delta", {**where, "delta": reasoning})
            text = delta.get("content")
            if text:
                if self.reasoning_item is not None:
                    out += self._close_entry(self.reasoning_item)
                if self.text_item is None:
                    self.text_item, opened = self._open({"type": "message", "id": f"msg_{uuid.uuid4().hex}", "role": "assistant"}, "message")
                    out += opened
                entry = self.text_item
                where = {"item_id": entry["item"]["id"], "output_index": entry["index"], "content_index": 0}
                if not entry["text"]:
                    empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                    out += self._event("response.content_part.added", {**where, "part": empty})
                entry["text"] += text
                out += self._event("response.output_text.delta", {**where, "delta": text, "logprobs": []})
            for call in delta.get("tool_calls") or []:
                position = call.get("index", 0)
                function = call.get("function") or {}
                entry = self.calls.get(position)
                if entry is None:
                    item = {"type": "function_call", "id": f"fc_{uuid.uuid4().hex}", "call_id": call.get("id"),
                            "name": function.get("name"), "arguments": ""}
                    entry, opened = self._open(item, "function_call")
                    self.calls[position] = entry
                    out += opened
                if function.get("arguments"):
                    entry["text"] += function["arguments"]
                    where = {"item_id": entry["item"]["id"], "output_index": entry["index"]}
                    out += self._event("response.function_call_arguments.delta", {**where, "delta": function["arguments"]})
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return out

    def close(self) -> bytes:
        """The closing events after the chat stream ended (``[DONE]`` or the end of the body)."""
        if self.closed:
            return b""
        self.closed = True
        out = self.start()
        for entry in self.items:
            out += self._close_entry(entry)
        self.response["output"] = [entry["item"] for entry in self.items]
        _finish(self.response, self.finish_reason)
        self.response["usage"] = usage_of(self.usage)
        return out + self._event("response.completed", {"response": self.response})

    def error(self, message: str, code: str = "server_error") -> bytes:
        """An ``error`` event for a stream that broke off (the client's SDK raises it)."""
        self.closed = True
        return self.start() + self._event("error", {"code": code, "message": message, "param": None})

    def tokens(self) -> tuple[int, int]:
        prompt, completion, _cached, _reasoning = chat_usage(self.usage)
        return prompt, completion
