"""The OpenAI chat-completions wire, through the official SDK and raw HTTP, checked against OpenAI's spec."""

from __future__ import annotations

import json

import jsonschema
import openai
import pydantic
import pytest

from thrifty.tokens import count_text_tokens

USER = [{"role": "user", "content": "Summarise our refund policy in two sentences."}]
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "minLength": 2}, "unit": {"type": "string", "enum": ["c", "f"]},
                   "days": {"type": "integer", "minimum": 1, "maximum": 7}},
    "required": ["city", "unit", "days"], "additionalProperties": False,
}
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather forecast",
                                                 "parameters": WEATHER_SCHEMA}}
TIME_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}}


def raw_post(emulator, body, **headers):
    headers.setdefault("authorization", "Bearer emulator-key")
    return emulator.http.post("/v1/chat/completions", json=body, headers=headers)


def sse_payloads(text: str) -> list[str]:
    assert text.endswith("\n\n")
    frames = text.split("\n\n")[:-1]
    assert all(f.startswith("data: ") for f in frames), frames[:3]
    return [f[len("data: "):] for f in frames]


def test_completion_matches_spec_and_counts_tokens(emulator, openai_spec):
    r = raw_post(emulator, {"model": "gpt-4o", "messages": USER, "user": "u-1", "temperature": 0.2})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["x-request-id"].startswith("req_")
    body = r.json()
    openai_spec.validate("CreateChatCompletionResponse", body)
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert body["model"] == "gpt-4o-2024-08-06"
    assert body["service_tier"] == "default" and body["system_fingerprint"].startswith("fp_")
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "stop" and choice["logprobs"] is None
    message = choice["message"]
    assert message["role"] == "assistant" and message["refusal"] is None and message["annotations"] == []
    assert "tool_calls" not in message
    usage = body["usage"]
    assert usage["completion_tokens"] == count_text_tokens(message["content"])
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens"] > count_text_tokens(USER[0]["content"])
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0, "audio_tokens": 0}
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 0, "audio_tokens": 0,
                                                  "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}


def test_answers_are_deterministic_and_varied(emulator):
    client = emulator.openai()
    first = client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    again = client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert first.choices[0].message.content == again.choices[0].message.content
    lengths = set()
    for i in range(8):
        r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"question {i}"}])
        assert 10 <= r.usage.completion_tokens <= 200
        lengths.add(r.usage.completion_tokens)
    assert len(lengths) >= 4
    other_model = client.chat.completions.create(model="gpt-4o", messages=USER)
    assert other_model.choices[0].message.content != first.choices[0].message.content


async def test_async_client(emulator):
    async with emulator.async_openai() as client:
        r = await client.chat.completions.create(model="llama-3.1-8b-instant", messages=USER)
    assert r.model == "llama-3.1-8b-instant"
    assert r.choices[0].message.content and r.choices[0].finish_reason == "stop"


def test_stream_chunks_match_spec_and_the_whole_answer(emulator, openai_spec):
    body = {"model": "gpt-4o", "messages": USER}
    whole = raw_post(emulator, body).json()
    r = raw_post(emulator, {**body, "stream": True, "stream_options": {"include_usage": True}})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    payloads = sse_payloads(r.text)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    for chunk in chunks:
        openai_spec.validate("CreateChatCompletionStreamResponse", chunk)
        assert chunk["object"] == "chat.completion.chunk" and chunk["id"] == chunks[0]["id"]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and chunks[-2]["choices"][0]["delta"] == {}
    content_chunks = [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]]
    assert len(content_chunks) > 3, "content should arrive in several deltas"
    assert "".join(content_chunks) == whole["choices"][0]["message"]["content"]


def test_stream_with_sdk_and_no_usage(emulator):
    stream = emulator.openai().chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
    chunks = list(stream)
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    whole = emulator.openai().chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert text == whole.choices[0].message.content


def test_n_choices(emulator):
    client = emulator.openai()
    r = client.chat.completions.create(model="gpt-4o", messages=USER, n=3)
    assert [c.index for c in r.choices] == [0, 1, 2]
    texts = [c.message.content for c in r.choices]
    assert len(set(texts)) == 3
    assert r.usage.completion_tokens == sum(count_text_tokens(t) for t in texts)
    stream = client.chat.completions.create(model="gpt-4o", messages=USER, n=3, stream=True)
    streamed = ["", "", ""]
    for chunk in stream:
        for c in chunk.choices:
            streamed[c.index] += c.delta.content or ""
    assert streamed == texts


@pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
def test_output_cap_truncates(emulator, param):
    client = emulator.openai()
    full = client.chat.completions.create(model="gpt-4o", messages=USER).choices[0].message.content
    r = client.chat.completions.create(model="gpt-4o", messages=USER, **{param: 5})
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 5
    assert full.startswith(r.choices[0].message.content) and len(r.choices[0].message.content) < len(full)
    stream = client.chat.completions.create(model="gpt-4o", messages=USER, stream=True, **{param: 5})
    chunks = list(stream)
    assert chunks[-1].choices[0].finish_reason == "length"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == r.choices[0].message.content


def test_stop_sequences(emulator):
    client = emulator.openai()
    full = client.chat.completions.create(model="gpt-4o", messages=USER).choices[0].message.content
    words = full.split()
    first_stop, later_stop = " " + words[4], " " + words[8]
    r = client.chat.completions.create(model="gpt-4o", messages=USER, stop=first_stop)
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == full[:full.index(first_stop)]
    assert r.usage.completion_tokens == count_text_tokens(r.choices[0].message.content)
    both = client.chat.completions.create(model="gpt-4o", messages=USER, stop=[later_stop, first_stop])
    assert both.choices[0].message.content == full[:min(full.index(first_stop), full.index(later_stop))]
    never = client.chat.completions.create(model="gpt-4o", messages=USER, stop=["#never#"])
    assert never.choices[0].message.content == full


def test_reasoning_model_reports_reasoning_tokens(emulator):
    client = emulator.openai()
    r = client.chat.completions.create(model="gpt-5-mini", messages=USER)
    details = r.usage.completion_tokens_details
    assert details.reasoning_tokens > 0 and details.reasoning_tokens % 64 == 0
    assert r.usage.completion_tokens == details.reasoning_tokens + count_text_tokens(r.choices[0].message.content)
    minimal = client.chat.completions.create(model="gpt-5-nano", messages=USER, reasoning_effort="minimal")
    assert minimal.usage.completion_tokens_details.reasoning_tokens == 0
    starved = client.chat.completions.create(model="gpt-5-mini", messages=USER, max_completion_tokens=64)
    assert starved.choices[0].finish_reason == "length" and starved.choices[0].message.content == ""
    assert starved.usage.completion_tokens == 64 == starved.usage.completion_tokens_details.reasoning_tokens
    plain = client.chat.completions.create(model="gpt-4o", messages=USER)
    assert plain.usage.completion_tokens_details.reasoning_tokens == 0


def test_tool_call_then_answer(emulator, openai_spec):
    client = emulator.openai()
    messages = [{"role": "user", "content": "Weather in Paris for three days?"}]
    r = client.chat.completions.create(model="gpt-4o", messages=messages, tools=[WEATHER_TOOL])
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function" and call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, WEATHER_SCHEMA)
    assert r.usage.completion_tokens > 0

    followup = messages + [choice.message.model_dump(exclude_none=True),
                           {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'}]
    answer = client.chat.completions.create(model="gpt-4o", messages=followup, tools=[WEATHER_TOOL])
    assert answer.choices[0].finish_reason == "stop" and answer.choices[0].message.content
    assert answer.choices[0].message.tool_calls is None

    none = client.chat.completions.create(model="gpt-4o", messages=messages, tools=[WEATHER_TOOL], tool_choice="none")
    assert none.choices[0].finish_reason == "stop" and none.choices[0].message.tool_calls is None
    forced = client.chat.completions.create(
        model="gpt-4o", messages=messages, tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert forced.choices[0].message.tool_calls[0].function.name == "get_time"

    raw = raw_post(emulator, {"model": "gpt-4o", "messages": messages, "tools": [WEATHER_TOOL], "stream": True})
    chunks = [json.loads(p) for p in sse_payloads(raw.text)[:-1]]
    for chunk in chunks:
        openai_spec.validate("CreateChatCompletionStreamResponse", chunk)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert deltas[0]["tool_calls"][0]["id"].startswith("call_") and deltas[0]["role"] == "assistant"
    streamed_args = "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas if d.get("tool_calls"))
    assert json.loads(streamed_args) == args
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_tool_call_stream_with_sdk(emulator):
    stream = emulator.openai().chat.completions.create(
        model="gpt-4o-mini", messages=USER, tools=[WEATHER_TOOL], stream=True)
    name, arguments, finish = "", "", None
    for chunk in stream:
        for tc in chunk.choices[0].delta.tool_calls or ():
            name += tc.function.name or ""
            arguments += tc.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert name == "get_weather" and finish == "tool_calls"
    jsonschema.validate(json.loads(arguments), WEATHER_SCHEMA)


class Address(pydantic.BaseModel):
    street: str
    zip_code: str


class Person(pydantic.BaseModel):
    name: str
    age: int = pydantic.Field(ge=0, le=120)
    tags: list[str]
    address: Address
    role: str = pydantic.Field(json_schema_extra={"enum": ["admin", "user"]})


def test_structured_outputs(emulator):
    client = emulator.openai()
    parsed = client.chat.completions.parse(model="gpt-4o", messages=USER, response_format=Person)
    person = parsed.choices[0].message.parsed
    assert isinstance(person, Person) and isinstance(person.address, Address)
    assert 0 <= person.age <= 120 and person.role in ("admin", "user")

    schema = {"type": "object", "properties": {
        "items": {"type": "array", "minItems": 2, "maxItems": 4, "items": {"$ref": "#/$defs/item"}},
        "total": {"type": "number", "minimum": 0}, "note": {"type": ["string", "null"]}},
        "required": ["items", "total", "note"], "additionalProperties": False,
        "$defs": {"item": {"type": "object", "properties": {"sku": {"type": "string", "format": "uuid"},
                                                            "qty": {"type": "integer", "minimum": 1}},
                           "required": ["sku", "qty"], "additionalProperties": False}}}
    r = client.chat.completions.create(model="gpt-4o-mini", messages=USER, response_format={
        "type": "json_schema", "json_schema": {"name": "order", "schema": schema, "strict": True}})
    jsonschema.validate(json.loads(r.choices[0].message.content), schema)
    obj = client.chat.completions.create(model="gpt-4o-mini", messages=USER, response_format={"type": "json_object"})
    assert isinstance(json.loads(obj.choices[0].message.content), dict)


@pytest.mark.parametrize("body, status, param", [
    ({"messages": USER}, 400, None),
    ({"model": "gpt-4o"}, 400, "messages"),
    ({"model": "gpt-4o", "messages": []}, 400, "messages"),
    ({"model": "gpt-4o", "messages": USER, "n": 0}, 400, "n"),
    ({"model": "gpt-4o", "messages": USER, "temperature": 3}, 400, "temperature"),
    ({"model": "gpt-4o", "messages": USER, "tool_choice": "required"}, 400, "tool_choice"),
    ({"model": "gpt-4o", "messages": USER, "stream_options": {"include_usage": True}}, 400, "stream_options"),
    ({"model": "gpt-4o", "messages": [{"role": "robot", "content": "hi"}]}, 400, "messages[0].role"),
    ({"model": "gpt-9-ultra", "messages": USER}, 404, None),
    ({"model": "claude-sonnet-4-5", "messages": USER}, 404, None),
])
def test_invalid_requests(emulator, openai_spec, body, status, param):
    r = raw_post(emulator, body)
    assert r.status_code == status
    openai_spec.validate("ErrorResponse", r.json())
    assert r.json()["error"]["param"] == param
    if status == 404:
        assert r.json()["error"]["code"] == "model_not_found"


def test_bad_json_and_auth(emulator, openai_spec):
    bad = emulator.http.post("/v1/chat/completions", content=b"{not json",
                             headers={"authorization": "Bearer emulator-key", "content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    for headers in ({}, {"authorization": "Bearer"}, {"authorization": "Basic abc"}):
        r = emulator.http.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": USER}, headers=headers)
        assert r.status_code == 401
        openai_spec.validate("ErrorResponse", r.json())
    with pytest.raises(openai.NotFoundError):
        emulator.openai().chat.completions.create(model="nope", messages=USER)
    assert emulator.billing()["models"] == {}


def test_model_listing(emulator, openai_spec):
    r = emulator.http.get("/v1/models", headers={"authorization": "Bearer emulator-key"})
    openai_spec.validate("ListModelsResponse", r.json())
    ids = {m.id for m in emulator.openai().models.list()}
    assert ids == {"gpt-4o", "gpt-4o-mini", "gpt-5-nano", "gpt-5-mini", "llama-3.1-8b-instant"}
    assert emulator.openai().models.retrieve("gpt-5-nano").owned_by == "openai"
    assert emulator.http.get("/v1/models").status_code == 401
    claude = {m.id for m in emulator.anthropic().models.list()}
    assert "claude-haiku-4-5-20251001" in claude and "gpt-4o" not in claude


def test_automatic_prefix_caching(emulator, long_text):
    client = emulator.openai()
    system = {"role": "system", "content": long_text(1500)}
    ask = [system, {"role": "user", "content": "What is the refund window?"}]
    first = client.chat.completions.create(model="gpt-4o", messages=ask)
    prompt = first.usage.prompt_tokens
    assert prompt > 1280 and first.usage.prompt_tokens_details.cached_tokens == 0
    second = client.chat.completions.create(model="gpt-4o", messages=ask)
    assert second.usage.prompt_tokens == prompt
    assert second.usage.prompt_tokens_details.cached_tokens == 1024 + 128 * ((prompt - 1024) // 128)

    other_question = [system, {"role": "user", "content": "Who handles escalations for enterprise accounts?"}]
    third = client.chat.completions.create(model="gpt-4o", messages=other_question)
    cached = third.usage.prompt_tokens_details.cached_tokens
    assert cached >= 1024 and (cached - 1024) % 128 == 0 and cached < third.usage.prompt_tokens

    # Scoped per model and per prompt_cache_key; never for short prompts or uncached providers.
    assert client.chat.completions.create(model="gpt-4o-mini", messages=ask).usage.prompt_tokens_details.cached_tokens == 0
    keyed = [client.chat.completions.create(model="gpt-4o", messages=ask, prompt_cache_key="tenant-a")
             for _ in range(2)]
    assert [k.usage.prompt_tokens_details.cached_tokens for k in keyed] == [0, second.usage.prompt_tokens_details.cached_tokens]
    short = [{"role": "user", "content": long_text(600)}]
    assert all(client.chat.completions.create(model="gpt-4o", messages=short).usage.prompt_tokens_details.cached_tokens == 0
               for _ in range(2))
    llama = [client.chat.completions.create(model="llama-3.1-8b-instant", messages=ask) for _ in range(2)]
    assert llama[1].usage.prompt_tokens_details.cached_tokens == 0

    bill = emulator.billing()["models"]["gpt-4o"]
    assert bill["cache_read_tokens"] == (second.usage.prompt_tokens_details.cached_tokens + cached
                                         + keyed[1].usage.prompt_tokens_details.cached_tokens)
    assert bill["cache_write_5m_tokens"] == 0 and bill["cache_write_1h_tokens"] == 0


def test_spec_validation_is_not_vacuous(emulator, openai_spec):
    good = raw_post(emulator, {"model": "gpt-4o", "messages": USER}).json()
    openai_spec.validate("CreateChatCompletionResponse", good)
    broken = [
        {k: v for k, v in good.items() if k != "choices"},
        {**good, "object": "chat.completion.chunk"},
        {**good, "choices": [{**good["choices"][0], "finish_reason": "done"}]},
        {**good, "usage": {**good["usage"], "prompt_tokens": "12"}},
    ]
    for body in broken:
        with pytest.raises(AssertionError):
            openai_spec.validate("CreateChatCompletionResponse", body)
