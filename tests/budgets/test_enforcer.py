"""Budget arithmetic on both stores: reserve, settle, release, windows, scopes, expiry, actions."""

from __future__ import annotations

from decimal import Decimal

import pytest

from thrifty.budgets import BudgetExceeded, CallScopes, key_id
from tests.budgets.conftest import JAN31_LATE

D = Decimal
ACME = CallScopes("acme", feature="search", user="u1", key=key_id("sk-acme"), task="t1")


def tenant_budget(limit="1", window="month", **kw):
    return {"name": "tenant", "scope": "tenant", "limit_usd": limit, "window": window, **kw}


async def spent(e, scope="tenant", value="acme", **kw):
    out = await e.spend(scope, value, **kw)
    return {b["budget"]: (b["spent_usd"], b["held_usd"], b["spent_tokens"], b["held_tokens"]) for b in out["budgets"]}


async def test_reserve_holds_the_worst_case_and_settle_keeps_the_actual_cost(make_enforcer):
    e = make_enforcer(budgets=[tenant_budget("1")])
    r = await e.reserve(ACME, D("0.3"), 1000)
    assert await spent(e) == {"tenant": (D(0), D("0.3"), 0, 1000)}
    await e.settle(r, D("0.1234567891"), 420)  # below a nano-dollar: rounded up, never down
    assert await spent(e) == {"tenant": (D("0.123456790"), D(0), 420, 0)}
    assert r.state == "settled" and r.settled_usd == D("0.12345679")


async def test_a_call_whose_worst_case_does_not_fit_is_refused_with_the_numbers(make_enforcer, clock):
    e = make_enforcer(budgets=[tenant_budget("1")])
    r1 = await e.reserve(ACME, D("0.5"), 10)
    await e.settle(r1, D("0.45"), 10)
    await e.reserve(ACME, D("0.25"), 10)
    with pytest.raises(BudgetExceeded) as exc:
        await e.reserve(ACME, D("0.31"), 10)
    err = exc.value
    assert err.status == 429 and err.kind == "rate_limit" and err.code == "budget_exceeded"
    msg = err.message
    for part in ("'tenant'", "tenant 'acme'", "limit $1 per month", "spent $0.45",
                 "+$0.25 held by calls in flight", "up to $0.31", "resets at 2026-02-01T00:00:00Z"):
        assert part in msg, (part, msg)
    assert err.retry_after == "30"  # seconds to the end of January
    assert (err.budget, err.scope, err.scope_value, err.limit_usd, err.spent_usd) == \
        ("tenant", "tenant", "acme", D(1), D("0.45"))
    # Exactly what is left still fits.
    await e.reserve(ACME, D("0.30"), 10)


async def test_all_or_nothing_across_scopes(make_enforcer):
    e = make_enforcer(budgets=[tenant_budget("10"),
                               {"name": "feat", "scope": "feature", "limit_usd": "0.5", "window": "day"},
                               {"name": "all", "scope": "global", "limit_usd": "100"}])
    await e.reserve(ACME, D("0.4"), 1)
    with pytest.raises(BudgetExceeded, match="'feat' \\(feature 'search' of tenant 'acme'\\)"):
        await e.reserve(ACME, D("0.2"), 1)
    # The refused call held nothing, on any counter.
    assert (await spent(e))["tenant"][1] == D("0.4")
    assert (await spent(e, "global"))["all"][1] == D("0.4")
    # Another feature of the same tenant is unaffected.
    await e.reserve(CallScopes("acme", feature="chat"), D("0.2"), 1)


@pytest.mark.parametrize("window, now", [
    ("minute", JAN31_LATE - 15 * 86400), ("hour", JAN31_LATE - 15 * 86400 + 29 * 60),
    ("day", JAN31_LATE - 15 * 86400), ("month", JAN31_LATE),
    ("minute", JAN31_LATE), ("hour", JAN31_LATE), ("day", JAN31_LATE),
])
async def test_windows_reset_at_their_boundary(make_enforcer, clock, window, now):
    from thrifty.budgets import window_bounds

    _, end = window_bounds(window, now)
    clock.t = end - 30
    e = make_enforcer(budgets=[tenant_budget("1", window)])
    r = await e.reserve(ACME, D("1"), 1)
    await e.settle(r, D("1"), 1)
    clock.advance(29)
    with pytest.raises(BudgetExceeded) as exc:
        await e.reserve(ACME, D("0.01"), 1)
    assert exc.value.retry_after == "1"
    clock.advance(1)
    r = await e.reserve(ACME, D("1"), 1)  # a fresh window: the whole limit again
    assert r.applied[0].window_start == end


async def test_a_month_budget_spans_the_month_and_lifetime_never_resets(make_enforcer, clock):
    e = make_enforcer(budgets=[tenant_budget("1", "month"),
                               {"name": "task", "scope": "task", "limit_usd": "1", "window": "lifetime"}])
    clock.t = JAN31_LATE - 26 * 86400  # January 5th
    r = await e.reserve(ACME, D("0.6"), 1)
    await e.settle(r, D("0.6"), 1)
    clock.t = JAN31_LATE  # still January: the month remembers
    with pytest.raises(BudgetExceeded, match="'tenant'"):
        await e.reserve(CallScopes("acme", task="t3"), D("0.6"), 1)
    with pytest.raises(BudgetExceeded, match="'task'"):  # both full: named, the one that frees up last
        await e.reserve(ACME, D("0.6"), 1)
    clock.advance(31)  # February: the month budget is fresh, the task's lifetime budget is not
    with pytest.raises(BudgetExceeded, match="'task'.*never resets") as exc:
        await e.reserve(ACME, D("0.6"), 1)
    assert exc.value.retry_after is None
    await e.reserve(CallScopes("acme", task="t2"), D("0.6"), 1)


async def test_a_call_that_spans_a_boundary_is_counted_in_the_window_it_started_in(make_enforcer, clock):
    e = make_enforcer(budgets=[tenant_budget("1", "month")])
    r = await e.reserve(ACME, D("0.5"), 1)
    clock.advance(60)  # February now
    await e.settle(r, D("0.4"), 1)
    assert (await spent(e))["tenant"] == (D(0), D(0), 0, 0)  # February is untouched
    assert (await spent(e, now=JAN31_LATE))["tenant"] == (D("0.4"), D(0), 1, 0)


async def test_token_limits(make_enforcer):
    e = make_enforcer(budgets=[{"name": "tok", "scope": "user", "limit_tokens": 1000, "window": "day"}])
    r = await e.reserve(ACME, D("0.01"), 800)
    with pytest.raises(BudgetExceeded, match="limit 1,000 tokens per day, used 0 \\(\\+800 held"):
        await e.reserve(ACME, D("0.01"), 201)
    await e.settle(r, D("0.01"), 300)
    await e.reserve(ACME, D("0.01"), 700)


async def test_scopes_per_tenant_match_and_tenant_filter(make_enforcer):
    e = make_enforcer(budgets=[
        {"name": "feat", "scope": "feature", "limit_usd": "1"},  # per tenant (default)
        {"name": "shared", "scope": "feature", "per_tenant": False, "match": "chat", "limit_usd": "1"},
        {"name": "vip", "scope": "tenant", "tenant": "vip", "limit_usd": "1"},
        {"name": "key", "scope": "key", "match": key_id("sk-acme"), "limit_usd": "1"},
    ])
    a = CallScopes("acme", feature="search")
    b = CallScopes("beta", feature="search")
    await e.reserve(a, D("1"), 1)
    await e.reserve(b, D("1"), 1)  # another tenant's "search" is another counter
    with pytest.raises(BudgetExceeded, match="'feat'"):
        await e.reserve(a, D("0.1"), 1)
    await e.reserve(CallScopes("acme", feature="chat"), D("0.6"), 1)
    with pytest.raises(BudgetExceeded, match="'shared'"):  # one counter for every tenant's chat
        await e.reserve(CallScopes("beta", feature="chat"), D("0.6"), 1)
    r = await e.reserve(CallScopes("acme"), D("5"), 1)  # no budget names this call's scopes
    assert not r.active
    assert [x.budget.name for x in (await e.reserve(CallScopes("vip"), D("1"), 1)).applied] == ["vip"]
    await e.reserve(CallScopes("acme", key=key_id("sk-acme")), D("1"), 1)
    with pytest.raises(BudgetExceeded, match="'key'"):
        await e.reserve(CallScopes("other", key=key_id("sk-acme")), D("0.1"), 1)
    assert not (await e.reserve(CallScopes("acme", key=key_id("sk-other")), D("9"), 1)).active


async def test_awkward_scope_values_do_not_collide(make_enforcer):
    e = make_enforcer(budgets=[{"name": "u", "scope": "user", "limit_usd": "1"}])
    await e.reserve(CallScopes("a:b", user="c"), D("1"), 1)
    await e.reserve(CallScopes("a", user="b:c"), D("1"), 1)
    await e.reserve(CallScopes("a", user="b/c"), D("1"), 1)
    await e.reserve(CallScopes("a/b", user="c"), D("1"), 1)
    await e.reserve(CallScopes("a", user="x" * 5000), D("1"), 1)
    with pytest.raises(BudgetExceeded):
        await e.reserve(CallScopes("a", user="x" * 5000), D("0.1"), 1)


async def test_settle_and_release_are_idempotent(make_enforcer, make_store):
    e = make_enforcer(budgets=[tenant_budget("1")])
    r = await e.reserve(ACME, D("0.5"), 10)
    await e.settle(r, D("0.2"), 5)
    await e.settle(r, D("0.2"), 5)
    await e.release(r)
    assert (await spent(e))["tenant"] == (D("0.2"), D(0), 5, 0)
    r2 = await e.reserve(ACME, D("0.5"), 10)
    await e.release(r2)
    await e.release(r2)
    await e.settle(r2, D("0.3"), 5)
    assert (await spent(e))["tenant"] == (D("0.2"), D(0), 5, 0)
    # A copy of the reservation on another replica (same store) cannot count it twice either.
    r3 = await e.reserve(ACME, D("0.5"), 10)
    other = make_enforcer(store=make_store(), budgets=[tenant_budget("1")])
    await e.settle(r3, D("0.1"), 1)
    r3.state = "held"  # as a second process would see it
    await other.settle(r3, D("0.1"), 1)
    await other.release(r3)
    assert (await spent(e))["tenant"] == (D("0.3"), D(0), 6, 0)


async def test_reservations_expire_so_a_crashed_replica_does_not_hold_budget(make_enforcer, clock):
    clock.t = JAN31_LATE - 10 * 86400
    e = make_enforcer(budgets=[tenant_budget("1")], backend={"reservation_ttl_s": 60})
    stuck = await e.reserve(ACME, D("0.8"), 10)  # its replica dies here
    with pytest.raises(BudgetExceeded):
        await e.reserve(ACME, D("0.8"), 10)
    clock.advance(61)
    r = await e.reserve(ACME, D("0.8"), 10)
    assert (await spent(e))["tenant"] == (D(0), D("0.8"), 0, 10)
    # If it was only slow, its late settle still counts what it spent, once.
    await e.settle(stuck, D("0.15"), 3)
    await e.settle(stuck, D("0.15"), 3)
    assert (await spent(e))["tenant"] == (D("0.15"), D("0.8"), 3, 10)
    await e.settle(r, D("0.7"), 3)
    assert (await spent(e))["tenant"] == (D("0.85"), D(0), 6, 0)


async def test_downgrade_budgets_let_calls_through_marked_and_block_ones_still_refuse(make_enforcer):
    e = make_enforcer(budgets=[{"name": "soft", "scope": "feature", "limit_usd": "1", "action": "downgrade"},
                               tenant_budget("2")])
    r1 = await e.reserve(ACME, D("0.9"), 1)
    assert not r1.downgrade
    r2 = await e.reserve(ACME, D("0.9"), 1)
    assert r2.downgrade and r2.downgraded_by == ("soft",)
    assert r2.headers()["x-thrifty-budget-downgrade"] == "soft"
    with pytest.raises(BudgetExceeded, match="'tenant'"):
        await e.reserve(ACME, D("0.3"), 1)
    refusal = e.exceeded(r2, 0, reason="has no room for this call and it has no cheaper tier")
    assert "'soft'" in refusal.message and "no cheaper tier" in refusal.message


async def test_alert_budgets_never_refuse(make_enforcer):
    e = make_enforcer(budgets=[{"name": "watch", "scope": "tenant", "limit_usd": "0.01", "action": "alert",
                                "alert_at": []}])
    for _ in range(3):
        r = await e.reserve(ACME, D("1"), 1)
        await e.settle(r, D("1"), 1)
    assert (await spent(e))["watch"][0] == D(3)


async def test_a_model_without_a_price_holds_tokens_only(make_enforcer):
    e = make_enforcer(budgets=[tenant_budget("1", limit_tokens=100)])
    r = await e.reserve(ACME, None, 60)
    assert r.worst_usd == 0
    with pytest.raises(BudgetExceeded, match="tokens"):
        await e.reserve(ACME, None, 60)
    await e.settle(r, None, 50)
    assert (await spent(e))["tenant"] == (D(0), D(0), 50, 0)


async def test_remaining_and_headers(make_enforcer):
    e = make_enforcer(budgets=[tenant_budget("1"), {"name": "task", "scope": "task", "limit_usd": "0.5",
                                                    "window": "lifetime"},
                               {"name": "tok", "scope": "user", "limit_tokens": 100}])
    r = await e.reserve(ACME, D("0.1"), 10)
    rem = {x["budget"]: x for x in r.remaining()}
    assert rem["tenant"]["remaining_usd"] == D("0.9")
    assert rem["task"]["remaining_usd"] == D("0.4") and rem["task"]["resets_at"] is None
    assert rem["tok"]["remaining_usd"] is None and rem["tok"]["remaining_tokens"] == 90
    assert r.headers() == {"x-thrifty-budget": "task", "x-thrifty-budget-remaining-usd": "0.4"}


async def test_spend_needs_the_tenant_for_per_tenant_scopes(make_enforcer):
    e = make_enforcer(budgets=[{"name": "f", "scope": "feature", "limit_usd": "1"}])
    with pytest.raises(ValueError, match="per tenant"):
        await e.spend("feature", "search")
    with pytest.raises(ValueError, match="needs the feature"):
        await e.spend("feature")
    r = await e.reserve(ACME, D("0.25"), 5)
    await e.settle(r, D("0.25"), 5)
    out = await e.spend("feature", "search", tenant="acme")
    assert out["budgets"][0]["spent_usd"] == D("0.25") and out["budgets"][0]["resets_at"] is not None


async def test_a_settle_long_after_its_hold_expired_is_dropped(make_enforcer, clock):
    clock.t = JAN31_LATE - 10 * 86400
    e = make_enforcer(budgets=[tenant_budget("1")], backend={"reservation_ttl_s": 60})
    lost = await e.reserve(ACME, D("0.5"), 1)
    clock.advance(61)
    await e.reserve(ACME, D("0.1"), 1)  # the expired hold becomes a bare record for one more TTL
    clock.advance(61)
    await e.reserve(ACME, D("0.1"), 1)  # and is forgotten
    await e.settle(lost, D("0.4"), 1)
    assert (await spent(e))["tenant"][0] == 0
