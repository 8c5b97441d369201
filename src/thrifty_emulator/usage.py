"""Token counts of one emulated answer, and the `usage` objects each provider writes for them.

Written from the providers' documentation, not from the gateway's code: if both sides shared one
mapping, a bug in it would be the same on both and pass every end-to-end test.

OpenAI, API reference "The chat completion object" (`usage`, CompletionUsage) and the prompt
caching guide: `prompt_tokens` counts every prompt token, cached ones included, and
`prompt_tokens_details.cached_tokens` says how many of them were cache hits; `completion_tokens`
includes `completion_tokens_details.reasoning_tokens`; `total_tokens` is their sum.

Anthropic, Messages API reference (`usage`) and the prompt caching docs ("Tracking cache
performance"): `input_tokens` counts only input that was neither read from nor written to the
cache (the tokens after the last breakpoint), so total input is `input_tokens +
cache_creation_input_tokens + cache_read_input_tokens`; `cache_creation` splits the writes by TTL
(`ephemeral_5m_input_tokens`, `ephemeral_1h_input_tokens`). Streaming ("Streaming Messages"):
`message_start` carries the input side with a provisional output count, and `message_delta`'s
usage is cumulative, carrying the final counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class TokenCounts:
    input_tokens: int = 0  # input neither read from nor written to a prompt cache
    cache_read_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0  # reasoning included: both providers bill it as output
    reasoning_tokens: int = 0

    @property
    def cache_write_tokens(self) -> int:
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens

    @property
    def all_input_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens


def openai_usage(t: TokenCounts) -> dict[str, Any]:
    # OpenAI bills no separate cache write; whatever was not a hit is plain prompt.
    prompt = t.all_input_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": t.output_tokens,
        "total_tokens": prompt + t.output_tokens,
        "prompt_tokens_details": {"cached_tokens": t.cache_read_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": t.reasoning_tokens, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


def anthropic_usage(t: TokenCounts, service_tier: str = "standard") -> dict[str, Any]:
    out: dict[str, Any] = {
        "input_tokens": t.input_tokens,
        "cache_creation_input_tokens": t.cache_write_tokens,
        "cache_read_input_tokens": t.cache_read_tokens,
        "cache_creation": {"ephemeral_5m_input_tokens": t.cache_write_5m_tokens,
                           "ephemeral_1h_input_tokens": t.cache_write_1h_tokens},
        "output_tokens": t.output_tokens,
        "service_tier": service_tier,
    }
    if t.reasoning_tokens:  # a read-only breakdown of output_tokens, sent only when thinking happened
        out["output_tokens_details"] = {"thinking_tokens": t.reasoning_tokens}
    return out


def anthropic_stream_usage(t: TokenCounts, service_tier: str = "standard") -> tuple[dict[str, Any], dict[str, Any]]:
    """(message_start usage, message_delta usage) of a streamed answer."""
    whole = anthropic_usage(t, service_tier)
    start = {k: v for k, v in whole.items() if k != "output_tokens_details"}
    start["output_tokens"] = 1  # the API reports a provisional count before any output exists
    delta = {k: whole[k] for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens",
                                   "output_tokens", "output_tokens_details") if k in whole}
    return start, delta
