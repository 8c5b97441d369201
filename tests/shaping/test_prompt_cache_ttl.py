"""The 5m / 1h choice, from the gaps between a prefix's arrivals, on a fake clock."""

from __future__ import annotations

import pytest

from thrifty.shaping import GapCounts, PrefixStats, PromptCachePlanner, PromptCachePolicy, choose_ttl
from thrifty.wire import ANTHROPIC_MESSAGES
from tests.shaping.helpers import FakeClock, agent_messages, anthropic_body, long_text

AUTO = PromptCachePolicy()


@pytest.mark.parametrize("gaps, ttl", [
    (GapCounts(), "5m"),  # never seen before: the cheaper write
    (GapCounts(short=50), "5m"),  # hot: a 5m entry never expires
    (GapCounts(mid=1), "5m"),  # one reuse 5-60 min later is not yet a pattern
    (GapCounts(mid=2), "1h"),
    (GapCounts(short=10, mid=2, long=3), "1h"),  # 2 x 1.15 = 2.30 > 3 x 0.75 = 2.25
    (GapCounts(short=10, mid=2, long=4), "5m"),  # 2.30 < 3.00: the 1h writes would not pay
    (GapCounts(long=5), "5m"),
])
def test_choose_ttl_weighs_mid_gaps_against_long_ones(gaps, ttl):
    assert choose_ttl(gaps, AUTO) == ttl


def test_fixed_ttl_and_min_reuse():
    assert choose_ttl(GapCounts(short=100), PromptCachePolicy(ttl="1h")) == "1h"
    assert choose_ttl(GapCounts(mid=9), PromptCachePolicy(ttl="5m")) == "5m"
    assert choose_ttl(GapCounts(mid=1), PromptCachePolicy(min_reuse_for_1h=1)) == "1h"
    assert choose_ttl(GapCounts(mid=2), PromptCachePolicy(min_reuse_for_1h=3)) == "5m"


def system_ttl(planner, body):
    p = planner.plan(body, wire=ANTHROPIC_MESSAGES, model="claude-sonnet-4-5", tenant="acme")
    return {b.segment: b.ttl for b in p.breakpoints}


def test_a_prefix_reused_every_minute_stays_5m():
    clock = FakeClock()
    planner = PromptCachePlanner(stats=PrefixStats(clock))
    body = anthropic_body(system=long_text(1500))
    ttls = []
    for _ in range(20):
        ttls.append(system_ttl(planner, body)["system"])
        clock.advance(60)
    assert set(ttls) == {"5m"}


def test_a_prefix_reused_every_20_minutes_moves_to_1h_then_back_when_it_goes_quiet():
    clock = FakeClock()
    stats = PrefixStats(clock)
    planner = PromptCachePlanner(stats=stats)
    body = anthropic_body(system=long_text(1500))
    ttls = []
    for _ in range(5):
        ttls.append(system_ttl(planner, body)["system"])
        clock.advance(20 * 60)
    assert ttls == ["5m", "5m", "1h", "1h", "1h"], "1h once two reuses 5-60 min apart were seen"
    for _ in range(3):  # now every 2 hours: the 3h window forgets the 20-minute gaps
        clock.advance(2 * 3600)
        ttl = system_ttl(planner, body)["system"]
    assert ttl == "5m"


def test_the_conversation_and_the_system_get_their_own_ttl_in_a_valid_order():
    clock = FakeClock()
    planner = PromptCachePlanner(stats=PrefixStats(clock))
    system = long_text(1500)
    # A hot system prompt: many users, one call a minute.
    for i in range(30):
        system_ttl(planner, anthropic_body(system=system, messages=[{"role": "user", "content": f"q{i}"}]))
        clock.advance(60)
    # One human conversation on it, answering every 15 minutes.
    messages = agent_messages(1)
    seen = []
    for turn in range(4):
        seen.append(system_ttl(planner, anthropic_body(system=system, messages=messages)))
        messages = messages + agent_messages(1)[1:]
        clock.advance(15 * 60)
    assert seen[0] == {"system": "5m", "history": "5m"}
    assert seen[-1] == {"system": "1h", "history": "1h"}, \
        "the conversation wants 1h, so the system before it is raised to 1h (never 1h after 5m)"
