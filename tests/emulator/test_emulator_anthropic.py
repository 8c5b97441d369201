"""The Anthropic messages wire, through the official SDK and raw HTTP."""

from __future__ import annotations

import base64
import json

import anthropic
import jsonschema
import pytest

from thrifty.tokens import count_text_tokens
from thrifty_emulator.prompt import ClaudeTokenizer

USER = [{"role": "user", "content": "Summarise our refund policy in two sentences."}]
HEADERS = {"x-api-key": "emulator-key", "anthropic-version": "2023-06-01"}
LOOKUP_SCHEMA = {"type": "object", "properties": {"order_id": {"type": "string"},
                                                  "priority": {"type": "string", "enum": ["low", "high"]}},
                 "required": ["order_id", "priority"]}
LOOKUP_TOOL = {"name": "lookup_order", "description": "Find an order", "input_schema": LOOKUP_SCHEMA}
USAGE_KEYS = {"input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "cache_creation",
              "output_tokens", "service_tier"}


def raw_post(emulator, body, path="/v1/messages", **headers):
    return emulator.http.post(path, json=body, headers={**HEADERS, **headers})


def sse_events(text: str) -> list[tuple[str, dict]]:
    events = []
    for frame in text.split("\n\n")[:-1]:
        name_line, data_line = frame.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        data = json.loads(data_line[len("data: "):])
        assert data["type"] == name_line[len("event: "):]
        events.append((data["type"], data))
    return events


def test_message_shape(emulator):
    r = raw_post(emulator, {"model": "claude-sonnet-4-5", "max_tokens": 400, "messages": USER})
    assert r.status_code == 200 and r.headers["request-id"].startswith("req_")
    body = r.json()
    assert body["id"].startswith("msg_01") and body["type"] == "message" and body["role"] == "assistant"
    assert body["model"] == "claude-sonnet-4-5-20250929"
    (block,) = body["content"]
    assert block["type"] == "text" and block["text"]
    assert body["stop_reason"] == "end_turn" and body["stop_sequence"] is None
    usage = body["usage"]
    assert set(usage) == USAGE_KEYS
    assert usage["cache_creation"] == {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}
    assert usage["cache_creation_input_tokens"] == usage["cache_read_input_tokens"] == 0
    assert usage["output_tokens"] == ClaudeTokenizer().count(block["text"])
    assert usage["input_tokens"] > ClaudeTokenizer().count(USER[0]["content"]) and usage["service_tier"] == "standard"


def test_sdk_system_prompt_and_token_count(emulator):
    client = emulator.anthropic()
    plain = client.messages.create(model="claude-haiku-4-5", max_tokens=300, messages=USER)
    system = "You are a concise support agent for an online shop."
    as_str = client.messages.create(model="claude-haiku-4-5", max_tokens=300, messages=USER, system=system)
    as_blocks = client.messages.create(model="claude-haiku-4-5", max_tokens=300, messages=USER,
                                       system=[{"type": "text", "text": system}])
    assert as_str.usage.input_tokens == as_blocks.usage.input_tokens
    assert as_str.usage.input_tokens >= plain.usage.input_tokens + count_text_tokens(system)
    counted = client.messages.count_tokens(model="claude-haiku-4-5", messages=USER, system=system)
    assert counted.input_tokens == as_str.usage.input_tokens
    assert client.messages.create(model="claude-haiku-4-5", max_tokens=300, messages=USER, system=system
                                  ).content[0].text == as_str.content[0].text


async def test_async_client(emulator):
    async with emulator.async_anthropic() as client:
        m = await client.messages.create(model="claude-opus-4-1", max_tokens=300, messages=USER)
    assert m.model == "claude-opus-4-1-20250805" and m.content[0].text


def test_max_tokens_and_stop_sequences(emulator):
    client = emulator.anthropic()
    full = client.messages.create(model="claude-sonnet-4-5", max_tokens=1000, messages=USER).content[0].text
    capped = client.messages.create(model="claude-sonnet-4-5", max_tokens=4, messages=USER)
    assert capped.stop_reason == "max_tokens" and capped.usage.output_tokens == 4
    assert full.startswith(capped.content[0].text)
    stop = " " + full.split()[3]
    stopped = client.messages.create(model="claude-sonnet-4-5", max_tokens=1000, messages=USER,
                                     stop_sequences=["#none#", stop])
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == stop
    assert stopped.content[0].text == full[:full.index(stop)]


def test_stream_events(emulator):
    body = {"model": "claude-sonnet-4-5", "max_tokens": 500, "messages": USER}
    whole = raw_post(emulator, body).json()
    r = raw_post(emulator, {**body, "stream": True})
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    names = [n for n, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"} and len(names[3:-3]) > 3
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["model"] == whole["model"]
    assert start["usage"]["input_tokens"] == whole["usage"]["input_tokens"]
    assert events[1][1]["content_block"] == {"type": "text", "text": ""}
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert all(d["delta"]["type"] == "text_delta" for n, d in events if n == "content_block_delta")
    assert text == whole["content"][0]["text"]
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == whole["usage"]["output_tokens"]


def test_sdk_stream(emulator):
    client = emulator.anthropic()
    whole = client.messages.create(model="claude-haiku-4-5", max_tokens=500, messages=USER)
    with client.messages.stream(model="claude-haiku-4-5", max_tokens=500, messages=USER) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == whole.content[0].text == final.content[0].text
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens == whole.usage.input_tokens and final.stop_reason == "end_turn"


def test_tool_use_round_trip(emulator):
    client = emulator.anthropic()
    messages = [{"role": "user", "content": "Where is order 42?"}]
    m = client.messages.create(model="claude-sonnet-4-5", max_tokens=500, messages=messages, tools=[LOOKUP_TOOL])
    assert m.stop_reason == "tool_use"
    (use,) = m.content
    assert use.type == "tool_use" and use.id.startswith("toolu_01") and use.name == "lookup_order"
    jsonschema.validate(use.input, LOOKUP_SCHEMA)

    followup = messages + [{"role": "assistant", "content": [use.model_dump(exclude_none=True)]},
                           {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                                         "content": "shipped yesterday"}]}]
    answer = client.messages.create(model="claude-sonnet-4-5", max_tokens=500, messages=followup, tools=[LOOKUP_TOOL])
    assert answer.stop_reason == "end_turn" and answer.content[0].type == "text"
    assert answer.usage.input_tokens > m.usage.input_tokens

    none = client.messages.create(model="claude-sonnet-4-5", max_tokens=500, messages=messages, tools=[LOOKUP_TOOL],
                                  tool_choice={"type": "none"})
    assert none.stop_reason == "end_turn"
    other = {"name": "cancel_order", "input_schema": {"type": "object", "properties": {"id": {"type": "integer"}}}}
    forced = client.messages.create(model="claude-sonnet-4-5", max_tokens=500, messages=followup,
                                    tools=[LOOKUP_TOOL, other], tool_choice={"type": "tool", "name": "cancel_order"})
    assert forced.stop_reason == "tool_use" and forced.content[0].name == "cancel_order"

    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=500, messages=messages,
                                tools=[LOOKUP_TOOL]) as stream:
        final = stream.get_final_message()
    assert final.content[0].input == use.input and final.stop_reason == "tool_use"
    raw = raw_post(emulator, {"model": "claude-sonnet-4-5", "max_tokens": 500, "messages": messages,
                              "tools": [LOOKUP_TOOL], "stream": True})
    events = sse_events(raw.text)
    assert events[1][1]["content_block"]["type"] == "tool_use" and events[1][1]["content_block"]["input"] == {}
    partial = "".join(d["delta"]["partial_json"] for n, d in events if n == "content_block_delta")
    assert json.loads(partial) == use.input


def test_images_are_accepted_and_counted(emulator):
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": base64.b64encode(b"\x89PNG fake").decode()}}
    client = emulator.anthropic()
    text_only = client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=USER)
    with_image = client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=[
        {"role": "user", "content": [image, {"type": "text", "text": USER[0]["content"]}]}])
    assert with_image.usage.input_tokens - text_only.usage.input_tokens >= 1000


@pytest.mark.parametrize("body, status, kind", [
    ({"model": "claude-sonnet-4-5", "messages": USER}, 400, "invalid_request_error"),
    ({"max_tokens": 10, "messages": USER}, 400, "invalid_request_error"),
    ({"model": "claude-sonnet-4-5", "max_tokens": 10}, 400, "invalid_request_error"),
    ({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "system", "content": "x"}]}, 400,
     "invalid_request_error"),
    ({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": USER, "temperature": 1.5}, 400,
     "invalid_request_error"),
    ({"model": "claude-9", "max_tokens": 10, "messages": USER}, 404, "not_found_error"),
    ({"model": "gpt-4o", "max_tokens": 10, "messages": USER}, 404, "not_found_error"),
])
def test_invalid_requests(emulator, body, status, kind):
    r = raw_post(emulator, body)
    assert r.status_code == status
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == kind and r.json()["error"]["message"]


def test_auth(emulator):
    body = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": USER}
    r = emulator.http.post("/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    bearer = emulator.http.post("/v1/messages", json=body, headers={"authorization": "Bearer emulator-key"})
    assert bearer.status_code == 200
    with pytest.raises(anthropic.NotFoundError):
        emulator.anthropic().messages.create(model="claude-nope", max_tokens=10, messages=USER)
    bad = emulator.http.post("/v1/messages", content=b"[1,", headers={**HEADERS, "content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
