"""Routing as a stage: the client's model (or a tier) -> a deployment, and escalation on top.

Also the `downgrade` action a full budget takes: the same router, its lowest tier.
"""

from __future__ import annotations

from typing import Any

from thrifty.contract import Answer, Call, Counted, ModelMoved, Next, Stage
from thrifty.errors import ConfigError, GatewayError
from thrifty.providers.deployments import Deployments, Route
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
                return await esc.run(call, call_next, decision, features, asked)
        else:
            route = self.deployments.route(call.model)
            call.tier = route.tier
        self.preparer.prepare(call, route)
        return await call_next(call)

    def _routed(self, call: Call, route: Route, tier_name: bool) -> None:
        """Routing's effect: the move from the baseline model, when there is one to price."""
        if tier_name:
            baseline = self._tier_baseline
            if baseline is None:
                call.effects.append(Counted("routing", "no routing.baseline_model: saving not claimed"))
                return
        else:
            baseline = self.deployments.route(call.model)
        if (baseline.model, baseline.price_provider) != (route.model, route.price_provider):
            call.effects.append(ModelMoved("routing", baseline.model, baseline.price_provider))


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
