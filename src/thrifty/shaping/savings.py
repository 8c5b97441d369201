"""What provider prompt caching saved on one call.

The counterfactual is the same call with no cache at the provider: every token read from the
cache or written to it billed as plain input, everything else unchanged. The prompt's total
size is the same either way, so a long-context price tier applies to both alike.

The saving is negative when a call paid for a cache write (1.25x or 2x input on Anthropic) that
it did not read back. On OpenAI, caching is automatic: the saving there is the provider's
discount on the tokens it happened to cache, which a `prompt_cache_key` makes more likely
but which would partly have come anyway.
"""

from __future__ import annotations

from decimal import Decimal

from thrifty.core.usage import Usage
from thrifty.pricing import Cost, PriceBook

ZERO = Decimal(0)


def uncached(usage: Usage) -> Usage:
    """The same usage with every cache read and write counted as plain input."""
    return Usage(input_tokens=usage.prompt_tokens, output_tokens=usage.output_tokens,
                 reasoning_tokens=usage.reasoning_tokens)


def prompt_cache_saving(prices: PriceBook, model: str, usage: Usage, provider: str | None = None, *,
                        batch: bool = False, actual: Cost | None = None) -> Decimal | None:
    """Cost without the provider's cache minus the actual cost, in USD; None when unpriced.

    `actual` is the call's cost when the caller has already priced it (saves pricing it twice).
    """
    if actual is None:
        actual = prices.cost(model, usage, provider=provider, batch=batch)
        if actual is None:
            return None
    if not (usage.cache_read_tokens or usage.cache_write_5m_tokens or usage.cache_write_1h_tokens):
        return ZERO
    baseline = prices.cost(model, uncached(usage), provider=provider, batch=batch)
    if baseline is None:
        return None
    return baseline.total - actual.total
