"""Learn from live traffic: shadow a sample of a route's calls to a cheaper tier, off the client's path.

A route with `shadow: {sample, tier, budget_usd, per, score}` (config.ShadowConfig) has a share of
its calls, once the client's answer is complete (a stream: after its last event), sent again to
the cheapest deployment of `tier` in the background. Only calls served above that tier qualify
(a call the cheap tier served, or one it already failed through escalation, teaches nothing new).
The client's answer is never delayed or changed: the routing stage's hook only draws the sample
and puts a job on a bounded queue (`put_nowait`; a full queue drops the job and counts it), and
`concurrency` workers send the jobs.

Each shadow call reserves its worst case under the lane's own cap (shadow_budget.py) before it
is sent, so the shadow spend never passes `budget_usd` per window, and settles at its exact cost.
It gets a ledger row of its own (`<id>.shadow`, lane `shadow`, the client call's tenant and
attribution): a baseline of 0 (the client would not have made it) and a `shadow` lever of minus
its cost, so it shows in the savings report as spend that Thrifty added, never as a saving, and
the levers still add up to baseline - actual. A judge call (score: judge) is recorded the same way
(`<id>.judge`) and counted in the same cap.

The agreement (shadow_score.py) and both costs are stored in `shadow_outcomes` (ledger/shadow.py),
which `thrifty export shadow` writes as routing outcomes for `thrifty train router --data`.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping, Sequence

from thrifty.contract import Answer, Call, Unrequested
from thrifty.contract.call import after_answer
from thrifty.contract.exchange import Exchange
from thrifty.ledger.shadow import ShadowOutcome, record_shadow
from thrifty.routing.features import features_from_body
from thrifty.routing.shadow_budget import ShadowBudget
from thrifty.routing.shadow_score import (
    EXACT_TYPES, Score, judge_messages, read_judgement, score_exact, score_validator,
)

log = logging.getLogger("thrifty.shadow")
ZERO = Decimal(0)


@dataclass(slots=True)
class _RouteShadow:
    name: str  # the route's
    config: Any  # config.ShadowConfig
    budget: ShadowBudget
    rng: random.Random


@dataclass(slots=True)
class _Job:
    call: Call  # the client's call, as it was once answered (read only)
    settings: _RouteShadow
    primary: Any  # the Route that served the client
    primary_tier: str | None
    primary_cost: Decimal | None
    reference: str  # the text the client got
    queued_at: float


@dataclass(slots=True)
class ShadowStats:
    eligible: int = 0
    sampled: int = 0
    dropped: int = 0  # the queue was full
    over_budget: int = 0  # the cap had no room for the call's worst case
    sent: int = 0
    failed: int = 0
    scored: int = 0
    unscored: int = 0
    spent_usd: Decimal = ZERO
    by_method: dict[str, int] = field(default_factory=dict)


class ShadowLane:
    """The shadow jobs of every route that configures one; built once by the gateway."""

    def __init__(self, routes: Sequence[Any], *, router: Any, deployments: Any, preparer: Any, prices: Any,
                 recorder: Any, sender: Any = None, metrics: Any = None) -> None:
        from thrifty.budgets.estimate import Estimator
        from thrifty.providers.call import ProviderCall

        self.router = router
        self.deployments = deployments
        self.preparer = preparer
        # Rows go through the gateway's one writer (core.recorder.Recorder), so its observers
        # (metrics, spans, alerts) count the shadow spend too.
        self.recorder = recorder
        self.ledger = recorder.ledger
        self.routes: dict[str, _RouteShadow] = {}
        for r in routes:
            if r.shadow is not None:
                s = r.shadow
                self.routes[r.name] = _RouteShadow(r.name, s, ShadowBudget(s.budget_usd, s.per), random.Random(s.seed))
        # Straight to the provider: no budgets of the tenant, no caches, no escalation. The
        # lane's own cap bounds the spend; retries as the default reliability policy has them.
        self.send = sender if sender is not None else ProviderCall(deployments, None, prices, preparer)
        self.estimator = Estimator(prices)
        self.stats = ShadowStats()
        # observe.metrics.Metrics (or None): the same counts per route on /metrics, so a platform
        # engineer sees the lane sample, drop, hit its cap and agree without the admin API.
        self.metrics = metrics
        self._queue: asyncio.Queue[_Job] | None = None
        self._workers: list[asyncio.Task[None]] = []
        size = max((s.config.queue for s in self.routes.values()), default=1)
        self._size = size
        self._concurrency = max((s.config.concurrency for s in self.routes.values()), default=1)
        self._rank = {t: i for i, t in enumerate(router.order)}

    # --- on the client's path: cheap, synchronous work only -----------------------------------

    async def watch(self, call: Call, answer: Answer) -> Answer:
        """`answer`, with the shadow offer made once it is complete. The offer is synchronous
        (draw, copy, `put_nowait`): the client never waits on a shadow call."""
        settings = self.routes.get(getattr(call.policy, "route", None) or "")
        if settings is None or answer.cache != "miss":
            return answer
        tier = call.tier
        target = settings.config.tier
        if tier is None or tier not in self._rank or self._rank[tier] <= self._rank[target]:
            return answer
        if any(a.tier == target for a in call.discarded):  # escalation already tried the cheap tier
            return answer

        async def offer(done: Answer, events: list[dict[str, Any]] | None) -> None:
            try:
                self._offer(call, done, events, settings)
            except Exception:  # noqa: BLE001 - the shadow must never cost the client its answer
                log.exception("shadow: offer for %s failed", call.request_id)

        return await after_answer(answer, offer, collect=answer.events is not None)

    def _offer(self, call: Call, answer: Answer, events: list[dict[str, Any]] | None,
               settings: _RouteShadow) -> None:
        self._count(settings, "eligible")
        if settings.rng.random() >= settings.config.sample:
            return
        self._count(settings, "sampled")
        try:
            body = answer.body if events is None else call.wire.assemble(events)
            reference = call.wire.answer_view(body).text
        except Exception:  # an answer we cannot read: nothing to compare against
            self._count(settings, "failed")
            return
        job = _Job(call, settings, call.route, call.tier, answer.cost, reference, time.time())
        queue = self._ensure_running()
        try:
            queue.put_nowait(job)
        except asyncio.QueueFull:
            self._count(settings, "dropped")

    def _ensure_running(self) -> asyncio.Queue[_Job]:
        if self._queue is None:
            self._queue = asyncio.Queue(self._size)
            self._workers = [asyncio.get_running_loop().create_task(self._work())
                             for _ in range(self._concurrency)]
        return self._queue

    # --- off the path -------------------------------------------------------------------------

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            job = await self._queue.get()
            try:
                await self.shadow(job)
            except Exception:  # a bug here must never reach a client, nor stop the lane
                self._count(job.settings, "failed")
                log.exception("shadow: call %s not shadowed", job.call.request_id)
            finally:
                self._queue.task_done()

    def reseed(self) -> None:
        """Count what each route's shadow calls spent in the current window before a restart (from
        `shadow_outcomes`; a shadow call that failed without an outcome row is not seen). Blocking:
        the gateway runs it in a thread at start."""
        from thrifty.ledger.shadow import select_shadow

        driver = getattr(self.ledger, "driver", None)
        if driver is None:
            return
        for name, settings in self.routes.items():
            found = select_shadow(driver, route=name, since=settings.budget.window_start())
            spent = sum(((o.shadow_cost_usd or ZERO) + (o.judge_cost_usd or ZERO) for o in found), ZERO)
            settings.budget.seed(spent)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until every queued job is done (tests, shutdown)."""
        if self._queue is not None:
            await asyncio.wait_for(self._queue.join(), timeout)

    async def close(self) -> None:
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._workers = []

    async def shadow(self, job: _Job) -> None:
        cfg = job.settings.config
        call = job.call
        route = self.deployments.route(self.router.ranked[cfg.tier][0])
        if job.primary is not None and route.deployment == job.primary.deployment:
            return
        got = await self._send(job, route, cfg.tier, call.body, call.wire, ".shadow", call.stream)
        if got is None:
            return
        text, finish, cost = got
        judge_cost: Decimal | None = None
        features = features_from_body(call.body, call.wire, headers=call.headers, tenant=call.tenant)
        score = self._score(call, features, job.reference, text, finish, cfg.score)
        if score is None:  # the judge
            score, judge_cost = await self._judge(job, text)
        self._count(job.settings, "scored" if score.score is not None else "unscored", score=score.score)
        self.stats.by_method[score.method] = self.stats.by_method.get(score.method, 0) + 1
        outcome = ShadowOutcome(
            request_id=call.request_id, shadow_request_id=call.request_id + ".shadow", at=time.time(),
            tenant=call.tenant, feature=call.feature, route=getattr(call.policy, "route", None),
            request_type=features.request_type, prompt=call.wire.last_user_text(call.body),
            primary_deployment=job.primary.deployment if job.primary is not None else call.model,
            primary_tier=job.primary_tier, primary_cost_usd=job.primary_cost, shadow_deployment=route.deployment,
            shadow_tier=cfg.tier, shadow_cost_usd=cost, judge_cost_usd=judge_cost, method=score.method,
            score=score.score, reason=score.reason)
        driver = getattr(self.ledger, "driver", None)
        if driver is not None:
            await asyncio.to_thread(record_shadow, driver, outcome)

    def _score(self, call: Call, features: Any, reference: str, text: str, finish: str | None,
               mode: str) -> Score | None:
        """The agreement without a model; None when the judge is to be asked."""
        if mode == "judge":
            return None
        if mode == "exact" or (mode == "auto" and features.request_type in EXACT_TYPES):
            return score_exact(reference, text, features.choices)
        schema = call.wire.requested_schema(call.body)
        return score_validator(reference, text, request_type=features.request_type, schema=schema,
                               finish_reason=finish, forced=mode == "validator")

    async def _judge(self, job: _Job, text: str) -> tuple[Score, Decimal | None]:
        from thrifty.wire import get as get_wire

        cfg = job.settings.config
        route = self.deployments.route(self.router.ranked[cfg.judge_tier][0])
        call = job.call
        prompt = call.wire.last_user_text(call.body)
        body = {"model": route.deployment, "messages": judge_messages(prompt, job.reference, text),
                "max_tokens": 16, "temperature": 0}
        got = await self._send(job, route, cfg.judge_tier, body, get_wire("openai"), ".judge", False)
        if got is None:
            return Score("unscored", None, "the judge call was not made"), None
        verdict, _, cost = got
        return read_judgement(verdict), cost

    async def _send(self, job: _Job, route: Any, tier: str, body: Mapping[str, Any], wire: Any, suffix: str,
                    stream: bool) -> tuple[str, str | None, Decimal | None] | None:
        """One shadow (or judge) call within the cap: its text, finish reason and cost; its ledger row."""
        client = job.call
        call = Call(request_id=client.request_id + suffix, tenant=client.tenant, wire=wire,
                    headers=dict(client.headers), body=copy.deepcopy(dict(body)), model=route.deployment, stream=stream,
                    feature=client.feature, user=client.user, task=client.task, call_site=client.call_site,
                    policy=client.policy, tier=tier)
        # The client would not have made this call: its whole cost is spend the lane added.
        call.effects.append(Unrequested("shadow", note="shadow call (learning from live traffic)",
                                        unpriced="unpriced shadow call"))
        self.preparer.prepare(call, route)
        up_wire = route.provider.wire
        est = self.estimator.estimate(call.upstream_body, up_wire, route.model, route.price_provider)
        if not est.capped:  # an uncapped answer has no worst case: send the cap it was priced at
            call.upstream_body = up_wire.with_output_cap(call.upstream_body, est.output_tokens)
        budget = job.settings.budget
        if not budget.reserve(est.usd):
            self._count(job.settings, "over_budget")
            return None
        self._count(job.settings, "sent")
        started = time.time()
        answer: Answer | None = None
        try:
            answer = await self.send(call)
            events = None
            if answer.events is not None:
                events = [e async for e in answer.events]
            whole = answer.body if events is None else wire.assemble(events)
            view = wire.answer_view(whole)
        except Exception as exc:
            cost = answer.cost if answer is not None and answer.complete else None
            budget.settle(est.usd, cost)  # unknown: charged at its worst case
            self._count(job.settings, "failed")
            self._record(client, call, answer, started, status=200 if cost is not None else getattr(exc, "status", 502),
                         error=f"shadow failed: {type(exc).__name__}")
            log.warning("shadow: %s to %s failed: %s", call.request_id, route.deployment, exc)
            return None
        budget.settle(est.usd, answer.cost)
        self.stats.spent_usd += answer.cost if answer.cost is not None else est.usd
        self._record(client, call, answer, started, status=200,
                     error="shadow sample" if suffix == ".shadow" else "shadow judge")
        return view.text, view.finish_reason, answer.cost

    def _record(self, client: Call, call: Call, answer: Answer | None, started: float, *, status: int,
                error: str) -> None:
        """The call's ledger row, in lane `shadow` with the client call's tenant and attribution.
        `status` 200 for an answer the provider billed (also one the lane then could not read)."""
        finished = time.time()
        ex = Exchange(request_id=call.request_id, started_at=started, tenant=client.tenant, surface=client.wire.name,
                      feature=client.feature, user=client.user, task=client.task, call_site=client.call_site,
                      requested_model=client.model, stream=call.stream, status=status, error_type=error,
                      latency_ms=(finished - started) * 1000.0, finished_at=finished, lane="shadow")
        self.recorder.record(ex, call, answer)

    def _count(self, settings: _RouteShadow, event: str, *, score: float | None = None) -> None:
        """One event of the lane (a ShadowStats field), in its stats and on /metrics per route."""
        setattr(self.stats, event, getattr(self.stats, event) + 1)
        if self.metrics is not None:
            self.metrics.shadow_event(settings.name, event, score)

    def snapshot(self) -> dict[str, Any]:
        s = self.stats
        return {"eligible": s.eligible, "sampled": s.sampled, "dropped": s.dropped, "over_budget": s.over_budget,
                "sent": s.sent, "failed": s.failed, "scored": s.scored, "unscored": s.unscored,
                "spent_usd": str(s.spent_usd), "by_method": dict(s.by_method),
                "budget_left_usd": {name: str(r.budget.left()) for name, r in self.routes.items()}}
