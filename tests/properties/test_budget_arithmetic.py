"""Properties of budget arithmetic: nano-dollar conversions and reserve/settle on a counter."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from thrifty.budgets.backend import BLOCK, NANO, TRACK, UNLIMITED, HoldSpec, from_nano, to_nano
from thrifty.budgets.limits import MAX_LIMIT_USD
from thrifty.budgets.memory import MemoryStore

settings.register_profile("properties", max_examples=150, deadline=None, derandomize=True, database=None)
settings.load_profile("properties")

MAX_NANO = to_nano(MAX_LIMIT_USD)
nanos = st.integers(min_value=0, max_value=MAX_NANO)
# USD amounts with any number of decimal places up to 18, within a budget's range.
usd_amounts = st.decimals(min_value=0, max_value=MAX_LIMIT_USD, places=18, allow_nan=False, allow_infinity=False)


@given(nanos)
def test_nano_amounts_convert_exactly_both_ways(n):
    assert to_nano(from_nano(n)) == n
    assert from_nano(n) == Decimal(n) / NANO and isinstance(from_nano(n), Decimal)


@given(nanos)
def test_amounts_of_at_most_nine_places_are_exact(n):
    usd = (Decimal(n) / NANO).quantize(Decimal("1e-9"))
    assert from_nano(to_nano(usd)) == usd


@given(usd_amounts)
def test_any_amount_is_rounded_up_by_less_than_a_nano_dollar(usd):
    n = to_nano(usd)
    assert n >= 0
    assert Decimal(0) <= from_nano(n) - usd < Decimal("1e-9")


@given(st.lists(usd_amounts, min_size=1, max_size=10))
def test_calls_counted_one_by_one_never_under_count_their_sum(amounts):
    assert sum(to_nano(a) for a in amounts) >= to_nano(sum(amounts, Decimal(0)))


# --- reserve and settle -----------------------------------------------------------------------

TTL = 60.0
KEY = "tenant:acme:month"

ops = st.lists(st.one_of(
    st.tuples(st.just("reserve"), st.integers(0, 5), nanos.map(lambda n: n % 10**12), st.integers(0, 10**6)),
    st.tuples(st.just("settle"), st.integers(0, 5), nanos.map(lambda n: n % 10**12), st.integers(0, 10**6)),
    st.tuples(st.just("wait"), st.sampled_from([1.0, 30.0, 61.0, 130.0]), st.just(0), st.just(0)),
), max_size=25)


def hold(usd: int, tokens: int, limit: int) -> HoldSpec:
    return HoldSpec(key=KEY, mode=BLOCK if limit != UNLIMITED else TRACK, limit_usd=limit,
                    limit_tokens=UNLIMITED, usd=usd, tokens=tokens, expire_at=1e12)


async def play(steps: list[tuple[str, Any, int, int]], limit: int) -> None:
    store = MemoryStore()
    now = 1_000.0
    held: dict[str, tuple[int, int, float]] = {}  # rid -> (usd, tokens, expires): the model
    counted: set[str] = set()
    reserved: set[str] = set()
    spent_usd = spent_tokens = 0
    for kind, which, usd, tokens in steps:
        if kind == "wait":
            now += which
            continue
        rid = f"call-{which}"
        spec = hold(usd, tokens, limit)
        if kind == "reserve":
            if rid in reserved:  # every call reserves once, under its own request id
                continue
            reserved.add(rid)
            live = sum(u for u, _, until in held.values() if until > now)
            result = await store.reserve(rid, [spec], [], now, TTL)
            fits = limit == UNLIMITED or spent_usd + live + usd <= limit
            assert result.ok == fits
            if fits:
                held[rid] = (usd, tokens, now + TTL)
        else:
            out = await store.settle(rid, [spec], [(usd, tokens)], [], [], now)
            entry = held.pop(rid, None)
            # A settle counts once: while its hold (or the record of an expired one) is there.
            counts = entry is not None and now < entry[2] + TTL
            assert (out is not None) == counts
            if counts:
                counted.add(rid)
                spent_usd += usd
                spent_tokens += tokens
        su, st_, hu, ht = (await store.read([KEY], now))[0]
        live_usd = sum(u for u, _, until in held.values() if until > now)
        live_tokens = sum(t for _, t, until in held.values() if until > now)
        assert (su, st_) == (spent_usd, spent_tokens)  # exactly what was settled, never more
        assert (hu, ht) == (live_usd, live_tokens)
        assert min(su, st_, hu, ht) >= 0


@given(ops)
def test_reserve_and_settle_leave_exactly_what_was_settled(steps):
    asyncio.run(play(steps, UNLIMITED))


@given(ops, st.integers(min_value=1, max_value=3 * 10**12))
def test_a_blocking_limit_refuses_exactly_the_calls_that_do_not_fit(steps, limit):
    asyncio.run(play(steps, limit))
