"""The real anthropic SDK against `thrifty serve` against `thrifty emulate`."""

from __future__ import annotations

import anthropic
import pytest

from tests.ledger_util import wait_row

TOOL = {"name": "lookup_order", "description": "Find an order",
        "input_schema": {"type": "object", "properties": {"order_id": {"type": "string"}},
                         "required": ["order_id"]}}


@pytest.fixture
def client(stack):
    with anthropic.Anthropic(base_url=stack.url, api_key=stack.key, max_retries=0) as c:
        yield c


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "gpt-4o-mini"])
def test_messages_non_streaming(stack, client, model):
    raw = client.messages.with_raw_response.create(
        model=model, max_tokens=200, system="You are terse.",
        messages=[{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi."},
                  {"role": "user", "content": "What can you do?"}],
        extra_headers={"x-thrifty-feature": "chat"}, metadata={"user_id": "u-42"})
    msg = raw.parse()
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.content[0].type == "text" and msg.content[0].text
    assert msg.stop_reason in ("end_turn", "max_tokens")
    row = wait_row(stack.ledger_path, raw.headers["x-thrifty-request-id"])
    assert row.surface == "anthropic" and row.feature == "chat" and row.user == "u-42"
    assert row.served_model == model and row.completion_tokens == msg.usage.output_tokens
    assert row.cost_usd is not None and row.cost_usd > 0


@pytest.mark.parametrize("model", ["claude-haiku-4-5", "gpt-4o"])
def test_messages_streaming(stack, client, model):
    with client.messages.stream(model=model, max_tokens=64,
                                messages=[{"role": "user", "content": "Stream please"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text and final.content[0].text == text
    assert final.usage.output_tokens > 0 and final.usage.input_tokens > 0


@pytest.mark.parametrize("model", ["claude-opus-4-1", "gpt-4o"])
def test_tool_use_and_result(stack, client, model):
    msgs = [{"role": "user", "content": "Where is order 881?"}]
    first = client.messages.create(model=model, max_tokens=300, tools=[TOOL], messages=msgs)
    assert first.stop_reason == "tool_use"
    use = next(b for b in first.content if b.type == "tool_use")
    assert use.name == "lookup_order" and "order_id" in use.input
    msgs += [{"role": "assistant", "content": [b.model_dump(exclude_unset=True) for b in first.content]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "shipped"}]}]
    second = client.messages.create(model=model, max_tokens=300, tools=[TOOL], messages=msgs)
    assert second.stop_reason == "end_turn" and second.content[0].type == "text"


def test_cache_control_passes_through_and_is_billed(stack, client):
    system = [{"type": "text", "text": "Company handbook. " + ("Section: always cite the policy. " * 300),
               "cache_control": {"type": "ephemeral"}}]
    first = client.messages.with_raw_response.create(
        model="claude-sonnet-4-5", max_tokens=50, system=system, messages=[{"role": "user", "content": "Q1"}])
    second = client.messages.with_raw_response.create(
        model="claude-sonnet-4-5", max_tokens=50, system=system, messages=[{"role": "user", "content": "Q2"}])
    u1, u2 = first.parse().usage, second.parse().usage
    assert u1.cache_creation_input_tokens > 0 and u2.cache_read_input_tokens == u1.cache_creation_input_tokens
    r1 = wait_row(stack.ledger_path, first.headers["x-thrifty-request-id"])
    r2 = wait_row(stack.ledger_path, second.headers["x-thrifty-request-id"])
    assert r1.cache_write_tokens == u1.cache_creation_input_tokens
    assert r2.cached_tokens == u2.cache_read_input_tokens
    assert r2.cost_usd < r1.cost_usd  # reads cost 0.1x input, writes 1.25x
