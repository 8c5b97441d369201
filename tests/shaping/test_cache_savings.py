"""The prompt-caching saving of one call: priced without the cache minus the actual cost."""

from __future__ import annotations

from decimal import Decimal

import pytest

from thrifty.contract.usage import Usage
from thrifty.pricing import PriceBook
from thrifty.pricing import cache_discount, uncached

M = Decimal(1_000_000)


@pytest.fixture(scope="module")
def prices():
    return PriceBook()


def test_cache_reads_on_sonnet_save_90_percent_of_their_input_price(prices):
    usage = Usage(input_tokens=200, cache_read_tokens=3000, output_tokens=100)
    saving = cache_discount(prices, "claude-sonnet-4-5", usage)
    assert saving == Decimal("0.9") * 3000 * Decimal(3) / M
    cost = prices.cost("claude-sonnet-4-5", usage).total
    baseline = prices.cost("claude-sonnet-4-5", Usage(input_tokens=3200, output_tokens=100)).total
    assert saving == baseline - cost


def test_writes_not_read_back_cost_money(prices):
    five = cache_discount(prices, "claude-sonnet-4-5", Usage(input_tokens=10, cache_write_5m_tokens=4000))
    assert five == -Decimal("0.25") * 4000 * 3 / M
    hour = cache_discount(prices, "claude-sonnet-4-5", Usage(input_tokens=10, cache_write_1h_tokens=4000))
    assert hour == -Decimal(1) * 4000 * 3 / M


def test_a_write_read_back_once_pays_for_itself(prices):
    write = cache_discount(prices, "claude-sonnet-4-5", Usage(cache_write_5m_tokens=4000))
    read = cache_discount(prices, "claude-sonnet-4-5", Usage(cache_read_tokens=4000))
    assert write + read > 0


def test_openai_cached_input(prices):
    card = prices.card("gpt-4o")
    usage = Usage(input_tokens=500, cache_read_tokens=1536, output_tokens=50)
    assert cache_discount(prices, "gpt-4o", usage) == (card.input - card.cache_read) * 1536 / M


def test_no_cache_tokens_no_saving_and_unknown_models(prices):
    assert cache_discount(prices, "claude-sonnet-4-5", Usage(input_tokens=5000, output_tokens=9)) == 0
    assert cache_discount(prices, "no-such-model-xyz", Usage(cache_read_tokens=100)) is None


def test_an_already_priced_call_is_not_priced_twice(prices):
    usage = Usage(input_tokens=10, cache_read_tokens=2048, cache_write_1h_tokens=1024, output_tokens=7)
    actual = prices.cost("claude-haiku-4-5", usage)
    assert cache_discount(prices, "claude-haiku-4-5", usage, actual=actual.total) == \
        cache_discount(prices, "claude-haiku-4-5", usage)


def test_uncached_keeps_the_prompt_size_and_output():
    usage = Usage(input_tokens=10, cache_read_tokens=20, cache_write_5m_tokens=30, cache_write_1h_tokens=40,
                  output_tokens=50, reasoning_tokens=5)
    u = uncached(usage)
    assert (u.input_tokens, u.prompt_tokens, u.cache_read_tokens, u.cache_write_tokens) == (100, 100, 0, 0)
    assert (u.output_tokens, u.reasoning_tokens) == (50, 5)
