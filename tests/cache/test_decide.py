"""Which requests the exact cache may read or write, and the client's cache-control header."""

from __future__ import annotations

import pytest

from thrifty.cache import CACHE_CONTROL_HEADER, CacheControl, CacheDecision, CachePolicy, decide, parse_cache_control
from thrifty.errors import InvalidRequest

POLICY = CachePolicy(ttl_s=600, max_ttl_s=3600)


def body(**over):
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **over}


def d(b, header=None, policy=POLICY):
    return decide(b, {CACHE_CONTROL_HEADER: header} if header is not None else {}, policy)


def test_temperature_zero_is_cached_for_the_route_ttl():
    assert d(body(temperature=0)) == CacheDecision(True, True, 600, "eligible")
    assert d(body(temperature=0.0)).reason == "eligible"
    assert d(body(temperature=0, stream=True)).reason == "eligible"


@pytest.mark.parametrize("b", [body(), body(temperature=0.2), body(temperature=1), body(temperature=None),
                               body(temperature=False), body(temperature="0")])
def test_nondeterministic_requests_are_not_cached(b):
    decision = d(b)
    assert (decision.read, decision.write, decision.reason) == (False, False, "nondeterministic")
    assert not decision.active


def test_opt_in_by_route_or_header():
    assert d(body(temperature=0.7), policy=CachePolicy(opt_in=True)).reason == "eligible"
    assert d(body(), "opt-in").reason == "eligible"


@pytest.mark.parametrize("n", [2, 5, 0, True])
def test_only_single_answers_are_cached(n):
    assert d(body(temperature=0, n=n)).reason == "n>1"
    assert d(body(temperature=0, n=n), "opt-in").reason == "n>1"


def test_n_equal_one_is_fine():
    assert d(body(temperature=0, n=1)).reason == "eligible"


def test_no_cache_skips_the_read_but_stores_the_fresh_answer():
    assert d(body(temperature=0), "no-cache") == CacheDecision(False, True, 600, "no-cache")


def test_no_store_neither_reads_nor_stores():
    assert d(body(temperature=0), "no-store") == CacheDecision(False, False, 600, "no-store")
    assert d(body(temperature=0), "no-cache, no-store").reason == "no-store"


def test_ttl_directive_sets_the_ttl_capped_by_the_route():
    assert d(body(temperature=0), "ttl=60") == CacheDecision(True, True, 60, "eligible")
    assert d(body(temperature=0), "ttl=999999").ttl_s == 3600
    assert d(body(temperature=0), "no-cache, ttl=30") == CacheDecision(False, True, 30, "no-cache")


def test_ttl_zero_reads_but_does_not_store():
    assert d(body(temperature=0), "ttl=0") == CacheDecision(True, False, 0, "ttl=0")
    assert d(body(temperature=0), "ttl=0, no-cache") == CacheDecision(False, False, 0, "ttl=0")


def test_disabled_route_and_malformed_bodies():
    assert d(body(temperature=0), policy=CachePolicy(enabled=False)).reason == "disabled"
    assert d([1, 2]).reason == "invalid"
    # What a body holds is the wire's check(): one it accepted is eligible in any dialect
    # (a Responses body has `input`, not `messages`).
    assert d({"model": "m", "input": "hi", "temperature": 0}).reason == "eligible"


def test_header_parsing():
    assert parse_cache_control(None) == CacheControl()
    assert parse_cache_control("  ") == CacheControl()
    assert parse_cache_control("No-Cache") == CacheControl(no_cache=True)
    assert parse_cache_control(" no-store ,ttl=15, ") == CacheControl(no_store=True, ttl_s=15)
    assert parse_cache_control("ttl=7,opt-in") == CacheControl(ttl_s=7, opt_in=True)


@pytest.mark.parametrize("value", ["no-stor", "ttl=abc", "ttl=-5", "ttl=1.5", "ttl=", "max-age=5", "ttl=٣"])
def test_malformed_header_is_a_client_error(value):
    with pytest.raises(InvalidRequest) as err:
        parse_cache_control(value)
    assert err.value.param == CACHE_CONTROL_HEADER and err.value.status == 400
    with pytest.raises(InvalidRequest):
        d(body(temperature=0), value)
