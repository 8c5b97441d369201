"""Routing and escalation end to end, with emulator models of recorded quality.

The emulator replays a small outcomes file: the fast model (gpt-4o-mini) scored 0 on one prompt,
so it answers "I'm not sure...", which the fast rule's `refusal` check catches and escalates to
the standard tier (gpt-4o, which answers the recorded text); on another prompt it scored 1 and
its answer is served from the fast tier.
"""

from __future__ import annotations

import json

import openai
import pytest

from tests.conftest import Stack, start_stack
from tests.ledger_util import wait_row, wait_rows
from thrifty.ledger import RowFilter, SQLiteLedger

HARD = "Classify this ticket as billing, bug or other: the invoice PDF shows a stack trace"
EASY = "Classify this ticket as billing, bug or other: I was charged twice for my order"
STRONG_TEXT = "bug"


@pytest.fixture(scope="module")
def recorded_stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("recorded-routing")
    rows = [
        {"prompt": HARD, "cohort": None, "outcomes": {
            "small": {"score": 0.0, "cost_usd": 0.00001},
            "large": {"score": 1.0, "cost_usd": 0.001, "answer": STRONG_TEXT}}},
        {"prompt": EASY, "cohort": None, "outcomes": {
            "small": {"score": 1.0, "cost_usd": 0.00001},
            "large": {"score": 1.0, "cost_usd": 0.001}}},
    ]
    (tmp / "outcomes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    emu_cfg = tmp / "emulator.yaml"
    emu_cfg.write_text(json.dumps({"recorded": {"path": "outcomes.jsonl",
                                                "models": {"gpt-4o-mini": "small", "gpt-4o": "large"}}}))

    def tiers(cfg):
        cfg["routing"] = {
            "tiers": {"fast": ["gpt-4o-mini"], "standard": ["gpt-4o"], "heavy": ["claude-opus-4-1"]},
            "default_tier": "standard",
            "rules": [{"name": "trivial", "when": {"request_type": ["classification"]},
                       "tier": "fast", "checks": ["refusal"]}],
            "escalation": {"max_steps": 1},
        }

    s = start_stack(tmp, edit=tiers, emulator_args=["--config", str(emu_cfg)])
    yield s
    s.gateway.stop()
    s.emulator.stop()


def ask(stack: Stack, prompt: str):
    with openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key, max_retries=0) as c:
        return c.chat.completions.with_raw_response.create(
            model="thrifty/auto", messages=[{"role": "user", "content": prompt}])


def test_prompt_the_fast_model_failed_is_escalated_to_the_standard_tier(recorded_stack):
    s = recorded_stack
    raw = ask(s, HARD)
    assert raw.headers["x-thrifty-tier"] == "standard" and raw.headers["x-thrifty-model"] == "gpt-4o"
    assert raw.parse().choices[0].message.content == STRONG_TEXT
    rid = raw.headers["x-thrifty-request-id"]
    rows = wait_rows(s.ledger_path, [rid, rid + ".1"])
    final, lower = rows[rid], rows[rid + ".1"]
    assert final.served_model == "gpt-4o" and final.tier == "standard" and final.error_type is None
    assert lower.served_model == "gpt-4o-mini" and lower.tier == "fast" and lower.status == 200
    assert lower.error_type == "escalated: model not sure"
    assert lower.cost_usd > 0 and final.cost_usd > 0


def test_prompt_the_fast_model_passed_is_served_by_the_fast_tier(recorded_stack):
    s = recorded_stack
    raw = ask(s, EASY)
    assert raw.headers["x-thrifty-tier"] == "fast" and raw.headers["x-thrifty-model"] == "gpt-4o-mini"
    text = raw.parse().choices[0].message.content
    assert text and not text.startswith("I'm not sure")
    rid = raw.headers["x-thrifty-request-id"]
    row = wait_row(s.ledger_path, rid)
    assert row.served_model == "gpt-4o-mini" and row.tier == "fast" and row.error_type is None
    ledger = SQLiteLedger(str(s.ledger_path))
    assert [r.request_id for r in ledger.rows(RowFilter(request_id_prefix=rid))] == [rid]
