"""The shadow lane in process: config errors, scoring, the cap, and that the client never waits.

The sender here is a stand-in that blocks until the test lets it go: while every shadow call is
stuck, the client's answer must already be complete and unchanged (the end-to-end tests in
test_shadow_e2e.py send real shadow calls to the emulator).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from thrifty.cli import localstack
from thrifty.config import parse_config
from thrifty.contract import Answer, Call
from thrifty.contract.usage import Usage
from thrifty.core.gateway import Gateway
from thrifty.core.recorder import Recorder
from thrifty.core.policy import Policies
from thrifty.errors import ConfigError
from thrifty.pricing import Accountant
from thrifty.routing.shadow import ShadowLane
from thrifty.routing.shadow_budget import ShadowBudget
from thrifty.routing.shadow_score import read_judgement, score_exact, score_validator
from thrifty.wire import get as get_wire

PROMPT = "Classify this ticket as billing, bug or other: I was charged twice"


def config(shadow=None, **route):
    cfg = localstack.local_config("http://127.0.0.1:9", "sqlite:////nonexistent/ledger.db")
    cfg["routes"] = [{"name": "tickets", "match": {"feature": "tickets"}, **route,
                      **({"shadow": shadow} if shadow is not None else {})}]
    return cfg


def test_config_errors_name_the_key():
    for shadow, key in (({"sample": 0.1, "tier": "nope", "budget_usd": "1"}, "routes[0].shadow.tier"),
                        ({"sample": 1.5, "tier": "fast", "budget_usd": "1"}, "routes.0.shadow.sample"),
                        ({"sample": 0.1, "tier": "fast", "budget_usd": "0"}, "routes.0.shadow.budget_usd"),
                        ({"sample": 0.1, "tier": "fast", "budget_usd": "1", "score": "judge"}, "routes.0.shadow"),
                        ({"sample": 0.1, "tier": "fast", "budget_usd": "1", "score": "judge",
                          "judge_tier": "x"}, "routes[0].shadow.judge_tier"),
                        ({"sample": 0.1, "tier": "fast", "budget_usd": "1", "per": "week"}, "routes.0.shadow.per")):
        with pytest.raises(ConfigError) as exc:
            parse_config(config(shadow))
        assert key in str(exc.value), (shadow, str(exc.value))
    cfg = config({"sample": 0.1, "tier": "fast", "budget_usd": "1"})
    del cfg["routing"]
    with pytest.raises(ConfigError, match="needs a routing: section"):
        parse_config(cfg)


def test_shadow_is_off_by_default():
    gw = Gateway(parse_config(config()))
    assert gw.shadow is None and gw.router.shadow is None


def test_budget_reserves_the_worst_case_and_never_passes_the_cap():
    now = [86400.0 * 100]
    b = ShadowBudget(Decimal("0.0010"), "day", clock=lambda: now[0])
    assert b.reserve(Decimal("0.0006"))
    assert not b.reserve(Decimal("0.0005"))  # 0.0006 held + 0.0005 > 0.0010
    b.settle(Decimal("0.0006"), Decimal("0.0002"))
    assert b.reserve(Decimal("0.0008"))  # exactly at the cap: 0.0002 + 0.0008
    assert not b.reserve(Decimal("0.000000001"))
    b.settle(Decimal("0.0008"), None)  # unknown cost: charged at its worst case
    assert b.spent == Decimal("0.0010") and b.left() == 0
    assert not b.reserve(None)  # an unpriced call cannot be capped
    now[0] += 86400.0  # the next UTC day
    assert b.left() == Decimal("0.0010")


def test_scorers():
    assert score_exact("Billing.", " billing").score == 1.0
    assert score_exact('{"label": "bug"}', '```json\n{"label":"bug"}\n```').score == 1.0
    assert score_exact("billing", "bug").score == 0.0
    assert score_exact("The answer is (B)", "B", choices=4).score == 1.0
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    kw = dict(request_type="generation", finish_reason="stop", forced=False)
    assert score_validator("{}", '{"n": 3}', schema=schema, **kw).score == 1.0
    assert score_validator("{}", '{"m": 3}', schema=schema, **kw).score == 0.0
    assert score_validator("so x = 1,200", "x is 1200", schema=None, request_type="reasoning",
                           finish_reason="stop", forced=False).score == 1.0
    assert score_validator("42", "41", schema=None, request_type="reasoning", finish_reason="stop",
                           forced=False).score == 0.0
    code = dict(schema=None, request_type="code", finish_reason="stop", forced=False)
    assert score_validator("```python\nx = 1\n```", "```python\ndef f(:\n```", **code).score == 0.0
    assert score_validator("```python\nx = 1\n```", "```python\ndef f():\n    return 1\n```", **code).score == 1.0
    unscored = score_validator("a poem", "another poem", schema=None, request_type="generation",
                               finish_reason="stop", forced=False)
    assert unscored.method == "unscored" and unscored.score is None
    assert score_validator("a poem", "", schema=None, request_type="generation", finish_reason="stop",
                           forced=True).score == 0.0
    assert read_judgement("SCORE: 7").score == 0.7
    assert read_judgement("I think it is fine").score is None


class _Ledger:
    def __init__(self):
        self.rows = []

    def record(self, row):
        self.rows.append(row)


class _StuckSender:
    """Sends nothing until released; counts what it was asked."""

    def __init__(self):
        self.release = asyncio.Event()
        self.calls = []

    async def __call__(self, call):
        self.calls.append(call)
        await self.release.wait()
        body = {"id": "x", "object": "chat.completion", "model": "gpt-4o-mini", "created": 0,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "billing"},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 20, "completion_tokens": 1, "total_tokens": 21}}
        return Answer(body=body, usage=Usage(input_tokens=20, output_tokens=1), cost=Decimal("0.0000033"),
                      complete=True)


def lane_and_call(shadow, sender):
    cfg = parse_config(config(shadow))
    gw = Gateway(cfg)
    ledger = _Ledger()
    lane = ShadowLane(cfg.routes, router=gw.router, deployments=gw.deployments, preparer=gw.preparer,
                      prices=gw.prices, recorder=Recorder(ledger, Accountant(gw.prices)), sender=sender)
    policy = Policies(cfg).for_call("demo", "tickets", "thrifty/auto")
    wire = get_wire("openai")

    def make(n=0):
        call = Call(request_id=f"thr_{n}", tenant="demo", wire=wire, headers={}, stream=False,
                    body={"model": "thrifty/auto", "messages": [{"role": "user", "content": PROMPT}]},
                    model="thrifty/auto", feature="tickets", policy=policy)
        call.route, call.tier = gw.deployments.route("gpt-4o"), "standard"
        return call

    return lane, make, ledger


def client_answer():
    body = {"id": "c", "object": "chat.completion", "model": "gpt-4o", "created": 0,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "billing"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 1, "total_tokens": 21}}
    return Answer(body=body, usage=Usage(input_tokens=20, output_tokens=1), cost=Decimal("0.00006"), complete=True)


def test_the_client_answer_is_complete_while_the_shadow_call_is_still_stuck():
    async def go():
        sender = _StuckSender()
        lane, make, ledger = lane_and_call({"sample": 1.0, "tier": "fast", "budget_usd": "1", "concurrency": 1},
                                           sender)
        answer = client_answer()
        before = dict(answer.body)
        got = await asyncio.wait_for(lane.watch(make(), answer), 5)  # returns without the shadow's answer
        assert got is answer and got.body == before and got.cost == Decimal("0.00006")
        await asyncio.sleep(0)  # the worker picks the job up ... and stays stuck on the sender
        await asyncio.sleep(0)
        assert len(sender.calls) == 1 and ledger.rows == []
        assert sender.calls[0].route.model == "gpt-5-nano"  # the fast tier's cheapest
        sender.release.set()
        await lane.drain()
        (row,) = ledger.rows
        assert row.request_id == "thr_0.shadow" and row.lane == "shadow" and row.tenant == "demo"
        assert row.cost_usd == Decimal("0.0000033") and row.baseline_cost_usd == 0
        assert lane.stats.scored == 1 and lane.stats.by_method == {"exact": 1}
        await lane.close()

    asyncio.run(go())


def test_a_stream_is_offered_after_its_last_event_and_passes_through_unchanged():
    async def go():
        sender = _StuckSender()
        sender.release.set()
        lane, make, ledger = lane_and_call({"sample": 1.0, "tier": "fast", "budget_usd": "1"}, sender)
        wire = get_wire("openai")
        events = wire.replay(client_answer().body, include_usage=True)
        answer = Answer(events=None)

        async def upstream():
            for e in events:
                yield e
            answer.complete = True

        answer.events = upstream()
        call = make()
        call.stream = True
        got = await lane.watch(call, answer)
        seen = []
        async for e in got.events:
            if not seen:
                assert lane.stats.eligible == 0  # nothing is offered before the stream ends
            seen.append(e)
        assert seen == events
        assert lane.stats.sampled == 1
        await lane.drain()
        assert [r.request_id for r in ledger.rows] == ["thr_0.shadow"]
        await lane.close()

    asyncio.run(go())


def test_a_full_queue_drops_and_counts_and_the_sample_share_holds():
    async def go():
        sender = _StuckSender()
        lane, make, _ = lane_and_call({"sample": 1.0, "tier": "fast", "budget_usd": "1", "concurrency": 1,
                                       "queue": 2}, sender)
        for n in range(6):
            await lane.watch(make(n), client_answer())
            await asyncio.sleep(0)
        # One in flight (stuck), two queued, the rest dropped.
        assert lane.stats.sampled == 6 and lane.stats.dropped == 3 and len(sender.calls) == 1
        await lane.close()

        lane2, make2, _ = lane_and_call({"sample": 0.25, "tier": "fast", "budget_usd": "1", "seed": 7,
                                         "queue": 10_000}, _StuckSender())
        for n in range(2000):
            await lane2.watch(make2(n), client_answer())
        assert lane2.stats.eligible == 2000 and 400 < lane2.stats.sampled < 600
        await lane2.close()

    asyncio.run(go())


def test_calls_at_or_below_the_shadow_tier_are_not_shadowed():
    async def go():
        lane, make, _ = lane_and_call({"sample": 1.0, "tier": "fast", "budget_usd": "1"}, _StuckSender())
        call = make()
        call.tier = "fast"
        await lane.watch(call, client_answer())
        other = make(1)
        other.policy = Policies(parse_config(config())).for_call("demo", None, "thrifty/auto")  # no shadow route
        await lane.watch(other, client_answer())
        assert lane.stats.eligible == 0
        await lane.close()

    asyncio.run(go())


class _JudgingSender(_StuckSender):
    async def __call__(self, call):
        answer = await super().__call__(call)
        text = "SCORE: 8" if call.request_id.endswith(".judge") else "Budgets hold / spend waits at the gate / dawn"
        answer.body["choices"][0]["message"]["content"] = text
        return answer


def test_score_judge_asks_the_judge_tier_and_records_both_calls():
    async def go():
        sender = _JudgingSender()
        sender.release.set()
        lane, make, ledger = lane_and_call({"sample": 1.0, "tier": "fast", "budget_usd": "1", "score": "judge",
                                            "judge_tier": "heavy"}, sender)
        call = make()
        call.body = {"model": "thrifty/auto", "messages": [{"role": "user", "content": "Write a haiku about budgets"}]}
        await lane.watch(call, client_answer())
        await lane.drain()
        assert [r.request_id for r in ledger.rows] == ["thr_0.shadow", "thr_0.judge"]
        judge = sender.calls[1]
        assert judge.route.model == "claude-opus-4-1"
        rubric = judge.body["messages"][1]["content"]
        assert "Write a haiku about budgets" in rubric and "billing" in rubric  # the request and the reference
        assert all(r.lane == "shadow" and r.baseline_cost_usd == 0 for r in ledger.rows)
        assert lane.stats.by_method == {"judge": 1} and lane.stats.spent_usd == Decimal("0.0000066")
        await lane.close()

    asyncio.run(go())


def test_the_cap_survives_a_restart(tmp_path):
    import time

    from thrifty.ledger import SQLiteLedger
    from thrifty.ledger.shadow import ShadowOutcome, record_shadow

    cfg = parse_config(config({"sample": 1.0, "tier": "fast", "budget_usd": "0.001"}))
    gw = Gateway(cfg)
    ledger = SQLiteLedger(str(tmp_path / "ledger.db"))
    ledger.start()
    try:
        for n, at in ((1, time.time()), (2, time.time() - 3 * 86400)):  # today's, and one of an older day
            record_shadow(ledger.driver, ShadowOutcome(
                request_id=f"thr_{n}", shadow_request_id=f"thr_{n}.shadow", at=at, tenant="demo", feature="tickets",
                route="tickets", request_type="classification", prompt=PROMPT, primary_deployment="gpt-4o",
                primary_tier="standard", primary_cost_usd=Decimal("0.0001"), shadow_deployment="gpt-5-nano",
                shadow_tier="fast", shadow_cost_usd=Decimal("0.0003"), judge_cost_usd=Decimal("0.0002"),
                method="exact", score=1.0))
        lane = ShadowLane(cfg.routes, router=gw.router, deployments=gw.deployments, preparer=gw.preparer,
                          prices=gw.prices, recorder=Recorder(ledger, Accountant(gw.prices)), sender=_StuckSender())
        lane.reseed()
        assert lane.routes["tickets"].budget.left() == Decimal("0.0005")
    finally:
        ledger.close()


def test_window_start():
    t = 1_796_214_091.0  # 2026-12-02T12:21:31Z
    assert ShadowBudget(Decimal(1), "hour", clock=lambda: t).window_start() == 1_796_212_800.0
    assert ShadowBudget(Decimal(1), "day", clock=lambda: t).window_start() == 1_796_169_600.0
    assert ShadowBudget(Decimal(1), "month", clock=lambda: t).window_start() == 1_796_083_200.0
