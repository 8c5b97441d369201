"""Tier routing through the gateway: `thrifty/auto` goes to the cheapest tier the rules allow."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import start_stack
from tests.ledger_util import wait_row


@pytest.fixture(scope="module")
def routed_stack(tmp_path_factory):
    def tiers(cfg):
        cfg["routing"] = {
            "tiers": {"fast": ["gpt-4o-mini", "gpt-5-nano"], "standard": ["gpt-4o"], "heavy": ["claude-opus-4-1"]},
            "default_tier": "standard",
            "rules": [{"name": "trivial", "when": {"request_type": ["classification", "extraction"]}, "tier": "fast"},
                      {"name": "agents", "when": {"tools": True}, "tier": "heavy"}],
        }

    s = start_stack(tmp_path_factory.mktemp("routing"), edit=tiers)
    yield s
    s.gateway.stop()
    s.emulator.stop()


def call(stack, messages, **kw):
    with openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key, max_retries=0) as c:
        return c.chat.completions.with_raw_response.create(model="thrifty/auto", messages=messages, **kw)


def test_auto_routes_by_request_shape(routed_stack):
    s = routed_stack
    cls = call(s, [{"role": "user", "content": "Classify this ticket as billing, bug or other: I was charged twice"}])
    assert cls.headers["x-thrifty-tier"] == "fast"
    assert cls.headers["x-thrifty-model"] == "gpt-5-nano"  # the cheapest healthy deployment of the tier
    row = wait_row(s.ledger_path, cls.headers["x-thrifty-request-id"])
    assert row.requested_model == "thrifty/auto" and row.served_model == "gpt-5-nano" and row.tier == "fast"

    essay = call(s, [{"role": "user", "content": "Write a detailed essay on the history of double-entry bookkeeping."}])
    assert essay.headers["x-thrifty-tier"] == "standard" and essay.headers["x-thrifty-model"] == "gpt-4o"

    tool = {"type": "function", "function": {"name": "search", "parameters": {"type": "object", "properties": {}}}}
    agent = call(s, [{"role": "user", "content": "Research our refund policy."}], tools=[tool])
    assert agent.headers["x-thrifty-tier"] == "heavy" and agent.headers["x-thrifty-model"] == "claude-opus-4-1"


def test_client_may_ask_for_a_tier_and_concrete_models_are_honoured(routed_stack):
    s = routed_stack
    assert call(s, [{"role": "user", "content": "Hi"}]).headers["x-thrifty-tier"] == "standard"
    with openai.OpenAI(base_url=f"{s.url}/v1", api_key=s.key, max_retries=0) as c:
        raw = c.chat.completions.with_raw_response.create(model="thrifty/heavy", messages=[{"role": "user", "content": "Hi"}])
        assert raw.headers["x-thrifty-tier"] == "heavy"
        raw = c.chat.completions.with_raw_response.create(model="gpt-4o", messages=[
            {"role": "user", "content": "Classify: 'refund please'"}])
        assert raw.headers["x-thrifty-model"] == "gpt-4o"
