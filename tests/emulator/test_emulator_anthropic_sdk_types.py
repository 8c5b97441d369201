"""Anthropic answers of the emulator, checked against the anthropic SDK's own types with no extra keys.

The SDK would parse a response with a misspelt or invented field without complaint, so each answer
is validated strictly (tests/sdk_strict.py): the types of a `Message`, of every
`RawMessageStreamEvent` of a stream, of the `ErrorResponse` of a failure.
"""

from __future__ import annotations

import json

import pytest
from anthropic.types import Message, MessageTokensCount, ModelInfo, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from pydantic import TypeAdapter

from tests.sdk_strict import sse_frames, strict, unknown_keys

HEADERS = {"x-api-key": "emulator-key", "anthropic-version": "2023-06-01"}
MODEL = "claude-sonnet-4-5"
USER = [{"role": "user", "content": "Summarise our refund policy in two sentences."}]
LOOKUP_TOOL = {"name": "lookup_order", "description": "Find an order",
               "input_schema": {"type": "object", "properties": {"order_id": {"type": "string"}},
                                "required": ["order_id"]}}
STREAM_EVENT = TypeAdapter(RawMessageStreamEvent)


def post(emulator, body, path="/v1/messages", **headers):
    return emulator.http.post(path, json=body, headers={**HEADERS, **headers})


def cached_body(long_text, ttl: str | None) -> dict:
    """A long system prompt with a breakpoint and a cached document turn: writes, then reads, the cache."""
    cc = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    system = [{"type": "text", "text": long_text(1200, "Handbook. "), "cache_control": cc}]
    doc = {"type": "text", "text": long_text(600, "Orders. "), "cache_control": {"type": "ephemeral"}}
    return {"model": MODEL, "max_tokens": 60, "system": system,
            "messages": [{"role": "user", "content": [doc, {"type": "text", "text": "Refund window?"}]}]}


BODIES = {
    "plain": lambda long_text: {"model": MODEL, "max_tokens": 400, "messages": USER},
    "tool_use": lambda long_text: {"model": MODEL, "max_tokens": 400, "messages": USER, "tools": [LOOKUP_TOOL],
                                   "tool_choice": {"type": "tool", "name": "lookup_order"}},
    "cache_5m": lambda long_text: cached_body(long_text, None),
    "cache_1h": lambda long_text: cached_body(long_text, "1h"),
}


def test_strict_check_catches_unknown_keys():
    """The check itself: a key the SDK does not model is reported wherever it sits."""
    good = {"id": "msg_01x", "type": "message", "role": "assistant", "model": MODEL, "stop_reason": "end_turn",
            "stop_sequence": None, "content": [{"type": "text", "text": "hi"}],
            "usage": {"input_tokens": 1, "output_tokens": 1,
                      "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}}}
    strict(Message, json.dumps(good))
    bad = json.loads(json.dumps(good))
    bad["usage"]["cache_creation"]["ephemeral_10m_input_tokens"] = 0
    bad["content"][0]["bogus"] = 1
    value = Message.model_validate(bad)  # the SDK alone accepts it
    assert unknown_keys(bad, value) == ["$.content[0].bogus", "$.usage.cache_creation.ephemeral_10m_input_tokens"]
    with pytest.raises(AssertionError, match="bogus"):
        strict(Message, json.dumps(bad))
    with pytest.raises(Exception, match="int_type"):  # strict mode: no "1" for 1
        strict(Message, json.dumps({**good, "usage": {"input_tokens": "1", "output_tokens": 1}}))


@pytest.mark.parametrize("case", list(BODIES))
def test_message_matches_sdk_types(emulator, long_text, case):
    body = BODIES[case](long_text)
    first = post(emulator, body)
    assert first.status_code == 200, first.text
    message = strict(Message, first.content)
    usage = message.usage
    assert usage.cache_creation is not None and usage.service_tier == "standard"
    if case == "tool_use":
        assert message.stop_reason == "tool_use" and [b.type for b in message.content] == ["tool_use"]
        assert isinstance(message.content[0].input["order_id"], str)
    else:
        assert message.content[0].type == "text" and message.content[0].text
    if case.startswith("cache"):
        assert usage.cache_creation_input_tokens > 1500 and usage.cache_read_input_tokens == 0
        split = usage.cache_creation
        assert split.ephemeral_5m_input_tokens + split.ephemeral_1h_input_tokens == usage.cache_creation_input_tokens
        assert (split.ephemeral_1h_input_tokens > 1000) == (case == "cache_1h")
        again = strict(Message, post(emulator, body).content).usage
        assert again.cache_read_input_tokens == usage.cache_creation_input_tokens
        assert again.cache_creation_input_tokens == 0 and again.input_tokens == usage.input_tokens


def prime(emulator, body, cache_state: str) -> None:
    """Clear the prompt cache, then fill it when the round is about reading it."""
    emulator.reset()
    if cache_state == "read":
        assert post(emulator, body).status_code == 200


@pytest.mark.parametrize("case", list(BODIES))
def test_stream_events_match_sdk_types(emulator, long_text, case):
    body = BODIES[case](long_text)
    for cache_state in ("write", "read") if case.startswith("cache") else ("write",):
        prime(emulator, body, cache_state)
        whole = post(emulator, body).json()
        prime(emulator, body, cache_state)  # the stream meets the cache as the whole answer did
        r = post(emulator, {**body, "stream": True})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = []
        for name, data in sse_frames(r.text):
            if name == "ping":  # "Event streams may also include any number of ping events"; not in the union
                assert json.loads(data) == {"type": "ping"}
                continue
            event = strict(STREAM_EVENT, data)
            assert event.type == name
            events.append(event)
        assert events[0].type == "message_start" and events[-1].type == "message_stop"
        start, delta = events[0].message, events[-2]
        assert delta.type == "message_delta" and start.content == [] and start.stop_reason is None
        # message_start holds the input side; message_delta's usage is cumulative and final.
        final = whole["usage"]
        assert start.usage.model_dump(exclude={"output_tokens"}, exclude_none=True) == \
            {k: v for k, v in final.items() if k != "output_tokens"}
        for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens"):
            assert getattr(delta.usage, key) == final[key], key
        assert delta.delta.stop_reason == whole["stop_reason"]
        if cache_state == "read":
            assert final["cache_read_input_tokens"] > 1500


@pytest.mark.parametrize("request_body, headers, status, kind", [
    ({"model": MODEL, "messages": USER}, {}, 400, "invalid_request_error"),
    ({"model": MODEL, "max_tokens": 10, "messages": USER, "temperature": 3}, {}, 400, "invalid_request_error"),
    ({"model": "claude-9", "max_tokens": 10, "messages": USER}, {}, 404, "not_found_error"),
    ({"model": MODEL, "max_tokens": 10, "messages": USER}, {"x-api-key": ""}, 401, "authentication_error"),
    ({"model": MODEL, "max_tokens": 10, "messages": USER}, {"x-emulator-fault": "429"}, 429, "rate_limit_error"),
    ({"model": MODEL, "max_tokens": 10, "messages": USER}, {"x-emulator-fault": "500"}, 500, "api_error"),
    ({"model": MODEL, "max_tokens": 10, "messages": USER}, {"x-emulator-fault": "529"}, 529, "overloaded_error"),
])
def test_error_bodies_match_sdk_types(emulator, request_body, headers, status, kind):
    r = post(emulator, request_body, **headers)
    assert r.status_code == status
    error = strict(ErrorResponse, r.content)
    assert error.type == "error" and error.error.type == kind and error.error.message
    assert error.request_id == r.headers["request-id"]


def test_unknown_path_error_matches_sdk_types(emulator):
    r = emulator.http.post("/v1/messages/nope", json={}, headers=HEADERS)
    assert r.status_code == 404 and strict(ErrorResponse, r.content).error.type == "not_found_error"


def test_count_tokens_and_models_match_sdk_types(emulator):
    counted = post(emulator, {"model": MODEL, "messages": USER}, "/v1/messages/count_tokens")
    assert strict(MessageTokensCount, counted.content).input_tokens > 0
    listing = emulator.http.get("/v1/models", headers=HEADERS).json()
    assert listing["data"] and set(listing) == {"data", "has_more", "first_id", "last_id"}
    for entry in listing["data"]:
        strict(ModelInfo, json.dumps(entry))
    one = emulator.http.get(f"/v1/models/{MODEL}", headers=HEADERS)
    assert strict(ModelInfo, one.content).id.startswith(MODEL)
