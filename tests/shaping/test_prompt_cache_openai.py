"""OpenAI: a prompt_cache_key per stable prefix, only where the client set none; nothing reordered."""

from __future__ import annotations

import copy

from thrifty.shaping import PromptCachePlanner, PromptCachePolicy
from thrifty.wire import OPENAI_CHAT
from tests.shaping.helpers import long_text


def body(system="You answer questions about our refund policy.", question="How long do refunds take?", **extra):
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    return {"model": "gpt-4o-mini", "messages": messages, **extra}


def plan(b, tenant="acme", provider=None, model="gpt-4o-mini", planner=None, **policy):
    planner = planner or PromptCachePlanner(PromptCachePolicy(**policy))
    return planner.plan(b, wire=OPENAI_CHAT, model=model, tenant=tenant, provider=provider)


def test_cache_key_is_the_prefix_id_and_the_input_is_untouched():
    b = body()
    before = copy.deepcopy(b)
    p = plan(b)
    assert b == before
    assert p.body["prompt_cache_key"] == p.prefix_id == p.cache_key
    assert p.prefix_id.startswith("thr-") and len(p.prefix_id) == 20
    assert p.body["messages"] is b["messages"], "messages are neither copied nor reordered"
    assert {k: v for k, v in p.body.items() if k != "prompt_cache_key"} == b
    assert p.breakpoints == () and p.changed


def test_the_key_follows_the_stable_part_only():
    a = plan(body(question="one?")).prefix_id
    assert plan(body(question="two?")).prefix_id == a
    assert plan(body(system="Another system prompt.")).prefix_id != a
    assert plan(body(), tenant="globex").prefix_id != a, "two tenants never share a cache key"
    assert plan(body(), model="gpt-4o").prefix_id != a
    with_tools = body(tools=[{"type": "function", "function": {"name": "lookup", "parameters": {}}}])
    assert plan(with_tools).prefix_id != a
    with_format = body(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {}}})
    assert plan(with_format).prefix_id != a


def test_leading_system_and_developer_messages_are_the_stable_part():
    b = body()
    b["messages"].insert(1, {"role": "developer", "content": "Answer in French."})
    two = plan(b).prefix_id
    assert two != plan(body()).prefix_id
    late = body()
    late["messages"].append({"role": "system", "content": "Answer in French."})
    assert plan(late).prefix_id == plan(body()).prefix_id, "a system message after the user's is not stable prefix"


def test_no_stable_part_no_key():
    p = plan(body(system=None))
    assert p.body is not None and "prompt_cache_key" not in p.body and p.prefix_id is None and not p.changed


def test_a_client_key_is_kept():
    b = body(prompt_cache_key="client-key")
    p = plan(b)
    assert p.body is b and p.body["prompt_cache_key"] == "client-key"
    assert p.cache_key is None and p.prefix_id is not None, "still counted under its prefix"


def test_key_only_for_providers_that_accept_it():
    assert "prompt_cache_key" in plan(body(), provider="openai").body
    assert "prompt_cache_key" in plan(body(), provider="azure").body
    groq = plan(body(), provider="groq")
    assert "prompt_cache_key" not in groq.body and groq.prefix_id is not None
    assert "prompt_cache_key" in plan(body(), provider="groq", cache_key_providers=frozenset({"groq"})).body
    assert "prompt_cache_key" not in plan(body(), openai_cache_key=False).body
    assert plan(body(), enabled=False).prefix_id is None


def test_idempotent():
    planner = PromptCachePlanner()
    first = plan(body(system=long_text(1500)), planner=planner)
    again = plan(first.body, planner=planner)
    assert again.body == first.body and again.prefix_id == first.prefix_id and not again.changed
