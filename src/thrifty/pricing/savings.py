"""The one counterfactual: what a call would have cost sent directly, and what each lever saved.

The baseline is what the provider would have billed for the request exactly as the client sent
it: its model, its own cache breakpoints and the provider's automatic caching as they applied,
interactive price, no response cache. It is reached from the actual call by undoing the levers'
effects from the innermost outwards (prompt caching, then shaping, then every change of model);
each lever's saving is the cost before its undo minus the cost after, so the savings add up
exactly to baseline - actual. The method, and which figures are estimates, is docs/savings.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from thrifty.contract import (
    AnsweredFromCache, Answer, Batched, BreakpointsAdded, Call, Counted, Effect, LeverSaving, ModelMoved, Unrequested,
    Usage,
)
from thrifty.pricing.book import PriceBook

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Accounting:
    baseline_usd: Decimal | None  # None: a price is missing somewhere on the way back
    baseline_model: str | None
    levers: tuple[LeverSaving, ...]
    provider_discount_usd: Decimal | None  # the provider's own caching, which the client had anyway


def uncached(usage: Usage) -> Usage:
    """The same usage with every cache read and write counted as plain input."""
    return Usage(input_tokens=usage.prompt_tokens, output_tokens=usage.output_tokens,
                 reasoning_tokens=usage.reasoning_tokens)


def without_reasoning(usage: Usage) -> Usage:
    return replace(usage, output_tokens=usage.output_tokens - usage.reasoning_tokens, reasoning_tokens=0)


def client_cache_only(usage: Usage, client_prefix_tokens: int | None, client_ttl: str) -> Usage:
    """The usage had only the client's own breakpoints been sent.

    Cached tokens come first in the prompt, reads before writes; what lay past the client's
    last breakpoint would have been plain input. Without client breakpoints nothing is cached.
    """
    budget = client_prefix_tokens or 0
    read = min(usage.cache_read_tokens, budget)
    write = min(usage.cache_write_tokens, max(0, budget - read))
    plain = usage.prompt_tokens - read - write
    w1h = write if client_ttl == "1h" else 0
    return Usage(input_tokens=plain, cache_read_tokens=read, cache_write_5m_tokens=write - w1h,
                 cache_write_1h_tokens=w1h, output_tokens=usage.output_tokens,
                 reasoning_tokens=usage.reasoning_tokens)


AUTO_CACHE_MIN_TOKENS = 1024  # OpenAI's automatic prompt caching: shorter prompts are never cached
AUTO_CACHE_GRANULARITY = 128  # and the cached part comes in multiples of 128 tokens


def automatic_cache_tokens(prompt_tokens: int, share: float) -> int:
    """The tokens OpenAI's automatic caching reads of a prompt whose warm prefix is `share` of it
    (platform.openai.com/docs/guides/prompt-caching)."""
    if prompt_tokens < AUTO_CACHE_MIN_TOKENS or share <= 0:
        return 0
    tokens = int(prompt_tokens * min(share, 1.0)) // AUTO_CACHE_GRANULARITY * AUTO_CACHE_GRANULARITY
    return tokens if tokens >= AUTO_CACHE_MIN_TOKENS else 0


def with_automatic_cache(usage: Usage, share: float) -> Usage:
    """The usage as the baseline's automatic cache would have billed it: the warm prefix read from
    the cache (no write: automatic caching bills none), the rest plain input. Unchanged when the
    estimate reads no more than the usage already does."""
    auto = automatic_cache_tokens(usage.prompt_tokens, share)
    if auto <= usage.cache_read_tokens:
        return usage
    return Usage(input_tokens=usage.prompt_tokens - auto, cache_read_tokens=auto, output_tokens=usage.output_tokens,
                 reasoning_tokens=usage.reasoning_tokens)


class Accountant:
    """Prices the counterfactual of calls; one per gateway."""

    def __init__(self, prices: PriceBook) -> None:
        self.prices = prices

    def _cost(self, model: str, usage: Usage, provider: str | None, batch: bool = False) -> Decimal | None:
        cost = self.prices.cost(model, usage, provider=provider, batch=batch)
        return None if cost is None else cost.total

    def account(self, effects: list[Effect], *, model: str | None, provider: str | None, usage: Usage,
                actual: Decimal | None, batch_priced: bool = False) -> Accounting:
        """The accounting of one answered call (`model`: what served it; None for a cache hit).

        `batch_priced`: the client itself asked for a provider batch (a `/v1/batches` or
        `/v1/messages/batches` line), so its baseline is the batch price: the batch discount is
        one the client would have had without Thrifty, never counted as a saving. A call that
        Thrifty batched on its own (the deferred lane) carries a `Batched` effect instead.
        """
        added = next((e for e in effects if isinstance(e, Unrequested)), None)
        if added is not None:
            return unrequested(added.lever, actual, added.note, added.unpriced)
        hit = next((e for e in effects if isinstance(e, AnsweredFromCache)), None)
        if hit is not None:
            return Accounting(hit.baseline_usd, model, (LeverSaving(hit.lever, hit.baseline_usd, hit.estimated),),
                              None)
        counted = tuple(LeverSaving(e.lever, None, note=e.note) for e in effects if isinstance(e, Counted))
        if actual is None or model is None:
            return Accounting(None, model, counted, None)
        saved: list[LeverSaving] = []
        after = actual
        batch = batch_priced
        for effect in reversed(effects):
            before: Decimal | None = after
            if isinstance(effect, Batched):
                # The same usage at the interactive price: exact, nothing else changed.
                before = self._cost(model, usage, provider)
                estimated, note, batch = False, None, False
            elif isinstance(effect, BreakpointsAdded):
                u = client_cache_only(usage, effect.client_prefix_tokens, effect.client_ttl)
                # With no client breakpoint the rule is exact: nothing would have been cached.
                estimated = effect.client_prefix_tokens is not None
                usage, before = u, self._cost(model, u, provider, batch)
                note = None
            elif isinstance(effect, ModelMoved):
                # Estimated: the other model's tokenizer counts differently and it would have
                # answered at its own length. The served model's hidden reasoning is left out: a
                # model that does not reason would not have spent it, and what one that does would
                # have spent is unknown, so the estimate stays a lower bound.
                # The baseline's automatic prompt caching, which the client would have had
                # sent directly, is applied to it (estimated by routing/baseline_cache.py).
                model, provider = effect.from_model, effect.from_price_provider
                usage = with_automatic_cache(without_reasoning(usage), effect.baseline_cached_share)
                before = self._cost(model, usage, provider, batch)
                estimated, note = True, None
            else:
                continue
            if before is None:
                return Accounting(None, model, (*counted, *saved), None)
            saved.append(LeverSaving(effect.lever, before - after, estimated, note))
            after = before
        if usage.cache_read_tokens or usage.cache_write_tokens:
            plain = self._cost(model, uncached(usage), provider, batch)
            discount = None if plain is None else plain - after
        else:
            discount = ZERO
        return Accounting(after, model, _merged(counted, saved), discount)

    def of_call(self, call: Call, answer: Answer) -> Accounting:
        """The accounting of a call's final answer, from what its stages reported (worked out once
        per answer: the exact cache, when it stores the answer, and the recorder both ask)."""
        if answer.accounting is not None:
            return answer.accounting
        route = call.route if answer.cache not in ("exact", "semantic") else None
        answer.accounting = self.account([*call.effects, *call.attempt_effects, *call.body_effects],
                            model=None if route is None else route.model,
                            provider=None if route is None else route.price_provider,
                            usage=answer.usage, actual=answer.cost)
        return answer.accounting

    @staticmethod
    def discarded(cost: Decimal | None) -> Accounting:
        """An attempt the client never got (escalation, a consistency sample): the client would not
        have made it, so its baseline is 0 and its whole cost is the escalation lever's, negative."""
        return unrequested("escalation", cost, None, "unpriced attempt")


def unrequested(lever: str, cost: Decimal | None, note: str | None, unpriced: str) -> Accounting:
    """A call the client would not have made (a discarded attempt, a shadow sample): baseline 0,
    its whole cost the lever's negative saving (`unpriced` is the note when its cost is unknown)."""
    if cost is None:
        return Accounting(None, None, (LeverSaving(lever, None, note=unpriced),), None)
    return Accounting(ZERO, None, (LeverSaving(lever, -cost, note=note),), ZERO)


def _merged(counted: tuple[LeverSaving, ...], saved: list[LeverSaving]) -> tuple[LeverSaving, ...]:
    """One entry per lever (a lever that acted twice, e.g. two fallbacks, is summed)."""
    by_lever: dict[str, LeverSaving] = {}
    for s in (*reversed(saved), *counted):
        have = by_lever.get(s.lever)
        if have is None:
            by_lever[s.lever] = s
        elif s.saved_usd is not None:
            total = s.saved_usd if have.saved_usd is None else have.saved_usd + s.saved_usd
            by_lever[s.lever] = replace(have, saved_usd=total, estimated=have.estimated or s.estimated)
    return tuple(by_lever.values())


def cache_discount(prices: PriceBook, model: str, usage: Usage, provider: str | None = None, *,
                   batch: bool = False, actual: Decimal | None = None) -> Decimal | None:
    """What the provider's prompt cache took off one call's bill, whoever placed the breakpoints:
    its cost with every cache read and write billed as plain input, minus its actual cost (USD;
    None when unpriced). Negative when the call paid for a write it did not read back."""
    if actual is None:
        cost = prices.cost(model, usage, provider=provider, batch=batch)
        if cost is None:
            return None
        actual = cost.total
    if not (usage.cache_read_tokens or usage.cache_write_5m_tokens or usage.cache_write_1h_tokens):
        return ZERO
    plain = prices.cost(model, uncached(usage), provider=provider, batch=batch)
    return None if plain is None else plain.total - actual
