"""The gateway's Anthropic answers, checked strictly against the anthropic SDK's types.

Both ways an Anthropic client is served: passed through from an Anthropic provider, and
translated from an OpenAI one (the canonical form and back). Whole messages validate as
`Message`, every streamed event as `RawMessageStreamEvent`, with no key the SDK has no field for
(tests/sdk_strict.py), and errors as `ErrorResponse`.
"""

from __future__ import annotations

import httpx
import pytest
from anthropic.types import ErrorResponse, Message, RawMessageStreamEvent

from tests.sdk_strict import sse_frames, strict

TOOL = {"name": "lookup_order", "description": "Find an order by number",
        "input_schema": {"type": "object", "properties": {"number": {"type": "string"}}, "required": ["number"]}}


def post(stack, body, **headers):
    return httpx.post(f"{stack.url}/v1/messages", json=body, timeout=30,
                      headers={"x-api-key": stack.key, "anthropic-version": "2023-06-01", **headers})


@pytest.mark.parametrize("model", ["claude-haiku-4-5", "gpt-4o-mini"])  # passed through / translated
@pytest.mark.parametrize("tools", [False, True])
def test_whole_answers_are_sdk_messages(stack, model, tools):
    body = {"model": model, "max_tokens": 60, "messages": [{"role": "user", "content": "Where is order 77?"}]}
    if tools:
        body |= {"tools": [TOOL], "tool_choice": {"type": "tool", "name": "lookup_order"}}
    r = post(stack, body)
    assert r.status_code == 200, r.text
    message = strict(Message, r.content)
    assert message.model.startswith(model)  # the provider may answer with the dated model id
    if tools:
        assert any(b.type == "tool_use" for b in message.content)


@pytest.mark.parametrize("model", ["claude-haiku-4-5", "gpt-4o-mini"])
def test_every_streamed_event_is_an_sdk_event(stack, model):
    body = {"model": model, "max_tokens": 60, "stream": True,
            "messages": [{"role": "user", "content": "Write two sentences about tea."}]}
    r = post(stack, body)
    assert r.status_code == 200, r.text
    frames = sse_frames(r.text)
    kinds = []
    for name, data in frames:
        if name == "ping":
            continue
        event = strict(RawMessageStreamEvent, data)
        assert event.type == name
        kinds.append(name)
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "message_delta" in kinds


def test_errors_are_sdk_error_responses(stack):
    r = post(stack, {"model": "claude-haiku-4-5", "max_tokens": -5, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400
    strict(ErrorResponse, r.content)
    r = post(stack, {"model": "no-such-model", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 404
    strict(ErrorResponse, r.content)
