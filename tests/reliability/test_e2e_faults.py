"""Mixed upstream faults through the real servers: httpx -> thrifty serve -> thrifty emulate.

The emulator throws 429, 500, `timeout` and `drop` on every model (seeded dice, its config); the
gateway's provider timeout is shorter than the emulator's hold, so a `timeout` fault is cut by
the gateway after the provider did (and billed) the work.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
import yaml

from thrifty.cli import localstack, processes
from thrifty.ledger import SQLiteLedger
from tests.conftest import Stack

TIERS = {"fast": ["gpt-5-nano", "gpt-4o-mini"], "standard": ["gpt-4o"], "heavy": ["claude-opus-4-1"]}
ROUTES = ["thrifty/fast", "thrifty/standard", "gpt-4o-mini", "claude-haiku-4-5"]
RETRIABLE = {408, 409, 429, 500, 502, 503, 504, 529}
TIMEOUT_S = 1.0


def start(tmp, emulator: dict, reliability: dict | None = None) -> Stack:
    (tmp / "emulator.yaml").write_text(yaml.safe_dump(emulator))
    emu = processes.start_emulator(latency_scale=0.0, log_path=str(tmp / "emulator.log"),
                                   extra=["--config", str(tmp / "emulator.yaml")])
    config = localstack.local_config(emu.url, f"sqlite:///{tmp / 'ledger.db'}", timeout_s=TIMEOUT_S)
    # Escalation off: every move seen here is a fallback's.
    config["routing"] = {"tiers": TIERS, "default_tier": "standard", "escalation": {"enabled": False}}
    if reliability is not None:
        config["reliability"] = reliability
    path = localstack.write_config(str(tmp / "thrifty.yaml"), config)
    try:
        gw = processes.start_gateway(path, log_path=str(tmp / "gateway.log"))
    except Exception:
        emu.stop()
        raise
    return Stack(emu, gw, tmp / "ledger.db", tmp / "thrifty.yaml")


def billing(stack: Stack) -> dict:
    return stack.billing()


async def drive(stack: Stack, n: int, concurrency: int) -> list[httpx.Response]:
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=60) as client:
        async def one(i: int) -> httpx.Response:
            body = {"model": ROUTES[i % len(ROUTES)], "max_completion_tokens": 64,
                    "messages": [{"role": "user", "content": f"Question {i}: where is my parcel?"}]}
            async with sem:
                return await client.post(f"{stack.url}/v1/chat/completions", json=body,
                                         headers={"authorization": f"Bearer {stack.key}"})

        return list(await asyncio.gather(*(one(i) for i in range(n))))


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    faults = {"429": 0.05, "500": 0.05, "timeout": 0.05, "drop": 0.05}
    s = start(tmp_path_factory.mktemp("faults"), {"seed": 3, "faults": faults, "fault_delay_s": 3 * TIMEOUT_S,
                                                  "retry_after_s": 1, "max_answer_tokens": 32})
    responses = asyncio.run(drive(s, 160, 16))
    s.gateway.stop()  # graceful: every row is written
    bill = billing(s)
    s.emulator.stop()
    return s, responses, SQLiteLedger(str(s.ledger_path)).rows(), bill


def test_every_call_succeeds_or_fails_only_after_its_retries_or_for_a_reason_not_retried(faulty):
    _, responses, rows, _ = faulty
    main = {r.request_id: r for r in rows if "." not in r.request_id}
    assert len(main) == len(responses)
    ok = [r for r in responses if r.status_code == 200]
    assert len(ok) >= 0.95 * len(responses)  # 1 - 0.2**3 = 99.2% expected; 160 calls leave some noise
    for resp in responses:
        row = main[resp.headers["x-thrifty-request-id"]]
        assert row.retries <= 2  # at most 3 upstream attempts
        if resp.status_code != 200:
            assert resp.status_code not in RETRIABLE or row.retries == 2 or resp.status_code == 429, \
                (resp.status_code, row.retries, resp.text)
    assert any(row.retries > 0 for row in main.values() if row.status == 200)  # faults were retried


def test_no_call_moves_to_a_pricier_tier_or_deployment(faulty):
    # fallback_max_price_ratio defaults to 1: gpt-4o-mini is dearer than gpt-5-nano, so a 429 on
    # gpt-5-nano is waited out rather than paid for on gpt-4o-mini.
    _, _, rows, bill = faulty
    for row in rows:
        if row.requested_model == "thrifty/fast":
            assert row.tier == "fast" and row.served_model == "gpt-5-nano", row
        if row.requested_model == "thrifty/standard":
            assert row.served_model == "gpt-4o", row
    assert "claude-opus-4-1" not in bill["models"]


def test_every_billed_upstream_request_has_a_ledger_row(faulty):
    _, _, rows, bill = faulty
    answered = [r for r in rows if r.status == 200]
    cut = [r for r in rows if "." in r.request_id]  # retried attempts cut after reaching the provider
    assert cut and all(r.status in (502, 504) and r.cost_usd is None and r.served_model for r in cut)
    # A call whose last attempt was cut: its own row stands for that billed request.
    failed_cut = [r for r in rows if "." not in r.request_id and r.status in (502, 504)]
    assert len(answered) + len(cut) + len(failed_cut) == bill["totals"]["requests"]
    per_model: dict[str, int] = {}
    for r in answered + cut + failed_cut:
        per_model[r.served_model] = per_model.get(r.served_model, 0) + 1
    assert per_model == {m: b["requests"] for m, b in bill["models"].items() if b["requests"]}


def test_a_tier_whose_deployments_all_cool_is_not_served_by_a_stronger_one(tmp_path):
    # Every fast deployment answers 429 with a long retry-after: the calls get the 429 back (with
    # its retry-after) instead of being sent two tiers up to claude-opus-4-1.
    emulator = {"retry_after_s": 30, "models": {"gpt-5-nano": {"faults": {"429": 1.0}},
                                                "gpt-4o-mini": {"faults": {"429": 1.0}}}}
    s = start(tmp_path, emulator)
    try:
        for _ in range(3):
            r = httpx.post(f"{s.url}/v1/chat/completions", timeout=30,
                           headers={"authorization": f"Bearer {s.key}"},
                           json={"model": "thrifty/fast", "messages": [{"role": "user", "content": "Hi"}]})
            assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
            assert r.headers["x-thrifty-tier"] == "fast"
        assert "claude-opus-4-1" not in billing(s)["models"]
    finally:
        s.gateway.stop()
        s.emulator.stop()
