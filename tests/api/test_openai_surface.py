"""The real openai SDK against `thrifty serve` against `thrifty emulate`, over loopback HTTP."""

from __future__ import annotations

import json
from decimal import Decimal

import openai
import pytest

from tests.ledger_util import wait_row

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
          "required": ["city", "days"], "additionalProperties": False}
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture
def client(stack):
    with openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key, max_retries=0) as c:
        yield c


@pytest.fixture
def spec(openai_spec):
    return openai_spec


def test_non_streaming_call_is_priced_recorded_and_attributed(stack, client, spec):
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "system", "content": "Be brief."},
                                       {"role": "user", "content": "What is prompt caching?"}],
        user="end-user-7", extra_headers={"x-thrifty-feature": "faq", "x-thrifty-task": "t-1",
                                          "x-thrifty-call-site": "faq.py:12"})
    completion = raw.parse()
    spec.validate("CreateChatCompletionResponse", completion.model_dump(mode="json", exclude_unset=True))
    assert completion.choices[0].message.content
    h = raw.headers
    assert h["x-thrifty-model"] == "gpt-4o-mini" and h["x-thrifty-tier"] == "fast"
    assert h["x-thrifty-cache"] == "miss"
    row = wait_row(stack.ledger_path, h["x-thrifty-request-id"])
    assert (row.tenant, row.feature, row.user, row.task, row.call_site) == ("demo", "faq", "end-user-7", "t-1", "faq.py:12")
    assert row.status == 200 and row.surface == "openai" and row.provider == "openai"
    assert row.prompt_tokens + row.cached_tokens == completion.usage.prompt_tokens
    assert row.completion_tokens == completion.usage.completion_tokens
    assert row.cost_usd == Decimal(h["x-thrifty-cost-usd"]) and row.cost_usd > 0
    assert row.request_hash and len(row.request_hash) == 64


def test_raw_json_validates_against_openapi_spec(stack, spec):
    import httpx

    r = httpx.post(f"{stack.url}/v1/chat/completions", headers={"authorization": f"Bearer {stack.key}"},
                   json={"model": "gpt-5-mini", "messages": [{"role": "user", "content": "hi"}], "n": 2})
    assert r.status_code == 200
    body = r.json()
    spec.validate("CreateChatCompletionResponse", body)
    assert len(body["choices"]) == 2
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0


def test_models_list(stack, client):
    ids = {m.id for m in client.models.list()}
    assert {"gpt-4o-mini", "claude-sonnet-4-5", "fast", "smart"} <= ids


async def test_async_client_concurrent_calls(stack):
    import asyncio

    async with openai.AsyncOpenAI(base_url=f"{stack.url}/v1", api_key=stack.key, max_retries=0) as c:
        results = await asyncio.gather(*(c.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": f"question {i}"}]) for i in range(20)))
    assert all(r.choices[0].message.content for r in results)
    assert len({r.id for r in results}) == 20


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-haiku-4-5"])
def test_streaming_with_usage(stack, client, spec, model):
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "Tell me a story"}], stream=True,
        stream_options={"include_usage": True}, max_tokens=40)
    chunks = list(raw.parse())
    for ch in chunks:
        spec.validate("CreateChatCompletionStreamResponse", ch.model_dump(mode="json", exclude_unset=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish and finish[-1] in ("stop", "length")
    row = wait_row(stack.ledger_path, raw.headers["x-thrifty-request-id"])
    assert row.stream and row.status == 200 and row.ttft_ms is not None
    assert row.completion_tokens == chunks[-1].usage.completion_tokens
    assert row.cost_usd is not None and row.cost_usd > 0


def test_streaming_without_usage_hides_usage_chunk(stack, client):
    chunks = list(client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}], stream=True))
    assert chunks and all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


@pytest.mark.parametrize("model", ["gpt-4o", "claude-sonnet-4-5"])
def test_tools_round_trip(stack, client, model):
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL])
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and "city" in json.loads(call.function.arguments)
    messages += [first.choices[0].message.model_dump(exclude_unset=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "18C, sunny"}]
    second = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].finish_reason == "stop" and second.choices[0].message.content


def test_streaming_tool_call_from_anthropic_model(stack, client):
    chunks = list(client.chat.completions.create(
        model="claude-opus-4-1", messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER_TOOL], stream=True))
    args = "".join(tc.function.arguments or "" for c in chunks if c.choices
                   for tc in (c.choices[0].delta.tool_calls or []))
    assert "city" in json.loads(args)
    assert any(c.choices and c.choices[0].finish_reason == "tool_calls" for c in chunks)


def test_json_schema_response_format(stack, client):
    r = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Plan a trip"}],
        response_format={"type": "json_schema", "json_schema": {"name": "trip", "schema": SCHEMA, "strict": True}})
    data = json.loads(r.choices[0].message.content)
    assert isinstance(data["city"], str) and isinstance(data["days"], int)


def test_max_tokens_and_stop(stack, client):
    r = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Write a lot"}],
                                       max_completion_tokens=5)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 5
    r2 = client.chat.completions.create(model="claude-haiku-4-5", max_tokens=3,
                                        messages=[{"role": "user", "content": "Write a lot"}])
    assert r2.choices[0].finish_reason == "length" and r2.usage.completion_tokens == 3


def test_openai_prompt_cache_tokens_reach_the_ledger(stack, client):
    long_system = "You answer questions about the Thrifty handbook. " + ("Rule: be exact and brief. " * 400)
    ids = []
    for q in ("first question", "second question"):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "system", "content": long_system}, {"role": "user", "content": q}])
        ids.append((raw.headers["x-thrifty-request-id"], raw.parse().usage))
    (_, u1), (rid2, u2) = ids
    assert u2.prompt_tokens_details.cached_tokens >= 1024
    row = wait_row(stack.ledger_path, rid2)
    assert row.cached_tokens == u2.prompt_tokens_details.cached_tokens
    assert row.prompt_tokens == u2.prompt_tokens - u2.prompt_tokens_details.cached_tokens
