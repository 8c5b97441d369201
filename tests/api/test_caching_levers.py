"""The caching levers end to end: exact response cache and provider prompt caching, through the
real SDKs, the gateway and the emulator, with what each saved in the ledger."""

from __future__ import annotations

import json
import urllib.request
import uuid
from decimal import Decimal

import anthropic
import openai
import pytest

from tests.conftest import start_stack
from tests.ledger_util import wait_row
from thrifty.cli.localstack import OTHER_KEY


def billed_requests(stack, model: str) -> int:
    with urllib.request.urlopen(f"{stack.emulator.url}/_emulator/billing") as r:
        return json.load(r)["models"].get(model, {}).get("requests", 0)


def ask(stack, content: str, *, key=None, model="gpt-4o-mini", headers=None, **kw):
    with openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key or stack.key, max_retries=0) as c:
        return c.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": content}], temperature=0,
            extra_headers=headers or {}, **kw)


def unique(text: str) -> str:
    return f"{text} [{uuid.uuid4().hex[:8]}]"


def test_repeat_is_answered_from_exact_cache_and_saving_recorded(stack):
    q = unique("What are your opening hours?")
    before = billed_requests(stack, "gpt-4o-mini")
    first, second = ask(stack, q), ask(stack, q)
    assert first.headers["x-thrifty-cache"] == "miss" and second.headers["x-thrifty-cache"] == "exact"
    assert billed_requests(stack, "gpt-4o-mini") == before + 1
    a, b = first.parse(), second.parse()
    assert b.choices[0].message.content == a.choices[0].message.content and b.id != a.id
    assert Decimal(second.headers["x-thrifty-cost-usd"]) == 0
    r1 = wait_row(stack.ledger_path, first.headers["x-thrifty-request-id"])
    r2 = wait_row(stack.ledger_path, second.headers["x-thrifty-request-id"])
    assert r2.cache == "exact" and r2.cost_usd == 0 and r2.served_model == "gpt-4o-mini"
    # The hit saves the baseline of the call that filled the entry (here: no other lever acted on it).
    (hit,) = r2.levers
    assert (hit.lever, hit.saved_usd, hit.estimated) == ("exact_cache", r1.baseline_cost_usd, False)
    assert r1.baseline_cost_usd == r1.cost_usd > 0
    assert r2.baseline_cost_usd == r1.cost_usd


def test_streaming_request_is_replayed_from_cache_as_sse(stack):
    q = unique("Explain refunds")
    whole = ask(stack, q).parse().choices[0].message.content
    with openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key, max_retries=0) as c:
        raw = c.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": q}], temperature=0, stream=True,
            stream_options={"include_usage": True})
        chunks = list(raw.parse())
    assert raw.headers["x-thrifty-cache"] == "exact"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole
    assert chunks[-1].usage is not None


def test_streamed_miss_fills_the_cache_for_both_surfaces(stack):
    q = unique("Stream then repeat")
    with anthropic.Anthropic(base_url=stack.url, api_key=stack.key, max_retries=0) as c:
        kw = dict(model="claude-haiku-4-5", max_tokens=80, messages=[{"role": "user", "content": q}],
                  extra_body={"temperature": 0})
        with c.messages.stream(**kw) as s:
            streamed = s.get_final_message()
        raw = c.messages.with_raw_response.create(**kw)
    assert raw.headers["x-thrifty-cache"] == "exact"
    assert raw.parse().content[0].text == streamed.content[0].text


def test_tenants_never_share_entries(stack):
    q = unique("Shared question")
    assert ask(stack, q).headers["x-thrifty-cache"] == "miss"
    other = ask(stack, q, key=OTHER_KEY)
    assert other.headers["x-thrifty-cache"] == "miss"
    assert wait_row(stack.ledger_path, other.headers["x-thrifty-request-id"]).tenant == "other"


def test_nondeterministic_requests_bypass_and_controls_are_honoured(stack):
    q = unique("Write a poem")
    with openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key, max_retries=0) as c:
        for _ in range(2):
            raw = c.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": q}], temperature=0.9)
            assert raw.headers["x-thrifty-cache"] == "miss"
    assert wait_row(stack.ledger_path, raw.headers["x-thrifty-request-id"]).cache == "bypass"
    q2 = unique("Controls")
    assert ask(stack, q2, headers={"x-thrifty-cache-control": "no-store"}).headers["x-thrifty-cache"] == "miss"
    assert ask(stack, q2).headers["x-thrifty-cache"] == "miss"  # no-store kept nothing
    assert ask(stack, q2, headers={"x-thrifty-cache-control": "no-cache"}).headers["x-thrifty-cache"] == "miss"
    assert ask(stack, q2).headers["x-thrifty-cache"] == "exact"
    with pytest.raises(openai.BadRequestError):
        ask(stack, q2, headers={"x-thrifty-cache-control": "no-stroe"})


def test_volatile_fields_do_not_change_the_key(stack):
    tag = uuid.uuid4().hex[:8]
    a = ask(stack, f"Summarise ticket {tag} received 2026-11-22T10:01:02Z id 3f2b8c1e-9d4a-4b6e-8f00-1a2b3c4d5e6f")
    b = ask(stack, f"Summarise ticket {tag} received 2026-11-23T18:44:09Z id 0c9e7d2a-1b3c-4d5e-8f90-abcdefabcdef")
    assert a.headers["x-thrifty-cache"] == "miss" and b.headers["x-thrifty-cache"] == "exact"


def test_anthropic_prompt_caching_is_added_and_its_saving_recorded(stack):
    system = "You are the support agent of Northwind. " + "Refund rule: within 30 days, with receipt. " * 200
    ids = []
    with anthropic.Anthropic(base_url=stack.url, api_key=stack.key, max_retries=0) as c:
        for q in (unique("first"), unique("second")):
            raw = c.messages.with_raw_response.create(model="claude-sonnet-4-5", max_tokens=40, system=system,
                                                      messages=[{"role": "user", "content": q}])
            ids.append((raw.headers["x-thrifty-request-id"], raw.parse().usage))
    (rid1, u1), (rid2, u2) = ids
    assert u1.cache_creation_input_tokens > 1024 and u2.cache_read_input_tokens == u1.cache_creation_input_tokens
    r1, r2 = wait_row(stack.ledger_path, rid1), wait_row(stack.ledger_path, rid2)
    pc1, pc2 = ({s.lever: s for s in r.levers}["prompt_cache"] for r in (r1, r2))
    assert pc1.saved_usd < 0 < pc2.saved_usd  # a write costs 1.25x, a read 0.1x
    assert r2.baseline_cost_usd == r2.cost_usd + pc2.saved_usd


@pytest.fixture(scope="module")
def redis_stacks(tmp_path_factory, redis_url):
    prefix_db = "redis://127.0.0.1:6379/0"

    def use_redis(cfg):
        cfg["levers"] = {"exact_cache": {"backend": "redis", "redis_url": prefix_db}}

    a = start_stack(tmp_path_factory.mktemp("redis-a"), edit=use_redis)
    b = start_stack(tmp_path_factory.mktemp("redis-b"), edit=use_redis)
    yield a, b
    for s in (a, b):
        s.gateway.stop()
        s.emulator.stop()


def test_redis_backend_shares_entries_between_gateways(redis_stacks):
    a, b = redis_stacks
    q = unique("Replicas share one cache")
    assert ask(a, q).headers["x-thrifty-cache"] == "miss"
    hit = ask(b, q)
    assert hit.headers["x-thrifty-cache"] == "exact"
    assert billed_requests(b, "gpt-4o-mini") == 0


@pytest.fixture(scope="module")
def broken_cache_stack(tmp_path_factory):
    def dead_redis(cfg):
        cfg["levers"] = {"exact_cache": {"backend": "redis", "redis_url": "redis://127.0.0.1:1/0"}}

    s = start_stack(tmp_path_factory.mktemp("dead-redis"), edit=dead_redis)
    yield s
    s.gateway.stop()
    s.emulator.stop()


def test_cache_backend_down_fails_open_and_ledger_says_so(broken_cache_stack):
    s = broken_cache_stack
    raw = ask(s, unique("Cache is down"))
    assert raw.parse().choices[0].message.content and raw.headers["x-thrifty-cache"] == "miss"
    assert wait_row(s.ledger_path, raw.headers["x-thrifty-request-id"]).cache == "unavailable"
