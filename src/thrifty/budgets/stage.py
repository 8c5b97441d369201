"""Budgets as a pipeline stage: reserve the worst case before the provider call, settle after.

Runs after routing (the price depends on the deployment) and is best placed last, just before
the provider call, so that it estimates the request exactly as it will be sent (prompt-cache
breakpoints included: they decide whether cache writes can be billed).

What happens to the reservation:

- a whole answer: settled at its exact cost;
- a stream that ends: settled at its exact cost, after the last event;
- a stream that breaks off or is abandoned after it started (client gone, upstream cut): the
  provider billed an unknown part of it, so the worst case is charged (`broken_streams:
  charge`, the default) or nothing (`release`);
- an error before any answer (upstream 4xx/5xx, connection refused, cancellation): released;
  but an error after the request reached the provider (`UPSTREAM_INTERRUPTED`: a timeout, a
  connection or stream cut) may have been billed, so that attempt's hold is charged at its worst
  case.

Retries are covered before they are sent (`Call.cover_attempt`), so that no retry can take spend
past a hard limit:

- a fallback to another deployment: when its worst case is above what is held, the difference is
  reserved as a top-up (a second reservation on the same scopes: a rate limit counts it as one
  more request, which it is upstream); a top-up is released when the call settles (its actual
  cost goes to the first reservation), or charged at its worst case with it when a stream breaks;
- a retry after an attempt the provider may have billed: what is held stays with that attempt
  (charged at its worst case when the call ends: what it was billed is not visible from here) and
  the retry gets a reservation of its own.

A budget without room refuses the retry with its 429 instead of overshooting.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, AsyncIterator, Awaitable, Callable

from thrifty.budgets.enforcer import Enforcer, Reservation
from thrifty.budgets.estimate import Estimator
from thrifty.budgets.scopes import CallScopes
from thrifty.contract import Answer, Call, Next, Stage
from thrifty.contract.usage import Usage
from thrifty.errors import UPSTREAM_INTERRUPTED
from thrifty.pricing import PriceBook

log = logging.getLogger("thrifty.budgets")

ZERO = Decimal(0)

# Re-routes a call to a cheaper tier (changing call.route and call.upstream_body); False if none.
Downgrade = Callable[[Call, Reservation], Awaitable[bool]]


class Budgets(Stage):
    name = "budgets"

    def __init__(self, enforcer: Enforcer, prices: PriceBook, *, estimator: Estimator | None = None,
                 downgrade: Downgrade | None = None,
                 on_reserved: Callable[[Call, Reservation], None] | None = None) -> None:
        self.enforcer = enforcer
        self.estimator = estimator or Estimator(prices, enforcer.config.estimate)
        self.downgrade = downgrade
        self.on_reserved = on_reserved  # e.g. keep reservation.headers() for the response
        self.charge_broken = enforcer.config.broken_streams == "charge"
        self.cap_output = enforcer.config.estimate.enforce_output_cap
        self._unpriced: set[str] = set()

    async def __call__(self, call: Call, call_next: Next) -> Answer:
        enforcer = self.enforcer
        scopes = CallScopes.of(call)
        call.cover_attempt = None  # an earlier attempt's (escalation runs this stage once per attempt)
        if not enforcer.has_limits(scopes):
            return await call_next(call)
        route, body = call.route, call.upstream_body
        assert route is not None and body is not None, "Budgets runs after routing"
        wire = route.provider.wire
        if enforcer.needs_estimate(scopes):
            est = self.estimator.estimate(body, wire, route.model, route.price_provider)
            if not est.capped and self.cap_output and enforcer.needs_bound(scopes):
                # Without a cap the output is unbounded; the one the reservation assumed is sent.
                cap = call.reserved_output_cap = self.estimator.default_cap(route.model)
                call.upstream_body = wire.with_output_cap(body, cap)
            if est.usd is None:
                self._warn_unpriced(route.model)
            r = await enforcer.reserve(scopes, est.usd, est.tokens)
        else:
            r = await enforcer.reserve(scopes, ZERO, 0)  # rpm limits only: one request, no worst case
        if r.downgrade and not (self.downgrade is not None and await self._downgrade(call, r)):
            await enforcer.release(r)
            i = next(i for i, a in enumerate(r.applied) if a.budget.name in r.downgraded_by)
            raise enforcer.exceeded(r, i, reason="has no room for this call and it has no cheaper tier")
        if self.on_reserved is not None:
            self.on_reserved(call, r)
        held = _Held(self, scopes, r)
        if r.worst_usd or r.worst_tokens:
            call.cover_attempt = held.cover
        try:
            answer = await call_next(call)
        except BaseException as exc:
            if getattr(exc, "code", None) == UPSTREAM_INTERRUPTED:
                await held.charge_worst()  # the last attempt reached the provider: maybe billed
            else:
                await held.release()
            raise
        if answer.events is None:
            await held.settle(answer.cost, used_tokens(answer.usage))
        else:
            answer.events = self._settled(answer, answer.events, held)
        return answer

    async def _downgrade(self, call: Call, r: Reservation) -> bool:
        assert self.downgrade is not None
        try:
            return await self.downgrade(call, r)
        except BaseException:
            await self.enforcer.release(r)
            raise

    async def _settled(self, answer: Answer, events: AsyncIterator[dict[str, Any]],
                       held: "_Held") -> AsyncIterator[dict[str, Any]]:
        # Unlike pipeline.after_answer, the finally also runs when the stream breaks off or the
        # consumer drops it (aclose, or the event loop's finalizer for abandoned generators).
        started = False
        try:
            async for event in events:
                started = True
                yield event
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None and not answer.complete:
                try:
                    await aclose()  # let the upstream connection go now
                except Exception:  # noqa: BLE001 - the stream is already broken; settling matters more
                    log.debug("closing an abandoned upstream stream failed", exc_info=True)
            if answer.complete:
                await held.settle(answer.cost, used_tokens(answer.usage))
            elif started and self.charge_broken:
                await held.charge_worst()
            else:
                await held.release()

    def _warn_unpriced(self, model: str) -> None:
        if model not in self._unpriced and len(self._unpriced) < 1000:
            self._unpriced.add(model)
            log.warning("budgets: model %r has no price; USD budgets do not count its calls "
                        "(token budgets and rate limits do); add a price override", model)


class _Held:
    """A call's reservations: `all` covers the attempt in flight (the first reservation, and a
    top-up for each fallback that costs more than held); `billed` those of earlier attempts the
    provider may have billed, charged at their worst case whatever the call's end."""

    __slots__ = ("stage", "scopes", "all", "billed")

    def __init__(self, stage: Budgets, scopes: CallScopes, first: Reservation) -> None:
        self.stage, self.scopes, self.all = stage, scopes, [first]
        self.billed: list[Reservation] = []

    async def cover(self, call: Call, after_cut: bool = False) -> None:
        """Before a retry is sent: hold its worst case, or raise the budget's 429."""
        route, body = call.route, call.upstream_body
        assert route is not None and body is not None
        est = self.stage.estimator.estimate(body, route.provider.wire, route.model, route.price_provider)
        if after_cut:  # the cut attempt keeps what it held; this one needs its own
            self.billed.extend(self.all)
            self.all = []
        more_usd = max(ZERO, (est.usd or ZERO) - sum((r.worst_usd for r in self.all), ZERO))
        more_tokens = max(0, est.tokens - sum(r.worst_tokens for r in self.all))
        if self.all and not more_usd and not more_tokens:
            return
        enforcer = self.stage.enforcer
        extra = await enforcer.reserve(self.scopes, more_usd, more_tokens)  # raises a hard budget's 429
        if extra.downgrade:  # a downgrade budget has no room: no further attempt on it
            await enforcer.release(extra)
            i = next(i for i, a in enumerate(extra.applied) if a.budget.name in extra.downgraded_by)
            raise enforcer.exceeded(extra, i, reason=f"has no room for this call's retry on {route.model}")
        self.all.append(extra)

    async def settle(self, usd: Decimal | None, tokens: int) -> None:
        first, *extra = self.all
        await self.stage.enforcer.settle(first, usd, tokens)
        for r in extra:
            await self.stage.enforcer.release(r)
        await self._charge(self.billed)

    async def charge_worst(self) -> None:
        await self._charge(self.all + self.billed)

    async def release(self) -> None:
        for r in self.all:
            await self.stage.enforcer.release(r)
        await self._charge(self.billed)

    async def _charge(self, held: list[Reservation]) -> None:
        for r in held:
            await self.stage.enforcer.settle(r, r.worst_usd, r.worst_tokens)


def used_tokens(usage: Usage) -> int:
    """What token budgets count: every input token, cached or not, and every output token."""
    return usage.prompt_tokens + usage.output_tokens
