"""The ExactCache facade: a full miss -> store -> hit cycle, isolation, corruption and a down backend."""

from __future__ import annotations

import logging
from decimal import Decimal
from types import SimpleNamespace

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thrifty.cache import (
    CACHE_CONTROL_HEADER,
    CachePolicy,
    CacheUnavailable,
    ExactCache,
    MemoryLRU,
    RedisStore,
    SQLiteStore,
    cache_key,
    encode_entry,
)
from thrifty.cache.stage import ExactCaching
from thrifty.contract import AnsweredFromCache, Answer, Call, ModelMoved
from thrifty.contract.usage import Usage
from thrifty.pricing import Accountant, PriceBook
from thrifty.wire import ANTHROPIC_MESSAGES, OPENAI_CHAT
from thrifty.wire.openai_chat import usage_to_openai
from thrifty.wire.replay import assemble_openai, replay_openai

POLICY = CachePolicy(ttl_s=300)
BODY = {"model": "gpt-4o-mini", "temperature": 0, "stream": False,
        "messages": [{"role": "user", "content": "What is 2 + 2? (asked at 2024-05-01T10:00:00Z)"}]}
ANSWER = {"id": "chatcmpl-orig", "object": "chat.completion", "created": 1_700_000_000, "model": "gpt-4o-mini",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "4", "refusal": None,
                                               "annotations": []}, "logprobs": None, "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 20, "completion_tokens": 1, "total_tokens": 21}}
USAGE = Usage(input_tokens=20, output_tokens=1)


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture(params=["memory", "sqlite", "redis"], loop_scope="function")
async def cache(request, tmp_path):
    if request.param == "memory":
        backend = MemoryLRU(1 << 20)
    elif request.param == "sqlite":
        backend = SQLiteStore(str(tmp_path / "exact.db"))
    else:
        backend = RedisStore(request.getfixturevalue("redis_url"), prefix=request.getfixturevalue("redis_prefix"))
    c = ExactCache(backend)
    yield c
    await c.close()


async def test_miss_store_hit(cache):
    decision = cache.decide(BODY, {}, POLICY)
    assert decision.read and decision.write and decision.ttl_s == 300
    key = cache.key("acme", OPENAI_CHAT, BODY, POLICY)
    assert await cache.lookup(key) is None
    await cache.store(key, cache.entry(OPENAI_CHAT, ANSWER, USAGE, Decimal("0.0000036"), served_model="gpt-4o-mini",
                                       tier="small", ttl_s=decision.ttl_s))

    # the same question a minute later, streamed, with a different timestamp and spacing: a hit
    again = {**BODY, "stream": True, "messages": [
        {"role": "user", "content": "What is 2 + 2?  (asked at 2024-05-01T10:01:07Z)"}]}
    entry = await cache.lookup(cache.key("acme", OPENAI_CHAT, again, POLICY))
    assert entry is not None
    assert (entry.response, entry.usage, entry.cost_usd, entry.served_model, entry.tier) == (
        ANSWER, USAGE, Decimal("0.0000036"), "gpt-4o-mini", "small")

    served = cache.answer(entry, OPENAI_CHAT)
    assert served["id"] != ANSWER["id"] and served["choices"] == ANSWER["choices"]
    assert assemble_openai(replay_openai(served, include_usage=True)) == served


async def test_tenants_do_not_see_each_others_entries(cache):
    key_a = cache.key("tenant-a", OPENAI_CHAT, BODY, POLICY)
    await cache.store(key_a, cache.entry(OPENAI_CHAT, ANSWER, USAGE, None, ttl_s=60))
    assert await cache.lookup(cache.key("tenant-b", OPENAI_CHAT, BODY, POLICY)) is None
    shared = CachePolicy(namespace="public-faq")
    await cache.store(cache.key("tenant-a", OPENAI_CHAT, BODY, shared),
                      cache.entry(OPENAI_CHAT, ANSWER, USAGE, None, ttl_s=60))
    hit = await cache.lookup(cache.key("tenant-b", OPENAI_CHAT, BODY, shared))
    assert hit is not None and cache.answer(hit, OPENAI_CHAT)["id"] != ANSWER["id"]


async def test_corrupt_entries_are_logged_deleted_and_never_served(cache, caplog):
    key = cache.key("acme", OPENAI_CHAT, BODY, POLICY)
    good = encode_entry(cache.entry(OPENAI_CHAT, ANSWER, USAGE, None, ttl_s=60), key)
    await cache.backend.set(key, good[:-3], 60)  # truncated
    with caplog.at_level(logging.WARNING, logger="thrifty.cache"):
        assert await cache.lookup(key) is None
    assert any("corrupt" in r.getMessage() for r in caplog.records)
    assert await cache.backend.get(key) is None  # removed, so the next answer can be stored

    other = cache.key("someone-else", OPENAI_CHAT, BODY, POLICY)
    await cache.backend.set(key, encode_entry(cache.entry(OPENAI_CHAT, ANSWER, USAGE, None, ttl_s=60), other), 60)
    assert await cache.lookup(key) is None  # a well-formed entry under the wrong key is not served either


async def test_store_ttl_override_and_zero_ttl(cache):
    key = cache.key("acme", OPENAI_CHAT, BODY, POLICY)
    await cache.store(key, cache.entry(OPENAI_CHAT, ANSWER, USAGE, None, ttl_s=60), ttl_s=0)
    assert await cache.lookup(key) is None
    await cache.store(key, cache.entry(OPENAI_CHAT, ANSWER, USAGE, None, ttl_s=60), ttl_s=30)
    entry = await cache.lookup(key)
    assert entry is not None and entry.ttl_s == 30


async def test_entries_past_their_ttl_are_not_served_whatever_the_backend_says():
    clock = FakeClock()
    cache = ExactCache(MemoryLRU(1 << 16, clock=lambda: 0.0), clock=clock)  # a backend that never expires
    key = cache.key("acme", OPENAI_CHAT, BODY, POLICY)
    await cache.store(key, cache.entry(OPENAI_CHAT, ANSWER, USAGE, None, ttl_s=10))
    clock.now += 9
    assert await cache.lookup(key) is not None
    clock.now += 1
    assert await cache.lookup(key) is None


async def test_a_down_backend_fails_open_and_the_caller_can_tell(dead_redis_url):
    cache = ExactCache(RedisStore(dead_redis_url, prefix="thrifty-test:"))
    key = cache.key("acme", OPENAI_CHAT, BODY, POLICY)
    with pytest.raises(CacheUnavailable):
        await cache.lookup(key)
    with pytest.raises(CacheUnavailable):
        await cache.store(key, cache.entry(OPENAI_CHAT, ANSWER, USAGE, None, ttl_s=60))
    await cache.close()


def test_decide_reads_the_cache_control_header():
    cache = ExactCache(MemoryLRU(1024))
    assert cache.decide(BODY, {CACHE_CONTROL_HEADER: "no-store"}, POLICY).reason == "no-store"
    assert cache.decide({**BODY, "temperature": 1}, {}, POLICY).reason == "nondeterministic"


# -- tenant isolation, property-tested -------------------------------------------------------------

tenants = st.text(min_size=1, max_size=12)
namespaces = st.text(min_size=1, max_size=12)
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]),
                                           "content": st.text(max_size=30)}), min_size=1, max_size=3)
bodies = st.fixed_dictionaries({"model": st.sampled_from(["gpt-4o-mini", "claude-x"]), "temperature": st.just(0),
                                "messages": messages},
                               optional={"seed": st.integers(0, 3), "max_tokens": st.integers(1, 5)})


@settings(max_examples=300, deadline=None)
@given(tenant_a=tenants, tenant_b=tenants, body_a=bodies, body_b=bodies,
       surface=st.sampled_from([OPENAI_CHAT, ANTHROPIC_MESSAGES]))
def test_keys_of_different_tenants_never_collide(tenant_a, tenant_b, body_a, body_b, surface):
    key_a = cache_key(tenant_a, surface, body_a, POLICY)
    if tenant_a != tenant_b:
        assert key_a != cache_key(tenant_b, surface, body_b, POLICY)
        assert key_a != cache_key(tenant_b, surface, body_a, POLICY)  # not even for the very same request
    assert key_a == cache_key(tenant_a, surface, dict(body_a), POLICY)


@settings(max_examples=300, deadline=None)
@given(tenant_a=tenants, tenant_b=tenants, namespace=namespaces, body=bodies)
def test_a_declared_shared_namespace_is_the_only_way_to_share(tenant_a, tenant_b, namespace, body):
    shared = CachePolicy(namespace=namespace)
    assert cache_key(tenant_a, OPENAI_CHAT, body, shared) == cache_key(tenant_b, OPENAI_CHAT, body, shared)
    # a tenant whose name equals the namespace still does not reach the shared entries
    assert cache_key(namespace, OPENAI_CHAT, body, POLICY) != cache_key(tenant_a, OPENAI_CHAT, body, shared)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tenant_a=tenants, tenant_b=tenants, body=bodies)
async def test_an_entry_stored_by_one_tenant_is_never_served_to_another(tenant_a, tenant_b, body):
    cache = ExactCache(MemoryLRU(1 << 20))
    await cache.store(cache.key(tenant_a, OPENAI_CHAT, body, POLICY),
                      cache.entry(OPENAI_CHAT, ANSWER, USAGE, None, ttl_s=60))
    hit = await cache.lookup(cache.key(tenant_b, OPENAI_CHAT, body, POLICY))
    assert (hit is not None) == (tenant_a == tenant_b)


async def test_an_answer_stored_without_usage_is_served_with_the_entrys_usage():
    cache = ExactCache(MemoryLRU(1 << 16))
    streamed = assemble_openai(replay_openai(ANSWER, include_usage=False))  # what a usage-less stream yields
    assert "usage" not in streamed
    key = cache.key("acme", OPENAI_CHAT, BODY, POLICY)
    await cache.store(key, cache.entry(OPENAI_CHAT, streamed, USAGE, None, ttl_s=60))
    served = cache.answer(await cache.lookup(key), OPENAI_CHAT)
    assert served["usage"] == usage_to_openai(USAGE)
    assert replay_openai(served, include_usage=True)[-1]["usage"] == usage_to_openai(USAGE)


# -- the stage: a miss fills the cache with its baseline, a hit reports it as its effect -----------

async def test_the_stage_stores_a_miss_with_its_baseline_and_a_hit_reports_it():
    prices = PriceBook()
    stage = ExactCaching(ExactCache(MemoryLRU(1 << 16)), Accountant(prices))
    policy = SimpleNamespace(exact_cache=POLICY)
    upstream_calls = []

    async def routed_upstream(call: Call) -> Answer:  # routing moved the call from gpt-4o to gpt-4o-mini
        upstream_calls.append(call)
        call.route = SimpleNamespace(model="gpt-4o-mini", price_provider=None)
        call.effects.append(ModelMoved("routing", "gpt-4o"))
        return Answer(body=ANSWER, usage=USAGE, cost=prices.cost("gpt-4o-mini", USAGE).total, complete=True)

    def call_for(body):
        return Call(request_id="r", tenant="acme", wire=OPENAI_CHAT, headers={}, body=body, model=body["model"],
                    stream=body.get("stream") is True, policy=policy)

    miss = await stage(call_for(BODY), routed_upstream)
    assert miss.cache == "miss" and miss.body is ANSWER and len(upstream_calls) == 1

    hit_call = call_for({**BODY, "stream": True, "stream_options": {"include_usage": True}})
    hit = await stage(hit_call, routed_upstream)
    assert len(upstream_calls) == 1 and hit.cache == "exact" and hit.cost == 0 and hit.complete
    baseline = prices.cost("gpt-4o", USAGE).total  # what the filling call would have cost sent directly
    assert hit_call.effects == [AnsweredFromCache("exact_cache", baseline, estimated=False)]
    served = assemble_openai([event async for event in hit.events])
    assert served["id"] != ANSWER["id"] and served["choices"] == ANSWER["choices"]
    assert served["usage"] == ANSWER["usage"]
