"""The provider's prompt cache as a replay of recorded traffic sees it, from prefix hash ids.

Token-only traces (Mooncake's `hash_ids`) and sources that computed prefix hashes give, per call,
the ids of its successive 512-token prompt blocks; a shared id is a shared prefix. A call reads the
leading blocks seen before within the entry's lifetime, and its use refreshes them, under the
providers' documented rules below, each with its source. Which rules apply is read off the price
card, not the provider's name: a card with a cache-write price (Anthropic) caches what breakpoints
mark and bills the write; one without (OpenAI) caches automatically and bills no write. The
minimum cacheable length of breakpoint caching is the gateway's own table
(`thrifty.shaping.prompt_cache.min_cacheable_tokens`).
"""

from __future__ import annotations

from typing import Any

from thrifty.contract import Usage
from thrifty.pricing import PriceBook
from thrifty.shaping.prompt_cache import min_cacheable_tokens

BLOCK_TOKENS = 512  # one prefix hash covers this many prompt tokens (Mooncake's hash_ids; schema.py)

# The providers' prompt-caching rules the replay applies, each with its source. A card with a
# cache-write price (Anthropic) caches what breakpoints mark and bills the write; one without
# (OpenAI) caches automatically and bills no write.
CACHE_RULES: tuple[dict[str, Any], ...] = (
    {"rule": "automatic caching (no write price): minimum cacheable prompt", "value": "1024 tokens",
     "source": "OpenAI prompt caching guide: prompts of 1024 tokens or more"},
    {"rule": "automatic caching: cached length granularity", "value": "128 tokens",
     "source": "OpenAI prompt caching guide: cache hits in increments of 128 tokens"},
    {"rule": "automatic caching: entry lifetime", "value": "300 s idle (--auto-cache-ttl), refreshed on use",
     "source": "OpenAI prompt caching guide: 5-10 minutes of inactivity, up to 1 h off-peak "
               "(the shortest is the default)"},
    {"rule": "breakpoint caching (write price): minimum cacheable prompt",
     "value": "1024 tokens (2048/4096 for the models listed in shaping/prompt_cache.py)",
     "source": "Anthropic prompt caching docs, cache limitations"},
    {"rule": "breakpoint caching: entry lifetime", "value": "300 s (ttl 5m) or 3600 s (ttl 1h), refreshed on use",
     "source": "Anthropic prompt caching docs: 5-minute default, 1-hour optional"},
    {"rule": "breakpoint caching: writes", "value": "prompt past the read prefix, at the 5m or 1h write price",
     "source": "Anthropic prompt caching docs, pricing"},
)
AUTO_MIN_TOKENS, AUTO_STEP_TOKENS, AUTO_TTL_S = 1024, 128, 300.0
BREAKPOINT_TTL_S = {"5m": 300.0, "1h": 3600.0}
_PRUNE_EVERY = 100_000  # calls between sweeps of expired entries


class PromptCacheReplay:
    """The provider's prompt cache as a replay sees it: prefix block id -> when last used."""

    def __init__(self, prices: PriceBook, ttl: str, auto_ttl_s: float = AUTO_TTL_S) -> None:
        self.prices = prices
        self.auto_ttl_s = auto_ttl_s
        self.ttl = "1h" if ttl == "1h" else "5m"  # "auto" starts every prefix at 5m, as the gateway does
        self._seen: dict[tuple[str, str, Any], float] = {}
        self._explicit: dict[tuple[str, str | None], bool] = {}
        self._calls = 0

    def _prune(self, now: float) -> None:
        """Forget entries past every lifetime, so memory follows the live prefixes, not the trace."""
        horizon = now - max(self.auto_ttl_s, *BREAKPOINT_TTL_S.values())
        self._seen = {k: t for k, t in self._seen.items() if t >= horizon}

    def usage(self, scope: str, model: str, provider: str | None, ts: float, blocks: list[Any],
              prompt_tokens: int, output: Usage) -> Usage | None:
        """The call's usage had the cache been on (None: nothing cacheable, keep what was seen)."""
        key = (model, provider)
        explicit = self._explicit.get(key)
        if explicit is None:
            card = self.prices.card(model, provider)
            explicit = self._explicit[key] = card is not None and card.cache_write_5m is not None
        ttl_s = BREAKPOINT_TTL_S[self.ttl] if explicit else self.auto_ttl_s
        minimum = min_cacheable_tokens(model) if explicit else AUTO_MIN_TOKENS
        matched = 0
        for block in blocks:
            last = self._seen.get((scope, model, block))
            if last is None or ts - last > ttl_s:
                break
            matched += 1
        for block in blocks:  # a read refreshes an entry, a write makes one
            self._seen[(scope, model, block)] = ts
        self._calls += 1
        if self._calls % _PRUNE_EVERY == 0:
            self._prune(ts)
        if prompt_tokens < minimum:
            return None
        read = min(matched * BLOCK_TOKENS, prompt_tokens)
        if not explicit:
            read = read // AUTO_STEP_TOKENS * AUTO_STEP_TOKENS
            return Usage(input_tokens=prompt_tokens - read, cache_read_tokens=read,
                         output_tokens=output.output_tokens, reasoning_tokens=output.reasoning_tokens)
        write = min(len(blocks) * BLOCK_TOKENS, prompt_tokens) - read
        w5, w1 = (write, 0) if self.ttl == "5m" else (0, write)
        return Usage(input_tokens=prompt_tokens - read - write, cache_read_tokens=read, cache_write_5m_tokens=w5,
                     cache_write_1h_tokens=w1, output_tokens=output.output_tokens,
                     reasoning_tokens=output.reasoning_tokens)
