"""The billing counter agrees with the usage every answer reported, and pacing follows the latency profile."""

from __future__ import annotations

import json

import anthropic
import httpx2
import pytest

from thrifty_emulator import build_app, default_config
from thrifty_emulator.asgi import DisconnectWatch

USER = [{"role": "user", "content": "Draft a short apology for a late delivery."}]
FIELDS = {"requests", "input_tokens", "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens",
          "output_tokens", "reasoning_tokens", "faults", "dropped", "cancelled"}


def test_billing_matches_reported_usage(emulator, long_text):
    oa, an = emulator.openai(), emulator.anthropic()
    reported = {"gpt-5-mini": [], "gpt-4o": [], "claude-haiku-4-5": []}
    for _ in range(2):
        r = oa.chat.completions.create(model="gpt-5-mini", messages=USER, n=2)
        reported["gpt-5-mini"].append((r.usage.prompt_tokens - r.usage.prompt_tokens_details.cached_tokens,
                                       r.usage.prompt_tokens_details.cached_tokens, 0, 0, r.usage.completion_tokens,
                                       r.usage.completion_tokens_details.reasoning_tokens))
    long_prompt = [{"role": "system", "content": long_text(1200)}, *USER]
    for _ in range(2):
        chunks = list(oa.chat.completions.create(model="gpt-4o", messages=long_prompt, stream=True,
                                                 stream_options={"include_usage": True}))
        u = chunks[-1].usage
        reported["gpt-4o"].append((u.prompt_tokens - u.prompt_tokens_details.cached_tokens,
                                   u.prompt_tokens_details.cached_tokens, 0, 0, u.completion_tokens, 0))
    list(oa.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True))  # billed without usage chunk
    system = [{"type": "text", "text": long_text(4300), "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    for _ in range(2):
        with an.messages.stream(model="claude-haiku-4-5", max_tokens=200, system=system, messages=USER) as s:
            u = s.get_final_message().usage
        reported["claude-haiku-4-5"].append((u.input_tokens, u.cache_read_input_tokens,
                                             u.cache_creation.ephemeral_5m_input_tokens,
                                             u.cache_creation.ephemeral_1h_input_tokens, u.output_tokens, 0))

    bill = emulator.billing()
    assert set(bill) == {"models", "totals", "batch"}
    assert bill["batch"]["models"] == {}, "interactive calls are never billed as batch lines"
    for model, rows in reported.items():
        counts = bill["models"][model]
        assert set(counts) == FIELDS
        sums = [sum(col) for col in zip(*rows)]
        assert [counts[k] for k in ("input_tokens", "cache_read_tokens", "cache_write_5m_tokens",
                                    "cache_write_1h_tokens", "output_tokens", "reasoning_tokens")] == sums
        assert counts["requests"] == len(rows)
    assert bill["models"]["gpt-5-mini"]["reasoning_tokens"] > 0
    assert bill["models"]["gpt-4o"]["cache_read_tokens"] > 1024
    assert bill["models"]["claude-haiku-4-5"]["cache_write_1h_tokens"] > 4096
    assert bill["models"]["claude-haiku-4-5"]["cache_read_tokens"] == bill["models"]["claude-haiku-4-5"]["cache_write_1h_tokens"]
    assert bill["models"]["gpt-4o-mini"]["requests"] == 1 and bill["models"]["gpt-4o-mini"]["output_tokens"] > 0
    assert bill["totals"]["requests"] == 7
    assert bill["totals"]["output_tokens"] == sum(m["output_tokens"] for m in bill["models"].values())


def test_reset_clears_billing_and_prompt_caches(emulator, long_text):
    client = emulator.openai()
    messages = [{"role": "system", "content": long_text(1300)}, *USER]
    client.chat.completions.create(model="gpt-4o", messages=messages)
    assert client.chat.completions.create(model="gpt-4o", messages=messages).usage.prompt_tokens_details.cached_tokens
    emulator.reset()
    empty = {"models": {}, "totals": {k: 0 for k in FIELDS}}
    assert emulator.billing() == {**empty, "batch": empty}
    assert client.chat.completions.create(model="gpt-4o", messages=messages).usage.prompt_tokens_details.cached_tokens == 0


# --- latency: what the emulator waits, recorded instead of slept -----------------------------------

@pytest.fixture
def sleeps(monkeypatch):
    recorded: list[float] = []

    async def record(self, seconds):
        recorded.append(seconds)
        return False

    monkeypatch.setattr(DisconnectWatch, "sleep", record)
    return recorded


def in_process(scale: float) -> tuple[httpx2.AsyncClient, dict]:
    config = default_config().replace(latency_scale=scale)
    app = build_app(config)
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://emulator"), config.models


async def test_latency_follows_the_model_profile(sleeps):
    http, models = in_process(0.5)
    auth = {"authorization": "Bearer emulator-key"}
    whole = (await http.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": USER}, headers=auth)).json()
    spec = models["gpt-4o"]
    expected_total = (spec.ttft_ms / 1000 + whole["usage"]["completion_tokens"] / spec.tokens_per_s) * 0.5
    # Time to first token, then the rest: the prompt's cache entries become readable in between.
    assert sleeps == [pytest.approx(spec.ttft_ms / 1000 * 0.5), pytest.approx(expected_total - spec.ttft_ms / 1000 * 0.5)]

    sleeps.clear()
    r = await http.post("/v1/chat/completions", headers=auth, json={"model": "gpt-4o", "messages": USER, "stream": True})
    assert r.status_code == 200
    assert sleeps[0] == pytest.approx(spec.ttft_ms / 1000 * 0.5)
    assert len(sleeps) > 3 and sum(sleeps) == pytest.approx(expected_total)

    sleeps.clear()
    reasoning = models["gpt-5-nano"]
    body = (await http.post("/v1/chat/completions", headers=auth,
                            json={"model": "gpt-5-nano", "messages": USER, "stream": True,
                                  "stream_options": {"include_usage": True}})).text
    assert '"reasoning_tokens":0' not in body
    usage_line = [line for line in body.split("\n\n") if '"choices":[]' in line][0]
    usage = json.loads(usage_line[len("data: "):])["usage"]
    think = usage["completion_tokens_details"]["reasoning_tokens"] / reasoning.tokens_per_s
    assert sleeps[0] == pytest.approx((reasoning.ttft_ms / 1000 + think) * 0.5)
    await http.aclose()


async def test_zero_latency_never_sleeps(sleeps):
    http, _ = in_process(0)
    auth = {"x-api-key": "emulator-key"}
    body = {"model": "claude-opus-4-1", "max_tokens": 100, "messages": USER}
    assert (await http.post("/v1/messages", json=body, headers=auth)).status_code == 200
    assert (await http.post("/v1/messages", json={**body, "stream": True}, headers=auth)).status_code == 200
    assert sleeps == []
    await http.aclose()


# --- partial answers are billed what was generated (docs/emulator.md, "Billing") -------------------

def test_a_dropped_stream_is_billed_the_input_it_reported_and_the_output_it_sent(emulator):
    client = emulator.anthropic()
    ask = {"model": "claude-sonnet-4-5", "max_tokens": 300, "messages": USER}
    start_usage, deltas = None, []
    with pytest.raises((httpx2.HTTPError, anthropic.APIError)):
        with client.messages.stream(**ask, extra_headers={"x-emulator-fault": "drop"}) as stream:
            for event in stream:
                if event.type == "message_start":
                    start_usage = event.message.usage
                elif event.type == "content_block_delta":
                    deltas.append(event.delta.text)
    assert start_usage is not None and deltas, "the stream was cut after it began"
    bill = emulator.billing()["models"]["claude-sonnet-4-5"]
    assert bill["requests"] == 1 and bill["dropped"] == 1
    assert bill["input_tokens"] == start_usage.input_tokens, "the input the client was told about is billed"
    whole = client.messages.create(**ask).usage  # the same prompt: the same answer, complete
    assert 0 < bill["output_tokens"] < whole.output_tokens, "of the output, only what was generated before the cut"
    assert emulator.billing()["models"]["claude-sonnet-4-5"]["output_tokens"] == bill["output_tokens"] + whole.output_tokens
