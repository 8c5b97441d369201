"""Budgets in the real flow: routing, prompt caching, the stage, and the provider (the emulator)."""

from __future__ import annotations

from decimal import Decimal

import pytest
import pytest_asyncio

from thrifty.budgets import BudgetExceeded, BudgetsConfig, Enforcer
from thrifty.budgets.memory import MemoryStore
from thrifty.budgets.stage import Budgets
from thrifty.cli import localstack
from thrifty.cli.processes import start_emulator
from thrifty.config import parse_config
from thrifty.contract import Call, compose
from thrifty.core.gateway import Gateway
from thrifty.providers.call import ProviderCall
from thrifty.routing.stage import ModelRoute
from thrifty.shaping.stage import PromptCacheStats
from thrifty.wire import ANTHROPIC_MESSAGES, OPENAI_CHAT


@pytest.fixture(scope="module")
def emulator():
    server = start_emulator(latency_scale=0.0)
    yield server
    server.stop()


@pytest_asyncio.fixture(loop_scope="function")
async def gateway(emulator, tmp_path):
    gw = Gateway(parse_config(localstack.local_config(emulator.url, f"sqlite:///{tmp_path / 'ledger.db'}")))
    await gw.start()
    yield gw
    await gw.close()


def call_for(gw: Gateway, wire, body, *, task: str = "t1") -> Call:
    model, stream = wire.check(body)
    return Call(request_id="r", tenant="demo", wire=wire, headers={"authorization": "Bearer sk-thrifty-demo"},
                body=body, model=model, stream=stream, feature="chat", task=task,
                policy=gw.policies.for_call("demo", "chat", model))


async def test_calls_run_until_the_budget_is_spent_and_the_counter_matches_their_costs(gateway):
    enforcer = Enforcer(BudgetsConfig.model_validate({"budgets": [
        {"name": "task", "scope": "task", "limit_usd": "0.0005", "window": "lifetime"}]}), MemoryStore())
    flow = compose([ModelRoute(gateway.deployments, gateway.router, gateway.preparer),
                    PromptCacheStats(gateway.prompt_cache.stats, gateway.prices),
                    Budgets(enforcer, gateway.prices)], ProviderCall(gateway.deployments, gateway.router, gateway.prices, gateway.preparer))
    costs: list[Decimal] = []
    refused = None
    for i in range(200):
        stream = i % 2 == 1
        body = {"model": "gpt-4o-mini", "max_tokens": 60, "stream": stream,
                "messages": [{"role": "user", "content": f"question number {i}: how do budgets work?"}]}
        try:
            answer = await flow(call_for(gateway, OPENAI_CHAT, body))
        except BudgetExceeded as exc:
            refused = exc
            break
        if stream:
            async for _ in answer.events:
                pass
        assert answer.complete and answer.cost is not None
        costs.append(answer.cost)
    assert refused is not None and "'task'" in refused.message and "lifetime" in refused.message
    spent = (await enforcer.spend("task", "t1", tenant="demo"))["budgets"][0]
    assert spent["held_usd"] == 0
    assert spent["spent_usd"] == sum(costs)  # exact: the ledger's costs, to the nano-dollar
    assert spent["spent_usd"] <= Decimal("0.0005")
    await enforcer.close()


async def test_an_anthropic_deployment_is_estimated_on_its_own_wire(gateway):
    enforcer = Enforcer(BudgetsConfig.model_validate({"budgets": [
        {"name": "tenant", "scope": "tenant", "limit_usd": "1", "window": "day"}]}), MemoryStore())
    seen = []
    flow = compose([ModelRoute(gateway.deployments, gateway.router, gateway.preparer),
                    Budgets(enforcer, gateway.prices, on_reserved=lambda c, r: seen.append(r))],
                   ProviderCall(gateway.deployments, gateway.router, gateway.prices, gateway.preparer))
    # The OpenAI surface calling Claude: the estimate reads the Anthropic body that goes upstream.
    answer = await flow(call_for(gateway, OPENAI_CHAT, {"model": "claude-haiku-4-5", "max_tokens": 40,
                                                   "messages": [{"role": "user", "content": "hi"}]}))
    assert answer.cost is not None and answer.cost <= seen[0].worst_usd
    answer = await flow(call_for(gateway, ANTHROPIC_MESSAGES, {"model": "gpt-4o-mini", "max_tokens": 40,
                                                      "messages": [{"role": "user", "content": "hi"}]}))
    assert answer.cost is not None and answer.cost <= seen[1].worst_usd
    spent = (await enforcer.spend("tenant", "demo"))["budgets"][0]
    assert spent["held_usd"] == 0 and spent["spent_tokens"] > 0
    await enforcer.close()
