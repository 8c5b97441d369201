"""Shadow calls through the real gateway and the emulator, with recorded per-model answers.

Classification prompts are routed to the standard tier (gpt-4o); the `tickets` route shadows
every call to the fast tier (gpt-4o-mini). The emulator replays recorded answers: on AGREE
prompts both models answer "billing", on DISAGREE prompts the small model answers "bug". So the
exact-match scores are known in advance, and the exported outcomes teach `train router` both kinds.
"""

from __future__ import annotations

import json
import sqlite3
import time
from decimal import Decimal

import openai
import pytest

from tests.conftest import start_stack
from tests.ledger_util import wait_row, wait_rows
from thrifty.budgets.estimate import Estimator
from thrifty.cli import localstack
from thrifty.cli.main import main
from thrifty.ledger import RowFilter, SQLiteLedger
from thrifty.pricing import PriceBook
from thrifty.wire import get as get_wire

AGREE = [f"Classify this ticket as billing, bug or other: I was charged twice for order {n}" for n in range(6)]
DISAGREE = [f"Classify this ticket as billing, bug or other: the invoice page for order {n} crashes"
            for n in range(6)]
CAPPED = [f"Classify this ticket as billing, bug or other: refund request number {n}" for n in range(12)]
CAP_USD = Decimal("0.00003")  # room for 4 shadow calls: worst case $0.0000186, cost $0.00000375
MAX_TOKENS = 20


@pytest.fixture(scope="module")
def shadow_stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shadow")
    rows = []
    for p in AGREE:
        rows.append({"prompt": p, "cohort": None, "outcomes": {"small": {"score": 1, "answer": "billing"},
                                                               "large": {"score": 1, "answer": "billing"}}})
    for p in DISAGREE:
        rows.append({"prompt": p, "cohort": None, "outcomes": {"small": {"score": 0, "answer": "bug"},
                                                               "large": {"score": 1, "answer": "billing"}}})
    for p in CAPPED:
        rows.append({"prompt": p, "cohort": None, "outcomes": {"small": {"score": 1, "answer": "billing"},
                                                               "large": {"score": 1, "answer": "billing"}}})
    (tmp / "outcomes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    emu_cfg = tmp / "emulator.yaml"
    emu_cfg.write_text(json.dumps({"recorded": {"path": "outcomes.jsonl",
                                                "models": {"gpt-4o-mini": "small", "gpt-4o": "large"}}}))

    def edit(cfg):
        cfg["routing"] = {
            "tiers": {"fast": ["gpt-4o-mini"], "standard": ["gpt-4o"], "heavy": ["claude-opus-4-1"]},
            "default_tier": "standard",
            "rules": [{"name": "tickets", "when": {"request_type": ["classification"]}, "tier": "standard"}],
            "escalation": {"enabled": False},
        }
        cfg["routes"] = [
            {"name": "tickets", "match": {"feature": "tickets"},
             "shadow": {"sample": 1.0, "tier": "fast", "budget_usd": "1.00", "concurrency": 1}},
            {"name": "capped", "match": {"feature": "capped"},
             "shadow": {"sample": 1.0, "tier": "fast", "budget_usd": str(CAP_USD), "concurrency": 1}},
        ]

    s = start_stack(tmp, edit=edit, emulator_args=["--config", str(emu_cfg)])
    yield s
    s.gateway.stop()
    s.emulator.stop()


def ask(stack, prompt, *, feature="tickets", key=None, stream=False):
    with openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key or stack.key, max_retries=0) as c:
        messages = [{"role": "user", "content": prompt}]
        if stream:
            with c.chat.completions.with_streaming_response.create(
                    model="thrifty/auto", messages=messages, stream=True, max_tokens=MAX_TOKENS,
                    extra_headers={"x-thrifty-feature": feature}) as resp:
                text = "".join(ch.choices[0].delta.content or "" for ch in resp.parse() if ch.choices)
                return resp.headers, text
        raw = c.chat.completions.with_raw_response.create(
            model="thrifty/auto", messages=messages, max_tokens=MAX_TOKENS,
            extra_headers={"x-thrifty-feature": feature})
        return raw.headers, raw.parse().choices[0].message.content


def shadow_outcomes(stack, request_ids, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        con = sqlite3.connect(stack.ledger_path)
        try:
            con.row_factory = sqlite3.Row
            found = {r["request_id"]: dict(r) for r in con.execute("SELECT * FROM shadow_outcomes")}
        finally:
            con.close()
        if all(rid in found for rid in request_ids) or time.monotonic() > deadline:
            missing = [rid for rid in request_ids if rid not in found]
            assert not missing, f"no shadow outcome for {missing}"
            return found
        time.sleep(0.05)


def test_sampled_calls_get_shadow_rows_scored_by_exact_match(shadow_stack):
    s = shadow_stack
    ids = {}
    for prompt in AGREE + DISAGREE:
        headers, text = ask(s, prompt)
        # The client's answer is the standard tier's, untouched by the shadow.
        assert headers["x-thrifty-model"] == "gpt-4o" and headers["x-thrifty-tier"] == "standard"
        assert text == "billing"
        ids[prompt] = headers["x-thrifty-request-id"]
    found = shadow_outcomes(s, list(ids.values()))
    for prompt, rid in ids.items():
        o = found[rid]
        assert o["method"] == "exact" and o["route"] == "tickets" and o["tenant"] == "demo"
        assert o["primary_deployment"] == "gpt-4o" and o["shadow_deployment"] == "gpt-4o-mini"
        assert o["score"] == (1.0 if prompt in AGREE else 0.0), (prompt, o)
        assert o["prompt"] == prompt
    rows = wait_rows(s.ledger_path, [rid + ".shadow" for rid in ids.values()] + list(ids.values()))
    for rid in ids.values():
        shadow, client = rows[rid + ".shadow"], rows[rid]
        assert shadow.lane == "shadow" and client.lane == "interactive"
        assert shadow.served_model == "gpt-4o-mini" and shadow.tier == "fast" and shadow.status == 200
        assert shadow.tenant == client.tenant == "demo" and shadow.feature == client.feature == "tickets"
        assert shadow.cost_usd > 0 and Decimal(found[rid]["shadow_cost_usd"]) == shadow.cost_usd
        # No saving claimed: baseline 0, the shadow lever is minus its cost.
        assert shadow.baseline_cost_usd == 0
        assert [(lv.lever, lv.saved_usd) for lv in shadow.levers] == [("shadow", -shadow.cost_usd)]
        assert client.served_model == "gpt-4o"


def test_shadow_spend_shows_as_spend_in_the_savings_report(shadow_stack):
    s = shadow_stack
    headers, _ = ask(s, AGREE[0], feature="tickets")
    rid = headers["x-thrifty-request-id"]
    shadow = wait_row(s.ledger_path, rid + ".shadow")
    ledger = SQLiteLedger(str(s.ledger_path))
    (g,) = ledger.savings(RowFilter(request_id_prefix=rid))
    client = wait_row(s.ledger_path, rid)
    assert g["actual_usd"] == client.cost_usd + shadow.cost_usd
    assert g["baseline_usd"] == client.baseline_cost_usd
    assert g["levers"]["shadow"]["saved_usd"] == -shadow.cost_usd
    assert g["saved_usd"] == g["baseline_usd"] - g["actual_usd"]


def test_streamed_call_is_shadowed_after_its_last_event(shadow_stack):
    s = shadow_stack
    headers, text = ask(s, DISAGREE[0], stream=True)
    assert text == "billing" and headers["x-thrifty-model"] == "gpt-4o"
    rid = headers["x-thrifty-request-id"]
    found = shadow_outcomes(s, [rid])
    assert found[rid]["score"] == 0.0 and found[rid]["method"] == "exact"
    assert wait_row(s.ledger_path, rid + ".shadow").lane == "shadow"


def test_shadow_rows_carry_the_callers_tenant(shadow_stack):
    s = shadow_stack
    headers, _ = ask(s, AGREE[1], key=localstack.OTHER_KEY)
    rid = headers["x-thrifty-request-id"]
    assert shadow_outcomes(s, [rid])[rid]["tenant"] == "other"
    assert wait_row(s.ledger_path, rid + ".shadow").tenant == "other"


def test_budget_stops_shadowing_at_the_cap_without_overshoot(shadow_stack):
    s = shadow_stack
    ids = [ask(s, p, feature="capped")[0]["x-thrifty-request-id"] for p in CAPPED]
    wait_rows(s.ledger_path, ids)
    est = Estimator(PriceBook()).estimate(
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": CAPPED[-1]}], "max_tokens": MAX_TOKENS},
        get_wire("openai"), "gpt-4o-mini", None)
    ledger = SQLiteLedger(str(s.ledger_path))
    deadline = time.monotonic() + 15.0
    while True:  # the shadow jobs (concurrency 1) finish off the path, after the clients' answers
        shadows = [r for r in ledger.rows(RowFilter(feature="capped")) if r.lane == "shadow"]
        spent = sum((r.cost_usd for r in shadows), Decimal(0))
        if CAP_USD - spent < est.usd or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert 0 < len(shadows) < len(CAPPED), len(shadows)
    assert spent <= CAP_USD
    # It stopped because the next call's worst case did not fit: what is left is below it.
    assert CAP_USD - spent < est.usd, (CAP_USD, spent, est.usd)
    time.sleep(0.5)  # nothing more comes: every later job was refused, not merely late
    assert len([r for r in ledger.rows(RowFilter(feature="capped")) if r.lane == "shadow"]) == len(shadows)
    # And the shadowed calls are the first ones: once full, the cap stays full.
    shadowed = {r.request_id.removesuffix(".shadow") for r in shadows}
    assert shadowed == set(ids[:len(shadowed)])


def test_export_shadow_then_train_router(shadow_stack, tmp_path):
    s = shadow_stack
    out = tmp_path / "shadow.jsonl"
    assert main(["export", "shadow", "--ledger", str(s.ledger_path), "--route", "tickets",
                 "--out", str(out), "--json"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) >= len(AGREE) + len(DISAGREE)
    for r in rows:
        assert set(r["outcomes"]) == {"gpt-4o", "gpt-4o-mini"} and r["outcomes"]["gpt-4o"]["score"] == 1.0
        assert r["cohort"] == "tickets"
    assert {r["outcomes"]["gpt-4o-mini"]["score"] for r in rows} == {0.0, 1.0}
    # The route's two tiers: `train router` wants an outcome for every model its config routes to,
    # and a shadow row has the two it compared.
    routing = tmp_path / "routing.yaml"
    routing.write_text(json.dumps({"routing": {
        "tiers": {"fast": ["gpt-4o-mini"], "standard": ["gpt-4o"]}, "default_tier": "standard",
        "rules": [{"name": "tickets", "when": {"request_type": ["classification"]}, "tier": "standard"}]}}))
    policy = tmp_path / "policy.json"
    assert main(["train", "router", "--data", str(out), "--config", str(routing), "--out", str(policy),
                 "--folds", "2", "--json"]) == 0
    saved = json.loads(policy.read_text())
    assert saved["models"] == {"cheap": "gpt-4o-mini", "strong": "gpt-4o"}
    # Or the gateway's own config (more models than a shadow row compares) with the pair named.
    assert main(["train", "router", "--data", str(out), "--config", str(s.config_path), "--out", str(policy),
                 "--folds", "2", "--strong", "gpt-4o", "--weak", "gpt-4o-mini", "--json"]) == 0
    assert json.loads(policy.read_text())["models"] == {"cheap": "gpt-4o-mini", "strong": "gpt-4o"}


def test_metrics_show_the_lane_per_route_as_the_outcomes_table_has_it(shadow_stack):
    """`/metrics` counts the lane's events per route; what it says agrees with shadow_outcomes
    (scored calls, the sum of their agreement) and with the cap refusing the `capped` route."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    s = shadow_stack
    headers, _ = ask(s, AGREE[0] + " (metrics)")
    rid = headers["x-thrifty-request-id"]
    shadow_outcomes(s, [rid])
    wait_rows(s.ledger_path, [rid, rid + ".shadow"])  # every client row is in the table to count
    with urllib.request.urlopen(f"{s.url}/metrics", timeout=10) as r:  # loopback, no key configured
        text = r.read().decode()
    events, score_sum = {}, {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "thrifty_shadow_events_total":
                events[(sample.labels["route"], sample.labels["event"])] = sample.value
            elif sample.name == "thrifty_shadow_agreement_score_total":
                score_sum[sample.labels["route"]] = sample.value
    con = sqlite3.connect(s.ledger_path)
    try:
        scored, total = con.execute("SELECT COUNT(*), SUM(score) FROM shadow_outcomes "
                                    "WHERE route = 'tickets' AND score IS NOT NULL").fetchone()
        eligible = con.execute("SELECT COUNT(*) FROM calls WHERE feature = 'tickets' AND lane = 'interactive'"
                               ).fetchone()[0]
    finally:
        con.close()
    assert events[("tickets", "scored")] == scored and score_sum["tickets"] == pytest.approx(total)
    assert 0 < total < scored  # agreeing and disagreeing calls were both scored
    assert events[("tickets", "eligible")] == events[("tickets", "sampled")] == eligible  # sample 1.0
    assert events[("tickets", "sent")] >= scored
    if ("capped", "eligible") in events:  # the cap test ran in this module: the cap refused some
        assert events[("capped", "over_budget")] > 0
        assert events[("capped", "sent")] + events[("capped", "over_budget")] == events[("capped", "sampled")]
