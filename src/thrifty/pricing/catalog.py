"""Prices from the genai-prices catalog, as bundled with the installed package.

The catalog is read from the package's own data snapshot, never fetched: nothing here starts
genai-prices' `UpdatePrices`, and a snapshot someone else installed globally is ignored, so the
gateway prices every call from the same reviewed data.

What genai-prices (0.2.x) means by its usage keys, which the plans below follow:

- Usage keys nest. `input_tokens` counts every prompt token, cached or not; `cache_read_tokens`
  and `cache_write_tokens` are parts of it, `cache_write_5m_tokens` / `cache_write_1h_tokens`
  parts of `cache_write_tokens`, and `output_reasoning_tokens` part of `output_tokens`. Each
  priced key is billed on what is left of it once its priced parts are taken out; a part with no
  price of its own is billed at its parent's price (cache writes on OpenAI models are input).
- `cache_write_mtok` is the default (5-minute) write price; `cache_write_1h_mtok` is set where
  the provider publishes a 1-hour price (Anthropic models). Where a model has a write price but no
  1-hour one, we derive it as Anthropic documents it, 2x the base input price (the 5-minute write
  being 1.25x), and the card's source says so; genai-prices itself would bill those at the
  5-minute price.
- Tiered prices (for example above 200k prompt tokens) are chosen by the prompt's total input
  tokens, cached included, and apply to all tokens of that kind.
- Batch prices are a price variant selected by the context `{"processing": "batch"}`; models
  without one get no batch discount (the catalog does not say they have one).
- Prices can depend on the request time (new prices from a date, off-peak hours), so plans are
  chosen per call by the prices in force now and compiled once per distinct set.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

import genai_prices
from genai_prices.data_snapshot import DataSnapshot, find_provider_by_id
from genai_prices.data_units import unit_data
from genai_prices.types import ModelInfo, ModelPrice, PriceVariant, Provider, Tier, TieredPrices

from thrifty.contract.usage import Usage
from thrifty.pricing.card import PriceCard
from thrifty.pricing.cost import (
    CACHE_READ, CACHE_WRITE_1H, CACHE_WRITE_5M, INPUT, OUTPUT, PART_CACHE_READ, PART_CACHE_WRITE,
    PART_INPUT, PART_OTHER, PART_OUTPUT, REASONING, Plan, Term, Tiered,
)

BATCH_CONTEXT = {"processing": "batch"}
ONE_HOUR_WRITE_FACTOR = Decimal(2)  # Anthropic: a 1h cache write costs 2x base input
DERIVED_1H_NOTE = "1h cache write derived as 2x input (Anthropic's documented rate)"


def catalog_source() -> str:
    return f"genai-prices {genai_prices.__version__} (bundled snapshot)"


class _Unit(NamedTuple):
    usage_key: str
    per: int
    dimensions: frozenset[tuple[str, str]]
    part: int


def _part(dimensions: dict[str, str]) -> int:
    direction = dimensions.get("direction")
    if direction == "output":
        return PART_OUTPUT
    if direction != "input":
        return PART_OTHER
    return {"cache_read": PART_CACHE_READ, "cache_write": PART_CACHE_WRITE}.get(
        dimensions.get("token_type", ""), PART_INPUT)


_UNITS: dict[str, _Unit] = {
    raw.get("price_key", key): _Unit(key, raw["per"], frozenset(raw.get("dimensions", {}).items()),
                                     _part(raw.get("dimensions", {})))
    for key, raw in unit_data.items()
}

# What each genai-prices usage key counts, as (usage-vector position, coefficient) pairs;
# keys not listed count nothing in our usage.
_COUNTS: dict[str, tuple[tuple[int, int], ...]] = {
    "input_tokens": ((INPUT, 1), (CACHE_READ, 1), (CACHE_WRITE_5M, 1), (CACHE_WRITE_1H, 1)),
    "cache_read_tokens": ((CACHE_READ, 1),),
    "cache_write_tokens": ((CACHE_WRITE_5M, 1), (CACHE_WRITE_1H, 1)),
    "cache_write_5m_tokens": ((CACHE_WRITE_5M, 1),),
    "cache_write_1h_tokens": ((CACHE_WRITE_1H, 1),),
    "output_tokens": ((OUTPUT, 1),),
    "output_reasoning_tokens": ((REASONING, 1),),
}


def to_genai_usage(usage: Usage) -> genai_prices.Usage:
    """Our usage in genai-prices' terms, where input and cache writes include their parts."""
    return genai_prices.Usage(
        input_tokens=usage.prompt_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        cache_write_5m_tokens=usage.cache_write_5m_tokens,
        cache_write_1h_tokens=usage.cache_write_1h_tokens,
        output_tokens=usage.output_tokens,
        output_reasoning_tokens=usage.reasoning_tokens,
    )


def _priced(prices: ModelPrice) -> list[tuple[str, Decimal | TieredPrices]]:
    """(price key, price) in catalog order, with the derived 1h write price appended if needed."""
    items = [(k, v) for k, v in prices.__dict__.items()
             if v is not None and not k.startswith("_") and k in _UNITS]
    keys = {k for k, _ in items}
    if {"cache_write_mtok", "input_mtok"} <= keys and "cache_write_1h_mtok" not in keys:
        items.append(("cache_write_1h_mtok", _times(prices.input_mtok, ONE_HOUR_WRITE_FACTOR)))
    return items


def _times(price: Any, factor: Decimal) -> Decimal | TieredPrices:
    if isinstance(price, TieredPrices):
        return TieredPrices(base=price.base * factor,
                            tiers=[Tier(start=t.start, price=t.price * factor) for t in price.tiers])
    return price * factor


def compile_prices(prices: ModelPrice) -> Plan:
    """One `Plan` billing each priced usage key on its leaf count, as genai-prices does."""
    items = _priced(prices)
    units = [_UNITS[k] for k, _ in items]
    # Most specific first, so every unit's priced parts already have their leaf counts.
    leaves: dict[str, dict[int, int]] = {}
    for unit in sorted(units, key=lambda u: (-len(u.dimensions), u.usage_key)):
        leaf = dict(_COUNTS.get(unit.usage_key, ()))
        for part in units:
            if part is not unit and unit.dimensions < part.dimensions and part.usage_key in leaves:
                for i, k in leaves[part.usage_key].items():
                    leaf[i] = leaf.get(i, 0) - k
        leaves[unit.usage_key] = {i: k for i, k in leaf.items() if k}
    terms = []
    for (_, price), unit in zip(items, units):
        counts = None if unit.usage_key == "requests" else tuple(sorted(leaves[unit.usage_key].items()))
        terms.append(Term(unit.usage_key, counts, _tiered(price), unit.per, unit.part))
    return Plan(tuple(terms))


def _tiered(price: Decimal | TieredPrices) -> Decimal | Tiered:
    if isinstance(price, TieredPrices):
        return Tiered(price.base, tuple((t.start, t.price) for t in reversed(price.tiers)))
    return price


def _base(price: Any) -> Decimal | None:
    return price.base if isinstance(price, TieredPrices) else price


class CatalogPricing:
    """Plans and card of one catalog model as offered by one provider."""

    def __init__(self, provider: Provider, model: ModelInfo) -> None:
        self.provider = provider
        self.model = model
        # genai-prices ignores price variants of a model borrowed from a fallback provider.
        own = any(model is m for m in provider.models)
        self._batch_variants: tuple[PriceVariant, ...] = tuple(
            v for v in (model.price_variants or ()) if own
            and all(BATCH_CONTEXT.get(key) == value for key, value in v.when.items()))
        self._plans: dict[Any, Plan] = {}

    def _prices_key(self, now: datetime, batch: bool) -> tuple[ModelPrice, Any]:
        standard = self.model.get_prices(now)
        # The standard prices are objects of the catalog, so their identity names them.
        key: Any = id(standard)
        if batch and self._batch_variants:
            active = tuple(i for i, v in enumerate(self._batch_variants)
                           if v.constraint is None or v.constraint.active(now))
            if active:
                key = (key, active)
        return standard, key

    def plan(self, batch: bool, now: datetime | None = None) -> Plan:
        now = now or datetime.now(UTC)
        standard, key = self._prices_key(now, batch)
        plan = self._plans.get(key)
        if plan is None:
            prices = self.model.get_prices(now, BATCH_CONTEXT) if isinstance(key, tuple) else standard
            plan = self._plans[key] = compile_prices(prices)
        return plan

    def card(self, now: datetime | None = None) -> PriceCard:
        now = now or datetime.now(UTC)
        standard, key = self._prices_key(now, batch=True)
        batch = self.model.get_prices(now, BATCH_CONTEXT) if isinstance(key, tuple) else standard
        priced = dict(_priced(standard))
        derived = standard.cache_write_1h_mtok is None and "cache_write_1h_mtok" in priced
        kinds = {"input": "input_mtok", "output": "output_mtok", "cache_read": "cache_read_mtok",
                 "cache_write_5m": "cache_write_mtok", "cache_write_1h": "cache_write_1h_mtok",
                 "reasoning": "output_reasoning_mtok"}
        if priced.get("cache_write_5m_mtok") is not None:
            kinds["cache_write_5m"] = "cache_write_5m_mtok"
        tiers = tuple((kind, t.start, t.price) for kind, key_ in kinds.items()
                      if isinstance(priced.get(key_), TieredPrices) for t in priced[key_].tiers)
        std_input, batch_input = _base(standard.input_mtok), _base(batch.input_mtok)
        discount = (batch_input / std_input if batch is not standard and std_input and batch_input is not None
                    else Decimal(1))
        source = catalog_source() + (f"; {DERIVED_1H_NOTE}" if derived else "")
        return PriceCard(
            model=self.model.id, provider=self.provider.id,
            input=_base(priced.get("input_mtok")) or Decimal(0),
            output=_base(priced.get("output_mtok")) or Decimal(0),
            cache_read=_base(priced.get(kinds["cache_read"])),
            cache_write_5m=_base(priced.get(kinds["cache_write_5m"])),
            cache_write_1h=_base(priced.get(kinds["cache_write_1h"])),
            reasoning=_base(priced.get(kinds["reasoning"])),
            batch_discount=discount, source=source, tiers=tiers,
        )


class Catalog:
    """Looks models up in the bundled snapshot, loaded on first use."""

    def __init__(self) -> None:
        self._snapshot: DataSnapshot | None = None
        self._pricings: dict[tuple[int, int], CatalogPricing] = {}

    def _snap(self) -> DataSnapshot:
        if self._snapshot is None:
            from genai_prices.data import providers  # the bundled data, a large module

            self._snapshot = DataSnapshot(providers=providers, from_auto_update=False)
        return self._snapshot

    def find(self, model: str, provider: str | None = None) -> CatalogPricing | None:
        """The catalog's pricing of `model`; by model name alone when `provider` is None or a
        provider the catalog does not know (a self-hosted or emulated deployment of a known model)."""
        snap = self._snap()
        try:
            found = snap.find_provider_model(model, None, provider, None)
        except LookupError:
            if provider is None or find_provider_by_id(snap.providers, provider) is not None:
                return None
            try:
                found = snap.find_provider_model(model, None, None, None)
            except LookupError:
                return None
        p, m = found
        key = (id(p), id(m))
        if key not in self._pricings:
            self._pricings[key] = CatalogPricing(p, m)
        return self._pricings[key]
