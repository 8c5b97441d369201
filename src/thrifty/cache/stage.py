"""The exact response cache as a pipeline stage: answer repeats from the cache, fill it on misses."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, AsyncIterator

from thrifty.cache.backends import CacheUnavailable
from thrifty.cache.entry import Entry
from thrifty.cache.exact import ExactCache
from thrifty.cache.replay import (
    IncompleteStream, assemble_anthropic, assemble_openai, replay_anthropic, replay_openai, with_fresh_ids,
)
from thrifty.core.pipeline import Answer, Call, Next, Stage, after_answer

log = logging.getLogger("thrifty.cache")


class ExactCaching(Stage):
    name = "exact_cache"

    def __init__(self, cache: ExactCache) -> None:
        self.cache = cache

    async def __call__(self, call: Call, call_next: Next) -> Answer:
        policy = call.policy.exact_cache
        if policy is None:
            return await call_next(call)
        decision = self.cache.decide(call.body, call.headers, policy)
        if not decision.active:
            answer = await call_next(call)
            if answer.cache == "miss":  # a later stage (the semantic cache) may have answered
                answer.cache = "bypass"
            return answer
        key = self.cache.key(call.tenant, call.surface.name, call.body, policy)
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
                body = done.body if events is None else assemble(call.surface.name, events)
            except IncompleteStream as exc:
                log.warning("exact cache: not storing a stream that could not be assembled: %s", exc)
                return
            row = call.row
            entry = self.cache.entry(call.surface.name, body, done.usage, done.cost,
                                     served_model=row.served_model, tier=row.tier, ttl_s=decision.ttl_s)
            try:
                await self.cache.store(key, entry, decision.ttl_s)
            except CacheUnavailable as exc:
                log.warning("exact cache unavailable, answer not stored: %s", exc)

        return await after_answer(answer, store, collect=True)

def assemble(surface: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    return assemble_openai(events) if surface == "openai" else assemble_anthropic(events)


async def replayed(surface: str, body: dict[str, Any], include_usage: bool) -> AsyncIterator[dict[str, Any]]:
    if surface == "openai":
        for chunk in replay_openai(body, include_usage=include_usage):
            yield chunk
    else:
        for _, event in replay_anthropic(body):
            yield event


def served_from_cache(call: Call, entry: Entry, kind: str) -> Answer:
    """The answer to `call` from a cached entry: fresh ids, no cost, the saving recorded."""
    row = call.row
    row.served_model, row.tier, row.provider = entry.served_model, entry.tier, None
    call.saved["response_cache"] = entry.cost_usd if entry.cost_usd is not None else Decimal(0)
    body = with_fresh_ids(entry.response, entry.surface)
    answer = Answer(cost=Decimal(0), cache=kind, complete=True)
    if not call.stream:
        answer.body = body
    else:
        include_usage = bool((call.body.get("stream_options") or {}).get("include_usage"))
        answer.events = replayed(call.surface.name, body, include_usage)
    return answer
