"""Redis unreachable: hard budgets fail closed with a clear 503, or open when configured."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from thrifty.budgets import BudgetsConfig, BudgetUnavailable, CallScopes, Enforcer
from thrifty.budgets.redis_backend import RedisStore

D = Decimal
BUDGET = {"name": "t", "scope": "tenant", "limit_usd": "1"}


def enforcer(url: str, **backend) -> Enforcer:
    cfg = BudgetsConfig.model_validate({"budgets": [BUDGET],
                                        "backend": {"kind": "redis", "redis_url": url, **backend}})
    return Enforcer(cfg)


async def test_fails_closed_by_default_with_a_503_naming_the_cause(dead_redis_url, caplog):
    e = enforcer(dead_redis_url)
    assert isinstance(e.store, RedisStore)
    with caplog.at_level(logging.ERROR, "thrifty.budgets"):
        with pytest.raises(BudgetUnavailable) as exc:
            await e.reserve(CallScopes("acme"), D("0.01"), 10)
    err = exc.value
    assert err.status == 503 and err.code == "budget_store_unavailable"
    assert dead_redis_url in err.message and "fail_open is false" in err.message
    assert "unreachable" in caplog.text
    await e.close()


async def test_calls_under_no_budget_never_touch_the_store(dead_redis_url):
    cfg = BudgetsConfig.model_validate({"budgets": [{**BUDGET, "match": "acme"}],
                                        "backend": {"kind": "redis", "redis_url": dead_redis_url}})
    e = Enforcer(cfg)
    r = await e.reserve(CallScopes("other"), D(1), 1)
    assert not r.active
    await e.settle(r, D(1), 1)
    await e.close()


async def test_fails_open_when_configured_and_says_so(dead_redis_url, caplog):
    with caplog.at_level(logging.INFO, "thrifty.budgets"):
        e = enforcer(dead_redis_url, fail_open=True)
        r = await e.reserve(CallScopes("acme"), D("5"), 10)
    assert not r.enforced
    assert "fail_open: true" in caplog.text  # the choice, logged at start-up
    assert "unenforced" in caplog.text
    await e.settle(r, D("0.1"), 5)  # logged, not raised: the call is over
    await e.close()


async def test_password_never_shows_in_messages(dead_redis_url):
    url = dead_redis_url.replace("redis://", "redis://user:s3cret@")
    e = enforcer(url)
    with pytest.raises(BudgetUnavailable) as exc:
        await e.reserve(CallScopes("acme"), D("0.01"), 10)
    assert "s3cret" not in exc.value.message
    await e.close()


async def test_after_repeated_failures_the_store_answers_at_once(dead_redis_url):
    store = RedisStore(dead_redis_url, backoff_s=30)
    e = Enforcer(BudgetsConfig.model_validate({"budgets": [BUDGET]}), store)
    for _ in range(3):
        with pytest.raises(BudgetUnavailable):
            await e.reserve(CallScopes("acme"), D("0.01"), 10)
    store._client = None  # the next call must not even try
    with pytest.raises(BudgetUnavailable, match="unreachable"):
        await e.reserve(CallScopes("acme"), D("0.01"), 10)
