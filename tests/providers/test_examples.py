"""Every provider example in docs/providers.md loads with the gateway's config loader, and every
deployment it declares has a price (the catalog's under its price_provider, or a config override)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from thrifty.config import load_config
from thrifty.pricing import PriceBook
from thrifty.providers.registry import provider_class

DOC = Path(__file__).resolve().parents[2] / "docs" / "providers.md"
_EXAMPLE = re.compile(r"<!-- example: (\S+) -->\n```yaml\n(.*?)```", re.DOTALL)
EXAMPLES = dict(_EXAMPLE.findall(DOC.read_text()))
SECRETS = {"THRIFTY_KEY": "sk-thrifty-docs", "AZURE_OPENAI_API_KEY": "az-secret", "GROQ_API_KEY": "gsk-secret",
           "TOGETHER_API_KEY": "tg-secret", "FIREWORKS_API_KEY": "fw-secret",
           "GEMINI_API_KEY": "gm-secret", "AWS_BEARER_TOKEN_BEDROCK": "ABSK-secret"}
SELF_HOSTED = {"vllm", "sglang"}
# Examples priced under another catalog provider than their name: Vertex AI bills on Google's cards.
PRICED_AS = {"vertex": "google"}


def test_the_doc_has_every_example():
    assert set(EXAMPLES) == {"aws", "azure", "google", "groq", "together", "fireworks", "vllm", "sglang",
                             "vertex"}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_loads_and_every_deployment_is_priced(name, tmp_path, monkeypatch):
    for var, value in SECRETS.items():
        monkeypatch.setenv(var, value)
    for var in ("VLLM_API_KEY", "SGLANG_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / f"{name}.yaml"
    path.write_text(EXAMPLES[name])
    config = load_config(path)

    assert list(config.keys) == ["sk-thrifty-docs"]  # the virtual key came from the environment
    for pname, provider in config.providers.items():
        provider_class(provider.kind)  # a registered adapter
        if name in SELF_HOSTED:
            assert provider.base_url.startswith("http://127.0.0.1:") and not provider.api_key
        else:
            assert provider.base_url.startswith("https://")
            if provider.vertex is not None:  # OAuth2 credentials (a file or ADC), or a token from the environment
                assert provider.api_key is None or provider.api_key in SECRETS.values(), pname
            else:
                assert provider.api_key in SECRETS.values(), pname  # from the environment, never inline
    prices = PriceBook(config.prices)
    assert config.deployments
    for dname, dep in config.deployments.items():
        card = prices.card(dep.model, dep.price_provider)
        assert card is not None, f"{name}: {dname} ({dep.model}) has no price"
        assert card.input > 0 and card.output > 0
        if name in SELF_HOSTED:
            assert dep.price_provider is None and card.source == "config override"
        else:
            priced_as = PRICED_AS.get(name, name)
            assert dep.price_provider == priced_as and card.provider == priced_as, (dname, card)
