"""The exact response cache as a pipeline stage: answer repeats from the cache, fill it on misses."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, AsyncIterator

from thrifty.errors import CacheUnavailable
from thrifty.cache.entry import Entry
from thrifty.cache.exact import ExactCache
from thrifty.contract import AnsweredFromCache, Answer, Call, Next, Stage, after_answer
from thrifty.errors import IncompleteStream
from thrifty.pricing import Accountant

log = logging.getLogger("thrifty.cache")


class ExactCaching(Stage):
    name = "exact_cache"

    def __init__(self, cache: ExactCache, accountant: Accountant) -> None:
        self.cache = cache
        self.accountant = accountant

    async def __call__(self, call: Call, call_next: Next) -> Answer:
        policy = call.policy.exact_cache
        decision = None if policy is None else self.cache.decide(call.body, call.headers, policy)
        if decision is None or not decision.active:  # the lever is off here, or the call not eligible
            answer = await call_next(call)
            if answer.cache == "miss":  # a later stage (the semantic cache) may have answered
                answer.cache = "bypass"
            return answer
        assert policy is not None
        key = self.cache.key(call.tenant, call.wire, call.body, policy)
        if decision.read:
            try:
                entry = await self.cache.lookup(key)
            except CacheUnavailable as exc:
                # Caching fails open: the call goes upstream and the ledger says why it missed.
                log.warning("exact cache unavailable, calling upstream: %s", exc)
                answer = await call_next(call)
                if answer.cache == "miss":
                    answer.cache = "unavailable"
                return answer
            if entry is not None:
                return served_from_cache(call, entry, "exact")
        answer = await call_next(call)
        if not decision.write or answer.cache == "semantic":
            return answer  # a semantic hit is a neighbour's answer, not this request's

        async def store(done: Answer, events: list[dict[str, Any]] | None) -> None:
            try:
                body = done.body if events is None else call.wire.assemble(events)
            except IncompleteStream as exc:
                log.warning("exact cache: not storing a stream that could not be assembled: %s", exc)
                return
            entry = self.cache.entry(call.wire, body, done.usage, done.cost, served_model=served_model(call),
                                     tier=call.tier, ttl_s=decision.ttl_s,
                                     baseline_usd=self.accountant.of_call(call, done).baseline_usd)
            try:
                await self.cache.store(key, entry, decision.ttl_s)
            except CacheUnavailable as exc:
                log.warning("exact cache unavailable, answer not stored: %s", exc)

        return await after_answer(answer, store, collect=True)


def served_model(call: Call) -> str | None:
    return None if call.route is None else call.route.model


async def replayed(call: Call, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    for event in call.wire.replay(body, include_usage=call.wire.stream_usage_wanted(call.body)):
        yield event


def served_from_cache(call: Call, entry: Entry, kind: str) -> Answer:
    """The answer to `call` from a cached entry: fresh ids, no cost, the saving reported.

    The saving is the baseline of the call that filled the entry; an entry stored before
    baselines were kept offers its cost instead, marked as an estimate.
    """
    semantic = kind == "semantic"
    baseline = entry.baseline_usd if entry.baseline_usd is not None else entry.cost_usd  # None: unpriced
    call.effects.append(AnsweredFromCache(f"{kind}_cache", baseline, estimated=semantic or entry.baseline_usd is None))
    body = call.wire.with_fresh_ids(entry.response)
    answer = Answer(cost=Decimal(0), cache=kind, complete=True, served_model=entry.served_model, tier=entry.tier)
    if not call.stream:
        answer.body = body
    else:
        answer.events = replayed(call, body)
    return answer
