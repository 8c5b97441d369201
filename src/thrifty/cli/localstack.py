"""The embedded local set-up: the emulator as upstream, a gateway config that points at it.

`thrifty demo`, the tests and the benchmarks all build their gateway config here, so what the
demo shows is what the tests check.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import yaml

DEMO_KEY = "sk-thrifty-demo"
OTHER_KEY = "sk-thrifty-other"  # a second tenant, to show that tenants never share cache entries

# Deployment name -> (provider, model, tier, catalog provider for pricing)
LOCAL_DEPLOYMENTS: dict[str, tuple[str, str, str, str | None]] = {
    "gpt-5-nano": ("openai", "gpt-5-nano", "fast", None),
    "gpt-4o-mini": ("openai", "gpt-4o-mini", "fast", None),
    "gpt-5-mini": ("openai", "gpt-5-mini", "standard", None),
    "gpt-4o": ("openai", "gpt-4o", "standard", None),
    "llama-3.1-8b-instant": ("groq", "llama-3.1-8b-instant", "fast", "groq"),
    "claude-haiku-4-5": ("anthropic", "claude-haiku-4-5", "fast", None),
    "claude-sonnet-4-5": ("anthropic", "claude-sonnet-4-5", "standard", None),
    "claude-opus-4-1": ("anthropic", "claude-opus-4-1", "heavy", None),
    # Embedding models (POST /v1/embeddings only); priced under genai-prices' provider "openai".
    "text-embedding-3-small": ("openai", "text-embedding-3-small", "embedding", "openai"),
    "text-embedding-3-large": ("openai", "text-embedding-3-large", "embedding", "openai"),
}

_FAULT_HEADERS = ["x-emulator-fault", "x-emulator-fault-delay"]
# Client headers each provider kind needs passed on (Anthropic's API version and beta flags).
_KIND_HEADERS = {"anthropic": ["anthropic-version", "anthropic-beta"]}


def local_config(emulator_url: str, ledger_url: str, *, timeout_s: float = 30.0,
                 store_bodies: bool = False) -> dict[str, Any]:
    """A gateway config (as a dict) whose providers all live in the emulator at `emulator_url`."""

    def provider(kind: str, base: str) -> dict[str, Any]:
        forward = _KIND_HEADERS.get(kind, []) + _FAULT_HEADERS
        return {"kind": kind, "base_url": base, "api_key": "emulator-key", "timeout_s": timeout_s,
                "connect_timeout_s": 5, "forward_headers": forward}

    deployments = {}
    for name, (prov, model, tier, price_provider) in LOCAL_DEPLOYMENTS.items():
        dep: dict[str, Any] = {"provider": prov, "model": model, "tier": tier}
        if price_provider:
            dep["price_provider"] = price_provider
        deployments[name] = dep
    return {
        "server": {"host": "127.0.0.1", "port": 8080},
        "ledger": {"url": ledger_url, "store_bodies": store_bodies},
        "providers": {
            "openai": provider("openai", f"{emulator_url}/v1"),
            "groq": provider("openai", f"{emulator_url}/v1"),
            "anthropic": provider("anthropic", emulator_url),
        },
        "deployments": deployments,
        "aliases": {"fast": "gpt-4o-mini", "smart": "claude-sonnet-4-5"},
        # Clients that ask for `thrifty/auto` get the cheapest tier the request's shape allows.
        "routing": {
            "tiers": {"fast": ["gpt-5-nano", "gpt-4o-mini", "claude-haiku-4-5"],
                      "standard": ["gpt-4o", "claude-sonnet-4-5"], "heavy": ["claude-opus-4-1"]},
            "default_tier": "standard",
            # What `thrifty/auto` calls would have used without Thrifty: prices their baseline.
            "baseline_model": "gpt-4o",
            "rules": [
                # A fast-tier answer that is empty, a refusal, cut off or off-schema is re-run one tier up.
                {"name": "trivial", "when": {"request_type": ["classification", "extraction", "rewrite"]},
                 "tier": "fast", "checks": ["empty", "refusal", "truncated", "schema"]},
                {"name": "agents", "when": {"request_type": ["agentic"]}, "tier": "heavy"},
            ],
        },
        "keys": {DEMO_KEY: {"tenant": "demo"}, OTHER_KEY: {"tenant": "other"}},
    }


def write_config(path: str, config: dict[str, Any]) -> str:
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return path


def invoice_from_billing(billing: dict[str, Any], prices: Any) -> dict[str, Decimal | None]:
    """What the emulator's billing counter would cost, per model: "the provider's invoice".

    Prices each model's token totals at its card's flat per-token rates. That equals the sum of the
    per-call costs as long as no single call reaches a long-context price tier (none in our runs).
    """
    from thrifty.contract.usage import Usage

    price_provider = {model: pp for _, model, _, pp in LOCAL_DEPLOYMENTS.values()}
    invoice: dict[str, Decimal | None] = {}
    # Interactive calls at the list price; batch lines (the `batch` section) at the batch price.
    for section, batch in ((billing, False), (billing.get("batch") or {}, True)):
        for model, c in section.get("models", {}).items():
            card = prices.card(model, price_provider.get(model))
            if card is None:
                invoice[model] = None
                continue
            usage = Usage(input_tokens=c["input_tokens"], cache_read_tokens=c["cache_read_tokens"],
                          cache_write_5m_tokens=c["cache_write_5m_tokens"],
                          cache_write_1h_tokens=c["cache_write_1h_tokens"],
                          output_tokens=c["output_tokens"], reasoning_tokens=c["reasoning_tokens"])
            cost = linear_cost(card, usage) * (card.batch_discount if batch else 1)
            if invoice.get(model, 0) is not None:
                invoice[model] = invoice.get(model, Decimal(0)) + cost
    return invoice


def linear_cost(card: Any, usage: Any) -> Decimal:
    million = Decimal(1_000_000)
    reasoning_rate = card.reasoning if card.reasoning is not None else card.output
    total = (usage.input_tokens * card.input
             + usage.cache_read_tokens * (card.cache_read if card.cache_read is not None else card.input)
             + usage.cache_write_5m_tokens * (card.cache_write_5m if card.cache_write_5m is not None else card.input)
             + usage.cache_write_1h_tokens * (card.cache_write_1h if card.cache_write_1h is not None else card.input)
             + (usage.output_tokens - usage.reasoning_tokens) * card.output
             + usage.reasoning_tokens * reasoning_rate)
    return total / million
