"""Strict request validation (validation.py), through the official SDKs: each provider's 400, in its own words.

docs/emulator.md lists each rule with the provider documentation it follows and the test here.
"""

from __future__ import annotations

import anthropic
import openai
import pytest

from thrifty_emulator.validation import ANTHROPIC_PARAMS, OPENAI_PARAMS

USER = [{"role": "user", "content": "Say hello."}]
OPENAI_HEADERS = {"authorization": "Bearer emulator-key"}
ANTHROPIC_HEADERS = {"x-api-key": "emulator-key", "anthropic-version": "2023-06-01"}


def openai_error(emulator, **body):
    with pytest.raises(openai.BadRequestError) as caught:
        emulator.openai().chat.completions.create(**body)
    err = caught.value.body
    assert caught.value.status_code == 400 and err["type"] == "invalid_request_error"
    return err


def anthropic_error(emulator, **body):
    # Over HTTP: the SDK itself refuses some of these (a non-streamed max_tokens it deems too long to wait for,
    # sampling parameters this SDK version no longer takes) before the provider could.
    r = emulator.http.post("/v1/messages", json=body, headers=ANTHROPIC_HEADERS)
    assert r.status_code == 400, r.text
    err = r.json()
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    return err["error"]["message"]


# --- unknown parameters --------------------------------------------------------------------

def test_openai_refuses_unknown_parameters(emulator):
    err = openai_error(emulator, model="gpt-4o", messages=USER, extra_body={"temprature": 0.2})
    assert err["message"] == "Unrecognized request argument supplied: temprature" and err["param"] is None
    assert emulator.billing()["models"] == {}


def test_openai_accepts_every_documented_parameter(emulator):
    r = emulator.http.post("/v1/chat/completions", headers=OPENAI_HEADERS, json={
        "model": "gpt-4o", "messages": USER, "stream": False, "stream_options": None, "parallel_tool_calls": True,
        "service_tier": "auto", "store": False, "metadata": {"a": "b"}, "prediction": None, "modalities": ["text"],
        "audio": None, "logprobs": True, "top_logprobs": 2, "seed": 3, "logit_bias": {"1": 1}, "user": "u",
        "safety_identifier": "s", "prompt_cache_key": "k", "web_search_options": None, "max_completion_tokens": 50,
        "response_format": {"type": "text"}, "n": 1, "stop": ["\n\n\n"], "temperature": 0.5, "top_p": 0.9,
        "frequency_penalty": 0.1, "presence_penalty": 0.1, "functions": None, "function_call": None})
    assert r.status_code == 200, r.text
    assert {"reasoning_effort", "verbosity", "prompt_cache_retention", "max_tokens"} <= OPENAI_PARAMS


def test_anthropic_refuses_unknown_parameters(emulator):
    message = anthropic_error(emulator, model="claude-sonnet-4-5", max_tokens=50, messages=USER, top_n=3)
    assert message == "top_n: Extra inputs are not permitted"
    with pytest.raises(anthropic.BadRequestError):
        emulator.anthropic().messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=USER,
                                             extra_body={"top_n": 3})


def test_anthropic_accepts_claude_code_parameters(emulator):
    # Claude Code sends thinking and context_management; the rest are documented Messages parameters.
    r = emulator.http.post("/v1/messages", headers=ANTHROPIC_HEADERS, json={
        "model": "claude-sonnet-4-5", "max_tokens": 2048, "messages": USER, "system": "Be brief.",
        "metadata": {"user_id": "u"}, "stop_sequences": ["\n\n\n"], "stream": False, "temperature": 1, "top_p": 0.99,
        "thinking": {"type": "enabled", "budget_tokens": 1024}, "service_tier": "auto",
        "context_management": {"edits": []}, "tools": [], "mcp_servers": []})
    assert r.status_code == 200, r.text
    assert {"container", "top_k", "tool_choice"} <= ANTHROPIC_PARAMS


def test_count_tokens_refuses_max_tokens(emulator):
    r = emulator.http.post("/v1/messages/count_tokens", headers=ANTHROPIC_HEADERS,
                           json={"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": USER})
    assert r.status_code == 400 and r.json()["error"]["message"] == "max_tokens: Extra inputs are not permitted"


# --- reasoning models ----------------------------------------------------------------------

@pytest.mark.parametrize("model", ["gpt-5-nano", "gpt-5-mini"])
def test_reasoning_models_refuse_max_tokens(emulator, model):
    err = openai_error(emulator, model=model, messages=USER, max_tokens=100)
    assert err["message"] == ("Unsupported parameter: 'max_tokens' is not supported with this model. "
                              "Use 'max_completion_tokens' instead.")
    assert (err["param"], err["code"]) == ("max_tokens", "unsupported_parameter")
    ok = emulator.openai().chat.completions.create(model=model, messages=USER, max_completion_tokens=2000)
    assert ok.usage.completion_tokens <= 2000


@pytest.mark.parametrize("name, value, default", [("temperature", 0.5, 1), ("top_p", 0.2, 1),
                                                  ("presence_penalty", 0.5, 0), ("frequency_penalty", 1, 0)])
def test_reasoning_models_accept_only_default_sampling(emulator, name, value, default):
    err = openai_error(emulator, model="gpt-5-nano", messages=USER, **{name: value})
    assert err["message"] == (f"Unsupported value: '{name}' does not support {value} with this model. "
                              f"Only the default ({default}) value is supported.")
    assert (err["param"], err["code"]) == (name, "unsupported_value")
    emulator.openai().chat.completions.create(model="gpt-5-nano", messages=USER, **{name: default})


@pytest.mark.parametrize("extra", [{"logprobs": True}, {"top_logprobs": 2}, {"logit_bias": {"1": 2}},
                                   {"stop": ["END"]}])
def test_reasoning_models_refuse_other_unsupported_parameters(emulator, extra):
    err = openai_error(emulator, model="gpt-5-mini", messages=USER, **extra)
    assert err["code"] == "unsupported_parameter" and err["param"] == next(iter(extra))


def test_non_reasoning_models_refuse_reasoning_effort(emulator):
    err = openai_error(emulator, model="gpt-4o", messages=USER, reasoning_effort="low")
    assert err["message"] == "Unsupported parameter: 'reasoning_effort' is not supported with this model."
    assert err["param"] == "reasoning_effort"


# --- output maxima and context windows -----------------------------------------------------

@pytest.mark.parametrize("model, limit", [("gpt-4o", 16_384), ("gpt-5-nano", 128_000)])
def test_openai_max_output(emulator, model, limit):
    err = openai_error(emulator, model=model, messages=USER, max_completion_tokens=limit + 1)
    assert err["message"] == (f"max_completion_tokens is too large: {limit + 1}. This model supports at most "
                              f"{limit} completion tokens, whereas you provided {limit + 1}.")
    assert err["param"] == "max_completion_tokens"
    emulator.openai().chat.completions.create(model=model, messages=USER, max_completion_tokens=limit)


def test_openai_context_window(emulator, long_text):
    big = [{"role": "user", "content": long_text(120_000)}]
    client = emulator.openai()
    prompt = client.chat.completions.create(model="gpt-4o-mini", messages=big, max_tokens=1).usage.prompt_tokens
    assert prompt < 128_000
    asked = 128_000 - prompt + 1
    err = openai_error(emulator, model="gpt-4o-mini", messages=big, max_tokens=asked)
    assert err["message"] == (f"This model's maximum context length is 128000 tokens. However, you requested "
                              f"{prompt + asked} tokens ({prompt} in the messages, {asked} in the completion). "
                              "Please reduce the length of the messages or completion.")
    assert (err["param"], err["code"]) == ("messages", "context_length_exceeded")
    err = openai_error(emulator, model="gpt-4o-mini", messages=[{"role": "user", "content": long_text(140_000)}])
    assert "However, your messages resulted in" in err["message"]


@pytest.mark.parametrize("model, snapshot, limit", [("claude-sonnet-4-5", "claude-sonnet-4-5-20250929", 64_000),
                                                    ("claude-opus-4-1", "claude-opus-4-1-20250805", 32_000)])
def test_anthropic_max_output(emulator, model, snapshot, limit):
    message = anthropic_error(emulator, model=model, max_tokens=limit + 1, messages=USER)
    assert message == (f"max_tokens: {limit + 1} > {limit}, which is the maximum allowed number of output tokens "
                       f"for {snapshot}")
    assert anthropic_error(emulator, model=model, max_tokens=10**12, messages=USER).startswith("max_tokens: ")


def test_anthropic_context_window(emulator, long_text):
    text = long_text(150_000)
    client = emulator.anthropic()
    prompt = client.messages.count_tokens(model="claude-haiku-4-5", messages=[{"role": "user", "content": text}])
    prompt = prompt.input_tokens
    assert 150_000 < prompt < 200_000
    asked = 200_000 - prompt + 1
    message = anthropic_error(emulator, model="claude-haiku-4-5", max_tokens=asked,
                              messages=[{"role": "user", "content": text}])
    assert message == (f"input length and `max_tokens` exceed context limit: {prompt} + {asked} > 200000, "
                       "decrease input length or `max_tokens` and try again")
    message = anthropic_error(emulator, model="claude-haiku-4-5", max_tokens=10,
                              messages=[{"role": "user", "content": long_text(190_000)}])
    assert message.startswith("prompt is too long: ") and message.endswith(" tokens > 200000 maximum")
    assert emulator.billing()["models"] == {}


# --- extended thinking ---------------------------------------------------------------------

@pytest.mark.parametrize("thinking, extra, expected", [
    ({"type": "enabled", "budget_tokens": 1023}, {},
     "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"),
    ({"type": "enabled"}, {}, "thinking.enabled.budget_tokens: Field required"),
    ({"type": "enabled", "budget_tokens": 4096}, {},
     "`max_tokens` must be greater than `thinking.budget_tokens`."),
    ({"type": "enabled", "budget_tokens": 1024}, {"temperature": 0.5},
     "`temperature` may only be set to 1 when thinking is enabled."),
    ({"type": "enabled", "budget_tokens": 1024}, {"top_k": 5}, "`top_k` must be unset when thinking is enabled."),
    ({"type": "enabled", "budget_tokens": 1024}, {"top_p": 0.5}, "`top_p` must be greater than or equal to 0.95"),
    ({"type": "enabled", "budget_tokens": 1024},
     {"tools": [{"name": "f", "input_schema": {"type": "object"}}], "tool_choice": {"type": "any"}},
     "Thinking may not be enabled when tool_choice forces tool use."),
    ({"type": "sometimes"}, {}, "thinking: Input tag does not match any of the expected tags"),
    ({"type": "adaptive"}, {}, "thinking.type: adaptive thinking is not supported on this model"),
])
def test_thinking_rules(emulator, thinking, extra, expected):
    message = anthropic_error(emulator, model="claude-sonnet-4-5", max_tokens=2048, messages=USER,
                              thinking=thinking, **extra)
    assert message.startswith(expected)


def test_thinking_budget_above_max_tokens_with_interleaved_thinking(emulator):
    r = emulator.anthropic().messages.create(
        model="claude-sonnet-4-5", max_tokens=2000, messages=USER, thinking={"type": "enabled", "budget_tokens": 4096},
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"})
    assert r.usage.output_tokens <= 2000


def test_thinking_disabled_is_plain(emulator):
    r = emulator.http.post("/v1/messages", headers=ANTHROPIC_HEADERS, json={
        "model": "claude-sonnet-4-5", "max_tokens": 200, "messages": USER, "thinking": {"type": "disabled"},
        "temperature": 0.3, "top_k": 4})
    assert r.status_code == 200 and [b["type"] for b in r.json()["content"]] == ["text"]
