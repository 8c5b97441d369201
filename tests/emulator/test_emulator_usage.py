"""The emulator's usage objects mean what the providers' documentation says they mean.

OpenAI ("The chat completion object"): prompt_tokens includes the cached tokens. Anthropic
(Messages API `usage`, prompt caching docs): input_tokens excludes cache reads and writes, and the
three add up to the whole input. Checked on a known case, then on live answers.
"""

from __future__ import annotations

from thrifty_emulator.usage import TokenCounts, anthropic_stream_usage, anthropic_usage, openai_usage

USER = [{"role": "user", "content": "Summarise our refund policy in two sentences."}]
HEADERS = {"x-api-key": "emulator-key", "anthropic-version": "2023-06-01"}


def test_openai_prompt_tokens_include_cached():
    u = openai_usage(TokenCounts(input_tokens=100, cache_read_tokens=900, output_tokens=30, reasoning_tokens=10))
    assert u["prompt_tokens"] == 1000 and u["prompt_tokens_details"]["cached_tokens"] == 900
    assert u["completion_tokens"] == 30 and u["completion_tokens_details"]["reasoning_tokens"] == 10
    assert u["total_tokens"] == 1030


def test_anthropic_input_tokens_exclude_cache_reads_and_writes():
    t = TokenCounts(input_tokens=12, cache_read_tokens=900, cache_write_5m_tokens=300, cache_write_1h_tokens=200,
                    output_tokens=40)
    u = anthropic_usage(t)
    assert u == {"input_tokens": 12, "cache_creation_input_tokens": 500, "cache_read_input_tokens": 900,
                 "cache_creation": {"ephemeral_5m_input_tokens": 300, "ephemeral_1h_input_tokens": 200},
                 "output_tokens": 40, "service_tier": "standard"}
    assert u["input_tokens"] + u["cache_creation_input_tokens"] + u["cache_read_input_tokens"] == 1412
    assert anthropic_usage(TokenCounts(output_tokens=40, reasoning_tokens=25))["output_tokens_details"] == \
        {"thinking_tokens": 25}


def test_anthropic_stream_split():
    start, delta = anthropic_stream_usage(TokenCounts(input_tokens=12, cache_read_tokens=900, output_tokens=40,
                                                      reasoning_tokens=5))
    assert start["output_tokens"] == 1 and start["input_tokens"] == 12 and start["cache_read_input_tokens"] == 900
    assert "output_tokens_details" not in start
    assert delta == {"input_tokens": 12, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 900,
                     "output_tokens": 40, "output_tokens_details": {"thinking_tokens": 5}}


def test_live_anthropic_input_adds_up_to_the_counted_prompt(emulator, long_text):
    system = [{"type": "text", "text": long_text(1500), "cache_control": {"type": "ephemeral"}}]
    body = {"model": "claude-sonnet-4-5", "max_tokens": 30, "system": system, "messages": USER}
    counted = {k: v for k, v in body.items() if k != "max_tokens"}  # count_tokens takes no max_tokens
    total = emulator.http.post("/v1/messages/count_tokens", json=counted, headers=HEADERS).json()["input_tokens"]
    write, read = (emulator.http.post("/v1/messages", json=body, headers=HEADERS).json()["usage"] for _ in range(2))
    assert write["cache_creation_input_tokens"] > 1000 and read["cache_read_input_tokens"] > 1000
    for u in (write, read):
        assert u["input_tokens"] + u["cache_creation_input_tokens"] + u["cache_read_input_tokens"] == total
        assert u["input_tokens"] < 30  # only the turn after the breakpoint


def test_live_openai_prompt_tokens_stay_whole_when_cached(emulator, long_text):
    client = emulator.openai()
    messages = [{"role": "system", "content": long_text(1500)}, *USER]
    cold, warm = (client.chat.completions.create(model="gpt-4o", messages=messages).usage for _ in range(2))
    assert cold.prompt_tokens_details.cached_tokens == 0
    assert warm.prompt_tokens == cold.prompt_tokens and 1000 < warm.prompt_tokens_details.cached_tokens
    assert warm.prompt_tokens_details.cached_tokens <= warm.prompt_tokens
    assert warm.total_tokens == warm.prompt_tokens + warm.completion_tokens
