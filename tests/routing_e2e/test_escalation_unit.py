"""`routing.escalation` in process: confidence, consistency samples, counters, the discarded attempts."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from types import SimpleNamespace

from thrifty.contract import Answer, Call
from thrifty.contract.usage import Usage
from thrifty.providers.deployments import Deployments
from thrifty.core.policy import CallPolicy
from thrifty.core.recorder import Exchange, Recorder
from thrifty.routing.stage import ModelRoute
from thrifty.pricing import Accountant, PriceBook
from thrifty.routing import Router, RoutingConfig
from thrifty.shaping.prepare import Preparer
from thrifty.shaping.prompt_cache import PromptCachePlanner
from thrifty.wire import OPENAI_CHAT


def _gateway(escalation: dict) -> SimpleNamespace:
    cfg = RoutingConfig.model_validate({
        "tiers": {"fast": ["small", "small-b"], "standard": ["big"]}, "default_tier": "fast",
        "escalation": escalation})
    routes = {n: SimpleNamespace(deployment=n, provider=SimpleNamespace(name="p", wire=OPENAI_CHAT), model=n,
                                 tier=None, price_provider=None)
              for n in ("small", "small-b", "big")}
    return SimpleNamespace(router=Router(cfg), routes=routes, deployments=Deployments(routes),
                           preparer=Preparer(PromptCachePlanner(), 1024))


def _stage(gw: SimpleNamespace) -> ModelRoute:
    return ModelRoute(gw.deployments, gw.router, gw.preparer)


def _call(body: dict) -> Call:
    return Call(request_id="thr_x", tenant="t", wire=OPENAI_CHAT, headers={}, body=body, model=body["model"],
                stream=False, feature="f", policy=CallPolicy(route="default", prompt_cache=False, exact_cache=None))


class _Ledger:
    def __init__(self) -> None:
        self.rows: list = []

    def record(self, row) -> None:
        self.rows.append(row)


def _rows(call: Call, answer: Answer) -> list:
    """The ledger rows the recorder writes for the call: the client's last, after its discarded attempts."""
    ledger = _Ledger()
    Recorder(ledger, Accountant(PriceBook())).record(  # type: ignore[arg-type]
        Exchange(request_id=call.request_id, started_at=0.0, tenant=call.tenant, surface=call.wire.name,
                 status=200), call, answer)
    return ledger.rows


def _provider(answers: dict):
    sent: list[dict] = []

    async def call_next(call: Call) -> Answer:
        sent.append(call.upstream_body)
        content = answers[call.route.model]
        body = {"id": "x", "object": "chat.completion", "model": call.route.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": "stop"}]}
        return Answer(body=body, usage=Usage(input_tokens=10, output_tokens=5), cost=Decimal("0.01"), complete=True)

    return call_next, sent


SCHEMA = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}


def test_low_confidence_escalates_and_confidence_is_stripped():
    gw = _gateway({"checks": ["confidence"], "confidence_threshold": 0.7})
    stage = _stage(gw)
    call_next, sent = _provider({"small": json.dumps({"label": "bug", "confidence": 0.3}),
                                 "big": json.dumps({"label": "billing"})})
    body = {"model": "thrifty/auto", "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": SCHEMA}}}
    call = _call(body)
    answer = asyncio.run(stage(call, call_next))
    assert "confidence" in sent[0]["response_format"]["json_schema"]["schema"]["properties"]
    assert "confidence" not in sent[1]["response_format"]["json_schema"]["schema"]["properties"]
    assert json.loads(answer.body["choices"][0]["message"]["content"]) == {"label": "billing"}
    assert call.route.model == "big" and call.tier == "standard"
    [extra] = call.discarded  # the recorder writes it as row thr_x.1
    assert extra.deployment is gw.routes["small"] and extra.tier == "fast"
    assert extra.why.startswith("escalated: self-reported confidence 0.30")
    assert extra.cost == Decimal("0.01") and extra.usage.output_tokens == 5
    assert extra.started_at <= extra.finished_at
    row, client = _rows(call, answer)
    assert row.request_id == "thr_x.1" and row.served_model == "small" and row.tier == "fast"
    assert row.error_type == extra.why and row.cost_usd == Decimal("0.01") and row.completion_tokens == 5
    assert client.request_id == "thr_x" and client.served_model == "big" and client.tier == "standard"
    snap = stage.snapshot()
    assert snap["checked"] == 1 and snap["escalated"] == 1 and snap["by_check"] == {"confidence": 1}
    assert snap["by_tier"]["fast"]["rate"] == 1.0


def test_confident_answer_is_served_without_the_field():
    gw = _gateway({"checks": ["confidence"]})
    stage = _stage(gw)
    call_next, _ = _provider({"small": json.dumps({"label": "bug", "confidence": 0.9})})
    body = {"model": "thrifty/auto", "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": SCHEMA}}}
    call = _call(body)
    answer = asyncio.run(stage(call, call_next))
    assert json.loads(answer.body["choices"][0]["message"]["content"]) == {"label": "bug"}
    assert call.discarded == [] and stage.snapshot()["escalated"] == 0


def test_disagreeing_samples_escalate_and_the_sample_is_recorded():
    gw = _gateway({"checks": ["consistency"], "consistency": {"mode": "exact"}})
    stage = _stage(gw)
    call_next, sent = _provider({"small": "the answer is 42", "small-b": "it is 7", "big": "42"})
    call = _call({"model": "thrifty/auto", "messages": [{"role": "user", "content": "what is it?"}]})
    answer = asyncio.run(stage(call, call_next))
    assert [b["model"] for b in sent] == ["small", "small-b", "big"]
    assert answer.body["choices"][0]["message"]["content"] == "42"
    sample, lower = call.discarded  # in this order: the recorder's rows thr_x.1 and thr_x.2
    assert sample.deployment.model == "small-b" and sample.why == "consistency sample"
    assert lower.deployment.model == "small" and lower.why == "escalated: samples differ"
    assert call.route.model == "big"
    assert [(r.request_id, r.served_model, r.error_type) for r in _rows(call, answer)] == [
        ("thr_x.1", "small-b", "consistency sample"), ("thr_x.2", "small", "escalated: samples differ"),
        ("thr_x", "big", None)]
    assert stage.snapshot()["by_check"] == {"consistency": 1}


def test_no_checks_no_escalation_machinery():
    gw = _gateway({"enabled": False})
    stage = _stage(gw)
    call_next, sent = _provider({"small": ""})
    call = _call({"model": "thrifty/auto", "messages": [{"role": "user", "content": "hi"}]})
    asyncio.run(stage(call, call_next))
    assert len(sent) == 1 and call.discarded == [] and stage.snapshot()["checked"] == 0
