"""Requests and whole responses translated between the OpenAI and Anthropic wire formats."""

from __future__ import annotations

import copy
import json

import pytest
from anthropic.types import Message
from openai.types.chat import ChatCompletion

from thrifty.wire.anthropic_translate import (
    anthropic_request_to_openai,
    anthropic_response_to_openai,
    openai_request_to_anthropic,
    openai_response_to_anthropic,
)
from thrifty.errors import InvalidRequest, UpstreamError

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBgAAAABQABpfZFQAAAAABJRU5ErkJggg=="
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                                                 "parameters": WEATHER_SCHEMA}}


def to_anthropic(body, **kw):
    return openai_request_to_anthropic(body, model="claude-x", **kw)


def to_openai(body):
    return anthropic_request_to_openai(body, model="gpt-x")


def user(text):
    return {"role": "user", "content": text}


# -- OpenAI request -> Anthropic ----------------------------------------------------------------

def test_system_and_developer_messages_are_hoisted_in_order():
    out = to_anthropic({"messages": [
        {"role": "system", "content": "Be terse."},
        user("hi"),
        {"role": "developer", "content": [{"type": "text", "text": "Use metric units."},
                                          {"type": "text", "text": "Never guess."}]},
        {"role": "assistant", "content": "Hello."},
        user("weather?"),
    ]})
    assert out["system"] == [{"type": "text", "text": "Be terse."},
                             {"type": "text", "text": "Use metric units."},
                             {"type": "text", "text": "Never guess."}]
    assert out["messages"] == [user("hi"), {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]},
                               user("weather?")]
    assert out["model"] == "claude-x"


def test_parameters_map_and_max_tokens_defaults():
    out = to_anthropic({"model": "gpt-4o", "messages": [user("hi")], "max_tokens": 50, "stop": "END",
                        "temperature": 1.6, "top_p": 0.9, "user": "u-42", "stream": True,
                        "stream_options": {"include_usage": True}, "seed": 7, "presence_penalty": 0.5})
    assert out == {"model": "claude-x", "max_tokens": 50, "messages": [user("hi")],
                   "stop_sequences": ["END"], "temperature": 1.0, "top_p": 0.9,
                   "metadata": {"user_id": "u-42"}, "stream": True}

    out = to_anthropic({"messages": [user("hi")], "max_completion_tokens": 70, "max_tokens": 10,
                        "stop": ["a", "b"], "temperature": 0.2})
    assert (out["max_tokens"], out["stop_sequences"], out["temperature"]) == (70, ["a", "b"], 0.2)
    assert to_anthropic({"messages": [user("hi")]}, default_max_tokens=123)["max_tokens"] == 123
    assert "stream" not in to_anthropic({"messages": [user("hi")], "stream": False})


def test_consecutive_same_role_messages_are_merged():
    out = to_anthropic({"messages": [user("one"), user([{"type": "text", "text": "two"}]),
                                     {"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"},
                                     user("three")]})
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        user("three"),
    ]


def test_empty_turns_are_dropped_and_prefill_is_trimmed():
    out = to_anthropic({"messages": [user("q"), user(""), {"role": "assistant", "content": "The answer is "}]})
    assert out["messages"] == [user("q"), {"role": "assistant", "content": [{"type": "text", "text": "The answer is"}]}]


def test_images_become_base64_or_url_sources():
    out = to_anthropic({"messages": [user([
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ])]})
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "Compare"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_pdf_file_part_becomes_document():
    out = to_anthropic({"messages": [user([{"type": "file", "file": {
        "filename": "r.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}])]})
    assert out["messages"][0]["content"] == [{"type": "document", "title": "r.pdf", "source": {
        "type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}]


def test_tools_and_tool_calls_and_results():
    out = to_anthropic({"messages": [
        user("Weather in Paris and Rome?"),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "24C"}]},
        user("Which is warmer?"),
    ], "tools": [WEATHER_TOOL, {"type": "function", "function": {"name": "now"}}]})
    assert out["tools"] == [{"name": "get_weather", "description": "Weather now", "input_schema": WEATHER_SCHEMA},
                            {"name": "now", "input_schema": {"type": "object", "properties": {}}}]
    assert "tool_choice" not in out
    assert out["messages"][1] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Rome"}},
    ]}
    # both results and the follow-up question share one user turn, results first
    assert out["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "24C"}]},
        {"type": "text", "text": "Which is warmer?"},
    ]}
    assert len(out["messages"]) == 3


@pytest.mark.parametrize(("choice", "parallel", "expected"), [
    ("auto", None, {"type": "auto"}),
    ("none", None, {"type": "none"}),
    ("required", None, {"type": "any"}),
    ({"type": "function", "function": {"name": "get_weather"}}, None, {"type": "tool", "name": "get_weather"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    ("none", False, {"type": "none"}),
])
def test_tool_choice(choice, parallel, expected):
    body = {"messages": [user("hi")], "tools": [WEATHER_TOOL]}
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    assert to_anthropic(body)["tool_choice"] == expected


def test_tool_choice_without_tools_is_ignored():
    assert "tool_choice" not in to_anthropic({"messages": [user("hi")], "tool_choice": "none"})


def test_response_format_json_schema_becomes_a_system_instruction():
    out = to_anthropic({"messages": [{"role": "system", "content": "You extract cities."}, user("Paris!")],
                        "response_format": {"type": "json_schema", "json_schema": {
                            "name": "city", "schema": WEATHER_SCHEMA, "strict": True}}})
    assert out["system"][0] == {"type": "text", "text": "You extract cities."}
    instruction = out["system"][1]["text"]
    assert "only" in instruction and "JSON" in instruction
    assert json.loads(instruction[instruction.index("{"):]) == WEATHER_SCHEMA

    out = to_anthropic({"messages": [user("x")], "response_format": {"type": "json_object"}})
    assert "JSON object" in out["system"][0]["text"]
    assert "system" not in to_anthropic({"messages": [user("x")], "response_format": {"type": "text"}})


def test_input_is_not_mutated():
    body = {"messages": [user("a"), user("b"), {"role": "tool", "tool_call_id": "c", "content": "r"}],
            "tools": [WEATHER_TOOL]}
    before = copy.deepcopy(body)
    to_anthropic(body)
    assert body == before


@pytest.mark.parametrize(("body", "param"), [
    ({"messages": [user("hi")], "n": 3}, "n"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "system", "content": "only system"}]}, "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"messages": [user([{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}])]},
     "messages[0].content[0]"),
    ({"messages": [user([{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AA"}}])]},
     "messages[0].content[0]"),
    ({"messages": [user([{"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}])]},
     "messages[0].content[0]"),
    ({"messages": [user([{"type": "file", "file": {"file_id": "file-1"}}])]}, "messages[0].content[0]"),
    ({"messages": [{"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]},
     "messages[0].tool_calls[0].function.arguments"),
    ({"messages": [{"role": "tool", "content": "r"}]}, "messages[0].tool_call_id"),
    ({"messages": [user("hi")], "functions": [{"name": "f"}]}, "functions"),
    ({"messages": [user("hi")], "tools": [{"type": "custom", "custom": {"name": "g"}}]}, "tools[0].type"),
    ({"messages": [user("hi")], "tools": [WEATHER_TOOL], "tool_choice": {"type": "allowed_tools"}},
     "tool_choice"),
    ({"messages": [user("hi")], "temperature": "hot"}, "temperature"),
    ({"messages": [user("hi")], "response_format": {"type": "xml"}}, "response_format.type"),
])
def test_untranslatable_openai_requests(body, param):
    with pytest.raises(InvalidRequest) as err:
        to_anthropic(body)
    assert err.value.param == param
    assert err.value.status == 400


def test_openai_to_anthropic_to_openai_round_trip_preserves_meaning():
    original = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are a travel assistant."},
            user([{"type": "text", "text": "Where is this?"},
                  {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}}]),
            {"role": "assistant", "content": "Looks like Paris. Checking weather.", "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"},
            user("Should I bring a coat?"),
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "max_tokens": 300,
        "stop": ["\n\nUser:"],
        "temperature": 0.3,
        "top_p": 0.8,
        "user": "u-1",
        "stream": True,
    }
    back = to_openai(to_anthropic(original))
    assert back["model"] == "gpt-x"
    assert back["messages"][:3] == [
        {"role": "system", "content": "You are a travel assistant."},
        original["messages"][1],
        {"role": "assistant", "content": "Looks like Paris. Checking weather.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                              "arguments": '{"city":"Paris"}'}}]},
    ]
    assert back["messages"][3:] == original["messages"][3:]
    assert back["tools"] == original["tools"]
    assert (back["tool_choice"], back["parallel_tool_calls"]) == ("required", False)
    assert back["max_completion_tokens"] == 300
    assert (back["stop"], back["temperature"], back["top_p"], back["user"]) == (["\n\nUser:"], 0.3, 0.8, "u-1")
    assert back["stream"] is True and back["stream_options"] == {"include_usage": True}


# -- Anthropic request -> OpenAI ----------------------------------------------------------------

def test_anthropic_request_to_openai():
    out = to_openai({
        "model": "claude-sonnet", "max_tokens": 100, "top_k": 5, "stop_sequences": ["###"],
        "metadata": {"user_id": "u-9"}, "temperature": 0.5,
        "system": [{"type": "text", "text": "Rules.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Look:"},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "-3C"},
                {"type": "text", "text": "Thanks", "cache_control": {"type": "ephemeral"}},
            ]},
        ],
        "tools": [{"name": "get_weather", "description": "Weather now", "input_schema": WEATHER_SCHEMA,
                   "cache_control": {"type": "ephemeral"}}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    })
    assert out == {
        "model": "gpt-x",
        "messages": [
            {"role": "system", "content": "Rules."},
            {"role": "user", "content": [
                {"type": "text", "text": "Look:"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
            ]},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "toolu_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "-3C"},
            {"role": "user", "content": "Thanks"},
        ],
        "max_completion_tokens": 100,
        "stop": ["###"],
        "temperature": 0.5,
        "user": "u-9",
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
    }


def test_anthropic_tool_results_with_images_errors_and_several_system_blocks():
    out = to_openai({"max_tokens": 10, "system": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
                     "messages": [
                         {"role": "user", "content": "go"},
                         {"role": "assistant", "content": [
                             {"type": "tool_use", "id": "t1", "name": "shot", "input": {}},
                             {"type": "tool_use", "id": "t2", "name": "shot", "input": {}}]},
                         {"role": "user", "content": [
                             {"type": "tool_result", "tool_use_id": "t1", "content": [
                                 {"type": "text", "text": "here"},
                                 {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                              "data": PNG_B64}}]},
                             {"type": "tool_result", "tool_use_id": "t2", "is_error": True, "content": "boom"}]},
                     ]})
    msgs = out["messages"]
    assert msgs[0] == {"role": "system", "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]}
    assert msgs[2] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "t1", "type": "function", "function": {"name": "shot", "arguments": "{}"}},
        {"id": "t2", "type": "function", "function": {"name": "shot", "arguments": "{}"}}]}
    assert msgs[3] == {"role": "tool", "tool_call_id": "t1", "content": "here"}
    assert msgs[4] == {"role": "tool", "tool_call_id": "t2", "content": "Error: boom"}
    assert msgs[5]["role"] == "user"
    assert msgs[5]["content"][1] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}}
    assert "t1" in msgs[5]["content"][0]["text"]
    assert len(msgs) == 6


@pytest.mark.parametrize(("choice", "expected"), [
    ({"type": "auto"}, "auto"), ({"type": "any"}, "required"), ({"type": "none"}, "none"),
    ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
])
def test_anthropic_tool_choice(choice, expected):
    out = to_openai({"max_tokens": 5, "messages": [user("x")], "tool_choice": choice,
                     "tools": [{"name": "get_weather", "input_schema": WEATHER_SCHEMA}]})
    assert out["tool_choice"] == expected
    assert "parallel_tool_calls" not in out


@pytest.mark.parametrize(("body", "param"), [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
    ({"messages": [user("x")], "tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools.0.type"),
    ({"messages": [user([{"type": "image", "source": {"type": "file", "file_id": "f"}}])]},
     "messages.0.content.0.source"),
    ({"messages": [user([{"type": "search_result", "source": "s", "title": "t", "content": []}])]},
     "messages.0.content.0.type"),
    ({"messages": [user("x")], "mcp_servers": [{"type": "url", "url": "https://m", "name": "m"}]}, "mcp_servers"),
    ({"messages": [user("x")], "system": {"text": "x"}}, "system"),
    ({"messages": [{"role": "assistant", "content": {"type": "text"}}]}, "messages.0.content"),
])
def test_untranslatable_anthropic_requests(body, param):
    with pytest.raises(InvalidRequest) as err:
        to_openai({"max_tokens": 5, **body})
    assert err.value.param == param


def test_anthropic_to_openai_to_anthropic_round_trip():
    original = {
        "model": "claude", "max_tokens": 256, "stop_sequences": ["STOP"], "temperature": 0.7,
        "system": [{"type": "text", "text": "Be kind."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hi"},
                                         {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                                                      "data": "AAAA"}}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Calling."},
                                              {"type": "tool_use", "id": "toolu_9", "name": "get_weather",
                                               "input": {"city": "Lima", "units": ["C"]}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "20C"},
                                         {"type": "text", "text": "And tomorrow?"}]},
        ],
        "tools": [{"name": "get_weather", "description": "Weather now", "input_schema": WEATHER_SCHEMA}],
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "metadata": {"user_id": "u"},
    }
    back = openai_request_to_anthropic(to_openai(original), model="claude")
    assert back == original


# -- responses ----------------------------------------------------------------------------------

ANTHROPIC_USAGE = {"input_tokens": 12, "output_tokens": 40, "cache_read_input_tokens": 1000,
                   "cache_creation_input_tokens": 300,
                   "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 100}}


def anthropic_message(content, stop_reason="end_turn", usage=ANTHROPIC_USAGE):
    return {"id": "msg_01AbC", "type": "message", "role": "assistant", "model": "claude-real",
            "content": content, "stop_reason": stop_reason, "stop_sequence": None, "usage": usage}


def test_anthropic_text_response_to_openai():
    out = anthropic_response_to_openai(anthropic_message([
        {"type": "thinking", "thinking": "...", "signature": "s"},
        {"type": "text", "text": "Hello "}, {"type": "text", "text": "there."}]), model="gpt-4o")
    ChatCompletion.model_validate(out)
    assert out["id"] == "chatcmpl-01AbC"
    assert (out["object"], out["model"]) == ("chat.completion", "gpt-4o")
    assert isinstance(out["created"], int) and out["created"] > 1_600_000_000
    assert out["choices"] == [{"index": 0, "logprobs": None, "finish_reason": "stop", "message": {
        "role": "assistant", "content": "Hello there.", "refusal": None, "annotations": []}}]
    usage = out["usage"]
    assert usage["prompt_tokens"] == 12 + 1000 + 300
    assert usage["prompt_tokens_details"]["cached_tokens"] == 1000
    assert (usage["completion_tokens"], usage["total_tokens"]) == (40, 1352)


def test_anthropic_tool_use_response_to_openai():
    out = anthropic_response_to_openai(anthropic_message([
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
    ], stop_reason="tool_use"), model="m")
    ChatCompletion.model_validate(out)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Checking."
    calls = choice["message"]["tool_calls"]
    assert [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("toolu_1", "get_weather", {"city": "Paris"}), ("toolu_2", "now", {})]

    only_tools = anthropic_response_to_openai(anthropic_message(
        [{"type": "tool_use", "id": "toolu_3", "name": "now", "input": {}}], stop_reason="tool_use"), model="m")
    assert only_tools["choices"][0]["message"]["content"] is None


@pytest.mark.parametrize(("stop", "finish"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("refusal", "content_filter"), ("pause_turn", "stop"), ("model_context_window_exceeded", "length"),
])
def test_anthropic_stop_reasons(stop, finish):
    out = anthropic_response_to_openai(anthropic_message([{"type": "text", "text": "x"}], stop), model="m")
    assert out["choices"][0]["finish_reason"] == finish


def test_anthropic_thinking_tokens_become_reasoning_tokens():
    usage = {"input_tokens": 5, "output_tokens": 90, "output_tokens_details": {"thinking_tokens": 70}}
    out = anthropic_response_to_openai(anthropic_message([{"type": "text", "text": "x"}], usage=usage), model="m")
    assert out["usage"]["completion_tokens_details"]["reasoning_tokens"] == 70
    assert out["usage"]["completion_tokens"] == 90


OPENAI_USAGE = {"prompt_tokens": 1200, "completion_tokens": 30, "total_tokens": 1230,
                "prompt_tokens_details": {"cached_tokens": 1024},
                "completion_tokens_details": {"reasoning_tokens": 10}}


def openai_completion(message, finish="stop", **choice_extra):
    return {"id": "chatcmpl-XyZ", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-2024",
            "choices": [{"index": 0, "message": {"role": "assistant", "refusal": None, **message},
                         "logprobs": None, "finish_reason": finish, **choice_extra}],
            "usage": OPENAI_USAGE}


def test_openai_text_response_to_anthropic():
    out = openai_response_to_anthropic(openai_completion({"content": "Bonjour."}), model="claude-x")
    Message.model_validate(out)
    assert out == {"id": "msg_XyZ", "type": "message", "role": "assistant", "model": "claude-x",
                   "content": [{"type": "text", "text": "Bonjour."}], "stop_reason": "end_turn",
                   "stop_sequence": None, "usage": out["usage"]}
    usage = out["usage"]
    assert (usage["input_tokens"], usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"],
            usage["output_tokens"]) == (176, 1024, 0, 30)
    assert usage["output_tokens_details"] == {"thinking_tokens": 10}


def test_openai_tool_call_response_to_anthropic():
    out = openai_response_to_anthropic(openai_completion({"content": None, "tool_calls": [
        {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
        {"id": "call_b", "type": "function", "function": {"name": "now", "arguments": ""}},
    ]}, finish="tool_calls"), model="claude-x")
    Message.model_validate(out)
    assert out["stop_reason"] == "tool_use"
    assert out["content"] == [
        {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Oslo"}},
        {"type": "tool_use", "id": "call_b", "name": "now", "input": {}}]


@pytest.mark.parametrize(("finish", "extra", "stop", "sequence"), [
    ("stop", {}, "end_turn", None),
    ("stop", {"stop_reason": "###"}, "stop_sequence", "###"),  # vLLM names the matched stop string
    ("stop", {"stop_reason": 128001}, "end_turn", None),  # ...or a stop token id, which is no sequence
    ("length", {}, "max_tokens", None),
    ("tool_calls", {}, "tool_use", None),
    ("content_filter", {}, "refusal", None),
])
def test_openai_finish_reasons(finish, extra, stop, sequence):
    out = openai_response_to_anthropic(openai_completion({"content": "x"}, finish, **extra), model="m")
    assert (out["stop_reason"], out["stop_sequence"]) == (stop, sequence)


def test_openai_refusal_response_to_anthropic():
    out = openai_response_to_anthropic(openai_completion({"content": None, "refusal": "I can't help."}), model="m")
    assert out["content"] == [{"type": "text", "text": "I can't help."}]
    assert out["stop_reason"] == "refusal"


def test_openai_response_with_bad_tool_arguments_is_an_upstream_error():
    with pytest.raises(UpstreamError):
        openai_response_to_anthropic(openai_completion({"content": None, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a": '}}]}, "tool_calls"),
            model="m")


def test_response_round_trips_keep_content_and_usage():
    original = anthropic_message([{"type": "text", "text": "Hi."},
                                  {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"x": [1, 2]}}],
                                 stop_reason="tool_use", usage={"input_tokens": 10, "output_tokens": 4,
                                                                "cache_read_input_tokens": 90,
                                                                "cache_creation_input_tokens": 0})
    back = openai_response_to_anthropic(anthropic_response_to_openai(original, model="g"), model="claude-real")
    assert back["id"] == original["id"]
    assert back["content"] == original["content"]
    assert back["stop_reason"] == "tool_use"
    assert {k: back["usage"][k] for k in original["usage"]} == original["usage"]
