"""Pricing: exact agreement with genai-prices' calc_price, overrides, batch, cards, unknown models."""

from __future__ import annotations

import json
import logging
import socket
from datetime import UTC, datetime
from decimal import Decimal

import genai_prices
import pytest
from genai_prices import data_snapshot

from thrifty.contract.usage import Usage
from thrifty.errors import ConfigError
from thrifty.pricing import (
    Cost, PriceBook, PriceCard, PriceOverride, card_as_dict, format_card, to_genai_usage,
)
from thrifty.pricing.catalog import Catalog

MODELS = [
    ("gpt-4o", None),
    ("gpt-4o-mini", None),
    ("gpt-5-mini", None),
    ("gpt-5-nano", None),
    ("claude-sonnet-4-5", None),
    ("claude-haiku-4-5", None),
    ("claude-opus-4-1", None),
    ("claude-sonnet-4-5", "anthropic"),
    ("gpt-4o-2024-08-06", "openai"),
    ("llama-3.1-8b-instant", "groq"),
]

SHAPES = {
    "empty": Usage(),
    "plain": Usage(input_tokens=1234, output_tokens=567),
    "cache_read": Usage(input_tokens=300, cache_read_tokens=9000, output_tokens=120),
    "cache_write_5m": Usage(input_tokens=50, cache_write_5m_tokens=4096, output_tokens=80),
    "cache_write_1h": Usage(input_tokens=50, cache_write_1h_tokens=4096, output_tokens=80),
    "reasoning": Usage(input_tokens=800, output_tokens=2500, reasoning_tokens=2000),
    "mixed": Usage(input_tokens=1777, cache_read_tokens=31337, cache_write_5m_tokens=2049,
                   cache_write_1h_tokens=1025, output_tokens=999, reasoning_tokens=333),
    "long_prompt": Usage(input_tokens=150_000, cache_read_tokens=60_000, cache_write_5m_tokens=5_000,
                         cache_write_1h_tokens=1_000, output_tokens=4_000, reasoning_tokens=1_000),
    "one_token": Usage(input_tokens=1, output_tokens=1),
}


def genai_usage(u: Usage) -> genai_prices.Usage:
    """Written out here rather than taken from the code under test: genai-prices counts every
    prompt token in input_tokens, and both cache write TTLs in cache_write_tokens."""
    return genai_prices.Usage(
        input_tokens=u.input_tokens + u.cache_read_tokens + u.cache_write_5m_tokens + u.cache_write_1h_tokens,
        cache_read_tokens=u.cache_read_tokens,
        cache_write_tokens=u.cache_write_5m_tokens + u.cache_write_1h_tokens,
        cache_write_1h_tokens=u.cache_write_1h_tokens,
        output_tokens=u.output_tokens,
        output_reasoning_tokens=u.reasoning_tokens,
    )


@pytest.fixture(scope="module")
def book() -> PriceBook:
    return PriceBook()


def assert_matches(cost: Cost, calc) -> None:
    assert cost.total == calc.total_price
    assert str(cost.total) == str(calc.total_price)  # to the last digit, trailing zeros included
    assert cost.input + cost.cache_read + cost.cache_write == calc.input_price
    assert cost.output == calc.output_price
    assert cost.total == cost.input + cost.cache_read + cost.cache_write + cost.output + cost.other


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("model", "provider"), MODELS)
def test_cost_equals_calc_price(book, model, provider, shape):
    usage = SHAPES[shape]
    cost = book.cost(model, usage, provider=provider)
    calc = genai_prices.calc_price(genai_usage(usage), model, provider_id=provider)
    assert_matches(cost, calc)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("model", "provider"), MODELS)
def test_batch_cost_equals_calc_price_with_batch_context(book, model, provider, shape):
    usage = SHAPES[shape]
    cost = book.cost(model, usage, provider=provider, batch=True)
    calc = genai_prices.calc_price(genai_usage(usage), model, provider_id=provider,
                                   price_context={"processing": "batch"})
    assert_matches(cost, calc)


def test_to_genai_usage_matches_the_documented_semantics():
    usage = SHAPES["mixed"]
    assert to_genai_usage(usage) == genai_prices.Usage(
        input_tokens=usage.prompt_tokens, cache_read_tokens=31337, cache_write_tokens=3074,
        cache_write_5m_tokens=2049, cache_write_1h_tokens=1025, output_tokens=999,
        output_reasoning_tokens=333)


def test_kinds_are_priced_at_their_own_rates(book):
    u = SHAPES["mixed"]
    card = book.card("claude-sonnet-4-5")
    cost = book.cost("claude-sonnet-4-5", u)
    m = Decimal(1_000_000)
    assert cost.input == card.input * u.input_tokens / m
    assert cost.cache_read == card.cache_read * u.cache_read_tokens / m
    assert cost.cache_write == (card.cache_write_5m * u.cache_write_5m_tokens
                                + card.cache_write_1h * u.cache_write_1h_tokens) / m
    assert cost.output == card.output * u.output_tokens / m  # reasoning is billed as output
    assert card.cache_write_5m == card.input * Decimal("1.25")
    assert card.cache_write_1h == card.input * 2


def test_tiered_price_applies_to_the_whole_prompt_above_the_threshold(book):
    usage = Usage(input_tokens=190_000, cache_read_tokens=20_000, output_tokens=1_000)
    card = book.card("claude-sonnet-4-5")
    assert any(kind == "input" and start == 200_000 for kind, start, _ in card.tiers)
    cost = book.cost("claude-sonnet-4-5", usage)
    assert_matches(cost, genai_prices.calc_price(genai_usage(usage), "claude-sonnet-4-5"))
    tier_input = next(p for kind, start, p in card.tiers if kind == "input")
    assert cost.input == tier_input * 190_000 / Decimal(1_000_000)  # cache reads count towards the tier


def test_openai_cache_writes_are_billed_as_input(book):
    card = book.card("gpt-4o")
    assert card.cache_write_5m is None and card.cache_write_1h is None
    cost = book.cost("gpt-4o", Usage(cache_write_1h_tokens=1_000_000))
    assert cost.input == card.input and cost.cache_write == 0


def test_missing_1h_write_price_is_derived_as_twice_input():
    book = PriceBook()
    pricing = Catalog().find("claude-3-7-sonnet", "google")
    assert pricing is not None
    prices = pricing.model.get_prices(datetime.now(UTC))
    assert prices.cache_write_mtok is not None and prices.cache_write_1h_mtok is None  # precondition
    card = book.card("claude-3-7-sonnet", "google")
    assert card.cache_write_1h == card.input * 2
    assert card.cache_write_5m == prices.cache_write_mtok
    assert "1h cache write derived as 2x input" in card.source
    usage = Usage(input_tokens=10, cache_write_5m_tokens=1000, cache_write_1h_tokens=2000, output_tokens=5)
    cost = book.cost("claude-3-7-sonnet", usage, provider="google")
    assert cost.cache_write == (card.cache_write_5m * 1000 + card.input * 2 * 2000) / Decimal(1_000_000)
    # genai-prices itself would bill the 1h writes at the 5m price: the one deliberate difference.
    calc = genai_prices.calc_price(genai_usage(usage), "claude-3-7-sonnet", provider_id="google")
    assert cost.total - calc.total_price == (card.input * 2 - card.cache_write_5m) * 2000 / Decimal(1_000_000)


def test_time_dependent_prices_follow_the_request_time():
    pricing = Catalog().find("deepseek-chat")
    usage = SHAPES["mixed"]
    for now in (datetime(2026, 11, 2, 3, 0, tzinfo=UTC), datetime(2026, 11, 2, 20, 0, tzinfo=UTC)):
        calc = genai_prices.calc_price(genai_usage(usage), "deepseek-chat", genai_request_timestamp=now)
        assert_matches(pricing.plan(False, now).cost(usage), calc)
    peak = pricing.plan(False, datetime(2026, 11, 2, 3, 0, tzinfo=UTC)).cost(usage)
    off_peak = pricing.plan(False, datetime(2026, 11, 2, 20, 0, tzinfo=UTC)).cost(usage)
    assert off_peak.total < peak.total


def test_batch_discount_on_cards(book):
    assert book.card("gpt-4o-mini").batch_discount == Decimal("0.5")
    assert book.card("claude-haiku-4-5").batch_discount == Decimal("0.5")
    # No batch price in the catalog: no discount is claimed.
    assert book.card("claude-opus-4-1").batch_discount == 1
    usage = SHAPES["plain"]
    assert book.cost("claude-opus-4-1", usage, batch=True) == book.cost("claude-opus-4-1", usage)


def test_openai_batch_keeps_cached_input_at_the_standard_rate(book):
    usage = Usage(cache_read_tokens=1_000_000)
    assert book.cost("gpt-4o", usage, batch=True).cache_read == book.cost("gpt-4o", usage).cache_read


def test_provider_inference_and_unknown_providers(book):
    assert book.card("claude-sonnet-4-5").provider == "anthropic"
    assert book.card("gpt-5-nano").provider == "openai"
    # genai-prices cannot tell a Groq-hosted Llama by its name alone.
    assert book.card("llama-3.1-8b-instant") is None
    assert book.card("llama-3.1-8b-instant", "groq").provider == "groq"
    # A provider the catalog does not know (the emulator, a proxy) is priced by model name ...
    usage = SHAPES["mixed"]
    assert book.cost("gpt-4o", usage, provider="emulator") == book.cost("gpt-4o", usage)
    # ... but a known provider that does not sell the model gives no price.
    assert book.card("gpt-4o", "groq") is None


def test_unknown_model_gives_none_and_warns_once(caplog):
    book = PriceBook()
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            assert book.cost("acme-llm-9000", SHAPES["plain"]) is None
        assert book.cost("acme-llm-9000", SHAPES["mixed"], batch=True) is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "acme-llm-9000" in warnings[0].getMessage()
    assert book.card("acme-llm-9000") is None


def test_override_prices_a_custom_model():
    book = PriceBook({"my-llama-70b": PriceOverride(input=Decimal("0.2"), output=Decimal("0.6"))})
    cost = book.cost("my-llama-70b", SHAPES["mixed"], provider="vllm")
    u = SHAPES["mixed"]
    m = Decimal(1_000_000)
    assert cost.total == (Decimal("0.2") * u.prompt_tokens + Decimal("0.6") * u.output_tokens) / m
    assert cost.cache_read == cost.cache_write == 0  # no cache prices: billed as input
    card = book.card("my-llama-70b", "vllm")
    assert (card.model, card.provider, card.source) == ("my-llama-70b", "vllm", "config override")
    assert card.cache_read is None and card.batch_discount == 1


def test_override_takes_precedence_over_the_catalog_case_insensitively():
    book = PriceBook({"GPT-4o": {"input": 1, "output": 2}})
    cost = book.cost("gpt-4o", Usage(input_tokens=1_000_000, output_tokens=1_000_000))
    assert cost.total == 3
    assert book.card("gpt-4o").source == "config override"


def test_override_with_every_price_and_a_batch_discount():
    price = PriceOverride(input=Decimal("1"), output=Decimal("4"), cache_read=Decimal("0.1"),
                          cache_write_5m=Decimal("1.25"), cache_write_1h=Decimal("2.5"),
                          reasoning=Decimal("8"), batch_discount=Decimal("0.5"))
    book = PriceBook({"custom": price})
    u = Usage(input_tokens=1000, cache_read_tokens=2000, cache_write_5m_tokens=3000,
              cache_write_1h_tokens=4000, output_tokens=5000, reasoning_tokens=1000)
    m = Decimal(1_000_000)
    cost = book.cost("custom", u)
    assert cost.input == Decimal(1000) / m
    assert cost.cache_read == Decimal("0.1") * 2000 / m
    assert cost.cache_write == (Decimal("1.25") * 3000 + Decimal("2.5") * 4000) / m
    assert cost.output == (Decimal(4) * 4000 + Decimal(8) * 1000) / m
    assert book.cost("custom", u, batch=True) == cost.scaled(Decimal("0.5"))


def test_override_batch_discount_none_means_no_discount():
    price = PriceOverride(input=Decimal("1"), output=Decimal("2"), batch_discount=None)
    assert price.batch_discount == 1


def test_override_5m_write_price_alone_derives_the_1h_price():
    book = PriceBook({"custom": {"input": "2", "output": "8", "cache_write_5m": "2.5"}})
    card = book.card("custom")
    assert card.cache_write_1h == Decimal(4)
    assert "derived" in card.source


def test_invalid_override_is_a_config_error():
    with pytest.raises(ConfigError, match="custom"):
        PriceBook({"custom": {"input": "-1", "output": "1"}})
    with pytest.raises(ConfigError, match="output"):
        PriceBook({"custom": {"input": "1"}})


def test_negative_usage_is_rejected(book):
    with pytest.raises(ValueError):
        book.cost("gpt-4o", Usage(input_tokens=-5))


def test_resolution_is_cached(monkeypatch):
    book = PriceBook()
    calls = []
    real = Catalog.find
    monkeypatch.setattr(Catalog, "find", lambda self, *a: calls.append(a) or real(self, *a))
    for _ in range(3):
        book.cost("gpt-4o", SHAPES["plain"])
        book.cost("gpt-4o", SHAPES["plain"], batch=True)
        book.card("gpt-4o")
    assert len(calls) == 1


def test_bundled_snapshot_only_and_no_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("pricing tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    # A snapshot installed globally (as UpdatePrices would) is ignored.
    monkeypatch.setattr(data_snapshot, "_custom_snapshot",
                        data_snapshot.DataSnapshot(providers=[], from_auto_update=True))
    book = PriceBook()
    assert book.cost("gpt-4o", SHAPES["mixed"]).total > 0
    assert book.card("gpt-4o").source == f"genai-prices {genai_prices.__version__} (bundled snapshot)"


def test_format_card(book):
    text = format_card(book.card("claude-sonnet-4-5"))
    lines = text.splitlines()
    assert lines[0] == "claude-sonnet-4-5 (anthropic)"
    assert "USD per 1M tokens" in lines[1]
    assert any(line.split()[:2] == ["input", "$3"] for line in lines)
    assert any("cache write 1h" in line and "$6" in line for line in lines)
    assert any(line.split()[0] == "reasoning" and "billed as output" in line for line in lines)
    assert "above 200,000 prompt tokens" in text
    assert "x0.5" in text
    assert lines[-1].strip().startswith("source: genai-prices")


def test_card_as_dict_is_json_ready(book):
    d = card_as_dict(book.card("gpt-5-mini"))
    assert json.loads(json.dumps(d)) == d
    assert d["model"] == "gpt-5-mini" and d["provider"] == "openai"
    assert d["input"] == 0.25 and d["output"] == 2.0 and d["cache_read"] == 0.025
    assert d["cache_write_5m"] is None and d["reasoning"] is None
    assert d["batch_discount"] == 0.5
    assert d["source"].startswith("genai-prices")


def test_card_fields(book):
    card = book.card("claude-haiku-4-5")
    assert isinstance(card, PriceCard)
    assert (card.input, card.output, card.cache_read) == (Decimal(1), Decimal(5), Decimal("0.1"))
    assert (card.cache_write_5m, card.cache_write_1h) == (Decimal("1.25"), Decimal(2))
    assert card.reasoning is None and card.tiers == ()
