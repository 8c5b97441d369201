"""The OpenAI Responses API (`/v1/responses`): the real openai SDK against `thrifty serve` against
`thrifty emulate`, served by translation to chat completions, by an OpenAI and an Anthropic model.
Every answer and stream event is validated strictly against the SDK's own types."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent

import thrifty.wire
from tests.conftest import start_stack
from tests.ledger_util import wait_row
from tests.sdk_strict import strict
from thrifty.cli import localstack
from thrifty.pricing import PriceBook

MODELS = ["gpt-4o-mini", "claude-haiku-4-5"]
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
          "required": ["city", "days"], "additionalProperties": False}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_stack(tmp_path_factory.mktemp("responses"), timeout_s=3.0)
    yield s
    s.gateway.stop()
    s.emulator.stop()


@pytest.fixture
def client(stack):
    with openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key, max_retries=0) as c:
        yield c


def _billing(stack) -> dict:
    return stack.billing()["models"]


def _post(stack, body: dict) -> httpx.Response:
    return httpx.post(f"{stack.url}/v1/responses", headers={"authorization": f"Bearer {stack.key}"},
                      json=body, timeout=30)


def _events(text: str) -> list[dict]:
    events = []
    for frame in text.split("\n\n"):
        if frame:
            lines = dict(line.split(": ", 1) for line in frame.split("\n"))
            assert set(lines) == {"event", "data"}, frame
            event = json.loads(lines["data"])
            assert event["type"] == lines["event"]
            strict(ResponseStreamEvent, lines["data"])
            events.append(event)
    return events


@pytest.mark.parametrize("model", MODELS)
def test_non_streaming_answer_is_a_strict_response_priced_as_invoiced(stack, client, model):
    before = _billing(stack).get(model, {})
    raw = client.responses.with_raw_response.create(model=model, instructions="Be brief.",
                                                    input="What is prompt caching?", max_output_tokens=60,
                                                    extra_headers={"x-thrifty-feature": "responses"})
    strict(Response, raw.content)
    r = raw.parse()
    assert r.object == "response" and r.status in ("completed", "incomplete") and r.output_text
    assert r.output[0].type == "message" and r.output[0].content[0].type == "output_text"
    row = wait_row(stack.ledger_path, raw.headers["x-thrifty-request-id"])
    assert (row.status, row.surface, row.served_model, row.feature) == (200, "openai_responses", model, "responses")
    assert row.prompt_tokens + row.cached_tokens == r.usage.input_tokens
    assert row.cached_tokens == r.usage.input_tokens_details.cached_tokens
    assert row.completion_tokens == r.usage.output_tokens
    assert row.reasoning_tokens == r.usage.output_tokens_details.reasoning_tokens
    assert row.cost_usd == Decimal(raw.headers["x-thrifty-cost-usd"]) and row.cost_usd > 0
    after = _billing(stack)[model]
    delta = {k: after[k] - before.get(k, 0) for k in after if isinstance(after[k], int)}
    assert delta["requests"] == 1
    assert (delta["input_tokens"], delta["output_tokens"]) == (row.prompt_tokens, row.completion_tokens)
    invoice = localstack.invoice_from_billing({"models": {model: delta}}, PriceBook())[model]
    assert abs(row.cost_usd - invoice) < Decimal("0.000001"), (row.cost_usd, invoice)


@pytest.mark.parametrize("model", MODELS)
def test_stream_events_are_typed_numbered_and_complete(stack, model):
    with httpx.stream("POST", f"{stack.url}/v1/responses", headers={"authorization": f"Bearer {stack.key}"},
                      json={"model": model, "input": [{"role": "user", "content": [
                          {"type": "input_text", "text": "Tell me a story"}]}], "stream": True,
                          "max_output_tokens": 40}, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        rid = r.headers["x-thrifty-request-id"]
        events = _events(r.read().decode())
    kinds = [e["type"] for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          kinds[-1]] and kinds[-1] in ("response.completed", "response.incomplete")
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    final = events[-1]["response"]
    assert text and final["output"][0]["content"][0]["text"] == text
    row = wait_row(stack.ledger_path, rid)
    assert row.stream and row.status == 200 and row.surface == "openai_responses"
    assert row.completion_tokens == final["usage"]["output_tokens"] > 0 and row.cost_usd > 0


@pytest.mark.parametrize("model", MODELS)
def test_sdk_stream_helper_and_tool_calls_round_trip(stack, client, model):
    with client.responses.stream(model=model, input="Weather in Paris?", tools=[WEATHER]) as s:
        events = list(s)
        first = s.get_final_response()
    assert any(e.type == "response.function_call_arguments.delta" for e in events)
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    call = first.output[-1]
    assert call.type == "function_call" and call.name == "get_weather" and done[0].arguments == call.arguments
    assert "city" in json.loads(call.arguments)
    second = client.responses.create(model=model, tools=[WEATHER], input=[
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "18C, sunny"}])
    assert second.status == "completed" and second.output_text and second.output[0].type == "message"


def test_json_schema_structured_output_and_reasoning(stack, client):
    r = client.responses.create(model="gpt-5-mini", input="Plan a trip", reasoning={"effort": "low", "summary": "auto"},
                                text={"format": {"type": "json_schema", "name": "trip", "schema": SCHEMA,
                                                 "strict": True}})
    data = json.loads(r.output_text)
    assert isinstance(data["city"], str) and isinstance(data["days"], int)
    assert r.usage.output_tokens_details.reasoning_tokens > 0


def test_output_cap_gives_an_incomplete_response(stack, client):
    r = client.responses.create(model="gpt-4o", input="Write a lot", max_output_tokens=16)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 16


def test_bad_input_gets_openai_400s(stack):
    cases = [({"model": "gpt-4o-mini"}, "input"),
             ({"model": "gpt-4o-mini", "input": "hi", "previous_response_id": "resp_1"}, "previous_response_id"),
             ({"model": "gpt-4o-mini", "input": "hi", "tools": [{"type": "custom", "name": "x"}]}, "tools[0].type"),
             ({"model": "gpt-4o-mini", "input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
             ({"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": "many"}, "max_output_tokens")]
    for body, param in cases:
        r = _post(stack, body)
        assert r.status_code == 400, (body, r.text)
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error" and err["param"] == param, (body, err)
    assert "store" in _post(stack, cases[1][0]).json()["error"]["message"]


def test_stored_responses_are_not_served(stack):
    r = httpx.get(f"{stack.url}/v1/responses/resp_123", headers={"authorization": f"Bearer {stack.key}"})
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"


def test_exact_cache_serves_a_stored_answer_whole_and_as_a_stream(stack):
    body = {"model": "gpt-4o-mini", "input": "What is the refund policy? (cache test)", "temperature": 0}
    first, second = _post(stack, body), _post(stack, body)
    assert (first.headers["x-thrifty-cache"], second.headers["x-thrifty-cache"]) == ("miss", "exact")
    strict(Response, second.content)
    a, b = first.json(), second.json()
    assert a["id"] != b["id"] and a["output"][0]["id"] != b["output"][0]["id"]
    assert a["output"][0]["content"] == b["output"][0]["content"] and b["usage"] == a["usage"]
    with httpx.stream("POST", f"{stack.url}/v1/responses", headers={"authorization": f"Bearer {stack.key}"},
                      json={**body, "stream": True}, timeout=30) as r:
        assert r.headers["x-thrifty-cache"] == "exact"
        events = _events(r.read().decode())
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == a["output"][0]["content"][0]["text"]


def test_replay_of_a_stored_answer_is_its_stream_and_assembles_back():
    """What the exact cache uses: replay, assemble and fresh ids."""
    wire = thrifty.wire.get("openai_responses")
    completion = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o",
                  "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                      "role": "assistant", "content": "Checking.", "tool_calls": [
                          {"id": "call_1", "type": "function",
                           "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]}}],
                  "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42,
                            "prompt_tokens_details": {"cached_tokens": 10},
                            "completion_tokens_details": {"reasoning_tokens": 4}}}
    answer = wire.response_from_canonical(completion, "gpt-4o")
    strict(Response, json.dumps(answer))
    assert [i["type"] for i in answer["output"]] == ["message", "function_call"]
    assert answer["usage"]["input_tokens"] == 30 and answer["usage"]["input_tokens_details"]["cached_tokens"] == 10
    assert answer["usage"]["output_tokens_details"]["reasoning_tokens"] == 4
    events = wire.replay(answer, include_usage=True)
    for e in events:
        strict(ResponseStreamEvent, json.dumps(e))
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    again = wire.assemble(events)
    def same(r):  # a replay gives its items new ids, as a cached answer gets anyway
        return [{k: v for k, v in i.items() if k != "id"} for i in r["output"]], r["usage"], r["status"]
    assert same(again) == same(answer) and again["id"] == answer["id"]
    fresh = wire.with_fresh_ids(answer)
    assert fresh["id"] != answer["id"] and fresh["output"][1]["call_id"] != "call_1"
    assert fresh["output"][1]["arguments"] == '{"city":"Oslo"}'
    assert wire.answer_view(answer).text == "Checking."
    assert wire.usage_of(answer["usage"]) == wire.usage_of(wire.usage_body(wire.usage_of(answer["usage"])))
