"""The automatic prompt cache a routed call would have had on its baseline (routing/baseline_cache.py)."""

from __future__ import annotations

from thrifty.routing.baseline_cache import AutomaticCacheMemory, request_parts

POLICY = "You are the support assistant. " + "Follow the policy. " * 300


def chat(question: str, system: str = POLICY) -> dict:
    return {"model": "gpt-4o", "messages": [{"role": "system", "content": system},
                                           {"role": "user", "content": question}]}


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_shared_system_prompt_is_warm_for_the_next_question_of_the_same_tenant():
    clock = Clock()
    mem = AutomaticCacheMemory(clock=clock)
    assert mem.sight("acme", "gpt-4o", chat("Where is my card?")) == 0.0  # first sight: cold
    clock.t += 30
    share = mem.sight("acme", "gpt-4o", chat("How do I top up?"))
    parts = request_parts(chat("How do I top up?"))
    assert share == sum(len(p) for p in parts[:2]) / sum(len(p) for p in parts)  # preamble + system
    assert 0.9 < share < 1.0
    assert mem.sight("acme", "gpt-4o", chat("How do I top up?")) == 1.0  # an exact repeat: all of it


def test_no_warmth_across_tenants_baselines_or_after_the_lifetime():
    clock = Clock()
    mem = AutomaticCacheMemory(clock=clock, lifetime_s=600)
    mem.sight("acme", "gpt-4o", chat("Where is my card?"))
    assert mem.sight("globex", "gpt-4o", chat("Where is my card?")) == 0.0
    assert mem.sight("acme", "gpt-4.1", chat("Where is my card?")) == 0.0
    clock.t += 601
    assert mem.sight("acme", "gpt-4o", chat("Other question")) == 0.0  # idle past the lifetime
    clock.t += 599
    assert mem.sight("acme", "gpt-4o", chat("A third one")) > 0.9  # the last sight refreshed it


def test_a_different_first_part_makes_everything_after_it_cold():
    mem = AutomaticCacheMemory()
    mem.sight("acme", "gpt-4o", chat("Where is my card?"))
    other = chat("Where is my card?", system="Another policy entirely. " * 300)
    parts = request_parts(other)
    assert mem.sight("acme", "gpt-4o", other) == len(parts[0]) / sum(len(p) for p in parts)  # only the (empty) preamble


def test_memory_is_bounded():
    mem = AutomaticCacheMemory(max_prefixes=10)
    for i in range(50):
        mem.sight("acme", "gpt-4o", chat(f"question {i}", system=f"system {i}"))
    assert len(mem) == 10


def test_beyond_about_15_requests_a_minute_per_route_requests_overflow_and_miss():
    clock = Clock()
    mem = AutomaticCacheMemory(clock=clock)
    shares = []
    for i in range(20):  # 20 questions behind one system prompt within a minute
        shares.append(mem.sight("acme", "gpt-4o", chat(f"question {i}")))
        clock.t += 1
    assert shares[0] == 0.0 and all(s > 0.9 for s in shares[1:15])
    assert shares[15:] == [0.0] * 5  # the 16th and later overflow
    clock.t += 60  # the rate has fallen back: the prefix's machine still holds it
    assert mem.sight("acme", "gpt-4o", chat("later")) > 0.9
    other_key = {**chat("keyed"), "prompt_cache_key": "k1"}  # another route of its own
    assert mem.sight("acme", "gpt-4o", other_key) == 0.0
