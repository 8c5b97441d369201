"""Thinking and reasoning tokens: generated, reported as the providers report them, and billed as output."""

from __future__ import annotations

import base64

from thrifty_emulator.prompt import ClaudeTokenizer

USER = [{"role": "user", "content": "Plan a three-step rollout."}]
THINKING = {"type": "enabled", "budget_tokens": 2048}


def test_anthropic_thinking_block_comes_first_and_is_billed(emulator):
    r = emulator.anthropic().messages.create(model="claude-sonnet-4-5", max_tokens=4096, messages=USER,
                                             thinking=THINKING)
    thinking, text = r.content
    assert thinking.type == "thinking" and thinking.thinking and base64.b64decode(thinking.signature)
    assert text.type == "text" and text.text
    tok = ClaudeTokenizer()
    shown = tok.count(thinking.thinking)
    assert 0 < shown <= THINKING["budget_tokens"]
    assert r.usage.output_tokens == shown + tok.count(text.text)
    bill = emulator.billing()["models"]["claude-sonnet-4-5"]
    assert bill["output_tokens"] == r.usage.output_tokens and bill["reasoning_tokens"] == shown


def test_without_thinking_there_is_no_thinking_block(emulator):
    r = emulator.anthropic().messages.create(model="claude-sonnet-4-5", max_tokens=4096, messages=USER)
    assert [b.type for b in r.content] == ["text"]
    assert emulator.billing()["models"]["claude-sonnet-4-5"]["reasoning_tokens"] == 0


def test_anthropic_thinking_streams_thinking_and_signature_deltas(emulator):
    client = emulator.anthropic()
    kinds: list[str] = []
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=4096, messages=USER, thinking=THINKING) as s:
        for event in s:
            if event.type == "content_block_delta":
                kinds.append(event.delta.type)
        final = s.get_final_message()
    assert kinds[0] == "thinking_delta" and "signature_delta" in kinds and kinds[-1] == "text_delta"
    assert kinds.index("signature_delta") < kinds.index("text_delta")
    assert [b.type for b in final.content] == ["thinking", "text"]
    whole = client.messages.create(model="claude-sonnet-4-5", max_tokens=4096, messages=USER, thinking=THINKING)
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.content[0].thinking == whole.content[0].thinking  # the same deterministic answer


def test_thinking_counts_towards_max_tokens(emulator):
    r = emulator.anthropic().messages.create(model="claude-sonnet-4-5", max_tokens=1100, messages=USER,
                                             thinking={"type": "enabled", "budget_tokens": 1024})
    assert r.usage.output_tokens <= 1100


def test_openai_reasoning_tokens_inside_completion_tokens(emulator):
    r = emulator.openai().chat.completions.create(model="gpt-5-mini", messages=USER, reasoning_effort="high")
    reasoning = r.usage.completion_tokens_details.reasoning_tokens
    assert reasoning > 0 and r.usage.completion_tokens > reasoning
    bill = emulator.billing()["models"]["gpt-5-mini"]
    assert bill["output_tokens"] == r.usage.completion_tokens and bill["reasoning_tokens"] == reasoning
