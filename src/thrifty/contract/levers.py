"""What a lever did to one call, as the ledger stores it.

A saving is measured against the one counterfactual of docs/savings.md: the request exactly as the
client sent it, sent directly to the provider. `saved_usd` is None when the lever acted but its
counterfactual cannot be priced defensibly: the effect is then counted (see `note`), never priced.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

# The levers in the order they act on a call (outermost first). Reports list them in this order.
# "fallback" is the reliability layer moving a call to another deployment after a failure: not a
# cost lever, but what it changes in the bill must show, or the savings would not add up.
LEVERS: tuple[str, ...] = (
    "exact_cache", "semantic_cache", "routing", "escalation", "budget_downgrade", "fallback",
    "shaping", "prompt_cache", "batch", "shadow",
)


@dataclass(frozen=True, slots=True)
class LeverSaving:
    lever: str  # one of LEVERS
    saved_usd: Decimal | None  # USD this lever took off the call's bill; negative when it added cost
    estimated: bool = False  # the counterfactual rests on an estimate (see docs/savings.md)
    note: str | None = None  # what it did, in a few words (e.g. "prompt_cache_key set")
