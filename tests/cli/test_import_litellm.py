"""`thrifty import litellm`: LiteLLM proxy configs, written as Thrifty configs the gateway loads."""

from __future__ import annotations

import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from thrifty.api.factory import build_app
from thrifty.cli.main import main
from thrifty.config import load_config

# A team's LiteLLM proxy, in the shape of LiteLLM's own docs (docs.litellm.ai/docs/proxy/configs).
PROXY = """
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_key: os.environ/OPENAI_API_KEY
  - model_name: gpt-4o-mini            # load-balanced: a second deployment of the group
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: https://llm-eu.example.com/v1
      api_key: os.environ/EU_KEY
      timeout: 30
  - model_name: claude-sonnet
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_key: os.environ/ANTHROPIC_API_KEY
  - model_name: llama-70b
    litellm_params:
      model: groq/llama-3.3-70b-versatile
      api_key: os.environ/GROQ_API_KEY
  - model_name: my-vllm
    litellm_params:
      model: hosted_vllm/meta-llama/Llama-3.1-8B-Instruct
      api_base: http://vllm.internal:8000/v1
    model_info:
      input_cost_per_token: 0.0000001
      output_cost_per_token: 0.0000002

router_settings:
  routing_strategy: simple-shuffle
  num_retries: 3
  fallbacks:
    - gpt-4o: ["claude-sonnet"]
  model_group_alias:
    gpt-4: gpt-4o

litellm_settings:
  cache: true
  cache_params:
    type: redis
    host: os.environ/REDIS_HOST
    port: 6380
    password: os.environ/REDIS_PASSWORD
    ttl: 600
  max_budget: 250
  budget_duration: 30d

general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
"""

ENV = {"OPENAI_API_KEY": "sk-o", "EU_KEY": "sk-eu", "ANTHROPIC_API_KEY": "sk-a", "GROQ_API_KEY": "gsk",
       "REDIS_HOST": "cache.internal", "REDIS_PASSWORD": "pw", "LITELLM_MASTER_KEY": "sk-master"}


def _import(tmp_path: Path, litellm: str, capsys, *extra: str) -> tuple[int, Path, str]:
    src, out = tmp_path / "litellm.yaml", tmp_path / "thrifty.yaml"
    src.write_text(textwrap.dedent(litellm))
    rc = main(["import", "litellm", str(src), "--out", str(out), *extra])
    return rc, out, capsys.readouterr().err


@pytest.fixture
def env(monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)


def test_a_litellm_proxy_becomes_a_config_the_gateway_loads(tmp_path, capsys, env):
    rc, out, err = _import(tmp_path, PROXY, capsys)
    assert rc == 0, err
    cfg = load_config(out)  # the gateway's own loader, environment references resolved
    build_app(str(out))  # and the gateway builds on it (opens nothing)

    assert {n: (p.kind, p.base_url, p.api_key) for n, p in cfg.providers.items()} == {
        "openai": ("openai", "https://api.openai.com/v1", "sk-o"),
        "llm-eu.example.com": ("openai", "https://llm-eu.example.com/v1", "sk-eu"),
        "anthropic": ("anthropic", "https://api.anthropic.com", "sk-a"),
        "groq": ("openai", "https://api.groq.com/openai/v1", "gsk"),
        "vllm.internal": ("openai", "http://vllm.internal:8000/v1", None),
    }
    assert cfg.providers["llm-eu.example.com"].timeout_s == 30
    deps = {n: (d.provider, d.model, d.tier, d.price_provider) for n, d in cfg.deployments.items()}
    assert deps == {
        "gpt-4o": ("openai", "gpt-4o", "gpt-4o", None),
        "gpt-4o-mini": ("openai", "gpt-4o-mini", "gpt-4o-mini", None),
        "gpt-4o-mini-2": ("llm-eu.example.com", "gpt-4o-mini", "gpt-4o-mini", None),
        "claude-sonnet": ("anthropic", "claude-sonnet-4-5", "gpt-4o", None),
        "llama-70b": ("groq", "llama-3.3-70b-versatile", "standard", "groq"),
        "my-vllm": ("vllm.internal", "meta-llama/Llama-3.1-8B-Instruct", "standard", None),
    }
    assert cfg.aliases == {"gpt-4": "gpt-4o"}
    # The fallback group and the load-balanced group are tiers; a call may move within its tier.
    assert cfg.routing is not None and cfg.routing.tiers == {
        "gpt-4o": ["gpt-4o", "claude-sonnet"], "gpt-4o-mini": ["gpt-4o-mini", "gpt-4o-mini-2"],
        "standard": ["llama-70b", "my-vllm"]}
    assert (cfg.reliability.fallback, cfg.reliability.fallback_max_price_ratio, cfg.reliability.max_retries) == \
        ("tier", None, 3)
    exact = cfg.levers.exact_cache
    assert (exact.enabled, exact.backend, exact.redis_url, exact.ttl_s) == \
        (True, "redis", "redis://:pw@cache.internal:6380/0", 600)
    (budget,) = cfg.budgets.budgets
    assert (budget.scope, budget.limit_usd, budget.window) == ("global", Decimal(250), "month")
    assert cfg.admin.key == "sk-master"
    assert cfg.prices["meta-llama/Llama-3.1-8B-Instruct"].input == Decimal("0.1")
    assert cfg.prices["meta-llama/Llama-3.1-8B-Instruct"].output == Decimal("0.2")
    (tenant,) = {k.tenant for k in cfg.keys.values()}
    assert tenant == "default"
    # Secrets stay references in the file.
    text = out.read_text()
    assert "${OPENAI_API_KEY}" in text and "sk-o" not in text and "${LITELLM_MASTER_KEY}" in text
    assert "# Not mapped" not in text and "not mapped: " not in err and "0 settings not mapped" in err


UNMAPPABLE = """
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: gpt-4o                       # no prefix: LiteLLM infers OpenAI
      api_key: sk-literal
      rpm: 600
  - model_name: claude-bedrock
    litellm_params:
      model: bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0
      aws_region_name: us-east-1
  - model_name: "*"
    litellm_params:
      model: "openai/*"
router_settings:
  routing_strategy: latency-based-routing
  redis_host: localhost
  fallbacks:
    - gpt-4o: ["claude-bedrock"]
litellm_settings:
  success_callback: ["langfuse"]
  cache: true
  cache_params:
    type: redis-semantic
    similarity_threshold: 0.8
  max_budget: 10
  budget_duration: 7d
general_settings:
  master_key: sk-1234
  database_url: postgresql://litellm@db/litellm
environment_variables:
  REDIS_HOST: localhost
"""


def test_what_cannot_map_is_listed_with_its_litellm_key(tmp_path, capsys):
    rc, out, err = _import(tmp_path, UNMAPPABLE, capsys)
    assert rc == 0, err
    cfg = load_config(out)
    assert list(cfg.deployments) == ["gpt-4o"] and cfg.deployments["gpt-4o"].provider == "openai"
    assert cfg.providers["openai"].api_key == "sk-literal" and cfg.admin.key == "sk-1234"
    assert cfg.routing is None and not cfg.budgets.budgets
    expected = ["model_list[0].litellm_params.rpm", "model_list[1].litellm_params.model", "model_list[2].model_name",
                "router_settings.routing_strategy", "router_settings.redis_host", "router_settings.fallbacks[0].gpt-4o",
                "litellm_settings.success_callback", "litellm_settings.cache_params.type",
                "litellm_settings.budget_duration", "general_settings.database_url", "environment_variables"]
    header = out.read_text().split("\n\n", 1)[0]
    for path in expected:
        assert f"not mapped: {path}: " in err, (path, err)
        assert f"#   - {path}: " in header, (path, header)
    assert err.count("not mapped: ") == len(expected), err


def test_no_cache_in_litellm_means_no_exact_cache(tmp_path, capsys):
    litellm = """
    model_list:
      - model_name: claude
        litellm_params: {model: claude-sonnet-4-5, api_key: os.environ/ANTHROPIC_API_KEY}
    litellm_settings:
      max_budget: 5.5
    """
    rc, out, err = _import(tmp_path, litellm, capsys)
    assert rc == 0, err
    data = yaml.safe_load(out.read_text())
    assert data["levers"] == {"exact_cache": {"enabled": False}}
    assert data["providers"]["anthropic"]["api_key"] == "${ANTHROPIC_API_KEY}"
    assert data["budgets"]["budgets"] == [{"name": "litellm-max-budget", "scope": "global", "limit_usd": "5.5",
                                           "window": "lifetime"}]


def test_stdout_when_no_out(tmp_path, capsys):
    src = tmp_path / "litellm.yaml"
    src.write_text("model_list:\n  - model_name: m\n    litellm_params: {model: openai/gpt-4o-mini}\n")
    assert main(["import", "litellm", str(src)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("# Written by `thrifty import litellm")
    assert yaml.safe_load(printed)["deployments"] == {"m": {"provider": "openai", "model": "gpt-4o-mini"}}


@pytest.mark.parametrize(("content", "message"), [
    ("model_list: [\n", "invalid YAML"),
    ("- just a list\n", "a LiteLLM config is a mapping"),
])
def test_bad_input_is_a_config_error(tmp_path, capsys, content, message):
    src = tmp_path / "litellm.yaml"
    src.write_text(content)
    assert main(["import", "litellm", str(src)]) == 2
    assert message in capsys.readouterr().err


def test_missing_file_is_a_config_error(tmp_path, capsys):
    assert main(["import", "litellm", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_azure_deployments(tmp_path, capsys, monkeypatch):
    from thrifty.cli.import_litellm import _kinds

    if "azure" not in _kinds():
        pytest.skip("this gateway has no azure provider kind")
    monkeypatch.setenv("AZURE_API_KEY", "az")
    litellm = """
    model_list:
      - model_name: gpt-4o
        litellm_params:
          model: azure/prod-gpt4o
          api_base: https://acme.openai.azure.com
          api_key: os.environ/AZURE_API_KEY
          api_version: "2024-10-21"
        model_info:
          base_model: azure/gpt-4o
    """
    rc, out, err = _import(tmp_path, litellm, capsys)
    assert rc == 0 and "not mapped: " not in err, err
    cfg = load_config(out)
    build_app(str(out))
    (prov,) = cfg.providers.values()
    assert (prov.kind, prov.base_url, prov.api_key, prov.azure.api_version, prov.azure.deployments) == \
        ("azure", "https://acme.openai.azure.com", "az", "2024-10-21", {"gpt-4o": "prod-gpt4o"})
    assert cfg.deployments["gpt-4o"].model == "gpt-4o" and cfg.deployments["gpt-4o"].price_provider == "azure"


def test_the_imported_config_serves_calls(tmp_path, capsys):
    """Through `thrifty serve` on the written config, to the emulator: an alias, a fallback tier,
    and a call recorded in the ledger with its cost."""
    import httpx

    from thrifty.cli import processes
    from thrifty.ledger import RowFilter, SQLiteLedger

    emu = processes.start_emulator(latency_scale=0.0, log_path=str(tmp_path / "emulator.log"))
    try:
        litellm = f"""
        model_list:
          - model_name: main
            litellm_params: {{model: openai/gpt-4o-mini, api_base: "{emu.url}/v1", api_key: emulator-key}}
          - model_name: backup
            litellm_params: {{model: anthropic/claude-haiku-4-5, api_base: "{emu.url}", api_key: emulator-key}}
        router_settings:
          fallbacks: [{{main: [backup]}}]
          model_group_alias: {{default: main}}
        """
        ledger = tmp_path / "ledger.db"
        rc, out, err = _import(tmp_path, litellm, capsys, "--ledger", f"sqlite:///{ledger}")
        assert rc == 0, err
        (key,) = yaml.safe_load(out.read_text())["keys"]
        gw = processes.start_gateway(str(out), log_path=str(tmp_path / "gateway.log"))
        try:
            r = httpx.post(f"{gw.url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                           json={"model": "default", "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
            assert r.status_code == 200, r.text
            assert r.headers["x-thrifty-model"] == "gpt-4o-mini" and r.headers["x-thrifty-tier"] == "main"
        finally:
            gw.stop()
        (row,) = SQLiteLedger(str(ledger)).rows(RowFilter())
        assert (row.tenant, row.requested_model, row.status) == ("default", "default", 200) and row.cost_usd > 0
    finally:
        emu.stop()
