"""ProviderCall with the reliability policy, against scripted in-process providers (no network):
retry counts, fallback bodies, the deadline, streams. The real emulator is in test_e2e_reliability."""

from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace
from typing import Any

import pytest

from thrifty.api.surfaces import OpenAISurface
from thrifty.core.gateway import Route
from thrifty.core.pipeline import Call
from thrifty.core.upstream import ProviderCall
from thrifty.errors import GatewayError, error_for_status
from thrifty.ledger import LedgerRow
from thrifty.pricing import PriceBook
from thrifty.providers.reliability import Reliability, ReliabilityConfig


def ok(model: str) -> dict[str, Any]:
    return {"id": "x", "object": "chat.completion", "model": model, "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


class Scripted:
    """A provider answering from a script: an exception to raise, a float to sleep, else a success."""

    def __init__(self, name: str, script: list[Any], wire: str = "openai", timeout_s: float = 600.0) -> None:
        self.name, self.wire, self.script = name, wire, list(script)
        self.config = SimpleNamespace(timeout_s=timeout_s)
        self.bodies: list[dict[str, Any]] = []

    async def _step(self, body):
        self.bodies.append(body)
        step = self.script.pop(0) if self.script else None
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, float):
            await asyncio.sleep(step)

    async def complete(self, body, headers):
        await self._step(body)
        return ok(body["model"])

    async def stream(self, body, headers):
        await self._step(body)
        yield {"id": "x", "object": "chat.completion.chunk", "model": body["model"],
               "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}
        step = self.script.pop(0) if self.script else None
        if isinstance(step, BaseException):
            raise step
        yield {"id": "x", "object": "chat.completion.chunk", "model": body["model"], "choices": [],
               "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


def gateway(providers: dict[str, Scripted], tiers: dict[str, list[str]] | None = None, price_provider=None):
    routes = {name: Route(name, p, name, "fast", (price_provider or {}).get(name)) for name, p in providers.items()}
    router = SimpleNamespace(ranked={t: tuple(n) for t, n in tiers.items()}) if tiers else None
    return SimpleNamespace(routes=routes, router=router, prices=PriceBook(),
                           config=SimpleNamespace(defaults=SimpleNamespace(anthropic_max_tokens=4096)))


def make_call(gw, deployment: str, *, stream: bool = False, tier: str | None = "fast") -> Call:
    body = {"model": "thrifty/fast", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    row = LedgerRow(request_id="r", started_at=0, finished_at=0, tenant="t", feature=None, user=None, task=None,
                    call_site=None, surface="openai", provider="p", requested_model="thrifty/fast",
                    served_model=deployment, tier=tier, status=0, error_type=None)
    route = gw.routes[deployment]
    upstream = OpenAISurface().upstream_body(body, "openai", route.model, 4096)
    upstream["prompt_cache_key"] = "shaped-by-an-earlier-stage"
    return Call(request_id="r", tenant="t", surface=OpenAISurface(), headers={}, body=body, model="thrifty/fast",
                stream=stream, row=row, route=route, upstream_body=upstream)


def provider_call(gw, **cfg) -> ProviderCall:
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    pc = ProviderCall(gw, Reliability(ReliabilityConfig(**cfg), rng=random.Random(0), sleep=sleep))
    pc.slept = slept  # type: ignore[attr-defined]
    return pc


async def test_a_500_is_retried_twice_with_backoff_then_fails():
    a = Scripted("a", [error_for_status(500, "boom")] * 5)
    gw = gateway({"a": a})
    pc, call = provider_call(gw), make_call(gw, "a", tier=None)
    with pytest.raises(GatewayError) as info:
        await pc(call)
    assert info.value.status == 500 and call.row.retries == 2 and len(a.bodies) == 3
    assert len(pc.slept) == 2 and 0 <= pc.slept[0] <= 0.25 and 0 <= pc.slept[1] <= 0.5


async def test_a_500_then_success_on_the_same_deployment():
    a = Scripted("a", [error_for_status(503, "busy")])
    gw = gateway({"a": a})
    pc, call = provider_call(gw), make_call(gw, "a", tier=None)
    answer = await pc(call)
    assert answer.complete and call.row.retries == 1 and len(a.bodies) == 2


async def test_a_400_is_never_retried():
    a = Scripted("a", [error_for_status(400, "bad")])
    gw = gateway({"a": a, "b": Scripted("b", [])}, {"fast": ["a", "b"]})
    pc, call = provider_call(gw), make_call(gw, "a")
    with pytest.raises(GatewayError) as info:
        await pc(call)
    assert info.value.status == 400 and call.row.retries == 0 and len(a.bodies) == 1
    assert pc.reliability.breakers.state("a") == "closed"


async def test_a_429_moves_to_the_next_deployment_at_once_with_the_shaped_body():
    a = Scripted("a", [error_for_status(429, "slow down", retry_after="20")])
    b = Scripted("b", [])
    gw = gateway({"a": a, "b": b}, {"fast": ["a", "b"]})
    pc, call = provider_call(gw), make_call(gw, "a")
    answer = await pc(call)
    assert answer.complete and call.row.retries == 1 and pc.slept == []
    assert call.row.served_model == "b" and call.row.tier == "fast" and call.route is gw.routes["b"]
    assert b.bodies[0]["model"] == "b" and b.bodies[0]["prompt_cache_key"] == "shaped-by-an-earlier-stage"
    # The deployment that said 429 gets no traffic before its retry-after...
    assert not pc.reliability.breakers.is_healthy("a")
    call2 = make_call(gw, "a")
    await pc(call2)
    assert len(a.bodies) == 1 and call2.row.served_model == "b" and call2.row.retries == 0


async def test_a_429_without_another_deployment_goes_back_to_the_client():
    a = Scripted("a", [error_for_status(429, "slow down", retry_after="2")])
    gw = gateway({"a": a})
    pc, call = provider_call(gw), make_call(gw, "a", tier=None)
    with pytest.raises(GatewayError) as info:
        await pc(call)
    assert info.value.status == 429 and info.value.retry_after == "2" and call.row.retries == 0


async def test_fallback_to_another_catalog_provider_rebuilds_the_body():
    a = Scripted("a", [error_for_status(500, "x")] * 2)
    groq = Scripted("groq", [])
    gw = gateway({"a": a, "groq": groq}, {"fast": ["a", "groq"]}, price_provider={"groq": "groq"})
    pc, call = provider_call(gw), make_call(gw, "a")
    await pc(call)
    assert call.row.retries == 2 and call.row.served_model == "groq"
    assert "prompt_cache_key" not in groq.bodies[0] and groq.bodies[0]["model"] == "groq"


async def test_open_breaker_sends_calls_to_the_peer_and_fail_fast_refuses():
    a = Scripted("a", [error_for_status(500, "x")] * 10)
    b = Scripted("b", [])
    gw = gateway({"a": a, "b": b}, {"fast": ["a", "b"]})
    pc = provider_call(gw, breaker={"min_calls": 2, "failure_rate": 0.5})
    call = make_call(gw, "a")
    await pc(call)  # a fails, a fails (opens), b serves
    assert call.row.retries == 2 and call.row.served_model == "b" and len(a.bodies) == 2
    assert pc.reliability.breakers.state("a") == "open"
    call = make_call(gw, "a")
    await pc(call)
    assert len(a.bodies) == 2 and call.row.served_model == "b" and call.row.retries == 0

    lone = gateway({"a": Scripted("a", [error_for_status(500, "x")] * 10)})
    pc = provider_call(lone, fail_fast=True, breaker={"min_calls": 2})
    with pytest.raises(GatewayError):
        await pc(make_call(lone, "a", tier=None))
    with pytest.raises(GatewayError) as info:
        await pc(make_call(lone, "a", tier=None))
    assert info.value.status == 503 and "circuit open" in info.value.message


async def test_the_deadline_cuts_an_attempt_and_stops_retries():
    a = Scripted("a", [5.0, 5.0, 5.0])
    gw = gateway({"a": a})
    pc, call = provider_call(gw, deadline_s=0.2), make_call(gw, "a", tier=None)
    with pytest.raises(GatewayError) as info:
        await pc(call)
    assert info.value.status == 504 and "deadline" in info.value.message
    assert call.row.retries == 0 and len(a.bodies) == 1


async def test_no_backoff_waits_past_the_deadline():
    a = Scripted("a", [error_for_status(500, "x")] * 3)
    gw = gateway({"a": a})
    pc = provider_call(gw, deadline_s=0.01, backoff_base_s=5.0, backoff_max_s=5.0)
    pc.reliability.rng = SimpleNamespace(uniform=lambda lo, hi: hi)  # the longest wait
    call = make_call(gw, "a", tier=None)
    with pytest.raises(GatewayError) as info:
        await pc(call)
    assert info.value.status == 500 and call.row.retries == 0 and pc.slept == []


async def test_streams_retry_before_the_first_event_only():
    a = Scripted("a", [error_for_status(502, "x")])
    b = Scripted("b", [])
    gw = gateway({"a": a, "b": b}, {"fast": ["a", "b"]})
    pc, call = provider_call(gw, same_deployment_retries=0), make_call(gw, "a", stream=True)
    answer = await pc(call)
    events = [e async for e in answer.events]
    assert answer.complete and events and call.row.retries == 1 and call.row.served_model == "b"

    # Broken after its first event: the client already has it, so no retry.
    c = Scripted("c", [None, error_for_status(502, "cut")])
    gw = gateway({"c": c, "b": Scripted("b", [])}, {"fast": ["c", "b"]})
    pc, call = provider_call(gw), make_call(gw, "c", stream=True)
    answer = await pc(call)
    got = []
    with pytest.raises(GatewayError):
        async for e in answer.events:
            got.append(e)
    assert len(got) == 1 and not answer.complete and call.row.retries == 0 and len(c.bodies) == 1


async def test_disabled_means_one_attempt():
    a = Scripted("a", [error_for_status(500, "x")])
    gw = gateway({"a": a})
    pc, call = provider_call(gw, enabled=False), make_call(gw, "a", tier=None)
    with pytest.raises(GatewayError):
        await pc(call)
    assert call.row.retries == 0 and len(a.bodies) == 1
