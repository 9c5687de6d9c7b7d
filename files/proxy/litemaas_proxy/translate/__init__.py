"""Translations between the APIs clients speak and the chat completions API every model server speaks.

Used for a model whose server has no ``/v1/responses`` or ``/v1/messages`` of its own (``litellm_params`` or
``model_info`` ``responses_api`` / ``messages_api`` set to ``chat``). Pure functions and small stream state
machines over dicts: no I/O, so unit tests call them directly.

* :mod:`.responses`: OpenAI Responses API <-> chat completions.
* :mod:`.messages`: Anthropic Messages API <-> chat completions.

A request field that cannot be carried over raises :class:`NotTranslatable` (the route answers 400 naming the
field) rather than being dropped silently.
"""

from __future__ import annotations

import orjson


class NotTranslatable(ValueError):
    """A request asks for something the chat completions API cannot express. ``param`` names the field."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.message = message
        self.param = param


def sse_event(name: str, data: dict) -> bytes:
    """One named server-sent event, as the Responses and Messages APIs stream them."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def parse_arguments(arguments) -> dict:
    """A tool call's JSON ``arguments`` string as an object (``{}`` when empty; the raw text under ``"raw"`` when it
    is not a JSON object, so nothing the model wrote is lost)."""
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {"raw": arguments}
    return value if isinstance(value, dict) else {"raw": arguments}


def chat_usage(usage) -> tuple:
    """(prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens) from a chat completions ``usage``."""
    if not isinstance(usage, dict):
        return 0, 0, 0, 0
    prompt = usage.get("prompt_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return int(prompt), int(completion), int(cached), int(reasoning)
