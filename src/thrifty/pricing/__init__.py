"""Price lookup (the bundled genai-prices catalog plus configured overrides) and the exact cost of
a call, in `decimal.Decimal` USD."""

from thrifty.pricing.book import PriceBook
from thrifty.pricing.card import PriceCard, card_as_dict, format_card
from thrifty.pricing.catalog import catalog_source, to_genai_usage
from thrifty.pricing.cost import Cost
from thrifty.pricing.override import PriceOverride
from thrifty.pricing.savings import Accountant, Accounting, cache_discount, uncached

__all__ = [
    "Accountant",
    "Accounting",
    "cache_discount",
    "uncached",
    "Cost",
    "PriceBook",
    "PriceCard",
    "PriceOverride",
    "card_as_dict",
    "catalog_source",
    "format_card",
    "to_genai_usage",
]
