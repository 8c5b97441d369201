"""The innermost step of the flow: send the prepared body to the provider, price what it used.

Retries, fallback, breakers and the deadline wrap the provider call (`providers.reliability`);
a fallback to another deployment prepares the body again for it (`shaping.prepare`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator

from thrifty.contract import Answer, Attempt, Call
from thrifty.contract.usage import Usage
from thrifty.errors import GatewayError, GiveUp
from thrifty.pricing import PriceBook
from thrifty.providers.base import INTERRUPTED
from thrifty.providers.deployments import Deployments, Route
from thrifty.providers.reliability import Reliability, ReliabilityConfig, RetryPlan, deadline_error
from thrifty.routing.router import Router
from thrifty.shaping.prepare import Preparer
from thrifty.wire import client_answer, stream_translator


class ProviderCall:
    """The innermost step: send the upstream body to the provider and price what it used.

    A failed attempt goes through the reliability policy (`thrifty.providers.reliability`):
    retries with backoff, fallback to the tier's other deployments, circuit breakers, the
    deadline. While the first attempt succeeds that costs a breaker lookup and one update.
    The ledger row says how many retries it took (`retries`) and which deployment finally
    served (`provider`, `served_model`; the tier stays the one routing chose). A retried attempt
    that reached the provider and was cut (a timeout, a dropped answer) may have been billed: it
    is reported in `call.discarded` with its error status and an unknown cost.
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
            clock = time.perf_counter()
            try:
                resp = await route.provider.complete(body, call.headers)
            finally:
                call.upstream_s += time.perf_counter() - clock
            return self._whole(call, resp)
        rel = self.reliability
        started = rel.clock()
        if not rel.breakers.allow(route.deployment):
            return await self._complete_again(call, started, None)
        sent_at = time.time()
        try:
            resp = await self._send(call, rel.deadline_from(started))
        except GatewayError as err:
            return await self._complete_again(call, started, err, sent_at)
        rel.breakers.success(route.deployment)
        return self._whole(call, resp)

    def _whole(self, call: Call, resp: dict[str, Any]) -> Answer:
        route = call.route
        assert route is not None
        out, usage = client_answer(call.wire, route.provider.wire, resp, route.model)
        return Answer(body=out, usage=usage, cost=self._cost(call, usage), complete=True)

    async def _complete_again(self, call: Call, started: float, err: GatewayError | None,
                              sent_at: float = 0.0) -> Answer:
        """The slow path of a whole answer: the first attempt failed or may not go where routed."""
        plan, fallback = self._plan(call, started)
        if err is None:
            await fallback.switch(call, plan.start())
        while True:
            if err is not None:
                await self._next(call, plan, fallback, err, sent_at)
            route = call.route
            assert route is not None and call.upstream_body is not None
            sent_at = time.time()
            try:
                resp = await self._send(call, plan.deadline)
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
            await fallback.switch(call, plan.start())
        deadline = rel.deadline_from(started) if self._on else None
        while True:
            route = call.route
            assert route is not None and call.upstream_body is not None
            upstream = route.provider.stream(call.upstream_body, call.headers)
            sent_at, clock = time.time(), time.perf_counter()
            try:
                first = await self._first(upstream, route, deadline)
                break
            except GatewayError as err:
                call.upstream_s += time.perf_counter() - clock
                if not self._on:
                    raise
                if plan is None or fallback is None:
                    plan, fallback = self._plan(call, started)
                await self._next(call, plan, fallback, err, sent_at)
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
        # The stream's time upstream, its events' relay to the client included (nothing here can
        # tell the two apart without timing every event).
        call.upstream_s += time.perf_counter() - clock
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
        price_of = getattr(router, "price_of", None)
        return self.reliability.plan(route.deployment, peers, started, routed=routed, price_of=price_of), fallback

    async def _next(self, call: Call, plan: RetryPlan, fallback: "_Fallback", err: GatewayError,
                    sent_at: float) -> None:
        """Move the call to its next attempt, or raise `err` when there is none."""
        try:
            name, delay = plan.after(err)
        except GiveUp:
            raise err from None
        cut = err.code == INTERRUPTED
        if cut:  # it reached the provider, which may bill it: its own ledger row
            call.discarded.append(Attempt(why=f"retried: {err.message}"[:500], deployment=call.route,
                                          tier=call.tier, usage=Usage(), cost=None, started_at=sent_at,
                                          finished_at=time.time(), retries=call.retries, status=err.status))
        if delay > 0:  # waited because of the provider: counted as its time, not the gateway's
            clock = time.perf_counter()
            await self.reliability.sleep(delay)
            call.upstream_s += time.perf_counter() - clock
        await fallback.switch(call, name, after_cut=cut)
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

    async def _send(self, call: Call, deadline: float | None) -> dict[str, Any]:
        """One attempt of a whole answer, to the call's current deployment; its time is the call's
        `upstream_s`, failed or not."""
        route, body, headers = call.route, call.upstream_body, call.headers
        assert route is not None and body is not None
        left = self._left(deadline, route)
        clock = time.perf_counter()
        try:
            if left is None:
                return await route.provider.complete(body, headers)
            async with asyncio.timeout(left):
                return await route.provider.complete(body, headers)
        except TimeoutError:
            raise deadline_error(route.deployment, self.reliability.config.deadline_s) from None
        finally:
            call.upstream_s += time.perf_counter() - clock

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

    async def switch(self, call: Call, name: str, *, after_cut: bool = False) -> None:
        """Point the call's next attempt at deployment `name`; the budget covers that attempt
        (or refuses it) when it goes elsewhere or follows one the provider may have billed."""
        route = self.deployments.routes[name]
        moved = route is not call.route
        if moved:
            self.preparer.move(call, route, "fallback")
        if (moved or after_cut) and call.cover_attempt is not None:
            await call.cover_attempt(call, after_cut)
