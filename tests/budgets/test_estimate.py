"""The worst-case estimate is an upper bound of what the provider bills, checked on the emulator.

Each request goes to the emulator over HTTP exactly as the gateway would send it upstream; its
usage (the emulator's tiktoken counts, its prompt-caching rules) is priced like any real call and
compared with the estimate made before sending.
"""

from __future__ import annotations

import math
import random
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from thrifty.budgets import EstimateConfig, Estimator
from thrifty.cli.processes import start_emulator
from thrifty.contract.usage import Usage
from thrifty.pricing import PriceBook
from thrifty.wire import ANTHROPIC_MESSAGES, OPENAI_CHAT, Wire
from thrifty.wire.anthropic_usage import usage_from_anthropic
from thrifty.wire.openai_chat import usage_from_openai

OPENAI_HEADERS = {"authorization": "Bearer emulator-key"}
ANTHROPIC_HEADERS = {"x-api-key": "emulator-key", "anthropic-version": "2023-06-01"}


@pytest.fixture(scope="module")
def emulator():
    server = start_emulator(latency_scale=0.0)
    try:
        with httpx.Client(base_url=server.url, timeout=30, headers=OPENAI_HEADERS) as http:
            yield http
    finally:
        server.stop()


@pytest.fixture(scope="module")
def prices():
    return PriceBook()


@pytest.fixture(scope="module")
def estimator(prices):
    return Estimator(prices)


def send(http: httpx.Client, wire: Wire, body: dict[str, Any]) -> Usage:
    if wire is OPENAI_CHAT:
        r = http.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        return usage_from_openai(r.json()["usage"])
    r = http.post("/v1/messages", json=body, headers=ANTHROPIC_HEADERS)
    assert r.status_code == 200, r.text
    return usage_from_anthropic(r.json()["usage"])


WORDS = ("budget cost token cache the a of to and model tier route refund Norway ship order invoice "
         "Größe naïve café 東京 数据 ПРИВЕТ مرحبا 🚀 😀 {\"k\": [1, 2]} <tag> \n\t -- ### 1234567 0.25$").split(" ")


def text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)) + rng.choice(("", ".", "\n", "?"))


def tool(name: str, rng: random.Random) -> dict[str, Any]:
    return {"name": name, "description": text(rng, 12),
            "parameters": {"type": "object", "properties": {"q": {"type": "string", "description": text(rng, 5)},
                                                            "n": {"type": "integer"}}, "required": ["q"]}}


def openai_bodies() -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(1)
    out: list[tuple[str, dict[str, Any]]] = [
        ("gpt-4o-mini", {"messages": [{"role": "user", "content": "hi"}]}),
        ("gpt-4o-mini", {"messages": [{"role": "system", "content": text(rng, 3000)},
                                      {"role": "user", "content": text(rng, 40)}], "max_tokens": 50}),
        ("gpt-5-mini", {"messages": [{"role": "developer", "content": "Be brief."},
                                     {"role": "user", "content": text(rng, 200)}],
                        "max_completion_tokens": 300, "reasoning_effort": "high"}),
        ("gpt-4o", {"messages": [{"role": "user", "name": "alice", "content": [
            {"type": "text", "text": text(rng, 30)},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 4000, "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/x.png", "detail": "low"}}]}],
            "max_tokens": 20, "n": 3}),
        ("gpt-4o-mini", {"messages": [
            {"role": "user", "content": text(rng, 50)},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": '{"q": "x"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": text(rng, 400)},
            {"role": "user", "content": "and then?"}],
            "tools": [{"type": "function", "function": tool(f"t{i}", rng)} for i in range(6)],
            "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": {
                "type": "object", "properties": {"answer": {"type": "string"}}}}}}),
    ]
    for _ in range(25):  # random conversations
        turns = [{"role": rng.choice(("user", "assistant")), "content": text(rng, rng.randint(0, 300))}
                 for _ in range(rng.randint(1, 12))]
        turns[-1]["role"] = "user"
        body: dict[str, Any] = {"messages": turns}
        if rng.random() < 0.5:
            body["max_completion_tokens"] = rng.randint(1, 200)  # reasoning models refuse max_tokens
        if rng.random() < 0.3:
            body["tools"] = [{"type": "function", "function": tool(f"f{j}", rng)} for j in range(rng.randint(1, 4))]
        out.append((rng.choice(("gpt-4o-mini", "gpt-4o", "gpt-5-nano")), body))
    return out


def anthropic_bodies() -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(2)
    long_system = text(rng, 3000)
    out: list[tuple[str, dict[str, Any]]] = [
        ("claude-haiku-4-5", {"max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}),
        ("claude-sonnet-4-5", {"max_tokens": 200, "system": long_system,
                               "messages": [{"role": "user", "content": text(rng, 30)}]}),
        # A 1-hour cache write costs 2x input: the estimate must see the breakpoint and price it so.
        ("claude-sonnet-4-5", {"max_tokens": 64, "system": [
            {"type": "text", "text": long_system, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
            "messages": [{"role": "user", "content": text(rng, 30)}]}),
        ("claude-sonnet-4-5", {"max_tokens": 64, "cache_control": {"type": "ephemeral"},
                               "system": text(rng, 2500), "messages": [{"role": "user", "content": "go"}]}),
        ("claude-opus-4-1", {"max_tokens": 300, "tools": [{**{k: v for k, v in tool("search", rng).items()
                                                              if k != "parameters"},
                                                           "input_schema": tool("s", rng)["parameters"]}],
                             "messages": [
                                 {"role": "user", "content": text(rng, 40)},
                                 {"role": "assistant", "content": [
                                     {"type": "text", "text": "Searching."},
                                     {"type": "tool_use", "id": "toolu_1", "name": "search", "input": {"q": "x"}}]},
                                 {"role": "user", "content": [
                                     {"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": [{"type": "text", "text": text(rng, 500)}]},
                                     {"type": "text", "text": "Summarise."}]}]}),
        ("claude-haiku-4-5", {"max_tokens": 50, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR" * 500}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": text(rng, 800)}},
            {"type": "text", "text": "Describe both."}]}]}),
    ]
    for _ in range(25):
        turns = [{"role": "user" if j % 2 == 0 else "assistant", "content": text(rng, rng.randint(1, 300))}
                 for j in range(rng.randint(0, 5) * 2 + 1)]
        body: dict[str, Any] = {"max_tokens": rng.randint(1, 400), "messages": turns}
        if rng.random() < 0.5:
            body["system"] = text(rng, rng.randint(1, 500))
        out.append((rng.choice(("claude-haiku-4-5", "claude-sonnet-4-5")), body))
    return out


CASES = ([(OPENAI_CHAT, m, b) for m, b in openai_bodies()]
         + [(ANTHROPIC_MESSAGES, m, b) for m, b in anthropic_bodies()])


@pytest.mark.parametrize("wire, model, body", CASES, ids=[f"{w.name}-{i}" for i, (w, _, _) in enumerate(CASES)])
def test_the_estimate_bounds_the_billed_usage_and_cost(emulator, estimator, prices, wire, model, body):
    body = {"model": model, **body}
    est = estimator.estimate(body, wire, model)
    for attempt in range(2):  # the second time the emulator's prompt cache may serve part of it
        usage = send(emulator, wire, body)
        assert usage.prompt_tokens <= est.input_tokens
        assert usage.output_tokens <= est.output_tokens
        cost = prices.cost(model, usage)
        assert cost is not None and est.usd is not None
        assert cost.total <= est.usd, (attempt, usage, cost.total, est)


def test_the_bound_is_not_absurdly_loose_for_plain_text(emulator, estimator):
    rng = random.Random(3)
    body = {"model": "gpt-4o-mini", "max_tokens": 5,
            "messages": [{"role": "user", "content": text(rng, 2000)}]}
    est = estimator.estimate(body, OPENAI_CHAT, "gpt-4o-mini")
    usage = send(emulator, OPENAI_CHAT, body)
    assert est.input_tokens <= usage.prompt_tokens * 1.05 + 40


def test_output_cap_rules(estimator):
    est = Estimator(PriceBook(), EstimateConfig(default_output_cap=1000, output_caps={"gpt-4o": 250}))
    assert est.output_cap({"max_completion_tokens": 7, "max_tokens": 9}, OPENAI_CHAT, "x") == (7, True)
    assert est.output_cap({"max_tokens": 9, "n": 4}, OPENAI_CHAT, "x") == (36, True)
    assert est.output_cap({"max_tokens": True}, OPENAI_CHAT, "gpt-4o") == (250, False)
    assert est.output_cap({}, OPENAI_CHAT, "other") == (1000, False)
    assert est.output_cap({"max_tokens": 64, "n": 5}, ANTHROPIC_MESSAGES, "x") == (64, True)  # no n on Anthropic


def test_cache_write_ttls_and_reasoning_raise_the_price(prices):
    est = Estimator(prices)
    plain = est.price("claude-sonnet-4-5", None, 100_000, 0)
    five = est.price("claude-sonnet-4-5", None, 100_000, 0, frozenset({"5m"}))
    hour = est.price("claude-sonnet-4-5", None, 100_000, 0, frozenset({"5m", "1h"}))
    assert (plain, five, hour) == (Decimal("0.3"), Decimal("0.375"), Decimal("0.6"))
    # Past the long-context threshold the dearer tier applies, to output as well.
    assert est.price("claude-sonnet-4-5", None, 300_000, 1_000_000) == Decimal("1.8") + Decimal("22.5")
    assert est.price("no-such-model", None, 10, 10) is None


def test_base64_attachments_are_not_tokenised(estimator):
    body = {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "QUJD" * 250_000}}]}]}
    assert estimator.input_tokens(body, OPENAI_CHAT) < 2000


def test_a_wire_format_without_a_configured_factor_gets_the_largest_one(estimator):
    # A third-party dialect counts its own input (here: the body as JSON); the estimator, which
    # knows no factor for its tokenizer, takes the largest configured one so the bound stays a bound.
    gemini = SimpleNamespace(name="gemini", input_tokens=lambda body, counter: counter.texts((body,)))
    body = {"contents": [{"parts": [{"text": "hello there"}]}]}
    as_json = '{"contents":[{"parts":[{"text":"hello there"}]}]}'
    assert estimator.input_tokens(body, gemini) >= estimator.count(as_json)
    largest = max(estimator.config.input_factor.values())
    assert estimator.input_tokens(body, gemini) == math.ceil(
        (estimator.count(as_json) + estimator.config.per_request_tokens) * largest)


def test_the_emulators_invoice_stays_within_the_sum_of_the_estimates(emulator, estimator, prices):
    from thrifty.cli.localstack import invoice_from_billing

    assert emulator.post("/_emulator/reset").status_code == 200
    worst_tokens: dict[str, int] = {}
    worst_usd: dict[str, Decimal] = {}
    for wire, model, body in CASES:
        body = {"model": model, **body}
        est = estimator.estimate(body, wire, model)
        worst_tokens[model] = worst_tokens.get(model, 0) + est.input_tokens
        worst_usd[model] = worst_usd.get(model, Decimal(0)) + (est.usd or 0)
        send(emulator, wire, body)
    billing = emulator.get("/_emulator/billing").json()
    invoice = invoice_from_billing(billing, prices)
    for model, bill in billing["models"].items():
        billed_input = (bill["input_tokens"] + bill["cache_read_tokens"] + bill["cache_write_5m_tokens"]
                        + bill["cache_write_1h_tokens"])
        assert billed_input <= worst_tokens[model], model
        assert invoice[model] is not None and invoice[model] <= worst_usd[model], model
