"""Escalation through the gateway: a fast-tier answer that fails a check is re-run one tier up.

The emulator truncates deterministically at `max_tokens` (finish reason `length`), so a tiny
output cap makes the fast tier's answer fail the `truncated` check every time.
"""

from __future__ import annotations

import json
import urllib.request
from decimal import Decimal

import openai
import pytest

from tests.conftest import start_stack
from tests.ledger_util import wait_row, wait_rows
from thrifty.cli import localstack
from thrifty.ledger import RowFilter, SQLiteLedger
from thrifty.pricing import PriceBook

CLASSIFY = "Classify this ticket as billing, bug or other: I was charged twice for order {n}"


@pytest.fixture(scope="module")
def esc_stack(tmp_path_factory):
    def tiers(cfg):
        cfg["routing"] = {
            "tiers": {"fast": ["gpt-4o-mini"], "standard": ["gpt-4o"], "heavy": ["claude-opus-4-1"]},
            "default_tier": "standard",
            "rules": [{"name": "trivial", "when": {"request_type": ["classification", "extraction"]},
                       "tier": "fast", "checks": ["empty", "refusal", "truncated", "schema"]}],
            "escalation": {"max_steps": 1},
        }

    s = start_stack(tmp_path_factory.mktemp("escalation"), edit=tiers)
    yield s
    s.gateway.stop()
    s.emulator.stop()


def client(stack):
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key, max_retries=0)


def billing(stack):
    with urllib.request.urlopen(f"{stack.emulator.url}/_emulator/billing") as r:
        return json.load(r)["models"]


def rows_of(stack, rid):
    ledger = SQLiteLedger(str(stack.ledger_path))
    return {r.request_id: r for r in ledger.rows(RowFilter(request_id_prefix=rid))}


def test_truncated_fast_answer_escalates_and_both_calls_are_in_the_ledger(esc_stack):
    s = esc_stack
    before = billing(s)
    with client(s) as c:
        raw = c.chat.completions.with_raw_response.create(
            model="thrifty/auto", max_tokens=3, messages=[{"role": "user", "content": CLASSIFY.format(n=1)}])
    assert raw.headers["x-thrifty-tier"] == "standard"
    assert raw.headers["x-thrifty-model"] == "gpt-4o"
    assert raw.parse().model.startswith("gpt-4o") and not raw.parse().model.startswith("gpt-4o-mini")
    rid = raw.headers["x-thrifty-request-id"]
    rows = wait_rows(s.ledger_path, [rid, rid + ".1"])
    final, lower = rows[rid], rows[rid + ".1"]
    assert final.served_model == "gpt-4o" and final.tier == "standard" and final.status == 200
    assert final.error_type is None
    assert lower.served_model == "gpt-4o-mini" and lower.tier == "fast" and lower.status == 200
    assert lower.error_type == "escalated: truncated at the output token limit"
    assert lower.tenant == final.tenant and lower.request_hash == final.request_hash
    assert lower.requested_model == "thrifty/auto"
    assert lower.completion_tokens == 3 and lower.cost_usd > 0 and final.cost_usd > 0
    assert str(final.cost_usd) == raw.headers["x-thrifty-cost-usd"]

    after = billing(s)
    invoice_before = localstack.invoice_from_billing({"models": before}, PriceBook())
    invoice_after = localstack.invoice_from_billing({"models": after}, PriceBook())
    for model, row in (("gpt-4o-mini", lower), ("gpt-4o", final)):
        assert after[model]["requests"] - before.get(model, {}).get("requests", 0) == 1
        billed = invoice_after[model] - invoice_before.get(model, Decimal(0))
        assert abs(billed - row.cost_usd) < Decimal("0.0000001"), (model, billed, row.cost_usd)
        assert after[model]["output_tokens"] - before.get(model, {}).get("output_tokens", 0) == row.completion_tokens


def test_passing_answer_is_not_escalated(esc_stack):
    s = esc_stack
    schema = {"type": "object", "properties": {"label": {"type": "string", "enum": ["billing", "bug", "other"]}},
              "required": ["label"], "additionalProperties": False}
    with client(s) as c:
        raw = c.chat.completions.with_raw_response.create(
            model="thrifty/auto", messages=[{"role": "user", "content": CLASSIFY.format(n=2)}],
            response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": schema, "strict": True}})
    assert raw.headers["x-thrifty-tier"] == "fast" and raw.headers["x-thrifty-model"] == "gpt-4o-mini"
    assert json.loads(raw.parse().choices[0].message.content)["label"] in ("billing", "bug", "other")
    rid = raw.headers["x-thrifty-request-id"]
    row = wait_row(s.ledger_path, rid)
    assert row.served_model == "gpt-4o-mini" and row.error_type is None
    assert list(rows_of(s, rid)) == [rid]


def test_streamed_truncated_answer_is_buffered_and_escalated(esc_stack):
    s = esc_stack
    with client(s) as c:
        with c.chat.completions.with_streaming_response.create(
                model="thrifty/auto", max_tokens=3, stream=True, stream_options={"include_usage": True},
                messages=[{"role": "user", "content": CLASSIFY.format(n=3)}]) as resp:
            headers = resp.headers
            chunks = list(resp.parse())
    assert headers["x-thrifty-tier"] == "standard" and headers["x-thrifty-model"] == "gpt-4o"
    models = {ch.model for ch in chunks}
    assert all(m.startswith("gpt-4o") and not m.startswith("gpt-4o-mini") for m in models), models
    usage = [ch.usage for ch in chunks if ch.usage is not None]
    assert usage and usage[-1].completion_tokens == 3
    rid = headers["x-thrifty-request-id"]
    rows = wait_rows(s.ledger_path, [rid, rid + ".1"])
    final, lower = rows[rid], rows[rid + ".1"]
    assert final.stream and lower.stream
    assert final.served_model == "gpt-4o" and lower.served_model == "gpt-4o-mini"
    assert lower.error_type.startswith("escalated: truncated")
    assert lower.cost_usd > 0 and final.cost_usd > 0


def test_streamed_passing_answer_is_replayed_from_the_buffer(esc_stack):
    s = esc_stack
    with client(s) as c:
        with c.chat.completions.with_streaming_response.create(
                model="thrifty/auto", stream=True, messages=[{"role": "user", "content": CLASSIFY.format(n=4)}]) as resp:
            headers = resp.headers
            text = "".join(ch.choices[0].delta.content or "" for ch in resp.parse() if ch.choices)
    assert headers["x-thrifty-tier"] == "fast" and text
    rid = headers["x-thrifty-request-id"]
    wait_row(s.ledger_path, rid)
    assert list(rows_of(s, rid)) == [rid]
