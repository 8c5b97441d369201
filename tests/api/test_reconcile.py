"""The ledger against "the provider's invoice": the emulator's billing counter, over a mixed run."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from decimal import Decimal

import anthropic
import pytest

from tests.conftest import start_stack
from thrifty.cli import localstack, workload
from thrifty.ledger import SQLiteLedger
from thrifty.pricing import PriceBook


@pytest.fixture(scope="module")
def fresh_stack(tmp_path_factory):
    s = start_stack(tmp_path_factory.mktemp("reconcile"))
    yield s
    s.gateway.stop()
    s.emulator.stop()


def test_ledger_matches_emulator_billing(fresh_stack):
    s = fresh_stack
    calls = workload.build_workload(80, seed=3)
    errors = asyncio.run(workload.run_workload(s.url, s.key, calls, concurrency=8))
    assert errors == [None] * len(calls)
    # Anthropic surface with explicit cache breakpoints (writes and reads), both wire formats.
    with anthropic.Anthropic(base_url=s.url, api_key=s.key, max_retries=0) as c:
        system = [{"type": "text", "text": "Handbook. " + "Always cite the section number. " * 250,
                   "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
        for i in range(4):
            c.messages.create(model="claude-sonnet-4-5", max_tokens=60, system=system,
                              messages=[{"role": "user", "content": f"question {i}"}])
            c.messages.create(model="gpt-5-mini", max_tokens=60, messages=[{"role": "user", "content": f"q{i}"}])
    s.gateway.stop()  # graceful: flushes the ledger

    with urllib.request.urlopen(f"{s.emulator.url}/_emulator/billing") as r:
        billing = json.load(r)["models"]
    ledger = SQLiteLedger(str(s.ledger_path))
    rows = ledger.rows()
    assert len(rows) == len(calls) + 8
    # Answers served from the response cache never reached the provider and cost nothing.
    served_upstream = [r for r in rows if r.cache not in ("exact", "semantic")]
    assert len(served_upstream) == sum(m["requests"] for m in billing.values())
    hits = [r for r in rows if r.cache == "exact"]
    assert hits, "the workload repeats some deterministic support questions"
    assert all(r.cost_usd == 0 and r.prompt_tokens == r.completion_tokens == 0 for r in hits)
    assert all(len(r.levers) == 1 and r.levers[0].lever == "exact_cache" and r.levers[0].saved_usd > 0
               and r.baseline_cost_usd == r.levers[0].saved_usd for r in hits)

    # The one counterfactual holds on every row of a mixed run: the levers' priced savings add up
    # exactly to baseline - actual.
    for row in rows:
        assert row.accounting == 2 and row.baseline_cost_usd is not None, row
        priced = sum((s.saved_usd for s in row.levers if s.saved_usd is not None), Decimal(0))
        assert row.baseline_cost_usd - row.cost_usd == priced, row
    assert {s.lever for r in rows for s in r.levers} >= {"exact_cache", "prompt_cache"}

    by_model: dict[str, dict] = {}
    for row in rows:
        t = by_model.setdefault(row.served_model, {"input_tokens": 0, "cache_read_tokens": 0,
                                                   "cache_write_tokens": 0, "output_tokens": 0,
                                                   "reasoning_tokens": 0, "cost": Decimal(0)})
        t["input_tokens"] += row.prompt_tokens
        t["cache_read_tokens"] += row.cached_tokens
        t["cache_write_tokens"] += row.cache_write_tokens
        t["output_tokens"] += row.completion_tokens
        t["reasoning_tokens"] += row.reasoning_tokens
        t["cost"] += row.cost_usd
    assert set(by_model) == set(billing)
    invoice = localstack.invoice_from_billing({"models": billing}, PriceBook())
    for model, b in billing.items():
        t = by_model[model]
        assert t["input_tokens"] == b["input_tokens"], model
        assert t["cache_read_tokens"] == b["cache_read_tokens"], model
        assert t["cache_write_tokens"] == b["cache_write_5m_tokens"] + b["cache_write_1h_tokens"], model
        assert t["output_tokens"] == b["output_tokens"], model
        assert t["reasoning_tokens"] == b["reasoning_tokens"], model
        assert abs(t["cost"] - invoice[model]) < Decimal("0.000001"), (model, t["cost"], invoice[model])
    total_ledger = sum(t["cost"] for t in by_model.values())
    total_invoice = sum(invoice.values())
    assert total_ledger.quantize(Decimal("0.01")) == total_invoice.quantize(Decimal("0.01"))
    assert billing["claude-sonnet-4-5"]["cache_write_1h_tokens"] > 0
    assert billing["claude-sonnet-4-5"]["cache_read_tokens"] > 0
    assert billing["gpt-4o-mini"]["cache_read_tokens"] > 0  # the support bot's long policy prefix
