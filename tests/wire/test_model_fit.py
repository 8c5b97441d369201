"""A body the gateway sends to an OpenAI model it chose must be one that model takes (wire/model_fit.py)."""

from __future__ import annotations

from thrifty.wire import ANTHROPIC_MESSAGES, OPENAI_CHAT, upstream_request
from thrifty.wire.model_fit import fit_openai_body, is_reasoning_model

USER = [{"role": "user", "content": "hi"}]


def test_reasoning_models_by_name():
    assert all(is_reasoning_model(m) for m in ("gpt-5-nano", "gpt-5-mini-2025-08-07", "o3", "o4-mini", "o1"))
    assert not any(is_reasoning_model(m) for m in ("gpt-4o", "gpt-4o-mini", "llama-3.1-8b-instant"))


def test_a_request_routed_to_a_reasoning_model_loses_what_it_would_refuse():
    body = {"model": "gpt-4o", "messages": USER, "max_tokens": 60, "temperature": 0.2, "top_p": 1,
            "presence_penalty": 0.5, "logprobs": True, "stop": ["END"], "seed": 3}
    out = upstream_request(OPENAI_CHAT, OPENAI_CHAT, body, "gpt-5-nano", 1024)
    assert out == {"model": "gpt-5-nano", "messages": USER, "max_completion_tokens": 60, "top_p": 1, "seed": 3}


def test_a_request_routed_to_a_chat_model_loses_reasoning_parameters():
    body = {"model": "gpt-5-nano", "messages": USER, "reasoning_effort": "low", "verbosity": "low",
            "max_completion_tokens": 50}
    out = upstream_request(OPENAI_CHAT, OPENAI_CHAT, body, "gpt-4o", 1024)
    assert out == {"model": "gpt-4o", "messages": USER, "max_completion_tokens": 50}


def test_a_client_naming_the_model_itself_is_passed_through():
    body = {"model": "gpt-5-nano", "messages": USER, "max_tokens": 60, "temperature": 0.2}
    out = upstream_request(OPENAI_CHAT, OPENAI_CHAT, body, "gpt-5-nano", 1024)
    assert out["max_tokens"] == 60 and out["temperature"] == 0.2  # the provider's own 400 reaches the client


def test_a_translated_anthropic_request_keeps_no_sampling_a_reasoning_model_refuses():
    body = {"model": "claude-sonnet-4-5", "max_tokens": 100, "temperature": 0.4, "messages": USER}
    out = upstream_request(ANTHROPIC_MESSAGES, OPENAI_CHAT, body, "gpt-5-mini", 1024)
    assert out["max_completion_tokens"] == 100 and "temperature" not in out and "max_tokens" not in out


def test_fit_keeps_an_explicit_max_completion_tokens():
    out = fit_openai_body({"model": "o3", "max_tokens": 10, "max_completion_tokens": 20}, "o3")
    assert out == {"model": "o3", "max_completion_tokens": 20}
