"""The exact response cache: one facade over keys, entries and a byte store.

Flow for the request pipeline::

    decision = cache.decide(body, headers, policy)           # InvalidRequest on a bad header
    if decision.active:
        key = cache.key(tenant, wire, body, policy)
    if decision.read:
        try:
            entry = await cache.lookup(key)                  # None: miss (or corrupt/expired)
        except CacheUnavailable:
            ...                                              # fail open; the ledger says so
        if entry: answer = cache.answer(entry, wire)         # fresh ids; replay it if streaming
    ... call upstream ...
    if decision.write:
        await cache.store(key, cache.entry(wire, client_answer, usage, cost, ...), decision.ttl_s)

Lookups and stores raise CacheUnavailable when the backend is down: caching fails open and the
caller decides what to record. Corrupt entries are logged, deleted and treated as misses.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from decimal import Decimal
from typing import Any, Callable, Mapping

from thrifty.contract.usage import Usage
from thrifty.wire import Wire

from thrifty.errors import CacheUnavailable, CorruptEntry

from .backends import CacheBackend
from .entry import Entry, decode_entry, encode_entry
from .keys import CacheDecision, CachePolicy, cache_key, decide

log = logging.getLogger("thrifty.cache")


class ExactCache:
    def __init__(self, backend: CacheBackend, *, clock: Callable[[], float] = time.time) -> None:
        self.backend = backend
        self._clock = clock

    def decide(self, body: Any, headers: Mapping[str, str], policy: CachePolicy) -> CacheDecision:
        return decide(body, headers, policy)

    def key(self, tenant: str, wire: Wire, body: dict[str, Any], policy: CachePolicy,
            *, model: str | None = None) -> str:
        """See `keys` for the canonical form; `model` replaces body["model"] (e.g. a tier name)."""
        return cache_key(tenant, wire, body, policy, model=model)

    async def lookup(self, key: str) -> Entry | None:
        data = await self.backend.get(key)
        if data is None:
            return None
        try:
            entry = decode_entry(data, key)
        except CorruptEntry as err:
            log.warning("exact cache (%s): ignoring corrupt entry %s: %s", self.backend.name, key, err)
            try:
                await self.backend.delete(key)
            except CacheUnavailable:
                pass
            return None
        if entry.expired(self._clock()):
            return None
        return entry

    async def store(self, key: str, entry: Entry, ttl_s: int | None = None) -> None:
        """Store `entry` under `key` for `ttl_s` (default: the entry's own ttl_s)."""
        ttl = entry.ttl_s if ttl_s is None else ttl_s
        if ttl <= 0:
            return
        if ttl != entry.ttl_s:
            entry = replace(entry, ttl_s=ttl)
        await self.backend.set(key, encode_entry(entry, key), ttl)

    def entry(self, wire: Wire, response: dict[str, Any], usage: Usage, cost_usd: Decimal | None, *,
              served_model: str | None = None, tier: str | None = None, ttl_s: int = 0,
              baseline_usd: Decimal | None = None) -> Entry:
        """An entry created now (by this cache's clock)."""
        return Entry(surface=wire.name, response=response, usage=usage, cost_usd=cost_usd,
                     served_model=served_model, tier=tier, created_at=self._clock(), ttl_s=ttl_s,
                     baseline_usd=baseline_usd)

    def answer(self, entry: Entry, wire: Wire, *, response_id: str | None = None) -> dict[str, Any]:
        """The cached response as served: a copy with a fresh id, tool-call ids and `created`.

        An answer stored without `usage` (assembled from an OpenAI stream the client did not ask
        usage for) gets the entry's usage, so a replay with include_usage can report it.
        """
        out = wire.with_fresh_ids(entry.response, response_id=response_id, now=self._clock())
        if not out.get("usage"):
            out["usage"] = wire.usage_body(entry.usage)
        return out

    async def close(self) -> None:
        await self.backend.close()
