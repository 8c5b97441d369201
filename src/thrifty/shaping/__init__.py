"""Request shaping: changes to the upstream body that cut cost without changing the answer.

`PromptCachePlanner` adds provider prompt-caching hints (Anthropic `cache_control` breakpoints,
OpenAI `prompt_cache_key`), `PrefixStats` keeps per-prefix reuse and cache discounts, and
`Preparer` is the one place an upstream body is made for a deployment.
"""

from thrifty.shaping.prefix_stats import GapCounts, PrefixSnapshot, PrefixStats
from thrifty.shaping.prompt_cache import (
    Breakpoint, CachePlan, PromptCachePlanner, PromptCachePolicy, choose_ttl, min_cacheable_tokens,
)

__all__ = [
    "Breakpoint",
    "CachePlan",
    "GapCounts",
    "PrefixSnapshot",
    "PrefixStats",
    "PromptCachePlanner",
    "PromptCachePolicy",
    "choose_ttl",
    "min_cacheable_tokens",
]
