"""A model's price card: what each kind of token costs, for people and for JSON."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

UNIT = "USD per 1M tokens"


@dataclass(frozen=True)
class PriceCard:
    """USD per million tokens of one model; None where there is no separate price.

    A None cache price means those tokens are billed as input, a None `reasoning` that reasoning
    is billed as output. `tiers` lists prices that replace the base price of a kind once the
    prompt (all input tokens, cached or not) exceeds `start` tokens: `(kind, start, price)`.
    """

    model: str
    provider: str | None
    input: Decimal
    output: Decimal
    cache_read: Decimal | None
    cache_write_5m: Decimal | None
    cache_write_1h: Decimal | None
    reasoning: Decimal | None
    batch_discount: Decimal
    source: str
    tiers: tuple[tuple[str, int, Decimal], ...] = ()


_ROWS = (
    ("input", "input", None),
    ("output", "output", None),
    ("cache_read", "cache read", "billed as input"),
    ("cache_write_5m", "cache write 5m", "billed as input"),
    ("cache_write_1h", "cache write 1h", "billed as input"),
    ("reasoning", "reasoning", "billed as output"),
)


def _usd(d: Decimal) -> str:
    return "$" + format(d.normalize(), "f")


def format_card(card: PriceCard) -> str:
    """A human-readable card, as `thrifty prices MODEL` prints it."""
    title = card.model if card.provider is None else f"{card.model} ({card.provider})"
    lines = [title, f"  {UNIT}"]
    for field, label, when_none in _ROWS:
        price = getattr(card, field)
        text = _usd(price) if price is not None else when_none
        extra = [f"{_usd(p)} above {start:,} prompt tokens" for kind, start, p in card.tiers if kind == field]
        if extra:
            text += "  (" + "; ".join(extra) + ")"
        lines.append(f"  {label:<16}{text}")
    discount = ("none" if card.batch_discount == 1
                else f"x{format(card.batch_discount.normalize(), 'f')}")
    lines.append(f"  {'batch':<16}{discount}")
    lines.append(f"  source: {card.source}")
    return "\n".join(lines)


def card_as_dict(card: PriceCard) -> dict[str, Any]:
    """The card for JSON output: prices as floats (None kept), the rest as strings."""

    def num(d: Decimal | None) -> float | None:
        return None if d is None else float(d)

    out: dict[str, Any] = {"model": card.model, "provider": card.provider, "unit": UNIT}
    for field, _, _ in _ROWS:
        out[field] = num(getattr(card, field))
    out["batch_discount"] = float(card.batch_discount)
    out["tiers"] = [{"kind": kind, "above_prompt_tokens": start, "price": float(price)}
                    for kind, start, price in card.tiers]
    out["source"] = card.source
    return out
