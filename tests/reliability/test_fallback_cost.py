"""Retries during another call's cool-down, what a fallback may cost, and that a move is budgeted.

Scripted in-process providers (no network); the real emulator is in test_e2e_faults.py.
"""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from thrifty.budgets import BudgetExceeded, BudgetsConfig, Enforcer
from thrifty.budgets.memory import MemoryStore
from thrifty.budgets.stage import Budgets
from thrifty.errors import GatewayError, GiveUp, UpstreamError, UpstreamTimeout, error_for_status
from thrifty.pricing import PriceBook
from thrifty.providers.base import INTERRUPTED
from thrifty.providers.reliability import Reliability, ReliabilityConfig, affordable
from thrifty.routing.router import Router
from thrifty.routing.rules import RoutingConfig
from tests.reliability.test_provider_call import Scripted, gateway, make_call, provider_call


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reliability(**cfg) -> tuple[Reliability, Clock]:
    clock = Clock()
    return Reliability(ReliabilityConfig(**cfg), clock=clock, rng=random.Random(0)), clock


def cut(kind: str) -> GatewayError:
    """The error each injected fault becomes at the adapter."""
    return {"500": error_for_status(500, "boom"),
            "timeout": UpstreamTimeout("a: the provider did not answer", code=INTERRUPTED),
            "drop": UpstreamError("a: ClientPayloadError: cut", code=INTERRUPTED),
            "429": error_for_status(429, "slow down", retry_after="1")}[kind]


# --- retries while the deployment cools from someone else's 429 --------------------------------

@pytest.mark.parametrize("kind", ["500", "timeout", "drop"])
def test_a_failure_on_a_cooling_deployment_moves_to_the_tiers_other_deployment(kind):
    rel, _ = reliability(fallback_max_price_ratio=None)
    rel.breakers.cool("a", 1.0)  # another call's 429
    plan = rel.plan("a", ["a", "b"], started=1000.0)
    assert plan.after(cut(kind)) == ("b", 0.0)  # no wait: b was not tried


@pytest.mark.parametrize("kind", ["500", "timeout", "drop"])
def test_a_failure_on_a_cooling_deployment_without_peers_waits_out_the_cool_down(kind):
    rel, _ = reliability()
    rel.breakers.cool("a", 1.0)
    plan = rel.plan("a", [], started=1000.0)
    name, delay = plan.after(cut(kind))
    assert name == "a" and delay == pytest.approx(1.0, abs=0.25)  # the cool-down (or a longer backoff)
    assert delay >= 1.0


def test_a_failure_during_a_long_cool_down_is_retried_after_its_backoff_anyway():
    rel, _ = reliability(rate_limit_wait_s=2.0)
    rel.breakers.cool("a", 30.0)  # longer than anyone should wait
    plan = rel.plan("a", [], started=1000.0)
    name, delay = plan.after(cut("500"))
    assert name == "a" and 0 <= delay <= 0.25
    name, delay = plan.after(cut("500"))
    assert name == "a" and 0 <= delay <= 0.5
    with pytest.raises(GiveUp):  # max_retries = 2: three attempts in all
        plan.after(cut("500"))


def test_fail_fast_gives_up_instead_of_retrying_a_deployment_that_may_not_take_traffic():
    rel, _ = reliability(fail_fast=True, rate_limit_wait_s=0)
    rel.breakers.cool("a", 30.0)
    with pytest.raises(GiveUp):
        rel.plan("a", [], started=1000.0).after(cut("500"))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_no_4xx_but_408_409_429_is_ever_retried(status):
    rel, _ = reliability(fallback_max_price_ratio=None)
    plan = rel.plan("a", ["a", "b"], started=1000.0)
    with pytest.raises(GiveUp):
        plan.after(error_for_status(status, "no"))
    assert plan.retries == 0


@pytest.mark.parametrize("kinds", [["500", "timeout", "drop"], ["429", "500", "drop"], ["timeout"] * 3,
                                   ["429"] * 3])
def test_every_fault_mix_is_retried_at_most_twice(kinds):
    rel, clock = reliability(fallback_max_price_ratio=None)
    plan = rel.plan("a", ["a", "b", "c"], started=1000.0)
    moves = []
    for kind in kinds[:-1]:
        name, delay = plan.after(cut(kind))
        clock.now += delay
        moves.append(name)
    assert len(moves) == 2 and plan.retries == 2
    with pytest.raises(GiveUp):
        plan.after(cut(kinds[-1]))


def test_a_429_on_the_last_deployment_waits_for_the_shortest_wait_within_the_deadline():
    rel, _ = reliability(deadline_s=0.5)  # the retry-after (1 s) ends past the deadline
    with pytest.raises(GiveUp):
        rel.plan("a", [], started=1000.0).after(cut("429"))


# --- what a fallback may cost ------------------------------------------------------------------

PRICE = {"nano": Decimal("0.45"), "mini": Decimal("0.75"), "haiku": Decimal("6"), "free": None}


def test_affordable_compares_price_cards_and_refuses_unknown_prices():
    assert affordable("haiku", "nano", PRICE, None)
    assert affordable("mini", "nano", PRICE, 2.0) and not affordable("haiku", "nano", PRICE, 2.0)
    assert not affordable("free", "nano", PRICE, 2.0) and not affordable("nano", "free", PRICE, 2.0)
    assert affordable("nano", "nano", PRICE, 1.0)
    assert affordable("free", "other-free", {"free": None, "other-free": None}, 1.0)  # nothing to compare


def test_the_price_ratio_keeps_the_retry_plan_off_dearer_deployments():
    rel, _ = reliability(fallback_max_price_ratio=2.0)
    plan = rel.plan("nano", ["nano", "mini", "haiku"], started=1000.0, price_of=PRICE)
    assert plan.order == ("nano", "mini")
    assert plan.after(cut("429")) == ("mini", 0.0)
    name, delay = plan.after(cut("429"))  # mini said 429 too: wait for nano's retry-after, not haiku
    assert name in ("nano", "mini") and delay > 0


async def test_a_call_stays_on_its_price_when_the_dearer_peer_is_out_of_ratio():
    a = Scripted("a", [error_for_status(429, "slow down", retry_after="1")])
    b = Scripted("b", [])
    gw = gateway({"a": a, "b": b}, {"fast": ["a", "b"]})
    gw.router.price_of = {"a": Decimal(1), "b": Decimal(10)}
    pc, call = provider_call(gw, fallback_max_price_ratio=3.0), make_call(gw, "a")
    answer = await pc(call)
    assert answer.complete and call.route.model == "a" and b.bodies == [] and len(a.bodies) == 2
    assert call.retries == 1 and len(pc.slept) == 1 and pc.slept[0] > 0.5  # the retry-after


def tiered_router(**kw) -> Router:
    config = RoutingConfig.model_validate({
        "tiers": {"fast": ["nano", "mini", "haiku"], "standard": ["sonnet"], "heavy": ["opus"]},
        "default_tier": "fast"})
    router = Router(config, **kw)
    router.price_of.update({"nano": Decimal("0.45"), "mini": Decimal("0.75"), "haiku": Decimal("6"),
                            "sonnet": Decimal("18"), "opus": Decimal("90")})
    return router


def decide(router: Router, model: str = "thrifty/fast"):
    from thrifty.routing.features import RequestFeatures
    return router.decide(RequestFeatures(), model)


def test_a_cooling_tier_never_sends_thrifty_fast_to_a_stronger_tier_by_default():
    # The root cause of thrifty/fast calls served by claude-opus-4-1: every fast deployment was
    # cooling from injected 429s, and the router moved the call up two tiers.
    cooling = {"nano", "mini", "haiku", "sonnet"}
    legacy = tiered_router(health=lambda n: n not in cooling)
    assert decide(legacy).deployment == "opus"
    own = tiered_router(health=lambda n: n not in cooling, cross_tier="own")
    d = decide(own)
    assert (d.deployment, d.tier) == ("nano", "fast") and "tried anyway" in d.reason
    cheaper = tiered_router(health=lambda n: n != "sonnet", cross_tier="cheaper")
    assert decide(cheaper, "thrifty/standard").deployment == "nano"


def test_the_router_skips_a_cooling_deployment_only_within_the_price_ratio():
    router = tiered_router(health=lambda n: n not in {"nano", "mini"}, cross_tier="own", max_price_ratio=2.0)
    assert decide(router).deployment == "nano"  # haiku is 13x nano: tried anyway instead
    router = tiered_router(health=lambda n: n != "nano", cross_tier="own", max_price_ratio=2.0)
    assert decide(router).deployment == "mini"


def test_the_config_default_is_cost_safe():
    cfg = ReliabilityConfig()
    assert cfg.fallback_tiers == "own" and cfg.fallback_max_price_ratio == 1.0
    assert cfg.max_retries == 2 and cfg.rate_limit_wait_s > 0
    with pytest.raises(ValueError):
        ReliabilityConfig(fallback_max_price_ratio=0)


# --- billed failed attempts ----------------------------------------------------------------------

async def test_a_cut_attempt_is_reported_for_the_ledger_and_a_refused_one_is_not():
    a = Scripted("a", [cut("timeout"), cut("500")])
    gw = gateway({"a": a})
    pc, call = provider_call(gw), make_call(gw, "a", tier=None)
    answer = await pc(call)
    assert answer.complete and call.retries == 2 and len(a.bodies) == 3
    assert len(call.discarded) == 1  # the timeout may be billed; the 500 was not
    attempt = call.discarded[0]
    assert attempt.status == 504 and attempt.cost is None and attempt.why.startswith("retried: ")
    assert attempt.deployment is gw.routes["a"] and attempt.usage.output_tokens == 0


# --- a move is budgeted ----------------------------------------------------------------------

def budgets(limit_usd: str) -> Budgets:
    cfg = BudgetsConfig.model_validate({"budgets": [{"name": "t", "scope": "tenant", "limit_usd": limit_usd}]})
    return Budgets(Enforcer(cfg, MemoryStore()), PriceBook())


async def spent(stage: Budgets) -> tuple[Decimal, Decimal]:
    b = (await stage.enforcer.spend("tenant", "t"))["budgets"][0]
    return b["spent_usd"], b["held_usd"]


def priced_gateway():
    mini = Scripted("gpt-4o-mini", [error_for_status(429, "slow down", retry_after="9")])
    big = Scripted("gpt-4o", [])
    return gateway({"gpt-4o-mini": mini, "gpt-4o": big}, {"fast": ["gpt-4o-mini", "gpt-4o"]}), mini, big


async def test_a_fallback_to_a_dearer_deployment_tops_up_the_reservation():
    gw, mini, big = priced_gateway()
    stage = budgets("1")
    call = make_call(gw, "gpt-4o-mini")
    seen = []

    async def provider(c):
        answer = await pc(c)
        seen.append(await spent(stage))  # while the call is on gpt-4o: what is held covers it
        return answer

    pc = provider_call(gw)
    answer = await stage(call, provider)
    assert answer.complete and call.route.model == "gpt-4o" and len(big.bodies) == 1
    est = stage.estimator.estimate(call.upstream_body, call.route.provider.wire, "gpt-4o", None)
    assert seen[0][1] >= est.usd > 0
    assert await spent(stage) == (answer.cost, Decimal(0))  # settled at cost, the top-up released


async def test_a_fallback_the_budget_cannot_cover_gets_the_budgets_429_and_is_not_sent():
    gw, mini, big = priced_gateway()
    # Room for gpt-4o-mini's worst case (64 output tokens at $0.60/M), not gpt-4o's ($10/M).
    stage = budgets("0.0002")
    call = make_call(gw, "gpt-4o-mini")
    with pytest.raises(BudgetExceeded) as info:
        await stage(call, provider_call(gw))
    assert info.value.status == 429 and "has no room" in info.value.message
    assert big.bodies == [] and len(mini.bodies) == 1
    assert await spent(stage) == (Decimal(0), Decimal(0))  # nothing held, nothing spent


# --- an attempt the provider may have billed is charged, and its retry budgeted -----------------

def worst_case(stage: Budgets, call) -> Decimal:
    return stage.estimator.estimate(call.upstream_body, call.route.provider.wire, call.route.model, None).usd


async def test_a_retry_after_a_cut_attempt_is_budgeted_and_the_cut_attempt_charged_at_its_worst():
    mini = Scripted("gpt-4o-mini", [cut("timeout")])
    gw = gateway({"gpt-4o-mini": mini}, {"fast": ["gpt-4o-mini"]})
    stage = budgets("1")
    call = make_call(gw, "gpt-4o-mini")
    held_during_retry = []
    pc = provider_call(gw)

    async def provider(c):
        answer = await pc(c)
        held_during_retry.append(await spent(stage))
        return answer

    answer = await stage(call, provider)
    worst = worst_case(stage, call)
    assert answer.complete and len(mini.bodies) == 2 and len(call.discarded) == 1
    assert held_during_retry[0][1] == 2 * worst  # the cut attempt's hold and the retry's own
    # The cut attempt may have been billed in full: charged at its worst case, beside the answer.
    assert await spent(stage) == (worst + answer.cost, Decimal(0))


async def test_a_call_whose_last_attempt_was_cut_is_charged_not_released():
    mini = Scripted("gpt-4o-mini", [cut("drop"), cut("drop"), cut("drop")])
    gw = gateway({"gpt-4o-mini": mini}, {"fast": ["gpt-4o-mini"]})
    stage = budgets("1")
    call = make_call(gw, "gpt-4o-mini")
    with pytest.raises(UpstreamError):
        await stage(call, provider_call(gw))
    assert len(mini.bodies) == 3
    assert await spent(stage) == (3 * worst_case(stage, call), Decimal(0))


async def test_a_retry_after_a_cut_attempt_that_the_budget_cannot_hold_is_refused_and_not_sent():
    mini = Scripted("gpt-4o-mini", [cut("timeout")])
    gw = gateway({"gpt-4o-mini": mini}, {"fast": ["gpt-4o-mini"]})
    probe = make_call(gw, "gpt-4o-mini")
    one = worst_case(budgets("1"), probe)
    stage = budgets(str(one * Decimal("1.5")))  # room for one worst case, not two
    call = make_call(gw, "gpt-4o-mini")
    with pytest.raises(BudgetExceeded):
        await stage(call, provider_call(gw))
    assert len(mini.bodies) == 1  # the retry was not sent
    assert await spent(stage) == (one, Decimal(0))  # the cut attempt is charged, nothing overshot
