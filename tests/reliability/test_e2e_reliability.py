"""Retries, fallback and the breaker through the real servers: openai SDK -> thrifty serve ->
thrifty emulate, with the emulator's per-model fault rates (a config file) and fault header."""

from __future__ import annotations

import json
import urllib.request

import httpx
import openai
import pytest
import yaml

from thrifty.cli import localstack, processes
from thrifty.config import Config
from tests.conftest import Stack
from tests.ledger_util import wait_row

TIERS = {"fast": ["gpt-4o-mini", "gpt-5-nano"],  # gpt-5-nano is the cheaper: routing picks it first
         "standard": ["gpt-4o", "gpt-5-mini"]}  # gpt-5-mini is the cheaper
EMULATOR = {
    "retry_after_s": 30,  # long enough that the test never races the cool-down
    "models": {"gpt-5-nano": {"faults": {"429": 1.0}},
               "gpt-5-mini": {"faults": {"500": 1.0}},
               "claude-haiku-4-5": {"faults": {"500": 0.5}}},
}
has_reliability_config = pytest.mark.skipif(
    "reliability" not in Config.model_fields, reason="Config has no `reliability` section yet")


def start(tmp, *, routing: bool, reliability: dict | None = None) -> Stack:
    emu_cfg = tmp / "emulator.yaml"
    emu_cfg.write_text(yaml.safe_dump(EMULATOR))
    emu = processes.start_emulator(latency_scale=0.0, log_path=str(tmp / "emulator.log"),
                                   extra=["--config", str(emu_cfg)])
    config = localstack.local_config(emu.url, f"sqlite:///{tmp / 'ledger.db'}", timeout_s=10.0)
    config.pop("routing", None)
    if routing:
        config["routing"] = {"tiers": TIERS, "default_tier": "standard"}
    if reliability is not None:
        config["reliability"] = reliability
    path = localstack.write_config(str(tmp / "thrifty.yaml"), config)
    try:
        gw = processes.start_gateway(path, log_path=str(tmp / "gateway.log"))
    except Exception:
        emu.stop()
        raise
    return Stack(emu, gw, tmp / "ledger.db", tmp / "thrifty.yaml")


@pytest.fixture(scope="module")
def routed(tmp_path_factory):
    # Any deployment of the tier may serve a fallback (the default allows no dearer one).
    s = start(tmp_path_factory.mktemp("reliability-routed"), routing=True,
              reliability={"fallback_max_price_ratio": None})
    yield s
    s.gateway.stop()
    s.emulator.stop()


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    s = start(tmp_path_factory.mktemp("reliability-plain"), routing=False)
    yield s
    s.gateway.stop()
    s.emulator.stop()


def billing(stack) -> dict:
    with urllib.request.urlopen(f"{stack.emulator.url}/_emulator/billing") as r:
        return json.load(r)["models"]


def chat(stack, model, *, stream=False, headers=None):
    """The raw HTTP answer (status, headers) and its ledger row."""
    body = {"model": model, "messages": [{"role": "user", "content": "Summarise our refund policy."}],
            "stream": stream}
    r = httpx.post(f"{stack.url}/v1/chat/completions", json=body, timeout=60,
                   headers={"authorization": f"Bearer {stack.key}", **(headers or {})})
    return r, wait_row(stack.ledger_path, r.headers["x-thrifty-request-id"])


def test_500_is_retried_twice_then_fails(plain):
    before = billing(plain).get("gpt-4o", {}).get("faults", 0)
    r, row = chat(plain, "gpt-4o", headers={"x-emulator-fault": "500"})
    assert r.status_code == 500 and row.status == 500 and row.retries == 2
    assert billing(plain)["gpt-4o"]["faults"] - before == 3  # three attempts reached the provider


def test_500s_are_retried_until_one_succeeds(plain):
    # claude-haiku-4-5 fails half its calls (seeded dice): some calls need a retry, none more than 2.
    rows = [chat(plain, "claude-haiku-4-5")[1] for _ in range(10)]
    ok = [row for row in rows if row.status == 200]
    assert any(row.retries > 0 for row in ok), [(r.status, r.retries) for r in rows]
    assert all(row.retries <= 2 for row in rows)
    assert all(row.retries == 2 for row in rows if row.status != 200)
    faults = billing(plain)["claude-haiku-4-5"]["faults"]
    assert faults == sum(row.retries for row in ok) + sum(3 for row in rows if row.status != 200)


def test_400_is_never_retried(plain):
    r, row = chat(plain, "gpt-4o-mini", headers={"x-emulator-fault": "not-a-fault"})  # the emulator says 400
    assert r.status_code == 400 and row.status == 400 and row.retries == 0


def test_429_falls_back_to_the_next_deployment_of_the_tier(routed):
    r, row = chat(routed, "thrifty/fast")
    assert r.status_code == 200
    assert r.headers["x-thrifty-model"] == "gpt-4o-mini" and r.headers["x-thrifty-tier"] == "fast"
    assert row.served_model == "gpt-4o-mini" and row.tier == "fast" and row.retries == 1
    assert billing(routed)["gpt-5-nano"]["faults"] == 1
    # gpt-5-nano said retry-after 30: it gets no traffic before then, streamed or not.
    r, row = chat(routed, "thrifty/fast", stream=True)
    assert r.status_code == 200 and "[DONE]" in r.text
    assert row.served_model == "gpt-4o-mini" and row.retries == 0 and row.status == 200
    assert billing(routed)["gpt-5-nano"]["faults"] == 1


def test_breaker_opens_and_the_tiers_other_deployment_serves(routed):
    # gpt-5-mini (the cheaper of `standard`) always fails: two attempts on it, then gpt-4o serves.
    for _ in range(10):
        r, row = chat(routed, "thrifty/standard")
        assert r.status_code == 200 and row.served_model == "gpt-4o" and row.retries == 2
    # 20 calls, all failed: the breaker is open and gpt-5-mini is not called any more.
    assert billing(routed)["gpt-5-mini"]["faults"] == 20
    with openai.OpenAI(base_url=f"{routed.url}/v1", api_key=routed.key, max_retries=0) as c:
        raw = c.chat.completions.with_raw_response.create(
            model="thrifty/standard", messages=[{"role": "user", "content": "Hi"}])
    row = wait_row(routed.ledger_path, raw.headers["x-thrifty-request-id"])
    assert raw.headers["x-thrifty-model"] == "gpt-4o" and row.retries == 0 and row.tier == "standard"
    assert billing(routed)["gpt-5-mini"]["faults"] == 20


def test_a_named_model_is_not_swapped_for_another(routed):
    # gpt-5-mini is in `standard` with gpt-4o, but the client asked for gpt-5-mini by name.
    r, row = chat(routed, "gpt-5-mini")
    assert r.status_code in (500, 503) and row.served_model == "gpt-5-mini"


@has_reliability_config
def test_the_deadline_stops_retries(tmp_path):
    s = start(tmp_path, routing=False, reliability={"deadline_s": 1.0})
    try:
        # The emulator holds the call 5 s; the provider would wait 10 s, the deadline only 1 s.
        r, row = chat(s, "gpt-4o-mini", headers={"x-emulator-fault": "timeout", "x-emulator-fault-delay": "5"})
        assert r.status_code == 504 and "deadline" in r.json()["error"]["message"]
        assert row.status == 504 and row.retries == 0
    finally:
        s.gateway.stop()
        s.emulator.stop()


@has_reliability_config
def test_config_can_turn_retries_off(tmp_path):
    s = start(tmp_path, routing=False, reliability={"max_retries": 0})
    try:
        r, row = chat(s, "gpt-4o", headers={"x-emulator-fault": "503"})
        assert r.status_code == 503 and row.retries == 0
    finally:
        s.gateway.stop()
        s.emulator.stop()
