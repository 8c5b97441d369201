"""What the stores keep: only live windows and calls in flight; Redis keys expire on their own."""

from __future__ import annotations

from decimal import Decimal

import redis

from thrifty.budgets import BudgetsConfig, CallScopes, Enforcer
from thrifty.budgets.memory import MemoryStore
from thrifty.budgets.redis_backend import RedisStore

D = Decimal
CONFIG = BudgetsConfig.model_validate({
    "budgets": [{"name": "m", "scope": "user", "limit_usd": "1", "window": "minute"},
                {"name": "life", "scope": "task", "limit_usd": "1", "window": "lifetime"}],
    "rate_limits": [{"name": "r", "scope": "user", "rpm": 100, "tpm": 100000}],
    "backend": {"reservation_ttl_s": 120}, "lifetime_idle_s": 7200,
})


async def test_memory_holds_nothing_for_settled_calls_and_sweeps_ended_windows(clock):
    store = MemoryStore()
    e = Enforcer(CONFIG, store, clock=clock)
    for i in range(500):
        r = await e.reserve(CallScopes("acme", user=f"u{i}", task="t"), D("0.001"), 10)
        await e.settle(r, D("0.001"), 5)
    counters, holds, buckets = store.size()
    assert (counters, holds, buckets) == (501, 0, 1000)  # rpm and tpm per user
    clock.advance(30 + 120 + 11)  # past the minute, its late-settle margin, and a sweep interval
    await e.reserve(CallScopes("acme", user="x"), D("0.001"), 10)
    counters, holds, buckets = store.size()
    assert counters == 2 and holds == 1  # the lifetime task counter, and the new call's
    assert buckets == 2  # idle buckets refilled and went
    await e.alerter.close()


async def test_redis_keys_expire_with_their_window_and_settled_calls_leave_nothing(
        redis_url, redis_prefix, clock):
    store = RedisStore(redis_url, prefix=redis_prefix)
    e = Enforcer(CONFIG, store, clock=clock)
    sync = redis.Redis.from_url(redis_url)
    try:
        r = await e.reserve(CallScopes("acme", user="u1", task="t"), D("0.001"), 10)
        ttls = {k.decode().removeprefix(redis_prefix): sync.ttl(k) for k in sync.scan_iter(redis_prefix + "*")}
        minute = [t for k, t in ttls.items() if k.startswith("c:m:")]
        life = [t for k, t in ttls.items() if k.startswith("c:life:")]
        buckets = [t for k, t in ttls.items() if k.startswith("r:")]
        assert len(minute) == 2 and all(0 < t <= 30 + 120 for t in minute)  # 30 s left in the minute
        assert len(life) == 2 and all(7000 < t <= 7200 for t in life)
        assert len(buckets) == 2 and all(0 < t <= 120 for t in buckets)
        assert all(t > 0 for t in ttls.values()), ttls  # nothing without an expiry
        await e.settle(r, D("0.001"), 5)
        assert all(sync.zcard(k) == 0 for k in sync.scan_iter(redis_prefix + "c:*:x"))
        assert not list(sync.scan_iter(redis_prefix + "d:*"))
    finally:
        sync.close()
        await e.close()
