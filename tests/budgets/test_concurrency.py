"""Concurrent calls never take spend past a hard limit, on one replica or several."""

from __future__ import annotations

import asyncio
import random
import threading
from decimal import Decimal

from thrifty.budgets import BudgetExceeded, BudgetsConfig, CallScopes, Enforcer
from thrifty.budgets.memory import MemoryStore

D = Decimal
SCOPES = CallScopes("acme", feature="search", user="u1", task="t1")
BUDGETS = [
    {"name": "tenant", "scope": "tenant", "limit_usd": "1", "window": "day"},
    {"name": "feature", "scope": "feature", "limit_usd": "5", "window": "month"},
    {"name": "task", "scope": "task", "limit_usd": "2", "limit_tokens": 10**9, "window": "lifetime"},
    {"name": "global", "scope": "global", "limit_usd": "100", "window": "hour"},
]


async def _try(e: Enforcer, usd: Decimal, tokens: int):
    try:
        return await e.reserve(SCOPES, usd, tokens)
    except BudgetExceeded:
        return None


async def test_n_concurrent_reservations_fit_exactly(make_enforcer, make_store, store_kind):
    replicas = [make_enforcer(store=make_store(), budgets=BUDGETS) for _ in range(4 if store_kind == "redis" else 1)]
    n = 300
    results = await asyncio.gather(*(_try(replicas[i % len(replicas)], D("0.01"), 10) for i in range(n)))
    held = [r for r in results if r is not None]
    assert len(held) == 100  # $1 / $0.01: every one that fits, and not one more
    out = await replicas[0].spend("tenant", "acme")
    assert out["budgets"][0]["held_usd"] == D(1)
    # Settling them all below their worst case frees room again, exactly.
    await asyncio.gather(*(replicas[0].settle(r, D("0.004"), 4) for r in held))
    out = await replicas[0].spend("tenant", "acme")
    assert (out["budgets"][0]["spent_usd"], out["budgets"][0]["held_usd"]) == (D("0.4"), D(0))
    more = await asyncio.gather(*(_try(replicas[i % len(replicas)], D("0.01"), 10) for i in range(n)))
    assert sum(r is not None for r in more) == 60


async def test_random_traffic_never_overshoots(make_enforcer, make_store, store_kind):
    replicas = [make_enforcer(store=make_store(), budgets=BUDGETS) for _ in range(3 if store_kind == "redis" else 1)]
    rng = random.Random(7)
    settled = []

    async def worker(w: int) -> None:
        e = replicas[w % len(replicas)]
        for _ in range(25):
            worst = D(rng.randint(1, 60)) / 1000
            r = await _try(e, worst, 100)
            if r is None:
                await asyncio.sleep(0)
                continue
            await asyncio.sleep(rng.random() / 1000)
            if rng.random() < 0.2:
                await e.release(r)
            else:
                actual = worst * D(rng.randint(0, 100)) / 100
                await e.settle(r, actual, 50)
                settled.append(actual)

    await asyncio.gather(*(worker(w) for w in range(40)))
    out = await replicas[0].spend("tenant", "acme")
    b = out["budgets"][0]
    assert b["held_usd"] == 0
    assert b["spent_usd"] <= D(1)
    # The counter is the exact sum of what was settled (each rounded up to a nano-dollar at most).
    assert sum(settled) <= b["spent_usd"] <= sum(settled) + D(len(settled)) / 10**9


def test_memory_store_is_safe_across_threads():
    store = MemoryStore()
    cfg = BudgetsConfig.model_validate({"budgets": BUDGETS})
    counts = []

    def run() -> None:
        async def main() -> int:
            e = Enforcer(cfg, store)
            got = await asyncio.gather(*(_try(e, D("0.01"), 1) for _ in range(100)))
            return sum(r is not None for r in got)

        counts.append(asyncio.run(main()))

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 100


def test_redis_replicas_in_separate_threads_share_one_limit(redis_url, redis_prefix):
    from thrifty.budgets.redis_backend import RedisStore

    cfg = BudgetsConfig.model_validate({"budgets": BUDGETS})
    counts = []

    def replica() -> None:
        async def main() -> int:
            store = RedisStore(redis_url, prefix=redis_prefix, timeout_s=5)
            e = Enforcer(cfg, store)
            try:
                got = await asyncio.gather(*(_try(e, D("0.007"), 1) for _ in range(60)))
                return sum(r is not None for r in got)
            finally:
                await store.close()

        counts.append(asyncio.run(main()))

    threads = [threading.Thread(target=replica) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 142  # floor(1 / 0.007)
