"""Token usage of one call, normalised across wire formats.

Every kind of token is kept apart so that each is priced at its own rate; each wire object
(`thrifty.wire`) maps its dialect's usage fields to and from this.
"""

from __future__ import annotations

from dataclasses import dataclass


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
