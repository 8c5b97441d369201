"""Injected faults (by header and by configured probability), client cancellation, and their billing.

Rules and their sources: docs/emulator.md, "Faults" and "Billing"."""

from __future__ import annotations

import asyncio
import time

import anthropic
import httpx
import httpx2
import openai
import pytest

from thrifty.tokens import count_text_tokens
from thrifty_emulator import build_app, default_config

USER = [{"role": "user", "content": "Where is my parcel?"}]
OPENAI_AUTH = {"authorization": "Bearer emulator-key"}
ANTHROPIC_AUTH = {"x-api-key": "emulator-key", "anthropic-version": "2023-06-01"}
CHAT = {"model": "gpt-4o", "messages": USER}
MESSAGE = {"model": "claude-sonnet-4-5", "max_tokens": 300, "messages": USER}
ANTHROPIC_TYPES = {429: "rate_limit_error", 500: "api_error", 502: "api_error", 503: "api_error",
                   529: "overloaded_error"}
OPENAI_TYPES = {429: "requests", 500: "server_error", 502: "cf_bad_gateway", 503: "server_error", 529: "server_error"}


def wait_for(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 529])
def test_error_faults_in_each_wire_shape(emulator, status):
    r = emulator.http.post("/v1/chat/completions", json=CHAT, headers={**OPENAI_AUTH, "x-emulator-fault": str(status)})
    assert r.status_code == status
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["type"] == OPENAI_TYPES[status]
    a = emulator.http.post("/v1/messages", json=MESSAGE, headers={**ANTHROPIC_AUTH, "x-emulator-fault": str(status)})
    assert a.status_code == status
    assert a.json()["type"] == "error" and a.json()["error"]["type"] == ANTHROPIC_TYPES[status]
    for response in (r, a):
        if status == 429:
            assert 1 <= int(response.headers["retry-after"]) <= 4
        else:
            assert "retry-after" not in response.headers
    models = emulator.billing()["models"]
    for name in ("gpt-4o", "claude-sonnet-4-5"):
        assert models[name]["faults"] == 1 and models[name]["requests"] == 0 and models[name]["input_tokens"] == 0


def test_sdks_see_faults_as_their_own_errors(emulator):
    client = emulator.openai()
    with pytest.raises(openai.RateLimitError) as rate:
        client.chat.completions.create(**CHAT, extra_headers={"x-emulator-fault": "429"})
    assert 1 <= int(rate.value.response.headers["retry-after"]) <= 4
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(**CHAT, extra_headers={"x-emulator-fault": "503"})
    with pytest.raises(anthropic.RateLimitError):
        emulator.anthropic().messages.create(**MESSAGE, extra_headers={"x-emulator-fault": "429"})
    with pytest.raises(anthropic.InternalServerError) as overloaded:
        emulator.anthropic().messages.create(**MESSAGE, extra_headers={"x-emulator-fault": "529"})
    assert overloaded.value.status_code == 529
    # The SDKs' own retries honour retry-after and fault again: every attempt is counted, none billed.
    retrying = emulator.openai(max_retries=1)
    with pytest.raises(openai.InternalServerError):
        retrying.chat.completions.create(**CHAT, extra_headers={"x-emulator-fault": "500"})
    assert emulator.billing()["models"]["gpt-4o"]["faults"] == 4


def test_unknown_fault_is_a_bad_request(emulator):
    r = emulator.http.post("/v1/chat/completions", json=CHAT, headers={**OPENAI_AUTH, "x-emulator-fault": "418"})
    assert r.status_code == 400 and "x-emulator-fault" in r.json()["error"]["message"]
    d = emulator.http.post("/v1/messages", json=MESSAGE,
                           headers={**ANTHROPIC_AUTH, "x-emulator-fault": "timeout", "x-emulator-fault-delay": "x"})
    assert d.status_code == 400 and d.json()["error"]["type"] == "invalid_request_error"


def test_injected_429s_carry_a_varied_seeded_retry_after(emulator):
    def waits() -> list[int]:
        out = []
        for _ in range(24):
            r = emulator.http.post("/v1/chat/completions", json=CHAT, headers={**OPENAI_AUTH, "x-emulator-fault": "429"})
            assert r.status_code == 429
            wait = int(r.headers["retry-after"])
            assert f"Please try again in {wait}s" in r.json()["error"]["message"]
            out.append(wait)
        return out

    first = waits()
    assert set(first) <= {1, 2, 3, 4} and len(set(first)) >= 3, "a provider's retry-after varies"
    emulator.reset()
    assert waits() == first, "the waits come from the seeded dice"


def test_timeout_fault_holds_a_generated_answer_and_bills_it(emulator):
    headers = {**OPENAI_AUTH, "x-emulator-fault": "timeout", "x-emulator-fault-delay": "0.2"}
    waited = emulator.http.post("/v1/chat/completions", json=CHAT, headers=headers)
    assert waited.status_code == 200 and waited.json()["choices"][0]["message"]["content"]
    client = emulator.openai(timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(**CHAT, extra_headers={"x-emulator-fault": "timeout",
                                                              "x-emulator-fault-delay": "30"})
    with pytest.raises(anthropic.APITimeoutError):
        emulator.anthropic(timeout=0.3).messages.create(**MESSAGE, extra_headers={"x-emulator-fault": "timeout"})
    # The abandoned requests stop waiting as soon as the client hangs up, and are billed in full:
    # the provider generated the answer, the client only stopped waiting for it.
    wait_for(lambda: emulator.billing()["models"].get("claude-sonnet-4-5", {}).get("faults") == 1)
    models = emulator.billing()["models"]
    usage = waited.json()["usage"]
    assert models["gpt-4o"]["faults"] == 2 and models["gpt-4o"]["requests"] == 2
    assert models["gpt-4o"]["input_tokens"] == 2 * usage["prompt_tokens"]
    assert models["gpt-4o"]["output_tokens"] == 2 * usage["completion_tokens"], "the same prompt, the same answer"
    assert models["claude-sonnet-4-5"]["requests"] == 1 and models["claude-sonnet-4-5"]["output_tokens"] > 0


def test_drop_cuts_a_whole_body_that_is_billed_in_full(emulator):
    with pytest.raises(httpx.RemoteProtocolError):
        emulator.http.post("/v1/chat/completions", json=CHAT, headers={**OPENAI_AUTH, "x-emulator-fault": "drop"})
    with pytest.raises(anthropic.APIConnectionError):
        emulator.anthropic().messages.create(**MESSAGE, extra_headers={"x-emulator-fault": "drop"})
    models = emulator.billing()["models"]
    assert models["gpt-4o"]["dropped"] == 1 and models["claude-sonnet-4-5"]["dropped"] == 1
    assert models["gpt-4o"]["requests"] == models["claude-sonnet-4-5"]["requests"] == 1
    whole = emulator.openai().chat.completions.create(**CHAT).usage  # the same prompt: the same answer
    assert emulator.billing()["models"]["gpt-4o"]["output_tokens"] == 2 * whole.completion_tokens, \
        "the whole answer was generated before the connection died"
    assert emulator.http.get("/health").status_code == 200, "the server survives its dropped connections"


def test_drop_cuts_a_stream_midway_and_bills_what_was_generated(emulator):
    received = []
    stream = emulator.openai().chat.completions.create(**CHAT, stream=True, extra_headers={"x-emulator-fault": "drop"})
    with pytest.raises((httpx2.HTTPError, openai.APIError)):
        for chunk in stream:
            received.append(chunk)
    assert received and all(c.choices and c.choices[0].finish_reason is None for c in received)
    text = "".join(c.choices[0].delta.content or "" for c in received)

    events = []
    with pytest.raises((httpx2.HTTPError, anthropic.APIError)):
        with emulator.anthropic().messages.stream(**MESSAGE, extra_headers={"x-emulator-fault": "drop"}) as s:
            for event in s:
                events.append(event.type)
    assert "message_start" in events and "message_stop" not in events
    models = emulator.billing()["models"]
    assert models["gpt-4o"]["dropped"] == 1 and models["claude-sonnet-4-5"]["dropped"] == 1
    assert models["gpt-4o"]["requests"] == 1 and models["gpt-4o"]["input_tokens"] > 0
    whole = emulator.openai().chat.completions.create(**CHAT).usage
    dropped_output = emulator.billing()["models"]["gpt-4o"]["output_tokens"] - whole.completion_tokens
    assert 0 < dropped_output < whole.completion_tokens, "only the output generated before the cut is billed"
    assert abs(dropped_output - count_text_tokens(text)) <= 2, "and it is what the client received"
    assert 0 < models["claude-sonnet-4-5"]["output_tokens"]


# --- a second emulator, configured with fault rates and real (paced) latency ------------------------

@pytest.fixture(scope="module")
def configured(start_emulator, tmp_path_factory):
    path = tmp_path_factory.mktemp("emulator") / "emulator.yaml"
    path.write_text("""
latency_scale: 1.0
seed: 3
models:
  gpt-4o-mini: {faults: {"429": 1.0}}
  claude-haiku-4-5: {ttft_ms: 0, tokens_per_s: 1000000, faults: {"500": 0.5}}
  gpt-4o: {ttft_ms: 0, tokens_per_s: 20}
  house-model: {wire: openai, provider: acme, ttft_ms: 0, tokens_per_s: 1000000}
""")
    return start_emulator("--config", str(path))


def test_configured_fault_rates_are_seeded(configured):
    configured.reset()
    client = configured.openai()
    for _ in range(3):
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="gpt-4o-mini", messages=USER)

    def outcomes() -> list[int]:
        return [configured.http.post("/v1/messages", json={**MESSAGE, "model": "claude-haiku-4-5"},
                                     headers=ANTHROPIC_AUTH).status_code for _ in range(24)]

    first = outcomes()
    assert set(first) == {200, 500}
    bill = configured.billing()["models"]
    assert bill["claude-haiku-4-5"]["faults"] == first.count(500)
    assert bill["claude-haiku-4-5"]["requests"] == first.count(200)
    assert bill["gpt-4o-mini"]["faults"] == 3
    configured.reset()
    assert outcomes() == first, "reset re-seeds the fault dice"


def test_configured_model_is_served(configured):
    client = configured.openai()
    assert "house-model" in {m.id for m in client.models.list()}
    r = client.chat.completions.create(model="house-model", messages=USER)
    assert r.model == "house-model" and r.choices[0].message.content


def test_client_cancelling_a_paced_stream_is_billed_what_was_generated(configured):
    configured.reset()
    with configured.http.stream("POST", "/v1/chat/completions", headers=OPENAI_AUTH,
                                json={"model": "gpt-4o", "messages": USER, "stream": True}) as r:
        content_seen = 0
        for line in r.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                content_seen += 1
                if content_seen == 2:
                    break  # leave with the answer half-streamed
    assert content_seen == 2
    wait_for(lambda: configured.billing()["models"].get("gpt-4o", {}).get("cancelled") == 1)
    bill = configured.billing()["models"]["gpt-4o"]
    # The same model, seed and prompt in-process and unpaced: the whole answer the client walked away from.
    reference = build_app(default_config().replace(seed=3, latency_scale=0))
    async def whole() -> int:
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=reference), base_url="http://e") as http:
            r = await http.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": USER}, headers=OPENAI_AUTH)
            return r.json()["usage"]["completion_tokens"]
    full = asyncio.run(whole())
    assert bill["requests"] == 1 and bill["input_tokens"] > 0
    assert 2 * 4 <= bill["output_tokens"] < full, "billed: the output generated until the client left"
