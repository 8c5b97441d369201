"""The innermost steps of the flow: pick the deployment, cross to its wire format, call it, price it."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Mapping

from thrifty.core.gateway import Gateway, Route
from thrifty.core.pipeline import Answer, Call, Next, Stage
from thrifty.errors import GatewayError
from thrifty.providers.reliability import GiveUp, Reliability, ReliabilityConfig, RetryPlan, deadline_error
from thrifty.routing.escalation import Escalation
from thrifty.routing.features import features_from_body


class ModelRoute(Stage):
    """Serve the model the client named (or its alias) on its deployment.

    This is where the router of tiers and rules plugs in; it also builds the upstream body,
    so the stages after it (shaping) work on the provider's wire format. When the routing
    decision has escalation checks, the rest of the flow runs under `routing.escalation`:
    the answer is checked and, on a failure, the call is re-run one tier up (a checked stream
    is buffered until its checks pass; see that module for the latency trade-off).
    """

    name = "route"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._escalation: Escalation | None = None

    @property
    def escalation(self) -> Escalation | None:
        """The check runner and its counters (None without a router); built on first use."""
        if self._escalation is None and self.gateway.router is not None:
            self._escalation = Escalation(self.gateway)
        return self._escalation

    def snapshot(self) -> dict[str, Any]:
        """Escalation counters (calls checked, escalations by check and by tier)."""
        esc = self.escalation
        return esc.snapshot() if esc is not None else {}

    async def __call__(self, call: Call, call_next: Next) -> Answer:
        gw, row = self.gateway, call.row
        router = gw.router
        if router is not None and (router.handles(call.model) or router.config.allow_downgrade):
            features = features_from_body(call.body, call.surface.name, headers=call.headers, tenant=call.tenant)
            decision = router.decide(features, call.model)
            esc = self.escalation
            if decision.checks and esc is not None:
                asked = esc.place(call, decision)
                return await esc.run(call, call_next, decision, features, asked)
            route, tier = gw.route(decision.deployment), decision.tier
        else:
            route, tier = gw.route(call.model), None
        call.route = route
        row.provider, row.served_model, row.tier = route.provider.name, route.model, tier or route.tier
        call.upstream_body = call.surface.upstream_body(
            call.body, route.provider.wire, route.model, self.gateway.config.defaults.anthropic_max_tokens)
        return await call_next(call)


class ProviderCall:
    """The innermost step: send the upstream body to the provider and price what it used.

    A failed attempt goes through the reliability policy (`thrifty.providers.reliability`):
    retries with backoff, fallback to the tier's other deployments, circuit breakers, the
    deadline. While the first attempt succeeds that costs a breaker lookup and one update.
    The ledger row says how many retries it took (`retries`) and which deployment finally
    served (`provider`, `served_model`; the tier stays the one routing chose).
    """

    def __init__(self, gateway: Gateway, reliability: Reliability | None = None) -> None:
        self.gateway = gateway
        if reliability is None:
            reliability = getattr(gateway, "reliability", None)
        if reliability is None:
            config = getattr(gateway.config, "reliability", None) or ReliabilityConfig()
            reliability = Reliability(config)
        self.reliability = reliability
        self._on = reliability.config.enabled

    async def __call__(self, call: Call) -> Answer:
        route, body = call.route, call.upstream_body
        assert route is not None and body is not None, "ModelRoute must run before the provider call"
        if call.stream:
            answer = Answer()
            answer.events = self._events(call, answer)
            return answer
        if not self._on:
            return self._whole(call, await route.provider.complete(body, call.headers))
        rel = self.reliability
        started = rel.clock()
        if not rel.breakers.allow(route.deployment):
            return await self._complete_again(call, started, None)
        try:
            resp = await self._send(route, body, call.headers, rel.deadline_from(started))
        except GatewayError as err:
            return await self._complete_again(call, started, err)
        rel.breakers.success(route.deployment)
        return self._whole(call, resp)

    def _whole(self, call: Call, resp: dict[str, Any]) -> Answer:
        route = call.route
        assert route is not None
        out, usage = call.surface.client_response(resp, route.provider.wire, route.model)
        return Answer(body=out, usage=usage, cost=self._cost(call, usage), complete=True)

    async def _complete_again(self, call: Call, started: float, err: GatewayError | None) -> Answer:
        """The slow path of a whole answer: the first attempt failed or may not go where routed."""
        plan, fallback = self._plan(call, started)
        if err is None:
            fallback.switch(call, plan.start())
        while True:
            if err is not None:
                await self._next(call, plan, fallback, err)
            route = call.route
            assert route is not None and call.upstream_body is not None
            try:
                resp = await self._send(route, call.upstream_body, call.headers, plan.deadline)
            except GatewayError as exc:
                err = exc
                continue
            self.reliability.breakers.success(route.deployment)
            return self._whole(call, resp)

    async def _events(self, call: Call, answer: Answer) -> AsyncIterator[dict[str, Any]]:
        # Retries and fallbacks happen only until the provider's first event: nothing has been
        # yielded (so nothing sent to the client) before it; after it, a failure is final.
        rel = self.reliability
        started = rel.clock()
        route = call.route
        assert route is not None and call.upstream_body is not None
        plan: RetryPlan | None = None
        fallback: _Fallback | None = None
        if self._on and not rel.breakers.allow(route.deployment):
            plan, fallback = self._plan(call, started)
            fallback.switch(call, plan.start())
        deadline = rel.deadline_from(started) if self._on else None
        while True:
            route = call.route
            assert route is not None and call.upstream_body is not None
            upstream = route.provider.stream(call.upstream_body, call.headers)
            try:
                first = await self._first(upstream, route, deadline)
                break
            except GatewayError as err:
                if not self._on:
                    raise
                if plan is None or fallback is None:
                    plan, fallback = self._plan(call, started)
                await self._next(call, plan, fallback, err)
        if self._on:
            rel.breakers.success(route.deployment)
        translator = call.surface.stream_translator(call.body, route.provider.wire, route.model)
        # A stream that breaks off raises out of here and stays incomplete: its cost is unknown,
        # since what the provider bills for a half-finished generation is not visible from here.
        if first is not None:
            for out in translator.feed(first):
                yield out
            try:
                async for event in upstream:
                    for out in translator.feed(event):
                        yield out
            except GatewayError:
                if self._on:
                    rel.breakers.failure(route.deployment)
                raise
        for out in translator.close():
            yield out
        answer.usage = translator.usage
        answer.cost = self._cost(call, answer.usage)
        answer.complete = True

    # --- attempts ---------------------------------------------------------------------------

    def _plan(self, call: Call, started: float) -> tuple[RetryPlan, "_Fallback"]:
        route = call.route
        assert route is not None and call.upstream_body is not None
        router, tier = self.gateway.router, call.row.tier
        peers = router.ranked.get(tier, ()) if router is not None and tier is not None else ()
        fallback = _Fallback(route, call.upstream_body, self.gateway)
        routed = self.gateway.routes.get(call.model) is not route  # the client did not name it
        return self.reliability.plan(route.deployment, peers, started, routed=routed), fallback

    async def _next(self, call: Call, plan: RetryPlan, fallback: "_Fallback", err: GatewayError) -> None:
        """Move the call to its next attempt, or raise `err` when there is none."""
        try:
            name, delay = plan.after(err)
        except GiveUp:
            raise err from None
        if delay > 0:
            await self.reliability.sleep(delay)
        fallback.switch(call, name)
        call.row.retries += 1

    def _left(self, deadline: float | None, route: Route) -> float | None:
        """Seconds the next attempt may take when the deadline is shorter than the provider's timeout."""
        if deadline is None:
            return None
        left = deadline - self.reliability.clock()
        if left >= route.provider.config.timeout_s:
            return None  # the provider's own timeout ends the attempt first
        if left <= 0:
            raise deadline_error(route.deployment, self.reliability.config.deadline_s)
        return left

    async def _send(self, route: Route, body: dict[str, Any], headers: Mapping[str, str],
                    deadline: float | None) -> dict[str, Any]:
        left = self._left(deadline, route)
        if left is None:
            return await route.provider.complete(body, headers)
        try:
            async with asyncio.timeout(left):
                return await route.provider.complete(body, headers)
        except TimeoutError:
            raise deadline_error(route.deployment, self.reliability.config.deadline_s) from None

    async def _first(self, upstream: AsyncIterator[dict[str, Any]], route: Route,
                     deadline: float | None) -> dict[str, Any] | None:
        """The stream's first event (None: it ended without any), within the deadline."""
        left = self._left(deadline, route)
        try:
            if left is None:
                return await upstream.__anext__()
            async with asyncio.timeout(left):
                return await upstream.__anext__()
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise deadline_error(route.deployment, self.reliability.config.deadline_s) from None

    def _cost(self, call: Call, usage):  # type: ignore[no-untyped-def]
        route = call.route
        assert route is not None
        cost = self.gateway.prices.cost(route.model, usage, provider=route.price_provider)
        return None if cost is None else cost.total


class _Fallback:
    """Moves a call to another deployment, with the upstream body that deployment needs.

    The stages before the provider (prompt caching, budgets) shaped the first body. A deployment
    on the same wire format and catalog provider takes that body with its own model name; any
    other gets a body rebuilt from the client's request, without the prompt-cache hints and
    output cap those stages added (they were planned for the first deployment).
    """

    __slots__ = ("first", "body", "gateway")

    def __init__(self, first: Route, body: dict[str, Any], gateway: Gateway) -> None:
        self.first, self.body, self.gateway = first, body, gateway

    def switch(self, call: Call, name: str) -> None:
        route = self.gateway.routes[name]
        if route is call.route:
            return
        first = self.first
        if route is first:
            body = self.body
        elif route.provider.wire == first.provider.wire and route.price_provider == first.price_provider:
            body = {**self.body, "model": route.model}
        else:
            body = call.surface.upstream_body(call.body, route.provider.wire, route.model,
                                              self.gateway.config.defaults.anthropic_max_tokens)
        call.route, call.upstream_body = route, body
        call.row.provider, call.row.served_model = route.provider.name, route.model


async def downgrade_to_cheapest_tier(gateway: Gateway, call: Call, _reservation: object) -> bool:
    """A `downgrade` budget is full: serve this call from the lowest routing tier instead.

    False (so the call is refused) when no router is configured or the call is already there.
    The tier's cheapest healthy deployment serves; the body is rebuilt for it from the client's
    request (prompt-cache hints added for the first deployment are not carried over).
    """
    router = gateway.router
    if router is None or not router.order or call.row.tier == router.order[0]:
        return False
    features = features_from_body(call.body, call.surface.name, headers=call.headers, tenant=call.tenant)
    decision = router.decide(features, router.config.model_prefix + router.order[0])
    route = call.route = gateway.route(decision.deployment)
    call.upstream_body = call.surface.upstream_body(call.body, route.provider.wire, route.model,
                                                    gateway.config.defaults.anthropic_max_tokens)
    row = call.row
    row.provider, row.served_model, row.tier = route.provider.name, route.model, decision.tier or route.tier
    return True
