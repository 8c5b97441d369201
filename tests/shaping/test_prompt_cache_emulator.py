"""End to end against the real emulator over HTTP: shaped bodies are accepted and hit the cache."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from thrifty.cli.processes import start_emulator
from thrifty.pricing import PriceBook, cache_discount
from thrifty.shaping import PrefixStats, PromptCachePlanner, PromptCachePolicy
from thrifty.wire import ANTHROPIC_MESSAGES, OPENAI_CHAT
from thrifty.wire.anthropic_usage import usage_from_anthropic
from tests.shaping.helpers import FakeClock, agent_messages, anthropic_body, long_text, tool

ANTHROPIC_HEADERS = {"x-api-key": "emulator-key", "anthropic-version": "2023-06-01"}
OPENAI_HEADERS = {"authorization": "Bearer emulator-key"}


@pytest.fixture(scope="module")
def emulator():
    server = start_emulator(latency_scale=0.0)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            yield http
    finally:
        server.stop()


@pytest.fixture
def http(emulator):
    assert emulator.post("/_emulator/reset", headers=OPENAI_HEADERS).status_code == 200
    return emulator


@pytest.fixture(scope="module")
def prices():
    return PriceBook()


def send_anthropic(http, body):
    r = http.post("/v1/messages", json=body, headers=ANTHROPIC_HEADERS)
    assert r.status_code == 200, r.text
    return usage_from_anthropic(r.json()["usage"]), r.json()["usage"]


def test_two_calls_with_the_same_long_system_prompt_read_the_cache(http, prices):
    stats = PrefixStats()
    planner = PromptCachePlanner(stats=stats)
    system = long_text(2500)
    savings = []
    for question in ("What is the refund window?", "Do you ship to Norway?"):
        body = anthropic_body(system=system, messages=[{"role": "user", "content": question}])
        assert "cache_control" not in str(body), "the client set no breakpoint"
        plan = planner.plan(body, wire=ANTHROPIC_MESSAGES, model="claude-sonnet-4-5", tenant="acme")
        usage, raw = send_anthropic(http, plan.body)
        cost = prices.cost("claude-sonnet-4-5", usage)
        saving = cache_discount(prices, "claude-sonnet-4-5", usage, actual=cost.total)
        stats.observe(plan.prefix_id, usage, cost.total, saving)
        savings.append((raw, saving))
    (first, first_saving), (second, second_saving) = savings
    assert first["cache_creation_input_tokens"] > 2000 and first["cache_read_input_tokens"] == 0
    assert first_saving < 0, "a write costs 1.25x input until it is read"
    assert second["cache_read_input_tokens"] == first["cache_creation_input_tokens"]
    assert second_saving > 0
    assert second_saving == Decimal("0.9") * second["cache_read_input_tokens"] * 3 / Decimal(1_000_000)
    assert first_saving + second_saving > 0
    snap = stats.get(plan.prefix_id)
    assert snap.calls == 2 and snap.hit_rate == 0.5 and snap.saving_usd == first_saving + second_saving


def test_an_agent_loop_reads_its_history_and_the_provider_accepts_every_shape(http, prices):
    planner = PromptCachePlanner()
    tools = [tool("lookup", long_text(900)), tool("refund", long_text(400))]
    system = long_text(1500)
    messages = agent_messages(1)
    reads = []
    for turn in range(4):
        body = anthropic_body(system=system, tools=tools, messages=messages)
        plan = planner.plan(body, wire=ANTHROPIC_MESSAGES, model="claude-sonnet-4-5", tenant="acme")
        assert [b.segment for b in plan.breakpoints] == ["tools", "system", "history"]
        usage, raw = send_anthropic(http, plan.body)
        reads.append(raw["cache_read_input_tokens"])
        messages = messages + [
            {"role": "assistant", "content": [{"type": "tool_use", "id": f"toolu_x{turn}", "name": "lookup",
                                               "input": {"q": long_text(300, f"turn {turn} ")}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"toolu_x{turn}",
                                          "content": f"result {turn}"}]},
        ]
    assert reads[0] == 0
    assert all(b > a for a, b in zip(reads[1:], reads[2:])), "each turn reads the history the last one wrote"
    assert reads[1] > 2500


def test_1h_and_5m_breakpoints_chosen_by_reuse_are_accepted_and_billed_by_ttl(http, prices):
    clock = FakeClock()
    planner = PromptCachePlanner(PromptCachePolicy(min_reuse_for_1h=1), stats=PrefixStats(clock))
    system = long_text(1500)
    messages = agent_messages(1)
    planner.plan(anthropic_body(system=system, messages=messages), wire=ANTHROPIC_MESSAGES,
                 model="claude-sonnet-4-5", tenant="acme")
    clock.advance(20 * 60)  # the system prefix comes back 20 minutes later, in a new conversation
    fresh = agent_messages(1)
    fresh[0] = {"role": "user", "content": "A different conversation."}
    plan = planner.plan(anthropic_body(system=system, messages=fresh), wire=ANTHROPIC_MESSAGES,
                        model="claude-sonnet-4-5", tenant="acme")
    assert [(b.segment, b.ttl) for b in plan.breakpoints] == [("system", "1h"), ("history", "5m")]
    usage, raw = send_anthropic(http, plan.body)
    assert usage.cache_write_1h_tokens > 1400 and usage.cache_write_5m_tokens > 0


def test_openai_cache_keys_keep_tenants_apart(http):
    planner = PromptCachePlanner()
    system = long_text(2000)

    def call(tenant, question):
        body = {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": system},
                                                     {"role": "user", "content": question}]}
        plan = planner.plan(body, wire=OPENAI_CHAT, model="gpt-4o-mini", tenant=tenant)
        assert plan.body["prompt_cache_key"] == plan.prefix_id
        r = http.post("/v1/chat/completions", json=plan.body, headers=OPENAI_HEADERS)
        assert r.status_code == 200, r.text
        return r.json()["usage"]["prompt_tokens_details"]["cached_tokens"]

    assert call("acme", "first?") == 0
    assert call("acme", "second?") >= 1700
    assert call("globex", "first?") == 0, "another tenant's key is another cache"
