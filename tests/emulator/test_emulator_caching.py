"""Prompt caching: the rules as classes with a fake clock, then through the app and the SDKs."""

from __future__ import annotations

from array import array

import anthropic
import httpx2
import openai
import pytest

from thrifty_emulator import build_app, default_config
from thrifty_emulator.prompt import Block
from thrifty_emulator.prompt_cache import BreakpointCache, CacheUse, PrefixCache
from thrifty.tokens import count_text_tokens


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def ids(n: int, start: int = 0) -> array:
    return array("I", range(start, start + n))


# --- OpenAI prefix cache --------------------------------------------------------------------------

def test_prefix_cache_counts_128_token_steps_from_1024():
    cache = PrefixCache(FakeClock())
    assert cache.lookup_and_store("m", ids(1023), 300) == 0
    assert cache.lookup_and_store("m", ids(1023), 300) == 0, "shorter than 1024 tokens: never cached"
    assert cache.lookup_and_store("m", ids(2000), 300) == 0
    assert cache.lookup_and_store("m", ids(2000), 300) == 1920
    shared = ids(1500)
    shared.extend(ids(500, start=50_000))
    assert cache.lookup_and_store("m", shared, 300) == 1408, "longest 128-step prefix inside the shared 1500"
    assert cache.lookup_and_store("m", ids(1100), 300) == 1024
    assert cache.lookup_and_store("other-model", ids(2000), 300) == 0


def test_prefix_cache_expires_when_idle_and_refreshes_on_hit():
    clock = FakeClock()
    cache = PrefixCache(clock)
    prompt = ids(1300)
    cache.lookup_and_store("m", prompt, 300)
    clock.advance(299)
    assert cache.lookup_and_store("m", prompt, 300) == 1280
    clock.advance(299)
    assert cache.lookup_and_store("m", prompt, 300) == 1280, "the hit refreshed the entry"
    clock.advance(301)
    assert cache.lookup_and_store("m", prompt, 300) == 0
    cache.lookup_and_store("m", prompt, 86_400)
    clock.advance(80_000)
    assert cache.lookup_and_store("m", prompt, 86_400) == 1280


# --- Anthropic breakpoint cache -------------------------------------------------------------------

def blocks(*spec: tuple[int, str | None], tag: str = "") -> list[Block]:
    return [Block(end, f"{tag}{i}".encode(), ttl) for i, (end, ttl) in enumerate(spec)]


def test_breakpoints_write_then_read_split_by_ttl():
    cache = BreakpointCache(FakeClock())
    prompt = blocks((1200, "1h"), (1800, "5m"), (1850, None))
    assert cache.apply("m", prompt, 1024) == CacheUse(read=0, write_5m=600, write_1h=1200)
    assert cache.apply("m", prompt, 1024) == CacheUse(read=1800)
    changed_tail = prompt[:2] + [Block(1900, b"other", None)]
    assert cache.apply("m", changed_tail, 1024) == CacheUse(read=1800)
    assert cache.apply("other-model", prompt, 1024) == CacheUse(write_5m=600, write_1h=1200)


def test_breakpoints_expire_by_their_own_ttl_and_refresh_on_read():
    clock = FakeClock()
    cache = BreakpointCache(clock)
    prompt = blocks((1200, "1h"), (1800, "5m"))
    cache.apply("m", prompt, 1024)
    clock.advance(250)
    assert cache.apply("m", prompt, 1024).read == 1800
    clock.advance(250)
    assert cache.apply("m", prompt, 1024).read == 1800, "the read refreshed the 5m entry"
    clock.advance(301)
    assert cache.apply("m", prompt, 1024) == CacheUse(read=1200, write_5m=600)
    clock.advance(3601)
    assert cache.apply("m", prompt, 1024) == CacheUse(write_5m=600, write_1h=1200)


def test_breakpoints_below_the_minimum_are_not_cached():
    cache = BreakpointCache(FakeClock())
    assert cache.apply("m", blocks((900, "5m"), (950, None)), 1024) == CacheUse()
    assert cache.apply("m", blocks((900, "5m"), (950, None)), 1024) == CacheUse()
    prompt = blocks((900, "5m"), (3000, "5m"), tag="x")
    assert cache.apply("m", prompt, 4096) == CacheUse()
    assert cache.apply("m", prompt, 1024) == CacheUse(write_5m=3000)
    assert cache.apply("m", blocks((10, None)), 0) == CacheUse(), "no breakpoint, no caching"


def test_lookback_finds_an_earlier_breakpoint_within_20_blocks():
    cache = BreakpointCache(FakeClock())
    first = [Block(1100 + 10 * i, f"b{i}".encode(), "5m" if i == 2 else None) for i in range(40)]
    cache.apply("m", first[:3], 1024)  # writes the prefix ending at block 2
    moved = [Block(b.end, b.digest, None) for b in first]
    near = moved[:12] + [Block(moved[12].end, moved[12].digest, "5m")]
    assert cache.apply("m", near, 1024) == CacheUse(read=1120, write_5m=1220 - 1120)
    far = moved[:30] + [Block(moved[30].end, moved[30].digest, "5m")]
    assert cache.apply("m", far, 1024).read == 1220, "block 12 (cached above) is within reach of block 30"
    too_far = moved[:39] + [Block(moved[39].end, moved[39].digest, "5m")]
    cache.store.clear()
    cache.apply("m", first[:3], 1024)
    assert cache.apply("m", too_far, 1024).read == 0


# --- through the app, with the clock injected ------------------------------------------------------

@pytest.fixture
def clocked():
    clock = FakeClock()
    app = build_app(default_config().replace(latency_scale=0), clock=clock)
    # The SDKs here are built on httpx2, so their in-process transport comes from it too.
    return clock, httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://emulator")


async def test_expiry_through_the_sdks(clocked, long_text):
    clock, http = clocked
    client = anthropic.AsyncAnthropic(base_url="http://emulator", api_key="k", http_client=http, max_retries=0)
    system = [{"type": "text", "text": long_text(1300), "cache_control": {"type": "ephemeral"}}]
    ask = {"model": "claude-sonnet-4-5", "max_tokens": 50, "system": system, "messages": [{"role": "user", "content": "hi"}]}
    written = (await client.messages.create(**ask)).usage.cache_creation_input_tokens
    assert written > 1024
    clock.advance(299)
    assert (await client.messages.create(**ask)).usage.cache_read_input_tokens == written
    clock.advance(301)
    again = (await client.messages.create(**ask)).usage
    assert again.cache_read_input_tokens == 0 and again.cache_creation_input_tokens == written

    oa = openai.AsyncOpenAI(base_url="http://emulator/v1", api_key="k", http_client=http, max_retries=0)
    messages = [{"role": "system", "content": long_text(1300)}, {"role": "user", "content": "hi"}]
    await oa.chat.completions.create(model="gpt-4o", messages=messages)
    clock.advance(290)
    assert (await oa.chat.completions.create(model="gpt-4o", messages=messages)).usage.prompt_tokens_details.cached_tokens > 0
    clock.advance(301)
    assert (await oa.chat.completions.create(model="gpt-4o", messages=messages)).usage.prompt_tokens_details.cached_tokens == 0
    await http.aclose()


# --- through HTTP, with the real SDK ---------------------------------------------------------------

def cached_call(client, model="claude-sonnet-4-5", **kw):
    return client.messages.create(model=model, max_tokens=50, **kw).usage


def test_anthropic_5m_and_1h_writes_then_reads(emulator, long_text):
    client = emulator.anthropic()
    system_text, doc_text = long_text(1200, "Handbook. "), long_text(600, "Order history. ")
    system = [{"type": "text", "text": system_text, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]

    def messages(doc: str, question: str):
        return [{"role": "user", "content": [{"type": "text", "text": doc, "cache_control": {"type": "ephemeral"}},
                                             {"type": "text", "text": question}]}]

    first = cached_call(client, system=system, messages=messages(doc_text, "Refund window?"))
    w1h, w5m = first.cache_creation.ephemeral_1h_input_tokens, first.cache_creation.ephemeral_5m_input_tokens
    assert abs(w1h - count_text_tokens(system_text)) <= 8
    assert abs(w5m - count_text_tokens(doc_text)) <= 8
    assert first.cache_creation_input_tokens == w1h + w5m and first.cache_read_input_tokens == 0
    total = client.messages.count_tokens(model="claude-sonnet-4-5", system=system,
                                         messages=messages(doc_text, "Refund window?")).input_tokens
    assert first.input_tokens == total - w1h - w5m and first.input_tokens < 20

    second = cached_call(client, system=system, messages=messages(doc_text, "Refund window?"))
    assert second.cache_read_input_tokens == w1h + w5m and second.cache_creation_input_tokens == 0
    assert second.input_tokens == first.input_tokens
    other_question = cached_call(client, system=system, messages=messages(doc_text, "Who approves refunds?"))
    assert other_question.cache_read_input_tokens == w1h + w5m
    other_doc = cached_call(client, system=system, messages=messages(long_text(600, "Other orders. "), "Refund window?"))
    assert other_doc.cache_read_input_tokens == w1h and other_doc.cache_creation.ephemeral_5m_input_tokens > 500
    assert other_doc.cache_creation.ephemeral_1h_input_tokens == 0

    bill = emulator.billing()["models"]["claude-sonnet-4-5"]
    calls = [first, second, other_question, other_doc]
    assert bill["requests"] == 4
    assert bill["cache_read_tokens"] == sum(u.cache_read_input_tokens for u in calls)
    assert bill["cache_write_1h_tokens"] == w1h
    assert bill["cache_write_5m_tokens"] == sum(u.cache_creation.ephemeral_5m_input_tokens for u in calls)
    assert bill["input_tokens"] == sum(u.input_tokens for u in calls)


def test_anthropic_minimum_cacheable_length_per_model(emulator, long_text):
    client = emulator.anthropic()
    system = [{"type": "text", "text": long_text(1500), "cache_control": {"type": "ephemeral"}}]
    ask = {"system": system, "messages": [{"role": "user", "content": "hi"}]}
    haiku = [cached_call(client, "claude-haiku-4-5", **ask) for _ in range(2)]
    assert all(u.cache_creation_input_tokens == 0 and u.cache_read_input_tokens == 0 for u in haiku), \
        "Haiku 4.5 caches only prefixes of 4096 tokens or more"
    sonnet = [cached_call(client, "claude-sonnet-4-5", **ask) for _ in range(2)]
    assert sonnet[0].cache_creation_input_tokens > 1024 and sonnet[1].cache_read_input_tokens > 1024
    short = {"system": [{**system[0], "text": long_text(800)}], "messages": ask["messages"]}
    assert cached_call(client, "claude-opus-4-1", **short).cache_creation_input_tokens == 0
    big = {"system": [{**system[0], "text": long_text(4400)}], "messages": ask["messages"]}
    assert cached_call(client, "claude-haiku-4-5", **big).cache_creation_input_tokens > 4096


def test_anthropic_tools_and_automatic_breakpoint(emulator, long_text):
    client = emulator.anthropic()
    tools = [{"name": f"tool_{i}", "description": long_text(300), "input_schema": {"type": "object"}}
             for i in range(5)]
    tools[-1]["cache_control"] = {"type": "ephemeral"}
    ask = {"tools": tools, "tool_choice": {"type": "none"}, "messages": [{"role": "user", "content": "hi"}]}
    first, second = cached_call(client, **ask), cached_call(client, **ask)
    assert first.cache_creation_input_tokens > 1024 and second.cache_read_input_tokens == first.cache_creation_input_tokens
    auto = {"messages": [{"role": "user", "content": long_text(1300, "auto ")}],
            "extra_body": {"cache_control": {"type": "ephemeral"}}}
    a1, a2 = cached_call(client, **auto), cached_call(client, **auto)
    assert a1.cache_creation_input_tokens > 1024 and a1.input_tokens == 0
    assert a2.cache_read_input_tokens == a1.cache_creation_input_tokens


@pytest.mark.parametrize("mutate, message", [
    (lambda blocks: [{**b, "cache_control": {"type": "ephemeral"}} for b in blocks], "maximum of 4"),
    (lambda blocks: [{**blocks[0], "cache_control": {"type": "ephemeral"}},
                     {**blocks[1], "cache_control": {"type": "ephemeral", "ttl": "1h"}}], "must not come after"),
    (lambda blocks: [{**blocks[0], "cache_control": {"type": "ephemeral", "ttl": "2h"}}], "ttl"),
    (lambda blocks: [{**blocks[0], "cache_control": {"type": "persistent"}}], "ephemeral"),
])
def test_anthropic_breakpoint_validation(emulator, mutate, message):
    blocks = [{"type": "text", "text": f"part {i}"} for i in range(5)]
    with pytest.raises(anthropic.BadRequestError, match=message):
        emulator.anthropic().messages.create(model="claude-sonnet-4-5", max_tokens=10,
                                             messages=[{"role": "user", "content": mutate(blocks)}])
