"""Replaying a stored answer as a stream, and assembling a stream back into an answer."""

from __future__ import annotations

import copy
import json

import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from thrifty.errors import IncompleteStream
from thrifty.wire import ANTHROPIC_MESSAGES, OPENAI_CHAT, anthropic_translate as translate
from thrifty.wire.anthropic_stream import AnthropicToOpenAIStream
from thrifty.wire.replay import (
    anthropic_sse,
    assemble_anthropic,
    assemble_openai,
    fresh_anthropic_ids,
    fresh_openai_ids,
    openai_sse,
    replay_anthropic,
    replay_openai,
)

USAGE = {"prompt_tokens": 31, "completion_tokens": 140, "total_tokens": 171,
         "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
         "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                       "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
LONG_TEXT = ("The capital of France is Paris. It has been the capital since the 10th century, with a few "
             "interruptions; émigrés, cafés and 🥐 included. ") * 3


def completion(message, finish="stop", **extra):
    return {"id": "chatcmpl-abc123", "object": "chat.completion", "created": 1_715_000_000,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "message": {"role": "assistant", "refusal": None, "annotations": [], **message},
                         "logprobs": None, "finish_reason": finish}],
            "usage": USAGE, "service_tier": "default", "system_fingerprint": "fp_44709d6fcb", **extra}


OPENAI_TEXT = completion({"content": LONG_TEXT})
OPENAI_TOOLS = completion({"content": None, "tool_calls": [
    {"id": "call_A1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris", '
                                                       '"unit": "celsius", "days": 3, "detail": "' + "x" * 80 + '"}'}},
    {"id": "call_B2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]}, "tool_calls")
OPENAI_TEXT_AND_TOOL = completion({"content": "Let me check.", "tool_calls": [
    {"id": "call_C3", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}]}, "tool_calls")
OPENAI_REFUSAL = completion({"content": None, "refusal": "I can't help with that."})
OPENAI_EMPTY = completion({"content": ""}, "length")
OPENAI_LOGPROBS = completion({"content": "Hi"})
OPENAI_LOGPROBS["choices"][0]["logprobs"] = {"content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105],
                                                          "top_logprobs": []}], "refusal": None}
OPENAI_CASES = {"text": OPENAI_TEXT, "tools": OPENAI_TOOLS, "text+tool": OPENAI_TEXT_AND_TOOL,
                "refusal": OPENAI_REFUSAL, "empty": OPENAI_EMPTY, "logprobs": OPENAI_LOGPROBS}


def message(content, stop="end_turn", **extra):
    return {"id": "msg_01XYZ", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": content, "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": 25, "cache_creation_input_tokens": 500, "cache_read_input_tokens": 2000,
                      "cache_creation": {"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 0},
                      "output_tokens": 95, "service_tier": "standard"}, **extra}


ANTHROPIC_TEXT = message([{"type": "text", "text": LONG_TEXT}])
ANTHROPIC_TOOLS = message([
    {"type": "text", "text": "Let me check both."},
    {"type": "tool_use", "id": "toolu_01A", "name": "get_weather",
     "input": {"city": "Paris", "nested": {"days": [1, 2, 3], "unit": "°C"}, "note": "y" * 100}},
    {"type": "tool_use", "id": "toolu_01B", "name": "get_time", "input": {}}], "tool_use")
ANTHROPIC_THINKING = message([
    {"type": "thinking", "thinking": "The user wants a capital. " * 5, "signature": "EqQBCgIYAhIM1gbcDa9GJwZA"},
    {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"},
    {"type": "text", "text": "Paris.", "citations": None}])
ANTHROPIC_CITATIONS = message([{"type": "text", "text": "Paris is the capital.", "citations": [
    {"type": "char_location", "cited_text": "Paris is the capital of France.", "document_index": 0,
     "document_title": "Atlas", "start_char_index": 0, "end_char_index": 31}]}])
ANTHROPIC_STOP_SEQUENCE = message([{"type": "text", "text": "one, two"}], "stop_sequence", stop_sequence="three")
ANTHROPIC_EMPTY = message([], "max_tokens")
ANTHROPIC_CASES = {"text": ANTHROPIC_TEXT, "tools": ANTHROPIC_TOOLS, "thinking": ANTHROPIC_THINKING,
                   "citations": ANTHROPIC_CITATIONS, "stop_sequence": ANTHROPIC_STOP_SEQUENCE,
                   "empty": ANTHROPIC_EMPTY}


# -- OpenAI ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", OPENAI_CASES)
def test_openai_round_trip(name):
    original = OPENAI_CASES[name]
    snapshot = copy.deepcopy(original)
    assert assemble_openai(replay_openai(original, include_usage=True)) == original
    without_usage = assemble_openai(replay_openai(original, include_usage=False))
    assert without_usage == {k: v for k, v in original.items() if k != "usage"}
    assert original == snapshot  # replay does not modify the stored answer


def test_openai_round_trip_fills_fields_a_stream_cannot_carry():
    bare = completion({"content": "hi"})
    del bare["choices"][0]["message"]["refusal"], bare["choices"][0]["message"]["annotations"]
    bare["choices"][0]["message"]["audio"] = None
    again = assemble_openai(replay_openai(bare, include_usage=True))
    assert again["choices"][0]["message"] == {"role": "assistant", "content": "hi", "refusal": None,
                                              "annotations": []}


@pytest.mark.parametrize("name", OPENAI_CASES)
@pytest.mark.parametrize("include_usage", [True, False])
def test_openai_replay_matches_the_stream_schema(name, include_usage, openai_spec):
    chunks = replay_openai(OPENAI_CASES[name], include_usage=include_usage)
    for chunk in chunks:
        openai_spec.validate("CreateChatCompletionStreamResponse", chunk)
    openai_spec.validate("CreateChatCompletionResponse", assemble_openai(chunks))


def test_openai_replay_shape():
    chunks = replay_openai(OPENAI_TEXT, include_usage=True)
    assert all(c["id"] == "chatcmpl-abc123" and c["object"] == "chat.completion.chunk"
               and c["created"] == 1_715_000_000 and c["system_fingerprint"] == "fp_44709d6fcb" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    pieces = [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]]
    assert 2 <= len(pieces) <= 10 and "".join(pieces) == LONG_TEXT
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == USAGE
    assert all("usage" not in c for c in replay_openai(OPENAI_TEXT, include_usage=False))


def test_openai_tool_call_deltas():
    chunks = replay_openai(OPENAI_TOOLS, include_usage=False)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": None, "refusal": None}
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if "tool_calls" in c["choices"][0]["delta"]]
    assert calls[0] == {"index": 0, "id": "call_A1", "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}
    assert all(set(c) == {"index", "function"} for c in calls[1:] if c["index"] == 0 and "id" not in c)
    assert len([c for c in calls if c["index"] == 0]) >= 3  # arguments arrive in several pieces


@pytest.mark.parametrize("name", ["text", "tools", "text+tool", "refusal"])
def test_openai_sdk_accumulates_the_replay_to_the_same_answer(name):
    original = OPENAI_CASES[name]
    state = ChatCompletionStreamState()
    for chunk in replay_openai(original, include_usage=True):
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    got = state.current_completion_snapshot
    want = original["choices"][0]["message"]
    assert got.choices[0].message.content == want["content"]
    assert got.choices[0].message.refusal == want.get("refusal")
    assert [(t.id, t.function.name, t.function.arguments) for t in got.choices[0].message.tool_calls or ()] == [
        (t["id"], t["function"]["name"], t["function"]["arguments"]) for t in want.get("tool_calls") or ()]
    assert got.choices[0].finish_reason == original["choices"][0]["finish_reason"]
    assert got.usage.total_tokens == USAGE["total_tokens"]


def test_openai_several_choices_round_trip():
    two = completion({"content": "A"})
    two["choices"].append({"index": 1, "message": {"role": "assistant", "content": "B", "refusal": None,
                                                   "annotations": []}, "logprobs": None, "finish_reason": "stop"})
    assert assemble_openai(replay_openai(two, include_usage=True)) == two


def test_assembling_an_unfinished_openai_stream_fails():
    chunks = replay_openai(OPENAI_TEXT, include_usage=True)
    with pytest.raises(IncompleteStream):
        assemble_openai(chunks[:-2])  # no finish chunk
    with pytest.raises(IncompleteStream):
        assemble_openai([])
    with pytest.raises(IncompleteStream):
        assemble_openai(chunks[:2] + [{"error": {"message": "overloaded"}}])


def test_openai_sse_framing():
    body = openai_sse(replay_openai(OPENAI_TEXT, include_usage=True))
    frames = body.decode().split("\n\n")
    assert frames[-2:] == ["data: [DONE]", ""]
    parsed = [json.loads(f.removeprefix("data: ")) for f in frames[:-2]]
    assert assemble_openai(parsed) == OPENAI_TEXT


# -- Anthropic ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ANTHROPIC_CASES)
def test_anthropic_round_trip(name):
    original = ANTHROPIC_CASES[name]
    snapshot = copy.deepcopy(original)
    events = replay_anthropic(original)
    assert assemble_anthropic(events) == original
    assert assemble_anthropic([data for _, data in events]) == original
    assert original == snapshot


@pytest.mark.parametrize("name", ANTHROPIC_CASES)
def test_anthropic_sdk_accumulates_the_replay_to_the_same_message(name):
    original = ANTHROPIC_CASES[name]
    snapshot, buffers = None, {}
    for event_name, data in replay_anthropic(original):
        assert data["type"] == event_name
        snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=buffers)
    got = Message.model_validate(snapshot.model_dump()).model_dump(mode="json", exclude_none=True)
    want = Message.model_validate(original).model_dump(mode="json", exclude_none=True)
    assert got == want


def test_anthropic_event_sequence():
    names = [name for name, _ in replay_anthropic(ANTHROPIC_TOOLS)]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_start") == names.count("content_block_stop") == 3
    events = dict(enumerate(replay_anthropic(ANTHROPIC_TOOLS)))
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["usage"]["output_tokens"] == 0
    assert start["usage"]["input_tokens"] == 25
    tool_start = next(d for n, d in events.values() if n == "content_block_start" and d["index"] == 1)
    assert tool_start["content_block"] == {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {}}
    fragments = [d["delta"]["partial_json"] for n, d in events.values()
                 if n == "content_block_delta" and d["index"] == 1]
    assert len(fragments) >= 2 and json.loads("".join(fragments)) == ANTHROPIC_TOOLS["content"][1]["input"]
    delta = next(d for n, d in events.values() if n == "message_delta")
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert delta["usage"] == ANTHROPIC_TOOLS["usage"]


def test_assembling_an_unfinished_anthropic_stream_fails():
    events = replay_anthropic(ANTHROPIC_TOOLS)
    with pytest.raises(IncompleteStream):
        assemble_anthropic(events[:-1])
    with pytest.raises(IncompleteStream):
        assemble_anthropic(events[:3] + [("error", {"type": "error", "error": {"type": "overloaded_error"}})])
    cut_json = [e for e in events if not (e[0] == "content_block_delta" and e[1]["index"] == 1)]
    cut_json.insert(5, ("content_block_delta", {"type": "content_block_delta", "index": 1,
                                                "delta": {"type": "input_json_delta", "partial_json": '{"ci'}}))
    with pytest.raises(IncompleteStream, match="not valid JSON"):
        assemble_anthropic(cut_json)


def test_anthropic_sse_framing():
    body = anthropic_sse(replay_anthropic(ANTHROPIC_TEXT)).decode()
    frames = [f for f in body.split("\n\n") if f]
    pairs = []
    for frame in frames:
        event_line, data_line = frame.split("\n")
        pairs.append((event_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))))
    assert assemble_anthropic(pairs) == ANTHROPIC_TEXT


def test_a_cached_anthropic_stream_can_be_translated_for_an_openai_client():
    """A streamed miss through the translators assembles to what the non-streamed translation gives."""
    stream = AnthropicToOpenAIStream(model="gpt-4o", include_usage=True)
    chunks = [c for _, event in replay_anthropic(ANTHROPIC_TOOLS) for c in stream.feed(event)]
    assembled = assemble_openai(chunks)
    direct = translate.anthropic_response_to_openai(ANTHROPIC_TOOLS, model="gpt-4o")
    assembled["created"] = direct["created"]
    assert assembled == direct


# -- fresh identities -----------------------------------------------------------------------------

def test_fresh_ids_for_openai():
    served = fresh_openai_ids(OPENAI_TOOLS, now=1_800_000_000)
    again = fresh_openai_ids(OPENAI_TOOLS, now=1_800_000_000)
    assert served["id"].startswith("chatcmpl-") and served["id"] not in (OPENAI_TOOLS["id"], again["id"])
    assert served["created"] == 1_800_000_000
    ids = [c["id"] for c in served["choices"][0]["message"]["tool_calls"]]
    assert all(i.startswith("call_") for i in ids) and not {"call_A1", "call_B2"} & set(ids)
    assert len(set(ids)) == 2
    assert OPENAI_TOOLS["id"] == "chatcmpl-abc123"  # the stored answer is untouched
    assert OPENAI_TOOLS["choices"][0]["message"]["tool_calls"][0]["id"] == "call_A1"
    same_otherwise = copy.deepcopy(served)
    same_otherwise.update(id=OPENAI_TOOLS["id"], created=OPENAI_TOOLS["created"])
    for call, old in zip(same_otherwise["choices"][0]["message"]["tool_calls"], ("call_A1", "call_B2")):
        call["id"] = old
    assert same_otherwise == OPENAI_TOOLS
    assert fresh_openai_ids(OPENAI_TEXT, response_id="chatcmpl-thr_1")["id"] == "chatcmpl-thr_1"


def test_fresh_ids_for_anthropic_keep_tool_references_consistent():
    server_tool = message([
        {"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search", "input": {"query": "x"}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01", "content": []},
        {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {}}], "tool_use")
    served = fresh_anthropic_ids(server_tool)
    assert served["id"].startswith("msg_") and served["id"] != "msg_01XYZ" and "created" not in served
    first, result, tool = served["content"]
    assert first["id"].startswith("srvtoolu_") and first["id"] != "srvtoolu_01"
    assert result["tool_use_id"] == first["id"]
    assert tool["id"].startswith("toolu_") and tool["id"] != "toolu_9"
    assert server_tool["content"][0]["id"] == "srvtoolu_01"


def test_wire_replay_picks_the_dialect_format():
    openai_body = openai_sse(OPENAI_CHAT.replay(OPENAI_TEXT, include_usage=True))
    assert openai_body == openai_sse(replay_openai(OPENAI_TEXT, include_usage=True))
    assert b'"usage":null' in openai_body and openai_body.endswith(b"data: [DONE]\n\n")
    assert b'"usage"' not in openai_sse(OPENAI_CHAT.replay(OPENAI_TEXT, include_usage=False))
    events = ANTHROPIC_MESSAGES.replay(ANTHROPIC_TEXT, include_usage=False)
    assert events == [data for _, data in replay_anthropic(ANTHROPIC_TEXT)]
    anthropic_body = b"".join(ANTHROPIC_MESSAGES.encode_event(e) for e in events)
    assert anthropic_body == anthropic_sse(replay_anthropic(ANTHROPIC_TEXT))
    assert anthropic_body.startswith(b"event: message_start\n") and anthropic_body.endswith(
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n')


def test_wire_fresh_ids_pick_the_dialect_format():
    served = OPENAI_CHAT.with_fresh_ids(OPENAI_TOOLS, now=1_800_000_000)
    assert served["id"].startswith("chatcmpl-") and served["created"] == 1_800_000_000
    assert OPENAI_CHAT.with_fresh_ids(OPENAI_TEXT, response_id="chatcmpl-thr_1")["id"] == "chatcmpl-thr_1"
    message_served = ANTHROPIC_MESSAGES.with_fresh_ids(ANTHROPIC_TOOLS)
    assert message_served["id"].startswith("msg_") and "created" not in message_served
    assert ANTHROPIC_MESSAGES.with_fresh_ids(ANTHROPIC_TEXT, response_id="msg_thr_1")["id"] == "msg_thr_1"


def test_wire_assemble_picks_the_dialect_format():
    assert OPENAI_CHAT.assemble(replay_openai(OPENAI_TEXT, include_usage=True)) == OPENAI_TEXT
    assert ANTHROPIC_MESSAGES.assemble(ANTHROPIC_MESSAGES.replay(ANTHROPIC_TOOLS, include_usage=True)) \
        == ANTHROPIC_TOOLS
    with pytest.raises(IncompleteStream):
        OPENAI_CHAT.assemble([])


def test_replay_without_known_usage_sends_no_empty_usage_chunk():
    bare = {k: v for k, v in OPENAI_TEXT.items() if k != "usage"}
    chunks = replay_openai(bare, include_usage=True)
    assert chunks[-1]["choices"] and chunks[-1]["choices"][0]["finish_reason"] == "stop"
