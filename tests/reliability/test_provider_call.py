"""ProviderCall with the reliability policy, against scripted in-process providers (no network):
retry counts, fallback bodies, the deadline, streams. The real emulator is in test_e2e_reliability."""

from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace
from typing import Any

import pytest

from thrifty.contract import Call, ModelMoved
from thrifty.providers.deployments import Deployments, Route
from thrifty.core.policy import CallPolicy
from thrifty.providers.call import ProviderCall
from thrifty.errors import GatewayError, error_for_status
from thrifty.pricing import PriceBook
from thrifty.providers.reliability import Reliability, ReliabilityConfig
from thrifty.shaping.prepare import Preparer
from thrifty.shaping.prompt_cache import PromptCachePlanner
from thrifty.shaping.request import Shape
from thrifty.wire import OPENAI_CHAT, Wire

# The levers every attempt's body carries: an output cap and the prompt-cache plan.
POLICY = CallPolicy(route="default", prompt_cache=True, exact_cache=None, shape=Shape(output_cap=64))


def ok(model: str) -> dict[str, Any]:
    return {"id": "x", "object": "chat.completion", "model": model, "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


class Scripted:
    """A provider answering from a script: an exception to raise, a float to sleep, else a success."""

    def __init__(self, name: str, script: list[Any], wire: Wire = OPENAI_CHAT, timeout_s: float = 600.0) -> None:
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
                           preparer=Preparer(PromptCachePlanner(), 4096),
                           config=SimpleNamespace(defaults=SimpleNamespace(anthropic_max_tokens=4096)))


def make_call(gw, deployment: str, *, stream: bool = False, tier: str | None = "fast",
              reserved_output_cap: int | None = None, policy: CallPolicy = POLICY) -> Call:
    body = {"model": "thrifty/fast", "stream": stream, "messages": [
        {"role": "system", "content": "You are terse."}, {"role": "user", "content": "hi"}]}
    call = Call(request_id="r", tenant="t", wire=OPENAI_CHAT, headers={}, body=body, model="thrifty/fast",
                stream=stream, tier=tier, policy=policy, reserved_output_cap=reserved_output_cap)
    gw.preparer.prepare(call, gw.routes[deployment])  # what routing does before the provider call
    return call


def provider_call(gw, **cfg) -> ProviderCall:
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    pc = ProviderCall(Deployments(gw.routes), gw.router, gw.prices, gw.preparer,
                      Reliability(ReliabilityConfig(**cfg), rng=random.Random(0), sleep=sleep))
    pc.slept = slept  # type: ignore[attr-defined]
    return pc


async def test_a_500_is_retried_twice_with_backoff_then_fails():
    a = Scripted("a", [error_for_status(500, "boom")] * 5)
    gw = gateway({"a": a})
    pc, call = provider_call(gw), make_call(gw, "a", tier=None)
    with pytest.raises(GatewayError) as info:
        await pc(call)
    assert info.value.status == 500 and call.retries == 2 and len(a.bodies) == 3
    assert len(pc.slept) == 2 and 0 <= pc.slept[0] <= 0.25 and 0 <= pc.slept[1] <= 0.5


async def test_a_500_then_success_on_the_same_deployment():
    a = Scripted("a", [error_for_status(503, "busy")])
    gw = gateway({"a": a})
    pc, call = provider_call(gw), make_call(gw, "a", tier=None)
    answer = await pc(call)
    assert answer.complete and call.retries == 1 and len(a.bodies) == 2


async def test_a_400_is_never_retried():
    a = Scripted("a", [error_for_status(400, "bad")])
    gw = gateway({"a": a, "b": Scripted("b", [])}, {"fast": ["a", "b"]})
    pc, call = provider_call(gw), make_call(gw, "a")
    with pytest.raises(GatewayError) as info:
        await pc(call)
    assert info.value.status == 400 and call.retries == 0 and len(a.bodies) == 1
    assert pc.reliability.breakers.state("a") == "closed"


async def test_a_429_moves_to_the_next_deployment_at_once_with_the_shaped_body():
    a = Scripted("a", [error_for_status(429, "slow down", retry_after="20")])
    b = Scripted("b", [])
    gw = gateway({"a": a, "b": b}, {"fast": ["a", "b"]})
    pc, call = provider_call(gw), make_call(gw, "a")
    first = call.upstream_body  # prepared for a: the route's output cap and a prompt-cache key
    assert first["max_completion_tokens"] == 64 and first["prompt_cache_key"] == call.prefix_id
    answer = await pc(call)
    assert answer.complete and call.retries == 1 and pc.slept == []
    assert call.route.model == "b" and call.tier == "fast" and call.route is gw.routes["b"]
    # The fallback body is prepared for b with the same levers: the output cap and b's prompt-cache key.
    assert b.bodies[0]["model"] == "b" and b.bodies[0]["max_completion_tokens"] == 64
    assert b.bodies[0]["prompt_cache_key"] == call.prefix_id != a.bodies[0]["prompt_cache_key"]
    assert call.attempt_effects == [ModelMoved("fallback", "a", None)]
    # The deployment that said 429 gets no traffic before its retry-after...
    assert not pc.reliability.breakers.is_healthy("a")
    call2 = make_call(gw, "a")
    await pc(call2)
    assert len(a.bodies) == 1 and call2.route.model == "b" and call2.retries == 0


async def test_a_429_without_another_deployment_goes_back_to_the_client_when_its_wait_is_long():
    a = Scripted("a", [error_for_status(429, "slow down", retry_after="20")])
    gw = gateway({"a": a})
    pc, call = provider_call(gw), make_call(gw, "a", tier=None)  # rate_limit_wait_s: 5
    with pytest.raises(GatewayError) as info:
        await pc(call)
    assert info.value.status == 429 and info.value.retry_after == "20" and call.retries == 0
    assert len(a.bodies) == 1 and pc.slept == []


async def test_a_short_429_without_another_deployment_is_waited_out_and_retried():
    a = Scripted("a", [error_for_status(429, "slow down", retry_after="2")])
    gw = gateway({"a": a})
    pc, call = provider_call(gw), make_call(gw, "a", tier=None)
    answer = await pc(call)
    assert answer.complete and call.retries == 1 and len(a.bodies) == 2
    assert len(pc.slept) == 1 and 1.5 < pc.slept[0] <= 2.0  # the retry-after, not a backoff


async def test_fallback_to_another_catalog_provider_rebuilds_the_body():
    a = Scripted("a", [error_for_status(500, "x")] * 2)
    groq = Scripted("groq", [])
    gw = gateway({"a": a, "groq": groq}, {"fast": ["a", "groq"]}, price_provider={"groq": "groq"})
    pc, call = provider_call(gw), make_call(gw, "a")
    await pc(call)
    assert call.retries == 2 and call.route.model == "groq"
    assert "prompt_cache_key" in a.bodies[0]
    # Groq does not take prompt_cache_key: the body prepared for it has none, but the same shaping.
    assert "prompt_cache_key" not in groq.bodies[0] and groq.bodies[0]["model"] == "groq"
    assert groq.bodies[0]["max_completion_tokens"] == 64
    assert call.attempt_effects == [ModelMoved("fallback", "a", None)]


async def test_a_fallback_body_keeps_the_output_cap_a_budget_reserved():
    a = Scripted("a", [error_for_status(503, "busy")] * 3)
    b = Scripted("b", [])
    gw = gateway({"a": a, "b": b}, {"fast": ["a", "b"]})
    unshaped = CallPolicy(route="default", prompt_cache=False, exact_cache=None)
    pc, call = provider_call(gw), make_call(gw, "a", reserved_output_cap=321, policy=unshaped)
    await pc(call)
    assert call.route.model == "b" and len(b.bodies) == 1 and call.retries == len(a.bodies) >= 1
    assert all(body["max_completion_tokens"] == 321 for body in a.bodies + b.bodies)


async def test_open_breaker_sends_calls_to_the_peer_and_fail_fast_refuses():
    a = Scripted("a", [error_for_status(500, "x")] * 10)
    b = Scripted("b", [])
    gw = gateway({"a": a, "b": b}, {"fast": ["a", "b"]})
    pc = provider_call(gw, breaker={"min_calls": 2, "failure_rate": 0.5})
    call = make_call(gw, "a")
    await pc(call)  # a fails, a fails (opens), b serves
    assert call.retries == 2 and call.route.model == "b" and len(a.bodies) == 2
    assert pc.reliability.breakers.state("a") == "open"
    call = make_call(gw, "a")
    await pc(call)
    assert len(a.bodies) == 2 and call.route.model == "b" and call.retries == 0

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
    assert call.retries == 0 and len(a.bodies) == 1


async def test_no_backoff_waits_past_the_deadline():
    a = Scripted("a", [error_for_status(500, "x")] * 3)
    gw = gateway({"a": a})
    pc = provider_call(gw, deadline_s=0.01, backoff_base_s=5.0, backoff_max_s=5.0)
    pc.reliability.rng = SimpleNamespace(uniform=lambda lo, hi: hi)  # the longest wait
    call = make_call(gw, "a", tier=None)
    with pytest.raises(GatewayError) as info:
        await pc(call)
    assert info.value.status == 500 and call.retries == 0 and pc.slept == []


async def test_streams_retry_before_the_first_event_only():
    a = Scripted("a", [error_for_status(502, "x")])
    b = Scripted("b", [])
    gw = gateway({"a": a, "b": b}, {"fast": ["a", "b"]})
    pc, call = provider_call(gw, same_deployment_retries=0), make_call(gw, "a", stream=True)
    answer = await pc(call)
    events = [e async for e in answer.events]
    assert answer.complete and events and call.retries == 1 and call.route.model == "b"

    # Broken after its first event: the client already has it, so no retry.
    c = Scripted("c", [None, error_for_status(502, "cut")])
    gw = gateway({"c": c, "b": Scripted("b", [])}, {"fast": ["c", "b"]})
    pc, call = provider_call(gw), make_call(gw, "c", stream=True)
    answer = await pc(call)
    got = []
    with pytest.raises(GatewayError):
        async for e in answer.events:
            got.append(e)
    assert len(got) == 1 and not answer.complete and call.retries == 0 and len(c.bodies) == 1


async def test_disabled_means_one_attempt():
    a = Scripted("a", [error_for_status(500, "x")])
    gw = gateway({"a": a})
    pc, call = provider_call(gw, enabled=False), make_call(gw, "a", tier=None)
    with pytest.raises(GatewayError):
        await pc(call)
    assert call.retries == 0 and len(a.bodies) == 1
