"""Request and token rates per scope (rpm, tpm), as token buckets, on both stores."""

from __future__ import annotations

from decimal import Decimal

import pytest

from thrifty.budgets import BudgetExceeded, CallScopes

D = Decimal
U1 = CallScopes("acme", user="u1")


async def test_rpm_refuses_the_request_over_the_rate_and_refills_with_time(make_enforcer, clock):
    e = make_enforcer(rate_limits=[{"name": "per-user", "scope": "user", "rpm": 3}])
    for _ in range(3):
        await e.reserve(U1, D("0.01"), 10)
    with pytest.raises(BudgetExceeded) as exc:
        await e.reserve(U1, D("0.01"), 10)
    err = exc.value
    assert err.status == 429 and err.code == "rate_limit_exceeded"
    assert "rate limit 'per-user' (user 'u1' of tenant 'acme'): 3 requests per minute" in err.message
    assert err.retry_after == "20"  # one request comes back every 20 s
    await e.reserve(CallScopes("acme", user="u2"), D("0.01"), 10)  # each user has their own
    clock.advance(19.5)
    with pytest.raises(BudgetExceeded):
        await e.reserve(U1, D("0.01"), 10)
    clock.advance(0.5)
    await e.reserve(U1, D("0.01"), 10)


async def test_rpm_counts_requests_even_when_released(make_enforcer):
    e = make_enforcer(rate_limits=[{"name": "r", "scope": "tenant", "rpm": 2}])
    for _ in range(2):
        r = await e.reserve(U1, D(0), 1)
        await e.release(r)
    with pytest.raises(BudgetExceeded):
        await e.reserve(U1, D(0), 1)


async def test_tpm_holds_the_worst_case_and_gives_back_what_was_not_used(make_enforcer, clock):
    e = make_enforcer(rate_limits=[{"name": "tok", "scope": "user", "tpm": 1000}])
    r = await e.reserve(U1, D(0), 600)
    with pytest.raises(BudgetExceeded, match="1,000 tokens per minute; this call may use up to 600") as exc:
        await e.reserve(U1, D(0), 600)
    assert exc.value.retry_after == "12"  # 200 missing at 1000/60 per second
    await e.settle(r, D(0), 100)  # 500 come back
    r2 = await e.reserve(U1, D(0), 600)
    await e.release(r2)  # all 600 come back
    await e.reserve(U1, D(0), 900)


async def test_a_request_larger_than_the_whole_tpm_can_never_fit(make_enforcer):
    e = make_enforcer(rate_limits=[{"name": "tok", "scope": "user", "tpm": 1000}])
    with pytest.raises(BudgetExceeded, match="lower the request's max_tokens") as exc:
        await e.reserve(U1, D(0), 1001)
    assert exc.value.retry_after is None


async def test_a_rate_refusal_holds_no_budget(make_enforcer):
    e = make_enforcer(budgets=[{"name": "t", "scope": "tenant", "limit_usd": "1"}],
                      rate_limits=[{"name": "r", "scope": "user", "rpm": 1}])
    await e.reserve(U1, D("0.5"), 1)
    with pytest.raises(BudgetExceeded, match="rate limit"):
        await e.reserve(U1, D("0.5"), 1)
    out = await e.spend("tenant", "acme")
    assert out["budgets"][0]["held_usd"] == D("0.5")
    await e.reserve(CallScopes("acme", user="u2"), D("0.5"), 1)


async def test_budget_and_rate_limit_both_full_names_the_budget(make_enforcer):
    e = make_enforcer(budgets=[{"name": "t", "scope": "tenant", "limit_usd": "1"}],
                      rate_limits=[{"name": "r", "scope": "user", "rpm": 1}])
    await e.reserve(U1, D("1"), 1)
    with pytest.raises(BudgetExceeded, match="budget 't'"):
        await e.reserve(U1, D("0.5"), 1)
