"""Hard budgets through `thrifty serve`: concurrent calls never take spend past the limit, and a
refused call gets a 429 that names the budget (and still leaves a ledger row)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import openai
import pytest

from tests.conftest import start_stack
from tests.ledger_util import wait_row
from thrifty.ledger import SQLiteLedger

LIMIT = Decimal("0.002")


@pytest.fixture(scope="module")
def budget_stack(tmp_path_factory):
    def with_budget(cfg):
        cfg["budgets"] = {"budgets": [{"name": "demo-daily", "scope": "tenant", "match": "demo",
                                       "limit_usd": float(LIMIT), "window": "day", "action": "block"}]}

    s = start_stack(tmp_path_factory.mktemp("budget"), edit=with_budget)
    yield s
    s.gateway.stop()
    s.emulator.stop()


async def _one(client, i):
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o", max_tokens=60, messages=[{"role": "user", "content": f"Question number {i}, please"}])
        return "ok", raw.headers
    except openai.RateLimitError as exc:
        return "refused", exc


def test_concurrent_calls_never_overshoot_a_hard_limit(budget_stack):
    s = budget_stack

    async def run():
        async with openai.AsyncOpenAI(base_url=f"{s.url}/v1", api_key=s.key, max_retries=0) as c:
            return await asyncio.gather(*(_one(c, i) for i in range(60)))

    results = asyncio.run(run())
    ok = [h for kind, h in results if kind == "ok"]
    refused = [e for kind, e in results if kind == "refused"]
    assert ok and refused
    assert "demo-daily" in str(refused[0]) and "limit" in str(refused[0]).lower()
    assert ok[0]["x-thrifty-budget"] == "demo-daily"
    s.gateway.stop()  # flush the ledger
    rows = SQLiteLedger(str(s.ledger_path)).rows()
    assert len(rows) == 60
    spent = sum((r.cost_usd for r in rows if r.status == 200), Decimal(0))
    assert 0 < spent <= LIMIT
    assert sum(r.status == 429 for r in rows) == len(refused)


@pytest.fixture(scope="module")
def downgrade_stack(tmp_path_factory):
    def with_downgrade(cfg):
        cfg["budgets"] = {"budgets": [{"name": "agents-daily", "scope": "feature", "match": "agents",
                                       "limit_usd": 0.003, "window": "day", "action": "downgrade"}]}

    s = start_stack(tmp_path_factory.mktemp("downgrade"), edit=with_downgrade)
    yield s
    s.gateway.stop()
    s.emulator.stop()


def test_downgrade_budget_moves_calls_to_the_cheapest_tier(downgrade_stack):
    s = downgrade_stack
    tiers = []
    with openai.OpenAI(base_url=f"{s.url}/v1", api_key=s.key, max_retries=0) as c:
        for i in range(15):
            raw = c.chat.completions.with_raw_response.create(
                model="gpt-4o", max_tokens=60, extra_headers={"x-thrifty-feature": "agents"},
                messages=[{"role": "user", "content": f"Plan step {i} of the research task"}])
            tiers.append((raw.headers["x-thrifty-tier"], raw.headers["x-thrifty-model"],
                          raw.headers["x-thrifty-request-id"]))
    assert tiers[0][:2] == ("standard", "gpt-4o")
    assert tiers[-1][0] == "fast" and tiers[-1][1] != "gpt-4o"  # downgraded once the budget is full
    # The downgrade is a lever like the others: priced against gpt-4o on the call's own usage.
    row = wait_row(s.ledger_path, tiers[-1][2])
    (moved,) = [lv for lv in row.levers if lv.lever == "budget_downgrade"]
    assert moved.estimated and moved.saved_usd > 0
    assert row.baseline_model == "gpt-4o"
    assert row.baseline_cost_usd - row.cost_usd == sum(lv.saved_usd for lv in row.levers if lv.saved_usd is not None)
