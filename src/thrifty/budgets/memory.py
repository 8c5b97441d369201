"""Budget counters in this process: the default, for one gateway replica.

Every method runs to completion without awaiting, so under asyncio each is atomic; a lock makes
it so across threads too. Memory follows the live windows and the calls in flight, not history:
settled holds are removed at once, expired ones after a grace period, and counters of windows
that ended are swept as time passes.
"""

from __future__ import annotations

import math
import threading
from typing import Sequence

from thrifty.budgets.backend import (
    BLOCK, UNLIMITED, BucketSpec, BudgetStore, HoldSpec, ReserveResult, Seed,
)
from thrifty.errors import BudgetStoreNotSeeded

_SWEEP_EVERY_S = 10.0


class _Counter:
    __slots__ = ("usd", "tokens", "held_usd", "held_tokens", "holds", "expired", "expire_at")

    def __init__(self, expire_at: float) -> None:
        self.usd = self.tokens = self.held_usd = self.held_tokens = 0
        # rid -> (usd, tokens, expires). Every hold has the same TTL, so insertion order is expiry
        # order and purging looks only at the oldest.
        self.holds: dict[str, tuple[int, int, float]] = {}
        self.expired: dict[str, float] = {}  # rid -> when to forget an expired hold
        self.expire_at = expire_at

    def purge(self, now: float, grace: float) -> None:
        holds = self.holds
        while holds:
            rid = next(iter(holds))
            usd, tokens, until = holds[rid]
            if until > now:
                break
            del holds[rid]
            self.held_usd -= usd
            self.held_tokens -= tokens
            self.expired[rid] = until + grace
        expired = self.expired
        while expired:
            rid = next(iter(expired))
            if expired[rid] > now:
                break
            del expired[rid]

    def take_back(self, rid: str) -> bool:
        """Remove this call's hold (or its expired record); False if there is neither."""
        hold = self.holds.pop(rid, None)
        if hold is not None:
            self.held_usd -= hold[0]
            self.held_tokens -= hold[1]
            return True
        return self.expired.pop(rid, None) is not None


class _Bucket:
    __slots__ = ("level", "ts", "capacity", "rate")

    def __init__(self, capacity: int, rate: float, now: float) -> None:
        self.level, self.ts, self.capacity, self.rate = float(capacity), now, capacity, rate

    def refill(self, now: float) -> float:
        if now > self.ts:
            self.level = min(float(self.capacity), self.level + (now - self.ts) * self.rate)
            self.ts = now
        return self.level

    def full_at(self) -> float:
        return self.ts + max(0.0, self.capacity - self.level) / self.rate


class MemoryStore(BudgetStore):
    name = "memory"
    where = "in-process"

    def __init__(self, *, require_seed: bool = False) -> None:
        # A new process starts with no counters: with require_seed the enforcer fills them from
        # the ledger before the first call is let through (a restart does not forget the month).
        self.require_seed = require_seed
        self._seeded = not require_seed
        self._counters: dict[str, _Counter] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._markers: dict[str, float] = {}
        self._grace = 0.0  # the reservation TTL, learnt from reserve()
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def _counter(self, spec: HoldSpec) -> _Counter:
        c = self._counters.get(spec.key)
        if c is None:
            c = self._counters[spec.key] = _Counter(spec.expire_at)
        elif spec.expire_at > c.expire_at:
            c.expire_at = spec.expire_at  # lifetime counters live on while used
        return c

    async def reserve(self, rid: str, holds: Sequence[HoldSpec], buckets: Sequence[BucketSpec],
                      now: float, ttl: float) -> ReserveResult:
        with self._lock:
            self._check_seeded()
            self._grace = ttl
            self._maybe_sweep(now)
            counters = [self._counter(h) for h in holds]
            refused = False
            failed: list[int] = []
            totals: list[tuple[int, int, int, int]] = []
            for i, (h, c) in enumerate(zip(holds, counters)):
                c.purge(now, ttl)
                totals.append((c.usd, c.tokens, c.held_usd, c.held_tokens))
                if h.mode and ((h.limit_usd != UNLIMITED and c.usd + c.held_usd + h.usd > h.limit_usd)
                               or (h.limit_tokens != UNLIMITED
                                   and c.tokens + c.held_tokens + h.tokens > h.limit_tokens)):
                    failed.append(i)
                    refused = refused or h.mode == BLOCK
            waits: list[float | None] = []
            states = []
            for b in buckets:
                state = self._buckets.get(b.key)
                if state is None or state.capacity != b.capacity:
                    state = self._buckets[b.key] = _Bucket(b.capacity, b.rate, now)
                states.append(state)
                level = state.refill(now)
                if b.take <= level:
                    waits.append(None)
                else:
                    waits.append(math.inf if b.take > b.capacity else (b.take - level) / b.rate)
                    refused = True
            if refused:
                return ReserveResult(False, totals, failed, waits)
            until = now + ttl
            for h, c in zip(holds, counters):
                c.holds[rid] = (h.usd, h.tokens, until)
                c.held_usd += h.usd
                c.held_tokens += h.tokens
            for b, state in zip(buckets, states):
                state.level -= b.take
            return ReserveResult(True, totals, failed, waits)

    async def settle(self, rid: str, holds: Sequence[HoldSpec], actual: Sequence[tuple[int, int]],
                     buckets: Sequence[BucketSpec], refunds: Sequence[int],
                     now: float) -> list[tuple[int, int]] | None:
        with self._lock:
            out = []
            found = not holds
            for h, (usd, tokens) in zip(holds, actual):
                c = self._counter(h)
                c.purge(now, self._grace)
                if c.take_back(rid):
                    found = True
                    c.usd += usd
                    c.tokens += tokens
                out.append((c.usd, c.tokens))
            if not found:
                return None
            for b, refund in zip(buckets, refunds):
                state = self._buckets.get(b.key)
                if refund and state is not None:
                    state.refill(now)
                    state.level = min(float(state.capacity), state.level + refund)
            return out

    async def read(self, keys: Sequence[str], now: float) -> list[tuple[int, int, int, int]]:
        with self._lock:
            self._check_seeded()
            out = []
            for key in keys:
                c = self._counters.get(key)
                if c is None:
                    out.append((0, 0, 0, 0))
                    continue
                c.purge(now, self._grace)
                out.append((c.usd, c.tokens, c.held_usd, c.held_tokens))
            return out

    async def claim(self, marker: str, until: float, now: float) -> bool:
        with self._lock:
            if self._markers.get(marker, -math.inf) > now:
                return False
            self._markers[marker] = until
            return True

    async def seeded(self) -> bool:
        return self._seeded

    async def seed(self, seeds: Sequence[Seed], now: float) -> bool:
        with self._lock:
            if self._seeded:
                return False
            for s in seeds:
                c = self._counters.get(s.key)
                if c is None:
                    c = self._counters[s.key] = _Counter(s.expire_at)
                c.usd, c.tokens = s.usd, s.tokens
                c.expire_at = max(c.expire_at, s.expire_at)
            self._seeded = True
            return True

    def _check_seeded(self) -> None:
        if not self._seeded:
            raise BudgetStoreNotSeeded("in-process budget counters are not seeded from the ledger yet")

    def _maybe_sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + _SWEEP_EVERY_S
        for k in [k for k, until in self._markers.items() if until <= now]:
            del self._markers[k]
        for k in [k for k, c in self._counters.items() if c.expire_at <= now]:
            del self._counters[k]
        for k in [k for k, b in self._buckets.items() if b.full_at() <= now]:
            del self._buckets[k]  # full again: the same as absent

    def size(self) -> tuple[int, int, int]:
        """(counters, holds in flight or in grace, buckets): what this store keeps in memory."""
        with self._lock:
            holds = sum(len(c.holds) + len(c.expired) for c in self._counters.values())
            return len(self._counters), holds, len(self._buckets)
