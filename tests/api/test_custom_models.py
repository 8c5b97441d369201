"""Self-hosted and custom models: priced from config overrides, or recorded as unknown cost."""

from __future__ import annotations

from decimal import Decimal

import openai
import pytest

from tests.ledger_util import wait_row
from thrifty.cli import localstack, processes


@pytest.fixture(scope="module")
def custom_stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("custom")
    emu_cfg = tmp / "emulator.yaml"
    emu_cfg.write_text("models:\n"
                       "  acme-llama-70b: {wire: openai, provider: acme, ttft_ms: 0, tokens_per_s: 1000}\n"
                       "  mystery-model: {wire: openai, provider: acme, ttft_ms: 0, tokens_per_s: 1000}\n")
    emu = processes.start_emulator(extra=["--config", str(emu_cfg)], log_path=str(tmp / "emu.log"))
    cfg = localstack.local_config(emu.url, f"sqlite:///{tmp / 'ledger.db'}")
    cfg["providers"]["vllm"] = {"kind": "openai", "base_url": f"{emu.url}/v1", "api_key": "emulator-key"}
    cfg["deployments"]["acme-llama-70b"] = {"provider": "vllm", "model": "acme-llama-70b", "tier": "self-hosted"}
    cfg["deployments"]["mystery-model"] = {"provider": "vllm", "model": "mystery-model"}
    cfg["prices"] = {"acme-llama-70b": {"input": 0.2, "output": 0.6}}
    path = localstack.write_config(str(tmp / "thrifty.yaml"), cfg)
    gw = processes.start_gateway(path, log_path=str(tmp / "gw.log"))
    yield gw, tmp
    gw.stop()
    emu.stop()


def test_override_prices_a_self_hosted_model(custom_stack):
    gw, tmp = custom_stack
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key=localstack.DEMO_KEY, max_retries=0) as c:
        raw = c.chat.completions.with_raw_response.create(
            model="acme-llama-70b", messages=[{"role": "user", "content": "hello"}])
    usage = raw.parse().usage
    expected = (Decimal(usage.prompt_tokens) * Decimal("0.2") + Decimal(usage.completion_tokens) * Decimal("0.6")) / 10**6
    assert Decimal(raw.headers["x-thrifty-cost-usd"]) == expected
    assert raw.headers["x-thrifty-tier"] == "self-hosted"
    assert wait_row(tmp / "ledger.db", raw.headers["x-thrifty-request-id"]).cost_usd == expected


def test_unknown_model_goes_through_with_unknown_cost_and_one_warning(custom_stack):
    gw, tmp = custom_stack
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key=localstack.DEMO_KEY, max_retries=0) as c:
        raws = [c.chat.completions.with_raw_response.create(
            model="mystery-model", messages=[{"role": "user", "content": f"q{i}"}]) for i in range(3)]
    for raw in raws:
        assert raw.parse().choices[0].message.content
        assert raw.headers["x-thrifty-cost-usd"] == "unknown"
        row = wait_row(tmp / "ledger.db", raw.headers["x-thrifty-request-id"])
        assert row.cost_usd is None and row.status == 200 and row.completion_tokens > 0
    log = (tmp / "gw.log").read_text()
    assert log.count("mystery-model") == 1, log
