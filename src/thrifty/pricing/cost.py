"""Exact cost of one call from a compiled price plan.

A `Plan` is a set of prices compiled once into terms: which tokens of a `Usage` each price applies
to, at what rate, and in which part of the bill it lands. Pricing a call is then a handful of
Decimal multiplications, cheap enough for the hot path of every request.

The arithmetic mirrors genai-prices' own (`price * Decimal(count) / per`, summed from
`Decimal(0)` in catalog order), so a catalog plan gives the very Decimal that `calc_price` gives,
trailing zeros included.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from thrifty.contract.usage import Usage

ZERO = Decimal(0)

# Positions in the usage vector a term counts from (see `_vector`).
INPUT, CACHE_READ, CACHE_WRITE_5M, CACHE_WRITE_1H, OUTPUT, REASONING = range(6)
# Parts of the bill a term lands in (the fields of `Cost`, after `total`).
PART_INPUT, PART_CACHE_READ, PART_CACHE_WRITE, PART_OUTPUT, PART_OTHER = range(5)

TOKENS_PER_PRICE = 1_000_000  # prices are USD per million tokens


@dataclass(frozen=True, slots=True)
class Cost:
    """What one call cost in USD, split by kind of token.

    `input` is uncached input; `other` holds what is not priced per token (per-request fees), so
    `total` is always the sum of the parts.
    """

    total: Decimal
    input: Decimal
    cache_read: Decimal
    cache_write: Decimal
    output: Decimal
    other: Decimal = ZERO

    def scaled(self, factor: Decimal) -> Cost:
        return Cost(self.total * factor, self.input * factor, self.cache_read * factor,
                    self.cache_write * factor, self.output * factor, self.other * factor)


@dataclass(frozen=True, slots=True)
class Tiered:
    """A price that depends on the prompt size: the highest tier whose start the prompt's total
    input tokens exceed applies to every token of the kind (the "cliff" model genai-prices uses)."""

    base: Decimal
    tiers: tuple[tuple[int, Decimal], ...]  # (start, price), highest start first

    def at(self, prompt_tokens: int) -> Decimal:
        for start, price in self.tiers:
            if prompt_tokens > start:
                return price
        return self.base


@dataclass(frozen=True, slots=True)
class Term:
    """One price applied to a linear combination of usage counts.

    `counts` pairs usage-vector positions with coefficients (leaf counts such as "output minus
    reasoning" are differences); None means one unit per call (per-request fees).
    """

    name: str
    counts: tuple[tuple[int, int], ...] | None
    price: Decimal | Tiered
    per: int
    part: int


class Plan:
    """Prices compiled for one model, ready to cost many calls."""

    __slots__ = ("terms", "tiered", "scale")

    def __init__(self, terms: tuple[Term, ...], scale: Decimal | None = None) -> None:
        self.terms = terms
        self.tiered = any(isinstance(t.price, Tiered) for t in terms)
        self.scale = scale  # a flat multiplier, for batch discounts the prices do not spell out

    def cost(self, usage: Usage) -> Cost:
        v = _vector(usage)
        prompt = v[0] + v[1] + v[2] + v[3] if self.tiered else 0
        parts = [ZERO, ZERO, ZERO, ZERO, ZERO]
        total = ZERO
        for term in self.terms:
            if term.counts is None:
                n = 1
            else:
                n = 0
                for i, k in term.counts:
                    n += v[i] * k
                if n < 0:
                    raise ValueError(f"usage gives a negative count for {term.name}: {usage!r}")
            price = term.price
            if price.__class__ is Tiered:
                price = price.at(prompt)
            amount = price * Decimal(n) / term.per
            total += amount
            parts[term.part] += amount
        cost = Cost(total, *parts)
        return cost if self.scale is None else cost.scaled(self.scale)


def _vector(u: Usage) -> tuple[int, int, int, int, int, int]:
    v = (u.input_tokens, u.cache_read_tokens, u.cache_write_5m_tokens, u.cache_write_1h_tokens,
         u.output_tokens, u.reasoning_tokens)
    if min(v) < 0:
        raise ValueError(f"usage has a negative token count: {u!r}")
    return v
