"""Token usage of one call, normalised across wire formats.

OpenAI reports `prompt_tokens` including cached tokens; Anthropic reports `input_tokens`
excluding cache reads and writes. `Usage` keeps every kind of token apart so that each is priced
at its own rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0  # uncached input, billed at the base input rate
    cache_read_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0  # all output tokens, reasoning included
    reasoning_tokens: int = 0  # the part of output_tokens spent on hidden reasoning

    @property
    def cache_write_tokens(self) -> int:
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens

    @property
    def prompt_tokens(self) -> int:
        """Every input token, whatever its cache status (OpenAI's `prompt_tokens`)."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @classmethod
    def from_openai(cls, u: dict[str, Any] | None) -> "Usage":
        if not u:
            return cls()
        prompt = int(u.get("prompt_tokens") or 0)
        cached = int((u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        reasoning = int((u.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
        return cls(input_tokens=prompt - cached, cache_read_tokens=cached,
                   output_tokens=int(u.get("completion_tokens") or 0), reasoning_tokens=reasoning)

    @classmethod
    def from_anthropic(cls, u: dict[str, Any] | None) -> "Usage":
        if not u:
            return cls()
        creation = u.get("cache_creation") or {}
        write_total = int(u.get("cache_creation_input_tokens") or 0)
        w1h = int(creation.get("ephemeral_1h_input_tokens") or 0)
        w5m = int(creation.get("ephemeral_5m_input_tokens") or (write_total - w1h))
        # Thinking tokens are part of output_tokens; a breakdown, where given, keeps them apart.
        thinking = int((u.get("output_tokens_details") or {}).get("thinking_tokens") or 0)
        return cls(input_tokens=int(u.get("input_tokens") or 0),
                   cache_read_tokens=int(u.get("cache_read_input_tokens") or 0),
                   cache_write_5m_tokens=w5m, cache_write_1h_tokens=w1h,
                   output_tokens=int(u.get("output_tokens") or 0), reasoning_tokens=thinking)

    def to_openai(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.prompt_tokens + self.output_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cache_read_tokens, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0},
        }

    def to_anthropic(self) -> dict[str, Any]:
        out = {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_write_tokens,
            "cache_read_input_tokens": self.cache_read_tokens,
            "cache_creation": {"ephemeral_5m_input_tokens": self.cache_write_5m_tokens,
                               "ephemeral_1h_input_tokens": self.cache_write_1h_tokens},
            "output_tokens": self.output_tokens,
        }
        if self.reasoning_tokens:
            out["output_tokens_details"] = {"thinking_tokens": self.reasoning_tokens}
        return out
