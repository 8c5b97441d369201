"""Prompt caching: the rules as classes with a fake clock, then through the app and the SDKs."""

from __future__ import annotations

import asyncio
from array import array

import anthropic
import httpx2
import openai
import pytest

from thrifty_emulator import build_app, default_config
from thrifty_emulator.prompt import Block
from thrifty_emulator.prompt_cache import BreakpointCache, CacheUse, PrefixCache
from thrifty_emulator.prompt import ClaudeTokenizer


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
    client = anthropic.AsyncAnthropic(base_url="http://emulator", api_key="emulator-key", http_client=http, max_retries=0)
    system = [{"type": "text", "text": long_text(1300), "cache_control": {"type": "ephemeral"}}]
    ask = {"model": "claude-sonnet-4-5", "max_tokens": 50, "system": system, "messages": [{"role": "user", "content": "hi"}]}
    written = (await client.messages.create(**ask)).usage.cache_creation_input_tokens
    assert written > 1024
    clock.advance(299)
    assert (await client.messages.create(**ask)).usage.cache_read_input_tokens == written
    clock.advance(301)
    again = (await client.messages.create(**ask)).usage
    assert again.cache_read_input_tokens == 0 and again.cache_creation_input_tokens == written

    oa = openai.AsyncOpenAI(base_url="http://emulator/v1", api_key="emulator-key", http_client=http, max_retries=0)
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
    assert abs(w1h - ClaudeTokenizer().count(system_text)) <= 8  # Claude's count (prompt.py)
    assert abs(w5m - ClaudeTokenizer().count(doc_text)) <= 8
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


# --- best-effort caching (docs/emulator.md, "Prompt caching") --------------------------------------

def test_prefix_cache_overflows_per_route_and_recovers():
    clock = FakeClock()
    cache = PrefixCache(clock, prefix_rpm=3)
    prompt = ids(1300)
    assert [cache.lookup_and_store("m", prompt, 300) for _ in range(5)] == [0, 1280, 1280, 0, 0], \
        "beyond 3 requests a minute for one prefix, requests overflow to machines without it"
    assert cache.lookup_and_store("m\x00other-key", prompt, 300) == 0, "another prompt_cache_key: another route"
    clock.advance(61)
    assert cache.lookup_and_store("m", prompt, 300) == 1280, "a minute later the prefix's machine takes it again"
    unlimited = PrefixCache(FakeClock(), prefix_rpm=0)
    assert [unlimited.lookup_and_store("m", prompt, 300) for _ in range(4)] == [0, 1280, 1280, 1280]


def test_openai_caching_overflows_beyond_the_per_prefix_rate(emulator, long_text):
    client = emulator.openai()
    messages = [{"role": "system", "content": long_text(1300, "Overflow. ")}, {"role": "user", "content": "hi"}]
    cached = [client.chat.completions.create(model="gpt-4o", messages=messages).usage.prompt_tokens_details.cached_tokens
              for _ in range(120)]
    hits = sum(1 for c in cached if c)
    assert cached[0] == 0 and all(cached[1:15]), "the first 15 a minute reach the machine that holds the prefix"
    assert hits == 14 and not any(cached[15:]), "the other 105 overflow and miss"
    keyed = client.chat.completions.create(model="gpt-4o", messages=messages, prompt_cache_key="tenant-b")
    assert keyed.usage.prompt_tokens_details.cached_tokens == 0, "prompt_cache_key routes (and caches) apart"
    bill = emulator.billing()["models"]["gpt-4o"]
    assert bill["cache_read_tokens"] == sum(cached)


async def test_the_per_prefix_rate_is_configurable(long_text):
    clock = FakeClock()
    app = build_app(default_config().replace(latency_scale=0, openai_cache_prefix_rpm=40), clock=clock)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://emulator") as http:
        oa = openai.AsyncOpenAI(base_url="http://emulator/v1", api_key="emulator-key", http_client=http, max_retries=0)
        messages = [{"role": "system", "content": long_text(1300)}, {"role": "user", "content": "hi"}]
        cached = [(await oa.chat.completions.create(model="gpt-4o", messages=messages)).usage.prompt_tokens_details
                  .cached_tokens for _ in range(60)]
    assert sum(1 for c in cached if c) == 39


@pytest.fixture(scope="module")
def paced(start_emulator, tmp_path_factory):
    """Real latency (300 ms to the first token), so that requests overlap as they do in production."""
    path = tmp_path_factory.mktemp("paced") / "emulator.yaml"
    path.write_text("""
latency_scale: 1.0
models:
  gpt-4o: {ttft_ms: 300, tokens_per_s: 1000000}
  claude-sonnet-4-5: {ttft_ms: 300, tokens_per_s: 1000000}
""")
    return start_emulator("--config", str(path))


async def test_concurrent_cold_requests_all_miss_and_each_pays_the_write(paced, long_text):
    paced.reset()
    an, oa = paced.async_anthropic(), paced.async_openai()
    system = [{"type": "text", "text": long_text(1300, "Concurrent. "), "cache_control": {"type": "ephemeral"}}]
    ask = {"model": "claude-sonnet-4-5", "max_tokens": 50, "system": system,
           "messages": [{"role": "user", "content": "hi"}]}
    cold = await asyncio.gather(*(an.messages.create(**ask) for _ in range(8)))
    assert all(r.usage.cache_read_input_tokens == 0 for r in cold), "no request had begun answering"
    written = cold[0].usage.cache_creation_input_tokens
    assert written > 1024 and all(r.usage.cache_creation_input_tokens == written for r in cold), \
        "each concurrent cold request pays its own cache write"
    assert (await an.messages.create(**ask)).usage.cache_read_input_tokens == written, "once answered, it is read"
    bill = paced.billing()["models"]["claude-sonnet-4-5"]
    assert bill["cache_write_5m_tokens"] == 8 * written

    messages = [{"role": "system", "content": long_text(1300, "Concurrent. ")}, {"role": "user", "content": "hi"}]
    cold_oa = await asyncio.gather(*(oa.chat.completions.create(model="gpt-4o", messages=messages) for _ in range(8)))
    assert all(r.usage.prompt_tokens_details.cached_tokens == 0 for r in cold_oa)
    warm = await oa.chat.completions.create(model="gpt-4o", messages=messages)
    assert warm.usage.prompt_tokens_details.cached_tokens > 1024
    await an.close()
    await oa.close()


_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"


def test_anthropic_tool_choice_thinking_and_images_invalidate_only_messages(emulator, long_text):
    client = emulator.anthropic()
    tools = [{"name": "lookup", "description": "Find an order", "input_schema": {"type": "object"}}]
    system = [{"type": "text", "text": long_text(1200, "Rules. "), "cache_control": {"type": "ephemeral"}}]

    def ask(extra_block=None, **kw):
        content = [{"type": "text", "text": long_text(600, "Orders. "), "cache_control": {"type": "ephemeral"}},
                   {"type": "text", "text": "Where is order 7?"}]
        if extra_block:
            content.append(extra_block)
        return client.messages.create(model="claude-sonnet-4-5", max_tokens=2048, tools=tools, system=system,
                                      messages=[{"role": "user", "content": content}], **kw).usage

    whole = ask().cache_creation_input_tokens
    assert ask().cache_read_input_tokens == whole
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": _PNG}}
    for change, kw in [("tool_choice", {"tool_choice": {"type": "any"}}),
                       ("thinking", {"thinking": {"type": "enabled", "budget_tokens": 1024}}),
                       ("image", {"extra_block": image})]:
        changed = ask(**kw)
        assert 1024 < changed.cache_read_input_tokens < whole, f"{change}: tools and system stay cached"
        assert changed.cache_creation_input_tokens == whole - changed.cache_read_input_tokens, \
            f"{change}: the message-level cache is written again"


def test_anthropic_changed_tools_invalidate_everything_after_them(emulator, long_text):
    client = emulator.anthropic()
    tools = [{"name": f"tool_{i}", "description": long_text(300), "input_schema": {"type": "object"}} for i in range(5)]
    tools[-1]["cache_control"] = {"type": "ephemeral"}
    system = [{"type": "text", "text": long_text(1200, "Rules. "), "cache_control": {"type": "ephemeral"}}]
    messages = [{"role": "user", "content": [{"type": "text", "text": long_text(600, "Orders. "),
                                              "cache_control": {"type": "ephemeral"}}]}]

    def ask(tools=tools, system=system):
        return client.messages.create(model="claude-sonnet-4-5", max_tokens=50, tools=tools, system=system,
                                      messages=messages).usage

    whole = ask().cache_creation_input_tokens
    assert ask().cache_read_input_tokens == whole
    other_system = [{**system[0], "text": long_text(1200, "Other rules. ")}]
    s = ask(system=other_system)
    assert 1024 < s.cache_read_input_tokens < whole and s.cache_creation_input_tokens > 1024, \
        "a new system: the tools stay cached, system and messages are written again"
    other_tools = [{**tools[0], "description": "changed"}, *tools[1:]]
    t = ask(tools=other_tools)
    assert t.cache_read_input_tokens == 0 and t.cache_creation_input_tokens > 0, "new tools: nothing is read"
