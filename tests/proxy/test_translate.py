"""Responses API and Messages API <-> chat completions translation (pure functions), checked against the official
clients' own types: every translated answer and stream event must validate as the ``openai`` / ``anthropic``
package's model of it."""

from __future__ import annotations

import json

import anthropic.types as at
import openai.types.responses as rt
import pytest
from pydantic import TypeAdapter

from litemaas_proxy.translate import NotTranslatable, parse_arguments
from litemaas_proxy.translate import messages as mt
from litemaas_proxy.translate import responses as rs

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
RESPONSE_EVENT = TypeAdapter(rt.ResponseStreamEvent)
MESSAGE_EVENT = TypeAdapter(at.RawMessageStreamEvent)


def events(raw: bytes) -> list[tuple[str, dict]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        name_line, data_line = block.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        data = json.loads(data_line[6:])
        assert data["type"] == name_line[7:]
        out.append((name_line[7:], data))
    return out


def chat_chunk(delta: dict | None = None, finish=None, usage=None) -> dict:
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "up",
             "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        chunk["usage"] = usage
    return chunk


TEXT_STREAM = [
    chat_chunk({"role": "assistant", "content": ""}),
    chat_chunk({"content": "Hello"}),
    chat_chunk({"content": " there"}),
    chat_chunk({}, "stop"),
    chat_chunk(None, usage={"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}),
]
TOOL_STREAM = [
    chat_chunk({"role": "assistant", "content": None}),
    chat_chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
    chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
    chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
    chat_chunk({}, "tool_calls"),
    chat_chunk(None, usage={"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}),
]


# ---- Responses -> chat ------------------------------------------------------------------------------------------

def test_responses_request_to_chat_full():
    body = {
        "model": "m", "instructions": "be brief", "max_output_tokens": 50, "temperature": 0.2, "user": "u1", "stream": True,
        "input": [
            {"role": "developer", "content": "use metric"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather "}, {"type": "input_text", "text": "in Paris?"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
            {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": '{"city":"Lyon"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
            {"role": "user", "content": [{"type": "input_text", "text": "and this?"}, {"type": "input_image", "image_url": "data:image/png;base64,AAA"}]},
        ],
        "tools": [{"type": "function", "name": "get_weather", "description": "weather", "parameters": WEATHER, "strict": True}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "text": {"format": {"type": "json_schema", "name": "w", "schema": WEATHER, "strict": True}},
        "reasoning": {"effort": "low"},
    }
    assert rs.request_to_chat(body) == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "system", "content": "use metric"},
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Lyon"}'}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "user", "content": [{"type": "text", "text": "and this?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}}]},
        ],
        "temperature": 0.2, "user": "u1", "max_tokens": 50,
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER, "description": "weather", "strict": True}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": WEATHER, "strict": True}},
        "reasoning_effort": "low",
        "stream": True, "stream_options": {"include_usage": True},
    }


@pytest.mark.parametrize("body,param,words", [
    ({"input": "x", "previous_response_id": "resp_1"}, "previous_response_id", "history"),
    ({"input": "x", "background": True}, "background", "background"),
    ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type", "'web_search'"),
    ({"input": "x", "tools": [{"type": "custom", "name": "apply_patch"}]}, "tools[0].type", "free-form"),
    ({"input": "x", "tool_choice": {"type": "file_search"}}, "tool_choice.type", "'file_search'"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input[0].content[0].type", "'input_file'"),
    ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type", "'item_reference'"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}, "input[0].content[0].file_id", "image_url"),
    ({"model": "m"}, "input", "input is required"),
])
def test_responses_refusals_name_the_field(body, param, words):
    with pytest.raises(NotTranslatable) as info:
        rs.request_to_chat(body)
    assert info.value.param == param
    assert words in info.value.message


def test_chat_to_response_text_and_usage():
    choice = {"index": 0, "message": {"role": "assistant", "content": "hi there"}, "finish_reason": "length"}
    chat = {"id": "c", "created": 7, "model": "up", "choices": [choice],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15, "prompt_tokens_details": {"cached_tokens": 4}}}
    out = rs.chat_to_response({"model": "public", "input": "x", "max_output_tokens": 3}, chat, "resp_abc")
    parsed = rt.Response.model_validate(out)
    assert parsed.id == "resp_abc" and parsed.model == "public" and parsed.created_at == 7
    assert parsed.output_text == "hi there"
    assert (parsed.status, parsed.incomplete_details.reason) == ("incomplete", "max_output_tokens")
    assert out["usage"] == {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0}, "output_tokens": 3,
                            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 15}
    assert out["store"] is False


def test_chat_to_response_tool_calls_and_reasoning():
    message = {"role": "assistant", "content": None, "reasoning_content": "think",
               "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}
    chat = {"id": "c", "created": 7, "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 6}}
    parsed = rt.Response.model_validate(rs.chat_to_response({"model": "m", "input": "x"}, chat))
    assert parsed.status == "completed"
    assert [o.type for o in parsed.output] == ["reasoning", "function_call"]
    call = parsed.output[1]
    assert (call.call_id, call.name, call.arguments) == ("call_1", "get_weather", '{"city":"Paris"}')
    assert (parsed.usage.input_tokens, parsed.usage.output_tokens, parsed.usage.total_tokens) == (5, 6, 11)


def test_responses_stream_text():
    stream = rs.ResponsesStream({"model": "public", "input": "x"}, "resp_s", 5)
    raw = b"".join(stream.feed(c) for c in TEXT_STREAM) + stream.close()
    got = events(raw)
    for _name, data in got:
        RESPONSE_EVENT.validate_python(data)
    assert [n for n, _d in got] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed",
    ]
    assert [d["sequence_number"] for _n, d in got] == list(range(10))
    assert [d["delta"] for n, d in got if n == "response.output_text.delta"] == ["Hello", " there"]
    final = rt.Response.model_validate(got[-1][1]["response"])
    assert final.output_text == "Hello there" and final.status == "completed" and final.id == "resp_s"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (11, 2)
    assert stream.tokens() == (11, 2)
    assert stream.close() == b""


def test_responses_stream_tool_call():
    stream = rs.ResponsesStream({"model": "m", "input": "x"})
    got = events(b"".join(stream.feed(c) for c in TOOL_STREAM) + stream.close())
    for _name, data in got:
        RESPONSE_EVENT.validate_python(data)
    names = [n for n, _d in got]
    assert names[2:] == ["response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.delta",
                         "response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    done = got[-2][1]["item"]
    assert (done["call_id"], done["name"], done["arguments"], done["status"]) == ("call_a", "get_weather", '{"city": "Paris"}', "completed")
    assert stream.tokens() == (20, 9)


def test_responses_stream_error_event():
    stream = rs.ResponsesStream({"model": "m", "input": "x"})
    stream.feed(TEXT_STREAM[1])
    got = events(stream.error("upstream connection lost"))
    assert got == [("error", {"type": "error", "sequence_number": 5, "code": "server_error", "message": "upstream connection lost", "param": None})]
    RESPONSE_EVENT.validate_python(got[0][1])


# ---- Messages -> chat -------------------------------------------------------------------------------------------

def test_messages_request_to_chat_full():
    body = {
        "model": "m", "max_tokens": 100, "stop_sequences": ["END"], "temperature": 0.5, "top_k": 5, "stream": True,
        "metadata": {"user_id": "u9"},
        "system": [{"type": "text", "text": "be "}, {"type": "text", "text": "brief"}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "look"},
                                         {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "QUJD"}}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"}, {"type": "text", "text": "checking"},
                                              {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18C"}]},
                                         {"type": "text", "text": "thanks"}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_2", "content": "boom", "is_error": True}]},
        ],
        "tools": [{"name": "get_weather", "description": "weather", "input_schema": WEATHER}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    }
    assert mt.request_to_chat(body) == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}}]},
            {"role": "assistant", "content": "checking", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "user", "content": "thanks"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: boom"},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER, "description": "weather"}}],
        "tool_choice": "required", "parallel_tool_calls": False,
        "max_tokens": 100, "stop": ["END"], "temperature": 0.5, "top_k": 5, "user": "u9",
        "stream": True, "stream_options": {"include_usage": True},
    }
    counted = mt.count_tokens_chat(body)
    assert counted["max_tokens"] == 1 and "stream" not in counted and "stop" not in counted


@pytest.mark.parametrize("body,param", [
    ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
    ({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}, "messages[0].content[0].type"),
    ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
    ({"messages": "x"}, "messages"),
    ({"messages": [], "mcp_servers": [{"url": "u"}]}, "mcp_servers"),
    ({"messages": [], "tool_choice": {"type": "sometimes"}}, "tool_choice.type"),
])
def test_messages_refusals_name_the_field(body, param):
    with pytest.raises(NotTranslatable) as info:
        mt.request_to_chat(body)
    assert info.value.param == param
    assert info.value.message.startswith(param)


def test_chat_to_message():
    message = {"role": "assistant", "content": "sure",
               "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}
    chat = {"choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 8, "completion_tokens": 4}}
    parsed = at.Message.model_validate(mt.chat_to_message({"model": "public"}, chat))
    assert parsed.model == "public" and parsed.stop_reason == "tool_use"
    assert parsed.content[0].text == "sure"
    assert (parsed.content[1].id, parsed.content[1].name, parsed.content[1].input) == ("call_1", "get_weather", {"city": "Paris"})
    assert (parsed.usage.input_tokens, parsed.usage.output_tokens) == (8, 4)
    stopped = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "a"}, "finish_reason": "stop", "stop_reason": "END"}], "usage": {}}
    out = mt.chat_to_message({"model": "m"}, stopped)
    assert (out["stop_reason"], out["stop_sequence"]) == ("stop_sequence", "END")


def test_messages_stream_text_and_tool():
    stream = mt.MessagesStream({"model": "public"})
    chunks = TEXT_STREAM[:3] + TOOL_STREAM[1:]
    got = events(b"".join(stream.feed(c) for c in chunks) + stream.close())
    for _name, data in got:
        MESSAGE_EVENT.validate_python(data)
    assert [n for n, _d in got] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop", "message_delta", "message_stop",
    ]
    assert got[0][1]["message"]["usage"] == {"input_tokens": 0, "output_tokens": 0}
    assert got[5][1] == {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {}}}
    assert "".join(d["delta"]["partial_json"] for n, d in got if n == "content_block_delta" and d["index"] == 1) == '{"city": "Paris"}'
    assert got[-2][1] == {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                          "usage": {"input_tokens": 20, "output_tokens": 9}}
    assert stream.tokens() == (20, 9)


def test_messages_stream_usage_on_every_chunk_reaches_message_start():
    stream = mt.MessagesStream({"model": "m"})
    first = chat_chunk({"role": "assistant", "content": "a"}, usage={"prompt_tokens": 6, "completion_tokens": 1, "total_tokens": 7})
    got = events(stream.feed(first))
    assert got[0][1]["message"]["usage"] == {"input_tokens": 6, "output_tokens": 0}


def test_messages_error_shape_and_event():
    assert mt.error_body(429, "slow down") == {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    assert mt.error_body(401, "no")["error"]["type"] == "authentication_error"
    assert mt.error_body(418, "odd")["error"]["type"] == "invalid_request_error"
    got = events(mt.MessagesStream({"model": "m"}).error(502, "lost"))
    assert got == [("error", {"type": "error", "error": {"type": "api_error", "message": "lost"}})]


@pytest.mark.parametrize("raw,expected", [("", {}), ('{"a":1}', {"a": 1}), ("[1]", {"raw": "[1]"}), ("{broken", {"raw": "{broken"}), ({"a": 2}, {"a": 2})])
def test_parse_arguments(raw, expected):
    assert parse_arguments(raw) == expected
