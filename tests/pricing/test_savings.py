"""The one counterfactual (docs/savings.md), priced from effects: every lever's part, and the sum rule."""

from __future__ import annotations

from decimal import Decimal

import pytest

from thrifty.contract import AnsweredFromCache, BreakpointsAdded, Counted, ModelMoved, Usage
from thrifty.pricing import Accountant, PriceBook
from thrifty.pricing.savings import client_cache_only, uncached

M = Decimal(1_000_000)


@pytest.fixture(scope="module")
def prices() -> PriceBook:
    return PriceBook()


@pytest.fixture(scope="module")
def acc(prices) -> Accountant:
    return Accountant(prices)


def cost(prices, model, usage):
    return prices.cost(model, usage).total


def check_sum(a, actual):
    priced = sum((s.saved_usd for s in a.levers if s.saved_usd is not None), Decimal(0))
    assert a.baseline_usd - actual == priced


def test_no_lever_means_the_baseline_is_the_bill_and_the_provider_cache_is_a_discount(acc, prices):
    # An OpenAI call the provider cached automatically: the client would have had that going direct.
    usage = Usage(input_tokens=500, cache_read_tokens=1536, output_tokens=40)
    actual = cost(prices, "gpt-4o", usage)
    a = acc.account([], model="gpt-4o", provider=None, usage=usage, actual=actual)
    assert a.baseline_usd == actual and a.levers == ()
    card = prices.card("gpt-4o")
    assert a.provider_discount_usd == (card.input - card.cache_read) * 1536 / M > 0


def test_a_cache_key_is_counted_never_priced(acc, prices):
    usage = Usage(input_tokens=500, cache_read_tokens=1536, output_tokens=40)
    actual = cost(prices, "gpt-4o", usage)
    a = acc.account([Counted("prompt_cache", "prompt_cache_key set")], model="gpt-4o", provider=None,
                    usage=usage, actual=actual)
    assert a.baseline_usd == actual
    assert [(s.lever, s.saved_usd, s.note) for s in a.levers] == [("prompt_cache", None, "prompt_cache_key set")]


def test_breakpoints_on_a_request_the_client_never_marked_claim_the_whole_cache_saving(acc, prices):
    usage = Usage(input_tokens=20, cache_read_tokens=3000, output_tokens=50)
    actual = cost(prices, "claude-sonnet-4-5", usage)
    a = acc.account([BreakpointsAdded("prompt_cache", None)], model="claude-sonnet-4-5", provider=None,
                    usage=usage, actual=actual)
    plain = cost(prices, "claude-sonnet-4-5", uncached(usage))
    assert a.baseline_usd == plain
    (saving,) = a.levers
    assert (saving.lever, saving.saved_usd, saving.estimated) == ("prompt_cache", plain - actual, False)
    assert a.provider_discount_usd == 0  # nothing the client would have had cached
    check_sum(a, actual)


def test_a_read_the_clients_own_breakpoint_covers_claims_nothing(acc, prices):
    # Claude Code marks its own prefix; Thrifty added one more inside it: the read was the client's.
    usage = Usage(input_tokens=30, cache_read_tokens=25_895, output_tokens=200)
    actual = cost(prices, "claude-sonnet-4-5", usage)
    a = acc.account([BreakpointsAdded("prompt_cache", client_prefix_tokens=26_000)], model="claude-sonnet-4-5",
                    provider=None, usage=usage, actual=actual)
    assert a.baseline_usd == actual
    assert a.levers[0].saved_usd == 0 and a.levers[0].estimated
    assert a.provider_discount_usd > 0  # shown apart: the client had it anyway


def test_a_write_past_the_clients_prefix_is_thriftys_and_costs_until_it_is_read(acc, prices):
    usage = Usage(input_tokens=10, cache_read_tokens=2000, cache_write_5m_tokens=3000, output_tokens=5)
    u = client_cache_only(usage, 2000, "5m")
    assert (u.cache_read_tokens, u.cache_write_tokens, u.input_tokens) == (2000, 0, 3010)
    actual = cost(prices, "claude-sonnet-4-5", usage)
    a = acc.account([BreakpointsAdded("prompt_cache", 2000)], model="claude-sonnet-4-5", provider=None,
                    usage=usage, actual=actual)
    assert a.levers[0].saved_usd < 0  # a 1.25x write instead of plain input, not yet read back
    check_sum(a, actual)


def test_client_cache_only_keeps_the_clients_writes_at_its_ttl():
    u = client_cache_only(Usage(input_tokens=5, cache_write_1h_tokens=4000, output_tokens=1), 1500, "1h")
    assert (u.cache_write_1h_tokens, u.cache_write_5m_tokens, u.input_tokens) == (1500, 0, 2505)


def test_routing_saves_the_baseline_models_price_on_the_same_usage(acc, prices):
    usage = Usage(input_tokens=1200, output_tokens=300)
    actual = cost(prices, "gpt-4o-mini", usage)
    a = acc.account([ModelMoved("routing", "gpt-4o")], model="gpt-4o-mini", provider=None, usage=usage,
                    actual=actual)
    assert a.baseline_model == "gpt-4o"
    assert a.baseline_usd == cost(prices, "gpt-4o", usage)
    (saving,) = a.levers
    assert saving.lever == "routing" and saving.estimated
    assert saving.saved_usd == cost(prices, "gpt-4o", usage) - actual > 0


def test_levers_chain_innermost_first_and_add_up_exactly(acc, prices):
    # thrifty/auto (baseline claude-opus-4-1) routed to sonnet, a fallback to haiku, Thrifty's breakpoints.
    usage = Usage(input_tokens=40, cache_read_tokens=2500, cache_write_5m_tokens=1200, output_tokens=80)
    actual = cost(prices, "claude-haiku-4-5", usage)
    effects = [ModelMoved("routing", "claude-opus-4-1"), ModelMoved("fallback", "claude-sonnet-4-5"),
               Counted("shaping", "output cap 400"), BreakpointsAdded("prompt_cache", None)]
    a = acc.account(effects, model="claude-haiku-4-5", provider=None, usage=usage, actual=actual)
    by = {s.lever: s for s in a.levers}
    plain = uncached(usage)
    assert by["prompt_cache"].saved_usd == cost(prices, "claude-haiku-4-5", plain) - actual
    assert by["fallback"].saved_usd == cost(prices, "claude-sonnet-4-5", plain) - cost(prices, "claude-haiku-4-5", plain)
    assert by["routing"].saved_usd == cost(prices, "claude-opus-4-1", plain) - cost(prices, "claude-sonnet-4-5", plain)
    assert by["shaping"].saved_usd is None
    assert a.baseline_usd == cost(prices, "claude-opus-4-1", plain)
    check_sum(a, actual)


def test_a_response_cache_hit_saves_the_baseline_of_the_call_that_filled_it(acc):
    a = acc.account([AnsweredFromCache("exact_cache", Decimal("0.0042"), estimated=False)], model=None,
                    provider=None, usage=Usage(), actual=Decimal(0))
    assert a.baseline_usd == Decimal("0.0042")
    assert [(s.lever, s.saved_usd, s.estimated) for s in a.levers] == [("exact_cache", Decimal("0.0042"), False)]


def test_a_discarded_attempt_is_escalations_negative_saving():
    a = Accountant.discarded(Decimal("0.0013"))
    assert a.baseline_usd == 0
    assert [(s.lever, s.saved_usd) for s in a.levers] == [("escalation", Decimal("-0.0013"))]


def test_a_missing_price_leaves_the_baseline_unknown(acc, prices):
    usage = Usage(input_tokens=10, output_tokens=10)
    a = acc.account([ModelMoved("routing", "no-such-model-xyz")], model="gpt-4o-mini", provider=None,
                    usage=usage, actual=cost(prices, "gpt-4o-mini", usage))
    assert a.baseline_usd is None
    a = acc.account([], model="no-such-model-xyz", provider=None, usage=usage, actual=None)
    assert a.baseline_usd is None and a.levers == ()


def test_routing_leaves_the_served_models_reasoning_out_of_the_baseline(acc, prices):
    # gpt-5-nano reasoned for 400 tokens; gpt-4o going direct would not have: the estimate stays low.
    usage = Usage(input_tokens=90, output_tokens=500, reasoning_tokens=400)
    actual = cost(prices, "gpt-5-nano", usage)
    a = acc.account([ModelMoved("routing", "gpt-4o")], model="gpt-5-nano", provider=None, usage=usage,
                    actual=actual)
    assert a.baseline_usd == cost(prices, "gpt-4o", Usage(input_tokens=90, output_tokens=100))
    check_sum(a, actual)


def test_routing_off_a_model_that_caches_automatically_leaves_its_cache_discount_to_the_client(acc, prices):
    # 4,000 prompt tokens, 3/4 of the request in a prefix the baseline (gpt-4o: OpenAI caches
    # prefixes of 1,024+ tokens by itself, in 128-token steps) had lately seen: 2,944 read tokens.
    usage = Usage(input_tokens=4000, output_tokens=100)
    actual = cost(prices, "gpt-4o-mini", usage)
    a = acc.account([ModelMoved("routing", "gpt-4o", baseline_cached_share=0.75)], model="gpt-4o-mini",
                    provider=None, usage=usage, actual=actual)
    warm = Usage(input_tokens=4000 - 2944, cache_read_tokens=2944, output_tokens=100)
    assert a.baseline_usd == cost(prices, "gpt-4o", warm) < cost(prices, "gpt-4o", usage)
    (saving,) = a.levers
    assert saving.lever == "routing" and saving.estimated and saving.saved_usd == a.baseline_usd - actual
    assert a.provider_discount_usd == cost(prices, "gpt-4o", usage) - a.baseline_usd > 0  # the client's, not ours
    check_sum(a, actual)


def test_automatic_cache_tokens_follow_openais_minimum_and_grid():
    from thrifty.pricing.savings import automatic_cache_tokens, with_automatic_cache
    assert automatic_cache_tokens(1023, 1.0) == 0  # below the minimum prompt
    assert automatic_cache_tokens(2000, 0.5) == 0  # the warm prefix (1,000) is under 1,024
    assert automatic_cache_tokens(2000, 0.6) == 1152  # 1,200 floored to the 128-token grid
    assert automatic_cache_tokens(5000, 1.0) == 4992
    assert automatic_cache_tokens(5000, 0.0) == 0
    already = Usage(input_tokens=100, cache_read_tokens=3000, output_tokens=5)
    assert with_automatic_cache(already, 0.5) is already  # reads more than the estimate: kept as billed
