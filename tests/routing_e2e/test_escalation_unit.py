"""`routing.escalation` in process: confidence, consistency samples, counters, the extra rows."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from types import SimpleNamespace

from thrifty.api.surfaces import OpenAISurface
from thrifty.core.pipeline import Answer, Call
from thrifty.core.upstream import ModelRoute
from thrifty.core.usage import Usage
from thrifty.ledger import LedgerRow
from thrifty.routing import Router, RoutingConfig


class _Ledger:
    def __init__(self) -> None:
        self.rows: list[LedgerRow] = []

    def record(self, row: LedgerRow) -> None:
        self.rows.append(row)


def _gateway(escalation: dict) -> SimpleNamespace:
    cfg = RoutingConfig.model_validate({
        "tiers": {"fast": ["small", "small-b"], "standard": ["big"]}, "default_tier": "fast",
        "escalation": escalation})
    routes = {n: SimpleNamespace(provider=SimpleNamespace(name="p", wire="openai"), model=n, tier=None)
              for n in ("small", "small-b", "big")}
    gw = SimpleNamespace(router=Router(cfg), ledger=_Ledger(), routes=routes,
                         config=SimpleNamespace(defaults=SimpleNamespace(anthropic_max_tokens=1024)))
    gw.route = lambda name: routes[name]
    return gw


def _call(body: dict) -> Call:
    row = LedgerRow(request_id="thr_x", started_at=0.0, finished_at=0.0, tenant="t", feature="f", user=None,
                    task=None, call_site=None, surface="openai", provider=None, requested_model=body["model"],
                    served_model=None, tier=None, status=0, error_type=None)
    return Call(request_id="thr_x", tenant="t", surface=OpenAISurface(), headers={}, body=body,
                model=body["model"], stream=False, row=row)


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
    stage = ModelRoute(gw)
    call_next, sent = _provider({"small": json.dumps({"label": "bug", "confidence": 0.3}),
                                 "big": json.dumps({"label": "billing"})})
    body = {"model": "thrifty/auto", "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": SCHEMA}}}
    call = _call(body)
    answer = asyncio.run(stage(call, call_next))
    assert "confidence" in sent[0]["response_format"]["json_schema"]["schema"]["properties"]
    assert "confidence" not in sent[1]["response_format"]["json_schema"]["schema"]["properties"]
    assert json.loads(answer.body["choices"][0]["message"]["content"]) == {"label": "billing"}
    assert call.row.served_model == "big" and call.row.tier == "standard"
    [extra] = gw.ledger.rows
    assert extra.request_id == "thr_x.1" and extra.served_model == "small" and extra.tier == "fast"
    assert extra.error_type.startswith("escalated: self-reported confidence 0.30")
    assert extra.cost_usd == Decimal("0.01") and extra.completion_tokens == 5
    snap = stage.snapshot()
    assert snap["checked"] == 1 and snap["escalated"] == 1 and snap["by_check"] == {"confidence": 1}
    assert snap["by_tier"]["fast"]["rate"] == 1.0


def test_confident_answer_is_served_without_the_field():
    gw = _gateway({"checks": ["confidence"]})
    stage = ModelRoute(gw)
    call_next, _ = _provider({"small": json.dumps({"label": "bug", "confidence": 0.9})})
    body = {"model": "thrifty/auto", "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": SCHEMA}}}
    answer = asyncio.run(stage(_call(body), call_next))
    assert json.loads(answer.body["choices"][0]["message"]["content"]) == {"label": "bug"}
    assert gw.ledger.rows == [] and stage.snapshot()["escalated"] == 0


def test_disagreeing_samples_escalate_and_the_sample_is_recorded():
    gw = _gateway({"checks": ["consistency"], "consistency": {"mode": "exact"}})
    stage = ModelRoute(gw)
    call_next, sent = _provider({"small": "the answer is 42", "small-b": "it is 7", "big": "42"})
    call = _call({"model": "thrifty/auto", "messages": [{"role": "user", "content": "what is it?"}]})
    answer = asyncio.run(stage(call, call_next))
    assert [b["model"] for b in sent] == ["small", "small-b", "big"]
    assert answer.body["choices"][0]["message"]["content"] == "42"
    sample, lower = gw.ledger.rows
    assert sample.request_id == "thr_x.1" and sample.served_model == "small-b" and sample.error_type == "consistency sample"
    assert lower.request_id == "thr_x.2" and lower.served_model == "small"
    assert lower.error_type == "escalated: samples differ"
    assert call.row.served_model == "big"
    assert stage.snapshot()["by_check"] == {"consistency": 1}


def test_no_checks_no_escalation_machinery():
    gw = _gateway({"enabled": False})
    stage = ModelRoute(gw)
    call_next, sent = _provider({"small": ""})
    call = _call({"model": "thrifty/auto", "messages": [{"role": "user", "content": "hi"}]})
    asyncio.run(stage(call, call_next))
    assert len(sent) == 1 and gw.ledger.rows == [] and stage.snapshot()["checked"] == 0
