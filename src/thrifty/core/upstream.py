"""The innermost steps of the flow: pick the deployment, cross to its wire format, call it, price it."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Mapping

from thrifty.contract import Answer, Call, Counted, ModelMoved, Next, Stage
from thrifty.core.deployments import Deployments, Route
from thrifty.pricing import PriceBook
from thrifty.routing.router import Router
from thrifty.errors import ConfigError, GatewayError
from thrifty.errors import GiveUp
from thrifty.providers.reliability import Reliability, ReliabilityConfig, RetryPlan, deadline_error
from thrifty.routing.escalation import Escalation
from thrifty.routing.features import features_from_body
from thrifty.shaping.prepare import Preparer
from thrifty.wire import client_answer, stream_translator


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
            decision = router.decide(features, call.model)
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


class ProviderCall:
    """The innermost step: send the upstream body to the provider and price what it used.

    A failed attempt goes through the reliability policy (`thrifty.providers.reliability`):
    retries with backoff, fallback to the tier's other deployments, circuit breakers, the
    deadline. While the first attempt succeeds that costs a breaker lookup and one update.
    The ledger row says how many retries it took (`retries`) and which deployment finally
    served (`provider`, `served_model`; the tier stays the one routing chose).
    """

    def __init__(self, deployments: Deployments, router: Router | None, prices: PriceBook, preparer: Preparer,
                 reliability: Reliability | None = None) -> None:
        self.deployments = deployments
        self.router = router
        self.prices = prices
        self.preparer = preparer
        self.reliability = reliability if reliability is not None else Reliability(ReliabilityConfig())
        self._on = self.reliability.config.enabled

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
        out, usage = client_answer(call.wire, route.provider.wire, resp, route.model)
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
        translator = stream_translator(call.wire, route.provider.wire, call.body, route.model)
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
        router, tier = self.router, call.tier
        peers = router.ranked.get(tier, ()) if router is not None and tier is not None else ()
        fallback = _Fallback(self.deployments, self.preparer)
        routed = self.deployments.get(call.model) is not route  # the client did not name it
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
        call.retries += 1

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
        cost = self.prices.cost(route.model, usage, provider=route.price_provider)
        return None if cost is None else cost.total


class _Fallback:
    """Moves a call to another deployment: the body is prepared again for it (the same shaping,
    prompt-cache plan and reserved cap as the first attempt had), and a move to another model or
    price is reported as the `fallback` lever's effect, so its cost difference shows."""

    __slots__ = ("deployments", "preparer")

    def __init__(self, deployments: Deployments, preparer: Preparer) -> None:
        self.deployments, self.preparer = deployments, preparer

    def switch(self, call: Call, name: str) -> None:
        route = self.deployments.routes[name]
        before = call.route
        if route is before:
            return
        self.preparer.prepare(call, route, client_body=call.attempt_body)
        if (route.model, route.price_provider) != (before.model, before.price_provider):
            call.attempt_effects.append(ModelMoved("fallback", before.model, before.price_provider))


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
        before, route = call.route, deployments.route(decision.deployment)
        preparer.prepare(call, route, client_body=call.attempt_body)
        call.tier = decision.tier or route.tier
        if before is not None and (route.model, route.price_provider) != (before.model, before.price_provider):
            call.attempt_effects.append(ModelMoved("budget_downgrade", before.model, before.price_provider))
        return True

    return downgrade
