"""Provider prompt caching as a pipeline stage: mark stable prefixes, then account for the saving."""

from __future__ import annotations

from typing import Any

from thrifty.core.pipeline import Answer, Call, Next, Stage, after_answer
from thrifty.pricing import PriceBook
from thrifty.shaping.prompt_cache import PromptCachePlanner
from thrifty.shaping.savings import prompt_cache_saving


class PromptCaching(Stage):
    """Runs after routing, on the provider's wire format.

    The saving is recorded for every answered call with cache tokens, whether the breakpoints
    were Thrifty's or the client's: it is what the provider's cache took off this call's bill.
    """

    name = "prompt_cache"

    def __init__(self, planner: PromptCachePlanner, prices: PriceBook) -> None:
        self.planner = planner
        self.prices = prices

    async def __call__(self, call: Call, call_next: Next) -> Answer:
        route = call.route
        assert route is not None and call.upstream_body is not None, "PromptCaching runs after routing"
        prefix_id = None
        if call.policy.prompt_cache:
            plan = self.planner.plan(call.upstream_body, wire=route.provider.wire, model=route.model,
                                     tenant=call.tenant, provider=route.price_provider)
            call.upstream_body, prefix_id = plan.body, plan.prefix_id
        answer = await call_next(call)

        async def account(done: Answer, _events: list[dict[str, Any]] | None) -> None:
            if done.cost is None:
                return
            saving = prompt_cache_saving(self.prices, route.model, done.usage, route.price_provider)
            if saving is not None:
                call.saved["prompt_cache"] = saving
            if prefix_id is not None:
                self.planner.stats.observe(prefix_id, done.usage, done.cost, saving)

        return await after_answer(answer, account)
