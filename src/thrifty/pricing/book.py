"""The price book: price cards and exact costs by model name, overrides first, then the catalog."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from thrifty.contract.usage import Usage
from thrifty.errors import ConfigError
from thrifty.pricing.card import PriceCard
from thrifty.pricing.catalog import Catalog, CatalogPricing
from thrifty.pricing.cost import Cost
from thrifty.pricing.override import OverridePricing, PriceOverride

log = logging.getLogger(__name__)

# Bounds what arbitrary model names from clients can make the caches hold.
_MAX_CACHED = 10_000


class PriceBook:
    """Prices calls by model name.

    A model named in `overrides` (case-insensitively) is priced from configuration; any other from
    the genai-prices catalog, matched by provider when one is given and by model name otherwise.
    The resolution of each (model, provider) is cached, so `cost` on a known model does no lookup.
    """

    def __init__(self, overrides: Mapping[str, PriceOverride | Mapping[str, Any]] | None = None) -> None:
        self._overrides = {name.lower(): _as_override(name, price)
                           for name, price in (overrides or {}).items()}
        self._catalog = Catalog()
        self._resolved: dict[tuple[str, str | None], OverridePricing | CatalogPricing | None] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def _resolve(self, model: str, provider: str | None) -> OverridePricing | CatalogPricing | None:
        key = (model, provider)
        try:
            return self._resolved[key]
        except KeyError:
            pass
        with self._lock:
            override = self._overrides.get(model.lower())
            found = (OverridePricing(model, provider, override) if override is not None
                     else self._catalog.find(model, provider))
            if len(self._resolved) < _MAX_CACHED:
                self._resolved[key] = found
        return found

    def card(self, model: str, provider: str | None = None) -> PriceCard | None:
        """The model's price card, or None when neither overrides nor the catalog know it."""
        found = self._resolve(model, provider)
        return None if found is None else found.card()

    def cost(self, model: str, usage: Usage, *, provider: str | None = None,
             batch: bool = False) -> Cost | None:
        """Exact USD cost of one call, or None (and one warning per model) when it has no price.

        `batch` prices the call at the provider's batch rates.
        """
        try:
            found = self._resolved[(model, provider)]
        except KeyError:
            found = self._resolve(model, provider)
        if found is None:
            self._warn_unknown(model, provider)
            return None
        return found.plan(batch).cost(usage)

    def _warn_unknown(self, model: str, provider: str | None) -> None:
        if model in self._warned:
            return
        with self._lock:
            if model in self._warned or len(self._warned) >= _MAX_CACHED:
                return
            self._warned.add(model)
        log.warning("no price for model %r (provider %r): its calls are recorded without a cost; "
                    "add a price override in the configuration", model, provider)


def _as_override(name: str, price: PriceOverride | Mapping[str, Any]) -> PriceOverride:
    if isinstance(price, PriceOverride):
        return price
    try:
        return PriceOverride.model_validate(price)
    except ValidationError as e:
        problem = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'value'}: {err['msg']}"
                            for err in e.errors())
        raise ConfigError("price overrides", name, problem) from None
