"""Honest savings end to end: real SDKs -> gateway -> emulator, and what the ledger claims.

A saving is only what Thrifty did beyond what the client would have had going direct
(docs/savings.md): the client's own cache breakpoints and OpenAI's automatic caching are the
provider's discounts, not Thrifty's; routing and escalation show up with their signs.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from decimal import Decimal

import anthropic
import openai
import pytest

from tests.conftest import start_stack
from tests.ledger_util import wait_row, wait_rows
from thrifty.ledger import RowFilter, SQLiteLedger
from thrifty.pricing import PriceBook, uncached
from thrifty.contract import Usage

ADMIN = "admin-savings-secret"


def long_system(topic: str, sentences: int = 260) -> str:
    return " ".join(f"Rule {i} of the {topic} handbook: answer politely and cite section {i % 17}."
                    for i in range(sentences))


@pytest.fixture(scope="module")
def sav(tmp_path_factory):
    def edit(cfg):
        cfg["admin"] = {"key": ADMIN}
        cfg["routes"] = [{"name": "capped", "match": {"feature": "capped"}, "output_cap": 40}]
        cfg["routing"] = {
            "tiers": {"fast": ["gpt-4o-mini"], "standard": ["gpt-4o"], "heavy": ["claude-opus-4-1"]},
            "default_tier": "standard",
            "baseline_model": "gpt-4o",
            "rules": [
                {"name": "cheap", "when": {"request_type": ["classification"]}, "tier": "fast", "checks": []},
                {"name": "checked", "when": {"request_type": ["extraction"]}, "tier": "fast",
                 "checks": ["truncated"]},
            ],
            "escalation": {"max_steps": 1},
        }

    s = start_stack(tmp_path_factory.mktemp("savings"), edit=edit)
    yield s
    s.gateway.stop()
    s.emulator.stop()


def oai(stack):
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key, max_retries=0)


def claude(stack):
    return anthropic.Anthropic(base_url=stack.url, api_key=stack.key, max_retries=0)


def usage_of(row) -> Usage:
    return Usage(input_tokens=row.prompt_tokens, cache_read_tokens=row.cached_tokens,
                 cache_write_5m_tokens=row.cache_write_tokens - row.cache_write_1h_tokens,
                 cache_write_1h_tokens=row.cache_write_1h_tokens, output_tokens=row.completion_tokens,
                 reasoning_tokens=row.reasoning_tokens)


def levers(row) -> dict:
    return {s.lever: s for s in row.levers}


def assert_adds_up(row):
    priced = sum((s.saved_usd for s in row.levers if s.saved_usd is not None), Decimal(0))
    assert row.accounting == 2
    assert row.baseline_cost_usd - row.cost_usd == priced, row


def two_anthropic_calls(stack, system, *, feature):
    out = []
    with claude(stack) as c:
        for q in ("What is the refund window?", "Do you ship to Norway?"):
            raw = c.messages.with_raw_response.create(
                model="claude-sonnet-4-5", max_tokens=50, system=system,
                messages=[{"role": "user", "content": q}], extra_headers={"x-thrifty-feature": feature})
            out.append(raw.headers)
    return [wait_row(stack.ledger_path, h["x-thrifty-request-id"]) for h in out], out


def test_a_cache_read_from_the_clients_own_breakpoint_claims_no_saving(sav):
    system = [{"type": "text", "text": long_system("client-marked"), "cache_control": {"type": "ephemeral"}}]
    (first, second), headers = two_anthropic_calls(sav, system, feature="client-breakpoints")
    assert second.cached_tokens > 1000, "the client's own breakpoint was read back"
    assert "prompt_cache" not in levers(second)
    assert second.baseline_cost_usd == second.cost_usd
    assert Decimal(headers[1]["x-thrifty-saved-usd"]) == 0
    # ...and the provider's discount is shown, apart.
    plain = PriceBook().cost("claude-sonnet-4-5", uncached(usage_of(second))).total
    assert second.provider_discount_usd == plain - second.cost_usd > 0
    for row in (first, second):
        assert_adds_up(row)


def test_the_same_call_without_client_breakpoints_claims_thriftys_whole_saving(sav):
    system = long_system("thrifty-marked")
    (first, second), headers = two_anthropic_calls(sav, system, feature="thrifty-breakpoints")
    assert first.cache_write_tokens > 1000 and second.cached_tokens > 1000
    plain = PriceBook().cost("claude-sonnet-4-5", uncached(usage_of(second))).total
    pc = levers(second)["prompt_cache"]
    assert pc.saved_usd == plain - second.cost_usd > 0 and not pc.estimated
    assert second.baseline_cost_usd == plain and second.provider_discount_usd == 0
    assert Decimal(headers[1]["x-thrifty-saved-usd"]) == pc.saved_usd
    # The first call paid for the write: Thrifty's breakpoint cost it something.
    assert levers(first)["prompt_cache"].saved_usd < 0
    for row in (first, second):
        assert_adds_up(row)


def test_an_openai_call_cached_automatically_claims_nothing(sav):
    system = long_system("openai-automatic")
    rows = []
    with oai(sav) as c:
        for q in ("Where is my parcel?", "Can I change my address?"):
            raw = c.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", max_tokens=30,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": q}])
            rows.append(wait_row(sav.ledger_path, raw.headers["x-thrifty-request-id"]))
    second = rows[1]
    assert second.cached_tokens > 1000, "OpenAI's automatic prefix cache applied"
    pc = levers(second)["prompt_cache"]
    assert pc.saved_usd is None and pc.note == "prompt_cache_key set"  # counted, never priced
    assert second.baseline_cost_usd == second.cost_usd
    assert second.provider_discount_usd > 0
    for row in rows:
        assert_adds_up(row)


def test_a_routed_call_saves_the_baseline_models_price_on_the_same_usage(sav):
    with oai(sav) as c:
        raw = c.chat.completions.with_raw_response.create(
            model="thrifty/auto", max_tokens=40, extra_headers={"x-thrifty-feature": "triage"},
            messages=[{"role": "user", "content": "Classify this ticket as billing, bug or other: "
                                                  "I was charged twice for order 1234"}])
    row = wait_row(sav.ledger_path, raw.headers["x-thrifty-request-id"])
    assert (row.served_model, row.baseline_model) == ("gpt-4o-mini", "gpt-4o")
    prices, usage = PriceBook(), usage_of(row)
    routing = levers(row)["routing"]
    assert routing.estimated
    assert routing.saved_usd == prices.cost("gpt-4o", usage).total - prices.cost("gpt-4o-mini", usage).total > 0
    assert Decimal(raw.headers["x-thrifty-saved-usd"]) == row.baseline_cost_usd - row.cost_usd
    assert_adds_up(row)


def test_an_escalated_call_shows_the_discarded_attempt_as_a_negative_saving(sav):
    with oai(sav) as c:
        raw = c.chat.completions.with_raw_response.create(
            model="thrifty/auto", max_tokens=3,  # the emulator cuts at 3 tokens: `truncated` fails
            messages=[{"role": "user", "content": "Extract the order number from: my order 5521 is late"}])
    rid = raw.headers["x-thrifty-request-id"]
    rows = wait_rows(sav.ledger_path, [rid, f"{rid}.1"])
    final, discarded = rows[rid], rows[f"{rid}.1"]
    assert discarded.error_type.startswith("escalated:") and discarded.served_model == "gpt-4o-mini"
    assert discarded.baseline_cost_usd == 0
    assert [(s.lever, s.saved_usd) for s in discarded.levers] == [("escalation", -discarded.cost_usd)]
    assert final.served_model == "gpt-4o"
    assert levers(final).get("routing") is None or levers(final)["routing"].saved_usd == 0
    for row in (final, discarded):
        assert_adds_up(row)


def test_an_output_cap_is_counted_and_never_priced(sav):
    with oai(sav) as c:
        raw = c.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", max_tokens=500, extra_headers={"x-thrifty-feature": "capped"},
            messages=[{"role": "user", "content": "Write a long story about a lighthouse."}])
    row = wait_row(sav.ledger_path, raw.headers["x-thrifty-request-id"])
    assert row.completion_tokens <= 40
    shaping = levers(row)["shaping"]
    assert shaping.saved_usd is None and shaping.note == "output cap 40 (asked 500)"
    assert row.baseline_cost_usd == row.cost_usd  # what the cap avoided is not claimed
    assert_adds_up(row)


def test_a_stream_says_pending_and_its_row_holds_the_saving(sav):
    with oai(sav) as c:
        with c.chat.completions.with_streaming_response.create(
                model="thrifty/auto", max_tokens=40, stream=True,
                messages=[{"role": "user", "content": "Classify: bug or billing? The app crashes on login"}]) as r:
            assert r.headers["x-thrifty-saved-usd"] == "pending"
            rid = r.headers["x-thrifty-request-id"]
            for _ in r.iter_lines():
                pass
    row = wait_row(sav.ledger_path, rid)
    assert levers(row)["routing"].saved_usd > 0
    assert_adds_up(row)


def admin_get(stack, query: str):
    req = urllib.request.Request(f"{stack.url}/admin/savings{query}", headers={"authorization": f"Bearer {ADMIN}"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def test_admin_savings_adds_up_to_the_ledger(sav):
    # Runs after the calls above (module order): every row of this stack so far.
    with oai(sav) as c:
        raw = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", max_tokens=5,
                                                          messages=[{"role": "user", "content": "hi"}])
    wait_row(sav.ledger_path, raw.headers["x-thrifty-request-id"])  # the last row is written
    ledger = SQLiteLedger(str(sav.ledger_path))
    ledger_rows = ledger.rows(RowFilter(priced=True))
    report = admin_get(sav, "")
    total = report["total"]
    assert Decimal(total["actual_usd"]) == sum((r.cost_usd for r in ledger_rows), Decimal(0))
    assert Decimal(total["baseline_usd"]) == sum((r.baseline_cost_usd for r in ledger_rows), Decimal(0))
    assert Decimal(total["saved_usd"]) == Decimal(total["baseline_usd"]) - Decimal(total["actual_usd"])
    assert Decimal(total["saved_usd"]) == Decimal(total["saved_exact_usd"]) + Decimal(total["saved_estimated_usd"])
    parts = sum((Decimal(v["saved_usd"]) for v in total["levers"].values()), Decimal(0))
    assert parts == Decimal(total["saved_usd"])
    assert Decimal(total["levers"]["escalation"]["saved_usd"]) < 0
    assert Decimal(total["levers"]["routing"]["estimated_usd"]) > 0
    by_feature = admin_get(sav, "?group_by=feature")
    assert {g["key"] for g in by_feature["groups"]} >= {"triage", "thrifty-breakpoints", "client-breakpoints"}
    assert sum((Decimal(g["saved_usd"]) for g in by_feature["groups"]), Decimal(0)) == Decimal(total["saved_usd"])
    later = admin_get(sav, "?since=2100-01-01T00:00:00")
    assert later["total"]["calls"] == 0 and later["total"]["saved_usd"] == "0"


def test_admin_savings_refuses_a_bad_query_in_openais_error_shape(sav):
    for query in ("?group_by=colour", "?since=yesterday", "?what=1"):
        with pytest.raises(urllib.error.HTTPError) as e:
            admin_get(sav, query)
        assert e.value.code == 400
        err = json.load(e.value)["error"]
        assert err["type"] == "invalid_request_error" and err["param"] in ("group_by", "since", "what")
