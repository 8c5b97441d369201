"""Google Gemini as a provider: a gateway with a `kind: gemini` provider in front of the emulator's
`generateContent` endpoints, called through the official openai and anthropic SDKs."""

from __future__ import annotations

import json
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest

from tests.conftest import start_stack
from tests.ledger_util import wait_row
from thrifty.cli import localstack
from thrifty.contract.usage import Usage
from thrifty.pricing import PriceBook
from thrifty.wire import GEMINI, OPENAI_CHAT, upstream_request
from thrifty.wire.gemini_translate import (
    GeminiToCanonicalStream,
    response_to_canonical,
    usage_from_gemini,
)

FLASH, PRO = "gemini-2.5-flash", "gemini-2.5-pro"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}


def _add_gemini(config: dict) -> None:
    base = config["providers"]["openai"]["base_url"].removesuffix("/v1")
    config["providers"]["gemini"] = {"kind": "gemini", "base_url": base, "api_key": "emulator-key", "timeout_s": 10}
    config["providers"]["gemini-wrong-key"] = {"kind": "gemini", "base_url": base, "api_key": "not-the-key"}
    for model in (FLASH, PRO):
        config["deployments"][model] = {"provider": "gemini", "model": model, "price_provider": "google"}
    config["deployments"]["gemini-wrong-key"] = {"provider": "gemini-wrong-key", "model": FLASH,
                                                 "price_provider": "google"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_stack(tmp_path_factory.mktemp("gemini"), edit=_add_gemini, timeout_s=5.0)
    yield s
    s.gateway.stop()
    s.emulator.stop()


@pytest.fixture
def client(stack):
    with openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key, max_retries=0) as c:
        yield c


def _billing(stack) -> dict:
    return stack.billing()["models"]


def _invoiced(stack, before: dict, model: str) -> tuple[dict, Decimal]:
    after, old = _billing(stack)[model], before.get(model, {})
    delta = {k: v - old.get(k, 0) for k, v in after.items() if isinstance(v, int)}
    card = PriceBook().card(model, "google")
    assert card is not None and card.provider == "google"
    usage = Usage(input_tokens=delta["input_tokens"], cache_read_tokens=delta["cache_read_tokens"],
                  output_tokens=delta["output_tokens"], reasoning_tokens=delta["reasoning_tokens"])
    return delta, localstack.linear_cost(card, usage)


@pytest.mark.parametrize("model", [FLASH, PRO])
def test_whole_answer_is_priced_as_invoiced_thinking_included(stack, client, model):
    before = _billing(stack)
    raw = client.chat.completions.with_raw_response.create(
        model=model, max_tokens=4000, messages=[{"role": "system", "content": "Be brief."},
                                               {"role": "user", "content": "What does a gateway do?"}])
    r = raw.parse()
    assert r.choices[0].message.content and r.choices[0].finish_reason in ("stop", "length")
    row = wait_row(stack.ledger_path, raw.headers["x-thrifty-request-id"])
    assert (row.status, row.provider, row.served_model) == (200, "gemini", model)
    delta, invoice = _invoiced(stack, before, model)
    assert delta["requests"] == 1 and delta["reasoning_tokens"] > 0  # 2.5 models think by default
    assert r.usage.completion_tokens_details.reasoning_tokens == delta["reasoning_tokens"]
    assert (delta["input_tokens"], delta["output_tokens"]) == (row.prompt_tokens, row.completion_tokens)
    assert row.cost_usd == Decimal(raw.headers["x-thrifty-cost-usd"]) == invoice > 0, (row.cost_usd, invoice)


def test_stream_is_priced_as_invoiced(stack, client):
    before = _billing(stack)
    with client.chat.completions.with_streaming_response.create(
            model=FLASH, max_tokens=4000, stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "Tell me a short story"}]) as resp:
        rid = resp.headers["x-thrifty-request-id"]
        chunks = list(resp.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    usage = next(c.usage for c in chunks if c.usage is not None)
    assert text and finishes in (["stop"], ["length"])
    row = wait_row(stack.ledger_path, rid)
    assert (row.status, row.stream, row.completion_tokens) == (200, True, usage.completion_tokens)
    delta, invoice = _invoiced(stack, before, FLASH)
    assert delta["requests"] == 1 and delta["output_tokens"] == row.completion_tokens and delta["reasoning_tokens"] > 0
    assert row.cost_usd == invoice > 0, (row.cost_usd, invoice)


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_call_round_trip(stack, client, stream):
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    kw = {"model": FLASH, "max_tokens": 4000, "tools": [WEATHER], "tool_choice": "required"}
    if stream:
        chunks = list(client.chat.completions.create(messages=messages, stream=True, **kw))
        calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
        call_id, name, args = calls[0].id, calls[0].function.name, calls[0].function.arguments
    else:
        r = client.chat.completions.create(messages=messages, **kw)
        assert r.choices[0].finish_reason == "tool_calls"
        tc = r.choices[0].message.tool_calls[0]
        call_id, name, args = tc.id, tc.function.name, tc.function.arguments
    assert name == "get_weather" and "city" in json.loads(args)
    messages += [{"role": "assistant", "content": None, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}]},
        {"role": "tool", "tool_call_id": call_id, "content": '{"temp_c": 18}'}]
    r2 = client.chat.completions.create(model=FLASH, max_tokens=4000, tools=[WEATHER], messages=messages)
    assert r2.choices[0].message.content and r2.choices[0].finish_reason in ("stop", "length")


def test_anthropic_clients_reach_gemini_too(stack):
    with anthropic.Anthropic(base_url=stack.url, api_key=stack.key, max_retries=0) as c:
        m = c.messages.create(model=FLASH, max_tokens=4000, system="Be brief.",
                              messages=[{"role": "user", "content": "hi"}])
        with c.messages.stream(model=FLASH, max_tokens=4000, messages=[{"role": "user", "content": "hi"}]) as s:
            streamed = s.get_final_message()
        with pytest.raises(anthropic.APIStatusError) as info:
            c.messages.create(model="gemini-wrong-key", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert m.content[0].text and m.stop_reason in ("end_turn", "max_tokens") and m.usage.output_tokens > 0
    assert streamed.content[0].text and streamed.usage.output_tokens > 0
    assert info.value.status_code == 502 and info.value.body["type"] == "error"  # Anthropic's shape


def test_a_key_gemini_refuses_is_the_gateways_502_in_openai_shape(stack, client):
    before = _billing(stack)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="gemini-wrong-key", max_tokens=10,
                                       messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 502 and info.value.body["code"] == "upstream_credentials_refused"
    assert "not-the-key" not in json.dumps(info.value.body)
    assert _billing(stack) == before


def test_the_emulator_speaks_googles_shapes(stack):
    url = f"{stack.emulator.url}/v1beta/models/{FLASH}:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "generationConfig": {"maxOutputTokens": 300}}
    ok = httpx.post(url, headers={"x-goog-api-key": "emulator-key"}, json=body).json()
    meta = ok["usageMetadata"]
    assert ok["candidates"][0]["content"]["role"] == "model" and ok["candidates"][0]["finishReason"] in ("STOP", "MAX_TOKENS")
    assert meta["totalTokenCount"] == meta["promptTokenCount"] + meta["candidatesTokenCount"] + meta["thoughtsTokenCount"]
    assert httpx.post(url, params={"key": "emulator-key"}, json=body).status_code == 200
    bad = httpx.post(url, headers={"x-goog-api-key": "nope"}, json=body)
    assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert httpx.post(url, json=body).json()["error"]["status"] == "PERMISSION_DENIED"
    unknown = httpx.post(url.replace(FLASH, "gemini-9"), headers={"x-goog-api-key": "emulator-key"}, json=body)
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, 404)
    odd = httpx.post(url, headers={"x-goog-api-key": "emulator-key"}, json={**body, "nonsense": 1})
    assert odd.status_code == 400 and "nonsense" in odd.json()["error"]["message"]


# --- translation ------------------------------------------------------------------------------

def test_canonical_request_to_gemini():
    body = {"model": "x", "max_tokens": 50, "temperature": 0.2, "top_p": 0.9, "stop": "END",
            "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}},
            "tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"},
                         {"role": "assistant", "content": None, "tool_calls": [
                             {"id": "c1", "type": "function", "function": {"name": "get_weather",
                                                                           "arguments": '{"city": "P"}'}}]},
                         {"role": "tool", "tool_call_id": "c1", "content": '{"t": 1}'}]}
    out = upstream_request(OPENAI_CHAT, GEMINI, body, FLASH, 1024)
    assert out["systemInstruction"] == {"parts": [{"text": "S"}]}
    assert out["contents"] == [
        {"role": "user", "parts": [{"text": "Q"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "P"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"t": 1}}}]}]
    assert out["generationConfig"] == {"maxOutputTokens": 50, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"],
                                       "responseMimeType": "application/json", "responseSchema": {"type": "object"}}
    assert out["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    assert GEMINI.output_cap(GEMINI.with_output_cap(out, 7)) == 7 and GEMINI.stops(out) == ["END"]


def test_usage_metadata_cached_and_thinking_tokens():
    u = usage_from_gemini({"promptTokenCount": 100, "cachedContentTokenCount": 60, "candidatesTokenCount": 20,
                           "thoughtsTokenCount": 30, "totalTokenCount": 150})
    assert u == Usage(input_tokens=40, cache_read_tokens=60, output_tokens=50, reasoning_tokens=30)
    assert usage_from_gemini(GEMINI.usage_body(u)) == u


@pytest.mark.parametrize("reason, expected", [("STOP", "stop"), ("MAX_TOKENS", "length"),
                                              ("SAFETY", "content_filter"), ("RECITATION", "content_filter")])
def test_answers_and_finish_reasons(reason, expected):
    resp = {"candidates": [{"content": {"role": "model", "parts": [{"text": "thinking", "thought": True},
                                                                   {"text": "Hi"}]}, "finishReason": reason}],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 1}}
    out = response_to_canonical(resp, FLASH)
    assert out["choices"][0]["message"]["content"] == "Hi"  # thought summaries are not the answer
    assert out["choices"][0]["finish_reason"] == expected and out["usage"]["prompt_tokens"] == 5


def test_stream_chunks_to_canonical():
    t = GeminiToCanonicalStream(FLASH)
    out = t.feed({"candidates": [{"content": {"parts": [{"text": "He"}]}}], "usageMetadata": {"promptTokenCount": 3}})
    out += t.feed({"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]},
                                   "finishReason": "STOP"}],
                   "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4, "thoughtsTokenCount": 2}})
    out += t.close()
    deltas = [c["choices"][0]["delta"] for c in out if c["choices"]]
    assert deltas[1] == {"content": "He"}
    assert deltas[2]["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a":1}'}
    assert out[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert t.usage == Usage(input_tokens=3, output_tokens=6, reasoning_tokens=2) and out[-1]["usage"]["completion_tokens"] == 6
