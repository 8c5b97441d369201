"""API keys and per-key rate limits: the providers' 401s, the rate-limit headers of every answer, realistic 429s."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import anthropic
import httpx2
import openai
import pytest

from thrifty_emulator import build_app, config_from_dict, default_config
from thrifty_emulator.keys import DEFAULT_KEY, mask
from thrifty_emulator.prompt import ClaudeTokenizer
from thrifty_emulator.ratelimit import go_duration

USER = [{"role": "user", "content": "Say hello."}]


# --- keys ----------------------------------------------------------------------------------

def test_openai_refuses_an_unknown_key_with_it_masked(emulator):
    key = "sk-abcdefghijklmnopqrstuvwxyz1234"
    with pytest.raises(openai.AuthenticationError) as caught:
        emulator.openai(api_key=key).chat.completions.create(model="gpt-4o", messages=USER)
    err = caught.value.body
    assert err["code"] == "invalid_api_key" and err["type"] == "invalid_request_error" and err["param"] is None
    assert err["message"] == (f"Incorrect API key provided: sk-abcde{'*' * 21}1234. You can find your "
                              "API key at https://platform.openai.com/account/api-keys.")
    assert key not in err["message"]
    assert emulator.billing()["models"] == {}


def test_anthropic_refuses_an_unknown_key(emulator):
    with pytest.raises(anthropic.AuthenticationError) as caught:
        emulator.anthropic(api_key="sk-ant-nope").messages.create(model="claude-sonnet-4-5", max_tokens=5,
                                                                   messages=USER)
    assert caught.value.body["error"] == {"type": "authentication_error", "message": "invalid x-api-key"}
    r = emulator.http.post("/v1/messages/count_tokens", json={"model": "claude-sonnet-4-5", "messages": USER},
                           headers={"x-api-key": "wrong", "anthropic-version": "2023-06-01"})
    assert r.status_code == 401


def test_mask_keeps_only_the_ends():
    assert mask("sk-proj-0123456789abcdef") == "sk-proj-" + "*" * 12 + "cdef"
    assert mask("short") == "sh***"


def test_configured_keys_replace_the_default(start_emulator, tmp_path):
    cfg = tmp_path / "keys.yaml"
    cfg.write_text("keys: [sk-team-a, {key: sk-team-b, rpm: 5}]\n")
    emu = start_emulator("--latency-scale", "0", "--config", str(cfg))
    assert emu.openai(api_key="sk-team-a").chat.completions.create(model="gpt-4o", messages=USER).choices
    assert emu.anthropic(api_key="sk-team-b").messages.create(model="claude-haiku-4-5", max_tokens=5,
                                                              messages=USER).content
    with pytest.raises(openai.AuthenticationError):
        emu.openai(api_key=DEFAULT_KEY).chat.completions.create(model="gpt-4o", messages=USER)


def test_key_flag_adds_a_key(start_emulator):
    emu = start_emulator("--latency-scale", "0", "--key", "sk-bench-extra")
    for key in (DEFAULT_KEY, "sk-bench-extra"):
        assert emu.openai(api_key=key).chat.completions.create(model="gpt-4o", messages=USER).choices
    with pytest.raises(anthropic.AuthenticationError):
        emu.anthropic(api_key="sk-other").messages.create(model="claude-haiku-4-5", max_tokens=5, messages=USER)


def test_go_duration():
    assert [go_duration(s) for s in (0.017, 1, 6 * 60, 3723.5)] == ["17ms", "1s", "6m0s", "1h2m3.5s"]


# --- limits, with the clock injected --------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limited_app(raw_keys):
    clock = FakeClock()
    config = config_from_dict({"keys": raw_keys}, default_config().replace(latency_scale=0))
    app = build_app(config, clock=clock)
    return clock, httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://emulator")


# --- rate-limit headers --------------------------------------------------------------------

async def test_openai_rate_limit_headers_on_every_answer():
    clock, http = limited_app([{"key": "k", "rpm": 100, "tpm": 100_000}])
    client = openai.AsyncOpenAI(base_url="http://emulator/v1", api_key="k", http_client=http, max_retries=0)
    raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=USER,
                                                                 max_completion_tokens=100)
    h, usage = raw.headers, raw.parse().usage
    assert (h["x-ratelimit-limit-requests"], h["x-ratelimit-remaining-requests"]) == ("100", "99")
    spent = 100_000 - int(h["x-ratelimit-remaining-tokens"])
    assert h["x-ratelimit-limit-tokens"] == "100000"
    assert spent == usage.prompt_tokens + usage.completion_tokens  # charged what was used, not the estimate
    assert h["x-ratelimit-reset-requests"] == "600ms"  # one request of 100 a minute refills in 0.6 s
    assert h["x-ratelimit-reset-tokens"] == go_duration(spent * 60 / 100_000)
    await http.aclose()


async def test_anthropic_rate_limit_headers_on_every_answer():
    clock, http = limited_app([{"key": "k", "rpm": 50, "itpm": 30_000, "otpm": 8_000}])
    client = anthropic.AsyncAnthropic(base_url="http://emulator", api_key="k", http_client=http, max_retries=0)
    raw = await client.messages.with_raw_response.create(model="claude-sonnet-4-5", max_tokens=100, messages=USER)
    h, usage = raw.headers, (await raw.parse()).usage
    for dim in ("requests", "input-tokens", "output-tokens", "tokens"):
        assert {f"anthropic-ratelimit-{dim}-{k}" for k in ("limit", "remaining", "reset")} <= set(h)
        datetime.strptime(h[f"anthropic-ratelimit-{dim}-reset"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert (h["anthropic-ratelimit-requests-limit"], h["anthropic-ratelimit-requests-remaining"]) == ("50", "49")
    assert int(h["anthropic-ratelimit-input-tokens-remaining"]) == 30_000 - usage.input_tokens
    assert int(h["anthropic-ratelimit-output-tokens-remaining"]) == 8_000 - usage.output_tokens
    await http.aclose()


def test_the_default_key_reports_generous_limits(emulator):
    raw = emulator.openai().chat.completions.with_raw_response.create(model="gpt-4o", messages=USER)
    assert int(raw.headers["x-ratelimit-limit-requests"]) >= 1_000_000
    raw = emulator.anthropic().messages.with_raw_response.create(model="claude-haiku-4-5", max_tokens=5, messages=USER)
    assert int(raw.headers["anthropic-ratelimit-requests-limit"]) >= 1_000_000


async def test_rpm_limit_answers_429_with_seconds_until_room():
    clock, http = limited_app([{"key": "k-rpm", "rpm": 3}])
    client = openai.AsyncOpenAI(base_url="http://emulator/v1", api_key="k-rpm", http_client=http, max_retries=0)
    for _ in range(3):
        await client.chat.completions.create(model="gpt-4o", messages=USER)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=USER)
    r = caught.value.response
    assert r.headers["retry-after"] == "20"  # 3 per minute: one more request fits 20 s later
    assert r.headers["x-ratelimit-remaining-requests"] == "0" and r.headers["x-ratelimit-limit-requests"] == "3"
    assert caught.value.body["type"] == "requests" and caught.value.body["code"] == "rate_limit_exceeded"
    assert "Limit 3, Used 3, Requested 1. Please try again in 20s." in caught.value.body["message"]
    clock.now += 10
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=USER)
    assert caught.value.response.headers["retry-after"] == "10"
    clock.now += 10
    await client.chat.completions.create(model="gpt-4o", messages=USER)
    # Another model has buckets of its own.
    await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    await http.aclose()


async def test_tpm_limit_counts_prompt_and_max_output():
    clock, http = limited_app([{"key": "k-tpm", "tpm": 1000}])
    client = openai.AsyncOpenAI(base_url="http://emulator/v1", api_key="k-tpm", http_client=http, max_retries=0)
    with pytest.raises(openai.RateLimitError) as caught:  # can never fit: no retry-after
        await client.chat.completions.create(model="gpt-4o", messages=USER, max_completion_tokens=2000)
    assert "Request too large for gpt-4o" in caught.value.body["message"]
    assert "retry-after" not in caught.value.response.headers and caught.value.body["type"] == "tokens"
    first = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=USER,
                                                                   max_completion_tokens=900)
    left = int(first.headers["x-ratelimit-remaining-tokens"])
    assert left == 1000 - first.parse().usage.total_tokens
    with pytest.raises(openai.RateLimitError) as caught:  # fits the bucket, not what is left of it
        await client.chat.completions.create(model="gpt-4o", messages=USER, max_completion_tokens=990)
    need = first.parse().usage.prompt_tokens + 990
    assert caught.value.response.headers["retry-after"] == str(math.ceil((need - left) * 60 / 1000))
    await http.aclose()


async def test_anthropic_itpm_and_otpm():
    clock, http = limited_app([{"key": "k-ant", "itpm": 100_000, "otpm": 500}])
    client = anthropic.AsyncAnthropic(base_url="http://emulator", api_key="k-ant", http_client=http, max_retries=0)
    r = await client.messages.with_raw_response.create(model="claude-haiku-4-5", max_tokens=400, messages=USER)
    out = (await r.parse()).usage.output_tokens
    assert int(r.headers["anthropic-ratelimit-output-tokens-remaining"]) == 500 - out
    with pytest.raises(anthropic.RateLimitError) as caught:
        await client.messages.create(model="claude-haiku-4-5", max_tokens=499, messages=USER)
    wait = int(caught.value.response.headers["retry-after"])
    assert wait == math.ceil((499 - (500 - out)) * 60 / 500)
    assert caught.value.body["error"]["type"] == "rate_limit_error"
    assert "500 output tokens per minute" in caught.value.body["error"]["message"]
    await http.aclose()


def test_count_tokens_matches_the_billed_input(emulator, long_text):
    text = long_text(2000)
    client = emulator.anthropic()
    counted = client.messages.count_tokens(model="claude-sonnet-4-5", messages=[{"role": "user", "content": text}])
    billed = client.messages.create(model="claude-sonnet-4-5", max_tokens=5,
                                    messages=[{"role": "user", "content": text}]).usage.input_tokens
    assert counted.input_tokens == billed
    assert billed > ClaudeTokenizer().count(text) > 1.1 * emulator.openai().chat.completions.create(
        model="gpt-4o", max_completion_tokens=1, messages=[{"role": "user", "content": text}]).usage.prompt_tokens


@pytest.mark.parametrize("raw, where", [
    ({"keys": []}, "keys"),
    ({"keys": [{"rpm": 5}]}, "keys[0]"),
    ({"keys": ["a", "a"]}, "keys[1]"),
    ({"keys": [{"key": "a", "rpm": 0}]}, "keys[0].rpm"),
    ({"keys": [{"key": "a", "rph": 1}]}, "keys[0]"),
    ({"rate_limits": {"tpm": "lots"}}, "rate_limits.tpm"),
])
def test_bad_key_config_names_the_field(raw, where):
    from thrifty_emulator import EmulatorConfigError

    with pytest.raises(EmulatorConfigError) as caught:
        config_from_dict(raw)
    assert caught.value.key == where


def test_rate_limits_set_the_default_key_limits():
    key, aws_pair = config_from_dict({"rate_limits": {"rpm": 7}}).keys  # the bearer key and the AWS pair (Bedrock)
    assert key.key == DEFAULT_KEY and key.limits.rpm == 7 and key.limits.tpm > 10**9
    assert aws_pair.secret and aws_pair.limits == key.limits
