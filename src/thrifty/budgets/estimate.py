"""The worst case of a call before it is sent: an upper bound of what the provider can bill.

A hard budget is only as hard as this bound, so every step rounds up:

- **Input tokens.** Everything in the upstream body that the model reads is counted with
  o200k_base (`thrifty.tokens`): message text, tool definitions and response schemas (as
  JSON), tool calls and tool results, and any unknown content block (as JSON). On top come
  `per_message_tokens` for each message, system block, content block and tool (role markers
  and separators), `per_request_tokens`, `tools_tokens` when tools are sent (the tool-use
  preamble providers add), and `attachment_tokens` per image, audio clip, file or document,
  whose bytes are never tokenised. The sum is multiplied by the wire's `input_factor`
  (Claude's tokenizer yields more tokens than o200k_base for the same text) and rounded up.
- **Output tokens.** The request's `max_completion_tokens` / `max_tokens` (reasoning included),
  times `n`; a request without one gets the configured cap for its model, which the budget
  stage also writes into the request so that the provider keeps to it.
- **USD.** Every input token is priced at the dearest input rate the request can incur: the
  uncached input rate, or a cache-write rate when the body carries a `cache_control` breakpoint
  with that TTL (Anthropic bills cache writes at 1.25x or 2x input; cache reads are cheaper and
  so never raise the bound). Output is priced at the output rate, or the reasoning rate where
  that is dearer. Prices that rise above a prompt size are taken at the estimated prompt size,
  which is at least the real one. Costs come from `PriceBook.cost`, so per-request fees count.

Not covered: per-use fees of provider-side tools (web search), audio output and predicted
outputs; a deployment that uses them should cap spend with a margin.

tests/budgets/test_estimate.py checks the bound against the emulator's billed usage.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable

import orjson

from thrifty.budgets.limits import EstimateConfig
from thrifty.contract.usage import Usage
from thrifty.pricing import PriceBook, PriceCard
from thrifty.tokens import get_encoding
from thrifty.wire import Wire

_BOUND_MAX_CHARS = 64  # texts this short are counted as their bytes (an upper bound)
_MEMO_MIN_CHARS = 256  # long texts (system prompts, tool lists) repeat across calls
_MEMO_SIZE = 1024
# A catalog card lookup costs tens of microseconds; catalog prices change by date, so cards are
# kept a few minutes, not forever.
_CARD_TTL_S = 300.0


@dataclass(frozen=True, slots=True)
class Estimate:
    input_tokens: int
    output_tokens: int
    usd: Decimal | None  # None: the model has no price
    capped: bool  # the output cap came from the request itself

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def _json(obj: Any) -> str:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode()


class Estimator:
    def __init__(self, prices: PriceBook, config: EstimateConfig | None = None) -> None:
        self.prices = prices
        self.config = config or EstimateConfig()
        self._memo: dict[str, int] = {}
        self._cards: dict[tuple[str, str | None], tuple[float, PriceCard | None]] = {}
        # What a wire object's input walk needs (`thrifty.wire.base.TokenCounter`).
        self.per_message = self.config.per_message_tokens
        self.tools_tokens = self.config.tools_tokens
        self.attachment_tokens = self.config.attachment_tokens

    def estimate(self, body: dict[str, Any], wire: Wire, model: str,
                 provider: str | None = None) -> Estimate:
        """The worst case of sending `body` (in `wire` format) to `model`."""
        input_tokens = self.input_tokens(body, wire)
        output_tokens, capped = self.output_cap(body, wire, model)
        usd = self.price(model, provider, input_tokens, output_tokens, wire.cache_ttls(body))
        return Estimate(input_tokens, output_tokens, usd, capped)

    # --- tokens ----------------------------------------------------------------------------

    def count(self, text: str) -> int:
        if len(text) <= _BOUND_MAX_CHARS:
            # A short text (a role, a one-line question) is bounded by its UTF-8 bytes, which no
            # byte-level tokenizer exceeds: dearer by a few tokens, and no tokenizer call.
            return len(text.encode())
        if len(text) < _MEMO_MIN_CHARS:
            return len(get_encoding().encode_ordinary(text))
        n = self._memo.get(text)
        if n is None:
            n = len(get_encoding().encode_ordinary(text))
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.pop(next(iter(self._memo)))
            self._memo[text] = n
        return n

    def input_tokens(self, body: dict[str, Any], wire: Wire) -> int:
        n = wire.input_tokens(body, self)
        # Keyed by the wire's name: a factor per tokenizer family, from the config.
        factor = self.config.input_factor.get(wire.name, max(self.config.input_factor.values(), default=1.0))
        return math.ceil((n + self.config.per_request_tokens) * factor)

    def output_cap(self, body: dict[str, Any], wire: Wire, model: str) -> tuple[int, bool]:
        cap = wire.output_cap(body)
        choices = wire.choices(body)
        if cap is not None:
            return cap * choices, True
        return self.default_cap(model) * choices, False

    def default_cap(self, model: str) -> int:
        return self.config.output_caps.get(model, self.config.default_output_cap)

    def texts(self, values: Iterable[Any]) -> int:
        """Tokens of strings, and of anything else as its JSON."""
        n = 0
        for v in values:
            if isinstance(v, str):
                n += self.count(v)
            elif v is not None:
                n += self.count(_json(v))
        return n

    # --- price -----------------------------------------------------------------------------

    def price(self, model: str, provider: str | None, input_tokens: int, output_tokens: int,
              cache_ttls: frozenset[str] = frozenset()) -> Decimal | None:
        card = self._card(model, provider)
        if card is None:
            return None
        inputs = [Usage(input_tokens=input_tokens)]
        if "5m" in cache_ttls and card.cache_write_5m is not None:
            inputs.append(Usage(cache_write_5m_tokens=input_tokens))
        if "1h" in cache_ttls and card.cache_write_1h is not None:
            inputs.append(Usage(cache_write_1h_tokens=input_tokens))
        reasoning = [0]
        if card.reasoning is not None and card.reasoning > card.output:
            reasoning.append(output_tokens)
        worst: Decimal | None = None
        for u in inputs:
            for r in reasoning:
                u.output_tokens, u.reasoning_tokens = output_tokens, r
                cost = self.prices.cost(model, u, provider=provider)
                if cost is not None and (worst is None or cost.total > worst):
                    worst = cost.total
        return worst


    def _card(self, model: str, provider: str | None) -> PriceCard | None:
        key = (model, provider)
        now = time.monotonic()
        hit = self._cards.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        card = self.prices.card(model, provider)
        if len(self._cards) >= _MEMO_SIZE:
            self._cards.clear()
        self._cards[key] = (now + _CARD_TTL_S, card)
        return card
