"""Stream translation, checked by assembling the output with the official SDKs' own accumulators."""

from __future__ import annotations

import json

import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from thrifty.wire.anthropic_stream import AnthropicToOpenAIStream, OpenAIToAnthropicStream
from thrifty.contract.usage import Usage
from thrifty.errors import Overloaded, UpstreamError


# -- Anthropic events, as the Messages API streams them -----------------------------------------

def message_start(usage=None):
    return {"type": "message_start", "message": {
        "id": "msg_01Stream", "type": "message", "role": "assistant", "model": "claude-real", "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": usage or {"input_tokens": 25, "cache_read_input_tokens": 2000, "cache_creation_input_tokens": 500,
                           "cache_creation": {"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 0},
                           "output_tokens": 1}}}


def text_block(index, *pieces):
    yield {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
    for piece in pieces:
        yield {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}
    yield {"type": "content_block_stop", "index": index}


def tool_block(index, tool_id, name, *fragments):
    yield {"type": "content_block_start", "index": index,
           "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}}}
    for fragment in fragments:
        yield {"type": "content_block_delta", "index": index,
               "delta": {"type": "input_json_delta", "partial_json": fragment}}
    yield {"type": "content_block_stop", "index": index}


def message_end(stop_reason, output_tokens):
    yield {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
           "usage": {"output_tokens": output_tokens}}
    yield {"type": "message_stop"}


def anthropic_text_stream():
    yield message_start()
    yield {"type": "ping"}
    yield from text_block(0, "Hello", ", wor", "ld!")
    yield from message_end("end_turn", 12)


def anthropic_tool_stream():
    yield message_start({"input_tokens": 400, "output_tokens": 1})
    yield from text_block(0, "Let me check both.")
    yield from tool_block(1, "toolu_A", "get_weather", "", '{"city"', ': "Par', 'is"}')
    yield from tool_block(2, "toolu_B", "get_weather", '{"city": "Rome"}')
    yield from message_end("tool_use", 80)


def run_anthropic(events, **kw):
    stream = AnthropicToOpenAIStream(model="gpt-4o", **kw)
    chunks = [chunk for event in events for chunk in stream.feed(event)]
    return stream, chunks


def assemble_openai(chunks):
    state = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    return state.current_completion_snapshot  # get_final_completion() refuses finish_reason "length"


def test_anthropic_text_stream_to_openai_chunks_with_usage():
    stream, chunks = run_anthropic(anthropic_text_stream(), include_usage=True)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["id"] == "chatcmpl-01Stream" and c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["created"] for c in chunks}) == 1
    assert all(c["usage"] is None for c in chunks[:-1])
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * 4 + ["stop"]
    last = chunks[-1]
    assert last["choices"] == []
    assert last["usage"]["prompt_tokens"] == 2525
    assert last["usage"]["prompt_tokens_details"]["cached_tokens"] == 2000
    assert last["usage"]["completion_tokens"] == 12

    completion = assemble_openai(chunks)
    assert completion.choices[0].message.content == "Hello, world!"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens == 2537
    assert stream.finished
    assert stream.usage == Usage(input_tokens=25, cache_read_tokens=2000, cache_write_5m_tokens=500, output_tokens=12)


def test_without_include_usage_chunks_carry_no_usage():
    stream, chunks = run_anthropic(anthropic_text_stream(), include_usage=False)
    assert all("usage" not in c and len(c["choices"]) == 1 for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert stream.usage.output_tokens == 12  # still known to the gateway for pricing


def test_anthropic_tool_stream_to_openai_tool_call_deltas():
    stream, chunks = run_anthropic(anthropic_tool_stream(), include_usage=True)
    first_call = next(c for c in chunks if c["choices"] and "tool_calls" in c["choices"][0]["delta"])
    assert first_call["choices"][0]["delta"]["tool_calls"] == [
        {"index": 0, "id": "toolu_A", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]
    fragments = [tc["function"]["arguments"] for c in chunks if c["choices"]
                 for tc in c["choices"][0]["delta"].get("tool_calls", ()) if "id" not in tc]
    assert fragments == ['{"city"', ': "Par', 'is"}', '{"city": "Rome"}']  # the empty fragment is skipped

    completion = assemble_openai(chunks)
    message = completion.choices[0].message
    assert message.content == "Let me check both."
    assert [(t.id, t.function.name, json.loads(t.function.arguments)) for t in message.tool_calls] == [
        ("toolu_A", "get_weather", {"city": "Paris"}), ("toolu_B", "get_weather", {"city": "Rome"})]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.usage.prompt_tokens == 400 and completion.usage.completion_tokens == 80


def test_thinking_blocks_are_skipped_and_request_id_names_the_chunks():
    events = [message_start(),
              {"type": "content_block_start", "index": 0,
               "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
              {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hmm"}},
              {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "x"}},
              {"type": "content_block_stop", "index": 0},
              *text_block(1, "42"), *message_end("max_tokens", 9)]
    _, chunks = run_anthropic(events, include_usage=False, request_id="req-7")
    assert {c["id"] for c in chunks} == {"chatcmpl-req-7"}
    completion = assemble_openai(chunks)
    assert completion.choices[0].message.content == "42"
    assert completion.choices[0].finish_reason == "length"


def test_message_delta_usage_overrides_start_usage():
    events = [message_start({"input_tokens": 10, "output_tokens": 1}), *text_block(0, "x"),
              {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
               "usage": {"input_tokens": 11, "cache_read_input_tokens": None, "output_tokens": 5}},
              {"type": "message_stop"}]
    stream, _ = run_anthropic(events, include_usage=False)
    assert (stream.usage.input_tokens, stream.usage.output_tokens) == (11, 5)


@pytest.mark.parametrize(("error", "exc"), [("overloaded_error", Overloaded), ("api_error", UpstreamError)])
def test_anthropic_error_event_raises(error, exc):
    stream = AnthropicToOpenAIStream(model="m", include_usage=False)
    stream.feed(message_start())
    with pytest.raises(exc, match="try later"):
        stream.feed({"type": "error", "error": {"type": error, "message": "try later"}})


# -- OpenAI chunks, as chat completions stream them ---------------------------------------------

def chunk(delta=None, finish=None, usage=None, choices=True, **choice_extra):
    c = {"id": "chatcmpl-Q1", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o",
         "choices": [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish,
                      **choice_extra}] if choices else [],
         "usage": usage}
    return c


FINAL_USAGE = {"prompt_tokens": 3000, "completion_tokens": 20, "total_tokens": 3020,
               "prompt_tokens_details": {"cached_tokens": 2048}}


def openai_text_chunks():
    yield chunk({"role": "assistant", "content": ""})
    for piece in ("The ", "sky ", "is blue."):
        yield chunk({"content": piece})
    yield chunk({}, "stop")
    yield chunk(usage=FINAL_USAGE, choices=False)


def openai_tool_chunks():
    yield chunk({"role": "assistant", "content": None})
    yield chunk({"content": "Two lookups."})
    yield chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                 "function": {"name": "get_weather", "arguments": ""}}]})
    for fragment in ('{"ci', 'ty": "Os', 'lo"}'):
        yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]})
    yield chunk({"tool_calls": [{"index": 1, "id": "call_2", "type": "function",
                                 "function": {"name": "get_time", "arguments": '{"tz": "UTC"}'}}]})
    yield chunk({}, "tool_calls")
    yield chunk(usage={"prompt_tokens": 90, "completion_tokens": 33, "total_tokens": 123}, choices=False)


def run_openai(chunks):
    stream = OpenAIToAnthropicStream(model="claude-x")
    events = [event for c in chunks for event in stream.feed(c)]
    events += stream.close()
    return stream, events


def assemble_anthropic(events):
    snapshot, bufs = None, {}
    for name, data in events:
        assert data["type"] == name
        snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=bufs)
    return Message.model_validate(snapshot.model_dump())


def test_openai_text_stream_to_anthropic_events():
    stream, events = run_openai(openai_text_chunks())
    assert [name for name, _ in events] == ["message_start", "content_block_start", "content_block_delta",
                                            "content_block_delta", "content_block_delta", "content_block_stop",
                                            "message_delta", "message_stop"]
    start = events[0][1]["message"]
    assert (start["id"], start["model"], start["content"]) == ("msg_Q1", "claude-x", [])
    assert start["usage"]["input_tokens"] == 0 and start["usage"]["output_tokens"] == 0
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert {k: delta["usage"][k] for k in ("input_tokens", "cache_read_input_tokens",
                                           "cache_creation_input_tokens", "output_tokens")} == {
        "input_tokens": 952, "cache_read_input_tokens": 2048, "cache_creation_input_tokens": 0, "output_tokens": 20}

    message = assemble_anthropic(events)
    assert [b.text for b in message.content] == ["The sky is blue."]
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens, message.usage.output_tokens) == (
        952, 2048, 20)
    assert stream.finished and stream.usage == Usage(input_tokens=952, cache_read_tokens=2048, output_tokens=20)
    assert stream.close() == [] and stream.feed(chunk({"content": "late"})) == []


def test_openai_tool_stream_to_anthropic_tool_use_blocks():
    _, events = run_openai(openai_tool_chunks())
    starts = [data["content_block"] for name, data in events if name == "content_block_start"]
    assert starts == [{"type": "text", "text": ""},
                      {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}},
                      {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}}]
    # every block is stopped before the next one starts
    opened = []
    for name, data in events:
        if name == "content_block_start":
            assert not opened
            opened.append(data["index"])
        elif name == "content_block_stop":
            assert opened.pop() == data["index"]
    message = assemble_anthropic(events)
    assert message.content[0].text == "Two lookups."
    assert [(b.id, b.name, b.input) for b in message.content[1:]] == [
        ("call_1", "get_weather", {"city": "Oslo"}), ("call_2", "get_time", {"tz": "UTC"})]
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (90, 33)


@pytest.mark.parametrize(("finish", "extra", "stop", "sequence"), [
    ("length", {}, "max_tokens", None),
    ("stop", {"stop_reason": "</answer>"}, "stop_sequence", "</answer>"),
    ("content_filter", {}, "refusal", None),
])
def test_openai_stream_stop_reasons(finish, extra, stop, sequence):
    _, events = run_openai([chunk({"content": "partial"}), chunk({}, finish, **extra)])
    assert events[-2][1]["delta"] == {"stop_reason": stop, "stop_sequence": sequence}


def test_openai_refusal_stream():
    _, events = run_openai([chunk({"role": "assistant", "refusal": ""}), chunk({"refusal": "I can't."}),
                            chunk({}, "stop")])
    message = assemble_anthropic(events)
    assert message.content[0].text == "I can't."
    assert message.stop_reason == "refusal"


def test_empty_openai_stream_still_closes_cleanly():
    stream, events = run_openai([])
    assert [name for name, _ in events] == ["message_start", "message_delta", "message_stop"]
    message = assemble_anthropic(events)
    assert message.content == [] and message.stop_reason == "end_turn"
    assert stream.finished


def test_openai_error_chunk_raises():
    stream = OpenAIToAnthropicStream(model="m")
    with pytest.raises(UpstreamError, match="boom"):
        stream.feed({"error": {"message": "boom", "type": "server_error"}})


def test_stream_round_trip_anthropic_to_openai_to_anthropic():
    to_openai = AnthropicToOpenAIStream(model="gpt-4o", include_usage=True)
    to_anthropic = OpenAIToAnthropicStream(model="claude-real")
    events = []
    for event in anthropic_tool_stream():
        for c in to_openai.feed(event):
            events += to_anthropic.feed(c)
    events += to_anthropic.close()

    original_snapshot, bufs = None, {}
    for event in anthropic_tool_stream():
        original_snapshot = accumulate_event(event=event, current_snapshot=original_snapshot, json_bufs=bufs)
    message = assemble_anthropic(events)
    assert message.id == "msg_01Stream"
    assert message.content == Message.model_validate(original_snapshot.model_dump()).content
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (400, 80)
