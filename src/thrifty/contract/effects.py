"""What a lever did to a call, as the stages report it; priced once the answer is final.

`thrifty.pricing.savings` turns a call's effects into one saving per lever against the one
counterfactual (docs/savings.md): the request exactly as the client sent it, sent directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Effect:
    lever: str  # one of contract.levers.LEVERS


@dataclass(frozen=True, slots=True)
class Counted(Effect):
    """The lever acted but its saving cannot be priced defensibly: counted, never priced."""

    note: str


@dataclass(frozen=True, slots=True)
class ModelMoved(Effect):
    """The call went to another model than the one before this lever (routing, a budget's
    downgrade, a fallback): undone by pricing the same usage on `from_model`."""

    from_model: str
    from_price_provider: str | None = None
    # The share (0-1) of the request in a prefix that `from_model`'s provider would have had in
    # its automatic prompt cache (routing/baseline_cache.py); 0 when it caches nothing by itself.
    baseline_cached_share: float = 0.0


@dataclass(frozen=True, slots=True)
class BreakpointsAdded(Effect):
    """Thrifty added prompt-cache breakpoints to the body.

    `client_prefix_tokens` bounds what the client's own breakpoints would have cached: an upper
    bound of the prompt tokens up to its last breakpoint, so Thrifty's claim is never too high.
    None when the client marked nothing, in which case the provider would have cached nothing
    (Anthropic caches only what `cache_control` marks).
    """

    client_prefix_tokens: int | None
    client_ttl: str = "5m"


@dataclass(frozen=True, slots=True)
class AnsweredFromCache(Effect):
    """A response cache answered: the saving is the baseline of the call that filled it."""

    baseline_usd: Decimal | None
    estimated: bool  # a neighbour's answer (semantic), or an entry stored without a baseline


@dataclass(frozen=True, slots=True)
class Batched(Effect):
    """Thrifty sent the call through a provider's batch API although the client asked for an
    answer now (the deferred lane): undone by pricing the same usage at the interactive price.
    Always the innermost effect: the provider billed the call at its batch price."""


@dataclass(frozen=True, slots=True)
class Unrequested(Effect):
    """A call the client never asked for, made by the lever for its own ends (a shadow sample):
    its baseline is 0 and its whole cost is the lever's, a negative saving."""

    note: str | None = None  # on the lever's saving
    unpriced: str = "unpriced call"  # the note instead, when the call's cost is unknown
