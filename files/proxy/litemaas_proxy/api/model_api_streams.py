"""The other APIs' event streams (api/model_apis.py): a relayed Responses or Messages stream with its usage and the
proxy's response id (:class:`NativeStream`), a chat completions stream translated to either (:class:`BridgeStream`),
and the estimate of a stream whose server sent no usage."""

from __future__ import annotations

import orjson

from litemaas_proxy.api.model_api_wire import MESSAGES, RESPONSES, Api, encode_response_id, usage_tokens
from litemaas_proxy.translate import messages as messages_bridge
from litemaas_proxy.translate import responses as responses_bridge
from litemaas_proxy.translate import sse_event


def split_events(buf: bytes):
    """Complete SSE events at the start of ``buf`` and the rest: (list of events, rest)."""
    out = []
    while True:
        lf, crlf = buf.find(b"\n\n"), buf.find(b"\r\n\r\n")
        if crlf >= 0 and (lf < 0 or crlf < lf):
            end = crlf + 4
        elif lf >= 0:
            end = lf + 2
        else:
            return out, buf
        out.append(buf[:end])
        buf = buf[end:]


def _data(event: bytes):
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            payload = line[5:].strip()
            if payload == b"[DONE]":
                return "[DONE]"
            try:
                return orjson.loads(payload)
            except orjson.JSONDecodeError:
                return None
    return None


def text_chars(value) -> int:
    """Characters of the text in a request field: strings, lists of them, and parts' text/content/input/output."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(text_chars(v) for v in value)
    if isinstance(value, dict):
        return sum(text_chars(value.get(k)) for k in ("text", "content", "input", "output"))
    return 0


def estimate_tokens(body: dict, streamed_chars: int) -> tuple:
    """(prompt, completion) tokens estimated at ~4 characters each, for a stream whose server sent no usage."""
    chars = sum(text_chars(body.get(k)) for k in ("instructions", "system", "input", "messages"))
    return max(1, (chars + 3) // 4), (streamed_chars + 3) // 4


def _delta_chars(event: bytes) -> int:
    if b'"delta"' not in event or not (b"output_text.delta" in event or b"text_delta" in event):
        return 0
    data = _data(event)
    delta = data.get("delta") if isinstance(data, dict) else None
    if isinstance(delta, dict):
        delta = delta.get("text")
    return len(delta) if isinstance(delta, str) else 0


class NativeStream:
    """Relays a Responses or Messages event stream unchanged (except the response id), noting its usage."""

    def __init__(self, api: Api, dep_id: str, token: str):
        self.api, self.dep_id, self.token = api, dep_id, token
        self.prompt = self.completion = 0
        self.seen_usage = False
        self.server_id = None
        self.public_id = None
        self.chars = 0  # streamed text, for an estimate when the server sends no usage

    def feed(self, event: bytes) -> bytes:
        if not self.seen_usage:
            self.chars += _delta_chars(event)
        if self.api is RESPONSES:
            if self.server_id is None and b'"response"' in event:
                data = _data(event)
                rid = ((data or {}).get("response") or {}).get("id") if isinstance(data, dict) else None
                if isinstance(rid, str):
                    self.server_id, self.public_id = rid.encode(), encode_response_id(self.dep_id, self.token, rid).encode()
            if b'"usage"' in event and (b"response.completed" in event or b"response.incomplete" in event or b"response.failed" in event):
                data = _data(event)
                if isinstance(data, dict) and isinstance(data.get("response"), dict):
                    self.prompt, self.completion = usage_tokens(RESPONSES, data["response"])
                    self.seen_usage = True
            return event.replace(self.server_id, self.public_id) if self.server_id else event
        if b'"usage"' in event and (b"message_start" in event or b"message_delta" in event):
            data = _data(event)
            if isinstance(data, dict):
                usage = (data.get("message") or {}).get("usage") if data.get("type") == "message_start" else data.get("usage")
                if isinstance(usage, dict):
                    prompt, completion = usage_tokens(MESSAGES, {"usage": usage})
                    self.prompt = prompt or self.prompt
                    self.completion = completion or self.completion
                    self.seen_usage = self.seen_usage or data.get("type") == "message_delta"
        return event

    def tokens(self) -> tuple:
        return self.prompt, self.completion

    def error(self, status: int, message: str) -> bytes:
        if self.api is MESSAGES:
            return sse_event("error", messages_bridge.error_body(status, message))
        return sse_event("error", {"type": "error", "code": str(status), "message": message, "param": None})


class BridgeStream:
    """Translates a chat completions event stream into Responses or Messages events."""

    def __init__(self, api: Api, body: dict):
        self.api = api
        self.conv = responses_bridge.ResponsesStream(body) if api is RESPONSES else messages_bridge.MessagesStream(body)
        self.seen_usage = False
        self.chars = 0

    def feed(self, event: bytes) -> bytes:
        data = _data(event)
        if data == "[DONE]":
            return self.close()
        if not isinstance(data, dict):
            return b""
        if isinstance(data.get("usage"), dict):
            self.seen_usage = True
        for choice in data.get("choices") or []:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                self.chars += len(delta["content"])
        return self.conv.feed(data)

    def close(self) -> bytes:
        return self.conv.close()

    def tokens(self) -> tuple:
        return self.conv.tokens()

    def error(self, status: int, message: str) -> bytes:
        if self.api is MESSAGES:
            return self.conv.error(status, message)
        return self.conv.error(message, str(status))
