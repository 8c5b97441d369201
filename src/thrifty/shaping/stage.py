"""Per-prefix statistics of provider prompt caching, kept as a stage on the way back.

The body itself is planned in `shaping.prepare` (for every attempt); this stage, inside routing,
sees each attempt's answer and adds it to its prefix's statistics (reuse, hit rate, and the
provider's cache discount on it, whoever placed the breakpoints).
"""

from __future__ import annotations

from typing import Any

from thrifty.contract import Answer, Call, Next, Stage, after_answer
from thrifty.pricing import PriceBook, cache_discount
from thrifty.shaping.prefix_stats import PrefixStats


class PromptCacheStats(Stage):
    name = "prompt_cache"

    def __init__(self, stats: PrefixStats, prices: PriceBook) -> None:
        self.stats = stats
        self.prices = prices

    async def __call__(self, call: Call, call_next: Next) -> Answer:
        answer = await call_next(call)
        prefix_id, route = call.prefix_id, call.route
        if prefix_id is None or route is None:
            return answer

        async def observe(done: Answer, _events: list[dict[str, Any]] | None) -> None:
            if done.cost is None:
                return
            discount = cache_discount(self.prices, route.model, done.usage, route.price_provider, actual=done.cost)
            self.stats.observe(prefix_id, done.usage, done.cost, discount)

        return await after_answer(answer, observe)
