"""Prices set in configuration, for self-hosted and custom models the catalog does not know.

An override replaces the catalog's price for that model name entirely. Missing cache prices mean
no caching discount (those tokens are billed as input), except that a 1-hour cache write with a
5-minute write price but none of its own follows Anthropic's documented rule, 2x the input price.
A missing reasoning price means reasoning is billed as output.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from thrifty.pricing.card import PriceCard
from thrifty.pricing.cost import (
    CACHE_READ, CACHE_WRITE_1H, CACHE_WRITE_5M, INPUT, OUTPUT, PART_CACHE_READ, PART_CACHE_WRITE,
    PART_INPUT, PART_OUTPUT, REASONING, TOKENS_PER_PRICE, Plan, Term,
)

SOURCE = "config override"
ONE_HOUR_WRITE_FACTOR = Decimal(2)  # Anthropic: a 1h cache write costs 2x base input


class PriceOverride(BaseModel):
    """USD per million tokens for one model, from configuration."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)
    cache_read: Decimal | None = Field(default=None, ge=0)
    cache_write_5m: Decimal | None = Field(default=None, ge=0)
    cache_write_1h: Decimal | None = Field(default=None, ge=0)
    reasoning: Decimal | None = Field(default=None, ge=0)
    batch_discount: Decimal = Field(default=Decimal(1), gt=0, le=1)  # multiplier for batch calls

    @field_validator("batch_discount", mode="before")
    @classmethod
    def _no_discount_when_unset(cls, value: object) -> object:
        return Decimal(1) if value is None else value

    def effective_cache_write_1h(self) -> Decimal | None:
        if self.cache_write_1h is not None:
            return self.cache_write_1h
        if self.cache_write_5m is not None:
            return self.input * ONE_HOUR_WRITE_FACTOR
        return None


class OverridePricing:
    """Plans and card of a model priced by configuration."""

    def __init__(self, model: str, provider: str | None, price: PriceOverride) -> None:
        self._standard = Plan(_terms(price))
        self._batch = (self._standard if price.batch_discount == 1
                       else Plan(self._standard.terms, scale=price.batch_discount))
        derived = price.cache_write_1h is None and price.cache_write_5m is not None
        self._card = PriceCard(
            model=model, provider=provider, input=price.input, output=price.output,
            cache_read=price.cache_read, cache_write_5m=price.cache_write_5m,
            cache_write_1h=price.effective_cache_write_1h(), reasoning=price.reasoning,
            batch_discount=price.batch_discount,
            source=SOURCE + ("; 1h cache write derived as 2x input" if derived else ""),
        )

    def plan(self, batch: bool) -> Plan:
        return self._batch if batch else self._standard

    def card(self) -> PriceCard:
        return self._card


def _terms(p: PriceOverride) -> tuple[Term, ...]:
    def term(name: str, counts: tuple[tuple[int, int], ...], price: Decimal, part: int) -> Term:
        return Term(name, counts, price, TOKENS_PER_PRICE, part)

    def cached(name: str, index: int, price: Decimal | None, part: int) -> Term:
        # Without a price of their own, cached tokens are plain input, as in the catalog.
        if price is None:
            return term(name, ((index, 1),), p.input, PART_INPUT)
        return term(name, ((index, 1),), price, part)

    terms = [
        term("input", ((INPUT, 1),), p.input, PART_INPUT),
        cached("cache_read", CACHE_READ, p.cache_read, PART_CACHE_READ),
        cached("cache_write_5m", CACHE_WRITE_5M, p.cache_write_5m, PART_CACHE_WRITE),
        cached("cache_write_1h", CACHE_WRITE_1H, p.effective_cache_write_1h(), PART_CACHE_WRITE),
    ]
    if p.reasoning is None:
        terms.append(term("output", ((OUTPUT, 1),), p.output, PART_OUTPUT))
    else:
        terms.append(term("output", ((OUTPUT, 1), (REASONING, -1)), p.output, PART_OUTPUT))
        terms.append(term("reasoning", ((REASONING, 1),), p.reasoning, PART_OUTPUT))
    return tuple(terms)
