"""The Budgets stage: reserve before the provider call, settle or release however the call ends."""

from __future__ import annotations

import asyncio
import gc
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, AsyncIterator

import pytest

from thrifty.budgets import BudgetExceeded, BudgetsConfig, BudgetUnavailable, Enforcer
from thrifty.budgets.memory import MemoryStore
from thrifty.budgets.stage import Budgets
from thrifty.providers.deployments import Route
from thrifty.contract import Answer, Call
from thrifty.contract.usage import Usage
from thrifty.errors import UpstreamError
from thrifty.pricing import PriceBook
from thrifty.wire import OPENAI_CHAT, Wire

D = Decimal
PRICES = PriceBook()


@dataclass
class FakeProvider:
    name: str
    wire: Wire


def make_call(body: dict[str, Any] | None = None, *, model: str = "gpt-4o-mini", wire: Wire = OPENAI_CHAT,
              tenant: str = "acme", feature: str | None = "search", stream: bool = False) -> Call:
    body = body if body is not None else {"model": model, "messages": [{"role": "user", "content": "hello"}],
                                          "max_tokens": 100}
    call = Call(request_id="r1", tenant=tenant, wire=wire, headers={"authorization": "Bearer sk-acme"},
                body=body, model=model, stream=stream, feature=feature)
    call.route = Route(model, FakeProvider("p", wire), model, "standard", None)  # type: ignore[arg-type]
    call.upstream_body = dict(body)
    return call


def enforcer(budgets=None, rate_limits=None, **config) -> Enforcer:
    if budgets is None:
        budgets = [{"name": "t", "scope": "tenant", "limit_usd": "1"}]
    cfg = BudgetsConfig.model_validate({"budgets": budgets, "rate_limits": rate_limits or [], **config})
    return Enforcer(cfg, MemoryStore())


async def held(e: Enforcer) -> tuple[Decimal, Decimal]:
    b = (await e.spend("tenant", "acme"))["budgets"][0]
    return b["spent_usd"], b["held_usd"]


USAGE = Usage(input_tokens=10, output_tokens=5)


class Upstream:
    """call_next: records the call it got, answers whole or as a stream that may break."""

    def __init__(self, *, stream: int = 0, break_after: int | None = None, error: Exception | None = None,
                 cost: Decimal = D("0.001")) -> None:
        self.calls: list[Call] = []
        self.stream, self.break_after, self.error, self.cost = stream, break_after, error, cost
        self.closed = False

    async def __call__(self, call: Call) -> Answer:
        self.calls.append(call)
        if self.error is not None:
            raise self.error
        if not self.stream:
            return Answer(body={"ok": True}, usage=USAGE, cost=self.cost, complete=True)
        answer = Answer()
        answer.events = self._events(answer)
        return answer

    async def _events(self, answer: Answer) -> AsyncIterator[dict[str, Any]]:
        try:
            for i in range(self.stream):
                if self.break_after is not None and i == self.break_after:
                    raise UpstreamError("upstream cut the stream")
                yield {"i": i}
            answer.usage, answer.cost, answer.complete = USAGE, self.cost, True
        finally:
            self.closed = True


async def test_a_whole_answer_is_settled_at_its_exact_cost():
    e = enforcer()
    up = Upstream()
    answer = await Budgets(e, PRICES)(make_call(), up)
    assert answer.body == {"ok": True}
    assert await held(e) == (D("0.001"), D(0))


async def test_a_stream_holds_until_its_end_then_settles():
    e = enforcer()
    answer = await Budgets(e, PRICES)(make_call(stream=True), Upstream(stream=3))
    assert (await held(e))[1] > 0
    got = [ev async for ev in answer.events]
    assert len(got) == 3 and answer.complete
    assert await held(e) == (D("0.001"), D(0))


async def test_a_stream_that_breaks_off_is_charged_its_worst_case():
    e = enforcer()
    answer = await Budgets(e, PRICES)(make_call(stream=True), Upstream(stream=5, break_after=2))
    worst = (await held(e))[1]
    with pytest.raises(UpstreamError):
        async for _ in answer.events:
            pass
    assert await held(e) == (worst, D(0))


async def test_broken_streams_can_be_released_instead():
    e = enforcer(broken_streams="release")
    answer = await Budgets(e, PRICES)(make_call(stream=True), Upstream(stream=5, break_after=2))
    with pytest.raises(UpstreamError):
        async for _ in answer.events:
            pass
    assert await held(e) == (D(0), D(0))


async def test_a_stream_the_client_abandons_is_settled_and_its_upstream_closed():
    e = enforcer()
    up = Upstream(stream=10)
    answer = await Budgets(e, PRICES)(make_call(stream=True), up)
    worst = (await held(e))[1]
    events = answer.events
    assert await events.__anext__() == {"i": 0}
    await events.aclose()  # what happens when the consumer stops (client disconnect)
    assert up.closed
    assert await held(e) == (worst, D(0))


async def test_a_stream_dropped_without_aclose_is_settled_by_the_event_loop():
    e = enforcer()
    answer = await Budgets(e, PRICES)(make_call(stream=True), Upstream(stream=10))
    worst = (await held(e))[1]
    await answer.events.__anext__()
    answer.events = None  # the consumer's task died and let go of the generator
    gc.collect()
    for _ in range(20):
        await asyncio.sleep(0)
        if (await held(e))[1] == 0:
            break
    assert await held(e) == (worst, D(0))


async def test_a_stream_that_fails_before_any_event_is_released():
    e = enforcer()
    answer = await Budgets(e, PRICES)(make_call(stream=True), Upstream(stream=5, break_after=0))
    with pytest.raises(UpstreamError):
        async for _ in answer.events:
            pass
    assert await held(e) == (D(0), D(0))


async def test_an_error_releases_the_reservation():
    e = enforcer()
    with pytest.raises(UpstreamError):
        await Budgets(e, PRICES)(make_call(), Upstream(error=UpstreamError("boom")))
    assert await held(e) == (D(0), D(0))
    with pytest.raises(asyncio.CancelledError):
        await Budgets(e, PRICES)(make_call(), Upstream(error=asyncio.CancelledError()))
    assert await held(e) == (D(0), D(0))


async def test_a_call_without_room_never_reaches_the_provider():
    e = enforcer([{"name": "t", "scope": "tenant", "limit_usd": "0.00001"}])
    up = Upstream()
    with pytest.raises(BudgetExceeded) as exc:
        await Budgets(e, PRICES)(make_call(), up)
    assert up.calls == []
    assert exc.value.status == 429 and "'t'" in exc.value.message


async def test_the_estimate_prices_the_routed_model():
    e = enforcer()
    seen = []
    stage = Budgets(e, PRICES, on_reserved=lambda call, r: seen.append(r))
    await stage(make_call({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}],
                           "max_tokens": 1000}, model="gpt-4o"), Upstream())
    r = seen[0]
    assert r.worst_tokens > 1000
    # gpt-4o: $10 per million output tokens, so 1000 output tokens alone are $0.01.
    assert D("0.01") < r.worst_usd < D("0.0102")
    assert r.headers()["x-thrifty-budget"] == "t"


async def test_an_uncapped_request_gets_the_cap_its_reservation_assumed():
    e = enforcer(estimate={"default_output_cap": 321})
    up = Upstream()
    await Budgets(e, PRICES)(make_call({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}), up)
    assert up.calls[0].upstream_body["max_completion_tokens"] == 321
    up = Upstream()
    await Budgets(e, PRICES)(make_call(), up)  # the client's own cap is kept as it is
    assert "max_completion_tokens" not in up.calls[0].upstream_body
    alert_only = enforcer([{"name": "w", "scope": "tenant", "limit_usd": "1", "action": "alert"}])
    up = Upstream()
    await Budgets(alert_only, PRICES)(make_call({"model": "gpt-4o-mini", "messages": []}), up)
    assert "max_completion_tokens" not in up.calls[0].upstream_body  # nothing hard to protect


async def test_downgrade_goes_through_the_hook_or_refuses():
    budgets = [{"name": "soft", "scope": "feature", "limit_usd": "0.00001", "action": "downgrade"}]
    e = enforcer(budgets)
    up = Upstream()
    with pytest.raises(BudgetExceeded, match="no cheaper tier"):
        await Budgets(e, PRICES)(make_call(), up)
    assert up.calls == []
    moved = []

    async def downgrade(call, r):
        moved.append(r.downgraded_by)
        small = FakeProvider("p", OPENAI_CHAT)
        call.route = Route("small", small, "gpt-4o-mini", "fast", None)  # type: ignore[arg-type]
        return True

    await Budgets(e, PRICES, downgrade=downgrade)(make_call(), up)
    assert moved == [("soft",)] and len(up.calls) == 1


async def test_calls_under_no_limit_pass_straight_through():
    e = enforcer([{"name": "t", "scope": "tenant", "match": "someone-else", "limit_usd": "1"}])

    class NoEstimates:
        def estimate(self, *a):
            raise AssertionError("no estimate needed")

    up = Upstream()
    await Budgets(e, PRICES, estimator=NoEstimates())(make_call(), up)  # type: ignore[arg-type]
    assert len(up.calls) == 1


async def test_store_down_refuses_before_the_provider(dead_redis_url):
    cfg = BudgetsConfig.model_validate({"budgets": [{"name": "t", "scope": "tenant", "limit_usd": "1"}],
                                        "backend": {"kind": "redis", "redis_url": dead_redis_url}})
    e = Enforcer(cfg)
    up = Upstream()
    with pytest.raises(BudgetUnavailable) as exc:
        await Budgets(e, PRICES)(make_call(), up)
    assert up.calls == [] and exc.value.status == 503
    await e.close()


async def test_rate_limits_apply_through_the_stage():
    e = enforcer([], [{"name": "r", "scope": "key", "rpm": 1}])
    await Budgets(e, PRICES)(make_call(), Upstream())
    with pytest.raises(BudgetExceeded, match="rate limit 'r' \\(key '[0-9a-f]{16}' of tenant 'acme'\\)"):
        await Budgets(e, PRICES)(make_call(), Upstream())
