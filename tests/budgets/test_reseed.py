"""Counters that come back empty are re-seeded from the ledger before any call goes through.

A real SQLite ledger (rows recorded, not flushed: the re-seed flushes first) and both stores; the
Redis store is wiped by deleting every key under its prefix, as a restart without persistence or
a FLUSHDB would.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.conftest import delete_redis_prefix
from tests.ledger_util import make_row
from thrifty.budgets import BudgetExceeded, BudgetsConfig, BudgetUnavailable, CallScopes, Enforcer
from thrifty.budgets.backend import from_nano, to_nano
from thrifty.budgets.memory import MemoryStore
from thrifty.budgets.redis_backend import RedisStore
from thrifty.ledger import RowFilter, open_ledger

D = Decimal
DAY = 86400

CONFIG = BudgetsConfig.model_validate({"budgets": [
    {"name": "tenant-day", "scope": "tenant", "limit_usd": "10", "window": "day"},
    {"name": "feature-day", "scope": "feature", "limit_usd": "10", "window": "day"},
    {"name": "user-all", "scope": "user", "limit_usd": "10", "window": "month", "per_tenant": False},
    {"name": "task-life", "scope": "task", "limit_usd": "10", "window": "lifetime"},
    {"name": "global-month", "scope": "global", "limit_tokens": 10**9, "window": "month"},
    {"name": "acme-only", "scope": "tenant", "match": "acme", "limit_usd": "0.0005", "window": "day"},
    {"name": "per-key", "scope": "key", "limit_usd": "10", "window": "day"},
]})


@pytest.fixture
def ledger(tmp_path):
    led = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    led.start()
    yield led
    led.close()


def record_history(ledger, now: float) -> None:
    """Rows this day, one the day before, and a cache hit (no budget held); none flushed."""
    rows = [
        make_row(1, started_at=now - 60, tenant="acme", feature="search", user="u1", task="t1",
                 cost_usd=D("0.000200")),
        make_row(2, started_at=now - 30, tenant="acme", feature="chat", user="u2", task="t1",
                 cost_usd=D("0.000150")),
        make_row(3, started_at=now - 20, tenant="beta", feature="search", user="u1", task=None,
                 cost_usd=D("0.000070")),
        make_row(4, started_at=now - 40 * DAY, tenant="acme", feature="search", user="u1", task="t1",
                 cost_usd=D("0.5")),  # last month: only the lifetime task budget counts it
        make_row(5, started_at=now - 10, tenant="acme", feature="search", user="u1", task="t1",
                 cost_usd=D(0), cache="semantic"),  # a hit: no cost, and its tokens held nothing
    ]
    for row in rows:
        ledger.record(row)


def ledger_usd(ledger, **where) -> Decimal:
    return sum((t["cost_usd"] for t in ledger.totals("tenant", RowFilter(**where))), D(0))


async def spent(e: Enforcer, scope: str, value: str | None, tenant: str | None = None) -> dict[str, dict]:
    return {b["budget"]: b for b in (await e.spend(scope, value, tenant=tenant))["budgets"]}


async def test_an_unseeded_memory_store_is_seeded_from_the_ledger_per_scope_and_window(ledger, clock):
    now = clock()
    record_history(ledger, now)
    e = Enforcer(CONFIG, MemoryStore(require_seed=True), clock=clock, ledger=ledger)
    day0 = now - now % DAY
    acme = await spent(e, "tenant", "acme")
    assert acme["tenant-day"]["spent_usd"] == D("0.000350") == ledger_usd(ledger, tenant="acme", since=day0)
    assert acme["acme-only"]["spent_usd"] == D("0.000350")
    assert (await spent(e, "tenant", "beta"))["tenant-day"]["spent_usd"] == D("0.000070")
    assert (await spent(e, "feature", "search", "acme"))["feature-day"]["spent_usd"] == D("0.000200")
    assert (await spent(e, "feature", "search", "beta"))["feature-day"]["spent_usd"] == D("0.000070")
    assert (await spent(e, "user", "u1"))["user-all"]["spent_usd"] == D("0.000270")  # both tenants
    assert (await spent(e, "task", "t1", "acme"))["task-life"]["spent_usd"] == D("0.500350")
    tokens = (100 + 20 + 5 + 50) * 3  # the three calls of this month that reached a provider
    assert (await spent(e, "global", None))["global-month"]["spent_tokens"] == tokens
    # The ledger keeps no virtual key: a key budget starts again from zero.
    assert (await spent(e, "key", "k1"))["per-key"]["spent_usd"] == 0
    await e.close()


async def test_an_exhausted_budget_stays_exhausted_after_a_restart(ledger, clock):
    record_history(ledger, clock())
    e = Enforcer(CONFIG, MemoryStore(require_seed=True), clock=clock, ledger=ledger)
    assert await e.reseed() is True
    assert await e.reseed() is False  # seeded: nothing to do
    with pytest.raises(BudgetExceeded, match="acme-only"):  # 0.00035 spent of 0.0005
        await e.reserve(CallScopes("acme"), D("0.0002"), 10)
    r = await e.reserve(CallScopes("beta"), D("0.0002"), 10)  # another tenant is not affected
    await e.settle(r, D("0.0001"), 5)
    await e.close()


async def test_without_a_ledger_nothing_changes(clock):
    e = Enforcer(CONFIG, MemoryStore(), clock=clock)
    assert await e.reseed() is False
    r = await e.reserve(CallScopes("acme"), D("0.0001"), 10)
    assert r.enforced and r.active
    await e.close()


class _UnreadableLedger:
    def flush(self, timeout: float = 5.0) -> None:
        raise TimeoutError("ledger flush not done")


async def test_a_ledger_that_cannot_be_read_keeps_calls_refused(clock):
    e = Enforcer(CONFIG, MemoryStore(require_seed=True), clock=clock, ledger=_UnreadableLedger())
    with pytest.raises(BudgetUnavailable) as exc:
        await e.reserve(CallScopes("acme"), D("0.0001"), 10)
    assert exc.value.status == 503 and "not seeded" in exc.value.message
    await e.close()


async def test_a_wiped_redis_is_reseeded_before_the_next_call(ledger, clock, redis_url, redis_prefix):
    now = clock()
    store = RedisStore(redis_url, prefix=redis_prefix, require_seed=True)
    e = Enforcer(CONFIG, store, clock=clock, ledger=ledger)
    assert await e.reseed() is True  # a new store: seeded (from an empty ledger)
    # Calls spend through the enforcer and are recorded, as the gateway does.
    costs = [D("0.000120"), D("0.000110"), D("0.000100")]
    for i, cost in enumerate(costs):
        r = await e.reserve(CallScopes("acme", feature="search"), D("0.0001"), 100)
        await e.settle(r, cost, 175)
        ledger.record(make_row(10 + i, started_at=now, tenant="acme", feature="search", cost_usd=cost))
    with pytest.raises(BudgetExceeded, match="acme-only"):
        await e.reserve(CallScopes("acme"), D("0.0002"), 10)
    before = await spent(e, "tenant", "acme")

    delete_redis_prefix(redis_url, redis_prefix)  # Redis restarted empty
    assert await store.seeded() is False
    with pytest.raises(BudgetExceeded, match="acme-only"):  # still exhausted: re-seeded first
        await e.reserve(CallScopes("acme"), D("0.0002"), 10)
    after = await spent(e, "tenant", "acme")
    assert after["tenant-day"]["spent_usd"] == before["tenant-day"]["spent_usd"] == sum(costs)
    assert after["tenant-day"]["spent_usd"] == from_nano(to_nano(ledger_usd(ledger, tenant="acme")))
    assert (await spent(e, "feature", "search", "acme"))["feature-day"]["spent_tokens"] == 3 * 175

    # A second replica that finds the store seeded does not overwrite it.
    other = Enforcer(CONFIG, RedisStore(redis_url, prefix=redis_prefix, require_seed=True), clock=clock,
                     ledger=ledger)
    assert await other.reseed() is False
    await other.close()
    await e.close()


async def test_a_store_that_requires_no_seed_is_never_refused_for_it(clock, redis_url, redis_prefix):
    e = Enforcer(CONFIG, RedisStore(redis_url, prefix=redis_prefix), clock=clock)
    r = await e.reserve(CallScopes("acme"), D("0.0001"), 10)
    assert r.enforced
    await e.settle(r, D("0.0001"), 10)
    await e.close()
