"""Routing as a stage: the client's model (or a tier) -> a deployment, and escalation on top.

Also the `downgrade` action a full budget takes: the same router, its lowest tier.
"""

from __future__ import annotations

from typing import Any

from thrifty.contract import Answer, Call, Counted, ModelMoved, Next, Stage
from thrifty.errors import ConfigError, GatewayError
from thrifty.providers.deployments import Deployments, Route
from thrifty.routing.baseline_cache import AutomaticCacheMemory
from thrifty.routing.escalation import Escalation
from thrifty.routing.features import features_from_body
from thrifty.routing.router import Router
from thrifty.shaping.prepare import Preparer


class ModelRoute(Stage):
    """Serve the model the client named (or its alias) on its deployment, or route it.

    This is where the router of tiers and rules plugs in. It points the call at a deployment
    through the one body preparation step (`shaping.prepare`), records routing's effect against
    the baseline model (the model asked for; for `thrifty/auto` and `thrifty/<tier>`, the route's
    `baseline_model`), and, when the decision has escalation checks, runs the rest of the flow
    under `routing.escalation`.
    """

    name = "route"

    def __init__(self, deployments: Deployments, router: Router | None, preparer: Preparer) -> None:
        self.deployments = deployments
        self.router = router
        self.preparer = preparer
        self._escalation: Escalation | None = None
        # The prefixes each baseline deployment would have cached by itself: routing's saving
        # leaves that discount to the client (routing/baseline_cache.py).
        self.baseline_cache = AutomaticCacheMemory()
        self._tier_baseline = None
        if router is not None and router.config.baseline_model is not None:
            try:
                self._tier_baseline = deployments.route(router.config.baseline_model)
            except GatewayError:
                raise ConfigError("<config>", "routing.baseline_model",
                                  f"unknown deployment or alias {router.config.baseline_model!r}") from None

    @property
    def escalation(self) -> Escalation | None:
        """The check runner and its counters (None without a router); built on first use."""
        if self._escalation is None and self.router is not None:
            self._escalation = Escalation(self.deployments, self.router, self.preparer)
        return self._escalation

    def snapshot(self) -> dict[str, Any]:
        """Escalation counters (calls checked, escalations by check and by tier)."""
        esc = self.escalation
        return esc.snapshot() if esc is not None else {}

    async def __call__(self, call: Call, call_next: Next) -> Answer:
        router = self.router
        if router is not None and (router.handles(call.model) or router.config.allow_downgrade):
            features = features_from_body(call.body, call.wire, headers=call.headers, tenant=call.tenant)
            decision = router.decide(features, call.model, embedding=call.embedding)
            route = self.deployments.route(decision.deployment)
            self._routed(call, route, router.handles(call.model))
            call.tier = decision.tier or route.tier
            esc = self.escalation
            if decision.checks and esc is not None:
                asked = esc.place(call, decision)
                return await self._shadowed(call, await esc.run(call, call_next, decision, features, asked))
        else:
            route = self.deployments.route(call.model)
            call.tier = route.tier
            if router is not None and route.provider.wire.prompt_caching == "cache_key":
                self.baseline_cache.sight(call.tenant, route.deployment, call.body)  # warms it for routed calls
        self.preparer.prepare(call, route)
        return await self._shadowed(call, await call_next(call))

    async def _shadowed(self, call: Call, answer: Answer) -> Answer:
        """The answer, offered to the shadow lane once complete (routing/shadow.py; never awaited)."""
        shadow = self.router.shadow if self.router is not None else None
        return answer if shadow is None else await shadow.watch(call, answer)

    def _routed(self, call: Call, route: Route, tier_name: bool) -> None:
        """Routing's effect: the move from the baseline model, when there is one to price."""
        if tier_name:
            baseline = self._tier_baseline
            if baseline is None:
                call.effects.append(Counted("routing", "no routing.baseline_model: saving not claimed"))
                return
        else:
            baseline = self.deployments.route(call.model)
        share = 0.0
        if baseline.provider.wire.prompt_caching == "cache_key":  # caches prefixes by itself (OpenAI)
            share = self.baseline_cache.sight(call.tenant, baseline.deployment, call.body)
        if (baseline.model, baseline.price_provider) != (route.model, route.price_provider):
            call.effects.append(ModelMoved("routing", baseline.model, baseline.price_provider, share))


def downgrade_to_cheapest_tier(deployments: Deployments, router: Router | None,  # type: ignore[no-untyped-def]
                               preparer: Preparer):
    """The `downgrade` action of a full budget: serve the call from the lowest routing tier.

    The returned callable answers False (so the call is refused) when no router is configured or
    the call is already there. The tier's cheapest healthy deployment serves, with a body prepared
    for it; the move is the `budget_downgrade` lever's effect.
    """

    async def downgrade(call: Call, _reservation: object) -> bool:
        if router is None or not router.order or call.tier == router.order[0]:
            return False
        features = features_from_body(call.body, call.wire, headers=call.headers, tenant=call.tenant)
        decision = router.decide(features, router.config.model_prefix + router.order[0])
        route = deployments.route(decision.deployment)
        preparer.move(call, route, "budget_downgrade")
        call.tier = decision.tier or route.tier
        return True

    return downgrade
