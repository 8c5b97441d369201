"""The innermost steps of the flow: pick the deployment, cross to its wire format, call it, price it."""

from __future__ import annotations

from typing import Any, AsyncIterator

from thrifty.core.gateway import Gateway
from thrifty.core.pipeline import Answer, Call, Next, Stage
from thrifty.routing.features import features_from_body


class ModelRoute(Stage):
    """Serve the model the client named (or its alias) on its deployment.

    This is where the router of tiers and rules plugs in; it also builds the upstream body,
    so the stages after it (shaping) work on the provider's wire format.
    """

    name = "route"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, call: Call, call_next: Next) -> Answer:
        gw, row = self.gateway, call.row
        router = gw.router
        tier = None
        if router is not None and (router.handles(call.model) or router.config.allow_downgrade):
            features = features_from_body(call.body, call.surface.name, headers=call.headers, tenant=call.tenant)
            decision = router.decide(features, call.model)
            route, tier = gw.route(decision.deployment), decision.tier
        else:
            route = gw.route(call.model)
        call.route = route
        row.provider, row.served_model, row.tier = route.provider.name, route.model, tier or route.tier
        call.upstream_body = call.surface.upstream_body(
            call.body, route.provider.wire, route.model, self.gateway.config.defaults.anthropic_max_tokens)
        return await call_next(call)


class ProviderCall:
    """The innermost step: send the upstream body to the provider and price what it used."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, call: Call) -> Answer:
        route, body = call.route, call.upstream_body
        assert route is not None and body is not None, "ModelRoute must run before the provider call"
        provider = route.provider
        if not call.stream:
            resp = await provider.complete(body, call.headers)
            out, usage = call.surface.client_response(resp, provider.wire, route.model)
            return Answer(body=out, usage=usage, cost=self._cost(call, usage), complete=True)
        answer = Answer()
        answer.events = self._events(call, answer)
        return answer

    async def _events(self, call: Call, answer: Answer) -> AsyncIterator[dict[str, Any]]:
        route = call.route
        assert route is not None and call.upstream_body is not None
        translator = call.surface.stream_translator(call.body, route.provider.wire, route.model)
        # A stream that breaks off raises out of here and stays incomplete: its cost is unknown,
        # since what the provider bills for a half-finished generation is not visible from here.
        async for event in route.provider.stream(call.upstream_body, call.headers):
            for out in translator.feed(event):
                yield out
        for out in translator.close():
            yield out
        answer.usage = translator.usage
        answer.cost = self._cost(call, answer.usage)
        answer.complete = True

    def _cost(self, call: Call, usage):  # type: ignore[no-untyped-def]
        route = call.route
        assert route is not None
        cost = self.gateway.prices.cost(route.model, usage, provider=route.price_provider)
        return None if cost is None else cost.total
