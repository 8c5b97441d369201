"""The batch lane: calls that no user waits for, sent through provider batch APIs at their batch price.

Two ways in, one lane:

- a client's own batch (`/v1/batches` with an uploaded file, `/v1/messages/batches`): lane
  `batch`. The client would have had the batch price by itself, so the baseline of its lines is
  the batch price and the batch discount is never counted as Thrifty's saving;
- a single call that can wait (`x-thrifty-defer`, or a route with `defer: true`): lane
  `deferred`, answered 202 with a job id. Thrifty batched it: the difference to the interactive
  price is the `batch` lever's saving (an exact one: same model, same usage).

Every line goes through the levers that make sense for a call nobody waits on, in the flow's
order, when it arrives (`intake`): identity and validation (a bad line is rejected with its line
number, the rest go on), the exact and semantic caches (a hit is answered at once and never
reaches the provider), routing and the one body preparation (`shaping.prepare`: translation to
the provider's dialect, shaping, prompt-cache breakpoints), and the budgets, whose worst case is
held at the batch price until the line's result arrives. Lines are then queued per deployment
and submitted by `tick()`: a client's batch at once, deferred calls once `flush_lines` of them
are queued for a deployment or the oldest has waited `max_wait_s`, within the provider's limits
per batch. `tick()` also polls submitted batches with backoff and maps their results back by
line id into the client's format, with one ledger row per line priced at the batch price.

A provider without a batch API runs the lines through the normal flow instead, a few at a time,
still recorded in their lane (at the interactive price: no batch saving is claimed).

Durability (store.py): every state change is written before the next step, and a submission is
recorded as `submitting` before the provider is asked; after a crash the lane looks it up by
its id at the provider (`BatchAPI.find`) before it would ever submit again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any, Callable, Sequence

import orjson

from thrifty import jsonutil
from thrifty.batch.store import FINAL, BatchStore, Job, Line, Submission
from thrifty.budgets.estimate import Estimator
from thrifty.budgets.scopes import CallScopes
from thrifty.budgets.stage import used_tokens
from thrifty.cache.stage import served_from_cache
from thrifty.contract import (
    AnsweredFromCache, Answer, Batched, BreakpointsAdded, Call, Counted, Effect, ModelMoved, Next, Usage,
)
from thrifty.contract.exchange import Exchange
from thrifty.errors import (
    CacheUnavailable, GatewayError, LineParked, InvalidRequest, NotFound, UpstreamError, error_for_status,
)
from thrifty.providers.batches import BatchAmbiguous, BatchAPI, BatchLine, LineResult, batch_api
from thrifty.routing.stage import ModelRoute
from thrifty.wire import Wire, client_answer
from thrifty.wire.embeddings import local_tokens, parse_request
from thrifty.wire import get as wire_named

log = logging.getLogger("thrifty.batch")

CHAT, EMBEDDINGS = "/v1/chat/completions", "/v1/embeddings"  # the OpenAI batch endpoints the lane serves

ZERO = Decimal(0)
# Client headers kept with a line: those that change how the levers treat it. Never a credential.
_KEPT_HEADERS = ("x-thrifty-cache", "x-thrifty-feature", "x-thrifty-user", "x-thrifty-task", "x-thrifty-call-site")
_EFFECTS: dict[str, type[Effect]] = {cls.__name__: cls for cls in
                                     (AnsweredFromCache, Batched, BreakpointsAdded, Counted, ModelMoved)}
# What a line's final state answers the client, when not a provider's answer.
_EXPIRED = ("batch_expired", "the batch expired before this request was processed")
_CANCELLED = ("batch_cancelled", "the batch was cancelled before this request was processed")


async def _park(call: Call) -> Answer:
    raise LineParked


@dataclass(frozen=True, slots=True)
class Intake:
    """One line as a client sent it: its number, its id and body, in the client's dialect."""

    n: int
    custom_id: str
    body: Any
    error: str | None = None  # a line that could not even be read (bad JSON, missing fields)


def _effects_json(effects: Sequence[Effect]) -> list[list[Any]]:
    out = []
    for e in effects:
        fields = asdict(e)
        for k, v in fields.items():
            if isinstance(v, Decimal):
                fields[k] = format(v, "f")
        out.append([type(e).__name__, fields])
    return out


def _effects_from(data: Sequence[Sequence[Any]]) -> list[Effect]:
    out: list[Effect] = []
    for name, fields in data:
        if name == "AnsweredFromCache" and fields.get("baseline_usd") is not None:
            fields = {**fields, "baseline_usd": Decimal(fields["baseline_usd"])}
        out.append(_EFFECTS[name](**fields))
    return out


def _error_result(wire: Wire, err: GatewayError, request_id: str, outcome: str = "errored") -> dict[str, Any]:
    return {"outcome": outcome, "status_code": err.status, "code": err.code or err.kind,
            "message": err.message, "body": orjson.loads(wire.error_body(err, request_id)),
            "request_id": request_id, "cost_usd": "0"}


class BatchLane:
    """The lane's intake, its worker (`tick`, run every `tick_s` by `run`), cancel and reads."""

    def __init__(self, gateway: Any, flow: Next, stages: dict[str, Any], store: BatchStore, *,
                 apis: Callable[[Any], BatchAPI | None] = batch_api) -> None:
        self.gw = gateway
        self.flow = flow  # the whole flow, for providers without a batch API
        self._stages = stages
        self.store = store
        self.config = gateway.config.batch
        self._apis = apis
        self._route = ModelRoute(gateway.deployments, gateway.router, gateway.preparer)
        self._estimator = Estimator(gateway.prices, gateway.config.budgets.estimate)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._busy: set[str] = set()  # submissions being sent by this process right now
        self._running: set[asyncio.Task[None]] = set()  # lines on the interactive path
        self._gate = asyncio.Semaphore(self.config.interactive_concurrency)
        self.started_at = time.time()

    # -- life ------------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name="thrifty-batch-lane")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        for t in list(self._running):
            t.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        await asyncio.to_thread(self.store.close)

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # the lane must outlive one bad tick (a database blip, a bug)
                log.exception("batch lane: tick failed; trying again at the next one")
            try:
                await asyncio.wait_for(self._wake.wait(), self.config.tick_s)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    def wake(self) -> None:
        self._wake.set()

    # -- intake ----------------------------------------------------------------------------------

    async def create_job(self, *, tenant: str, surface: str, lane: str, endpoint: str, wire: Wire,
                         lines: Sequence[Intake], headers: dict[str, str],
                         attribution: dict[str, str | None], info: dict[str, Any] | None = None,
                         input_file_id: str | None = None, job_id: str | None = None,
                         request_ids: Sequence[str] | None = None, expires_in_s: float | None = None) -> Job:
        """Plan every line and store the job with them, in one transaction.

        A line that fails validation, finds no deployment or no room in a budget is final at
        once (`errored`, its message naming the line number); a cache hit is final at once
        (`succeeded`, recorded in the ledger now); the others are queued for a provider batch.
        """
        now = time.time()
        job = Job(id=job_id or self.gw.new_request_id().replace("thr_", "batch_"), tenant=tenant,
                  surface=surface, lane=lane, endpoint=endpoint, status="in_progress", created_at=now,
                  expires_at=now + (expires_in_s or self.config.completion_window_s), input_file_id=input_file_id,
                  info={**(info or {}), "attribution": attribution})
        kept = {k: v for k, v in headers.items() if k in _KEPT_HEADERS}
        due = now + (self.config.max_wait_s if lane == "deferred" else 0.0)
        planned: list[Line] = []
        for i, item in enumerate(lines):
            rid = request_ids[i] if request_ids is not None else self.gw.new_request_id()
            line = Line(id=rid, job_id=job.id, n=item.n, custom_id=item.custom_id, state="queued", due_at=due,
                        request={"wire": wire.name, "body": item.body, "tenant": tenant, "headers": kept,
                                 **attribution},
                        updated_at=now)
            await self._plan(line, job, item, wire, headers)
            planned.append(line)
            if line.state == "errored" and line.result is not None:  # named in the job by line number
                job.info.setdefault("rejected", []).append(
                    {"code": line.result.get("code"), "message": line.result.get("message"),
                     "param": None, "line": item.n})
        await self.store.run(self.store.add_job, job, planned)
        for line in planned:  # rows of lines already final, once the job is stored
            if line.state == "succeeded" and line.plan and line.plan.get("cached"):
                self._record_cached(line, job)
            elif line.state == "errored":
                self._record(line, job, None, None, line.result or {})
        if any(ln.state == "queued" for ln in planned):
            self.wake()
        else:
            await self._maybe_end(job.id)
        return job

    async def _plan(self, line: Line, job: Job, item: Intake, wire: Wire, headers: dict[str, str]) -> None:
        def reject(err: GatewayError) -> None:
            line.state = "errored"
            line.result = _error_result(wire, err, line.id)
            line.result["message"] = f"line {item.n}: {err.message}"

        if item.error is not None:
            return reject(InvalidRequest(item.error))
        if job.endpoint == EMBEDDINGS:
            try:
                await self._plan_embeddings(line, item, wire, headers)
            except GatewayError as err:
                reject(err)
            return
        try:
            body = item.body
            model, stream = wire.check(body)
            if stream:
                raise InvalidRequest("'stream' is not supported in a batch: the answer is kept until you fetch it",
                                     param="stream")
            call = self._call(line, wire, body, model, headers)
            exact: dict[str, Any] | None = {}
            answer = await self._front(call, exact)
        except LineParked:
            answer = None
        except GatewayError as err:
            return reject(err)
        if answer is not None:  # a cache hit: final now, recorded once the job is stored
            line.state = "succeeded"
            self._cache_effect_for_lane(call, job.lane)
            line.plan = {"cached": answer.cache, "effects": _effects_json(call.effects), "tier": answer.tier,
                         "served_model": answer.served_model}
            line.result = {"outcome": "succeeded", "status_code": 200, "body": answer.body,
                           "request_id": line.id, "cost_usd": "0", "cache": answer.cache}
            return
        route = call.route
        assert route is not None and call.upstream_body is not None
        try:
            held = await self._reserve(call)
        except GatewayError as err:
            return reject(err)
        line.deployment = route.deployment
        line.plan = {"upstream": call.upstream_body, "effects": _effects_json(
                         [*call.effects, *call.attempt_effects, *call.body_effects]),
                     "tier": call.tier, "held": held, "exact": exact or None}

    async def _plan_embeddings(self, line: Line, item: Intake, wire: Wire, headers: dict[str, str]) -> None:
        """An embeddings line: validated as `POST /v1/embeddings` is, sent as is to its deployment
        (no routing: vectors of different models do not compare), held at the batch price of its
        inputs' tokens. Only a provider with a batch API that speaks the client's dialect serves it;
        embeddings lines are not answered from the per-input cache (an interactive call's is)."""
        req = parse_request(item.body)
        route = self.gw.deployments.route(req.model)
        if route.provider.wire is not wire or self._apis(route.provider) is None:
            raise InvalidRequest(f"model {req.model!r}: embeddings lines need a deployment on a provider with a "
                                 "batch API for embeddings (kind: openai)", param="model")
        call = self._call(line, wire, item.body, req.model, headers)
        call.route, call.tier = route, route.tier
        tokens = sum(local_tokens(one) for one in req.inputs)
        cost = self.gw.prices.cost(route.model, Usage(input_tokens=tokens), provider=route.price_provider, batch=True)
        held = await self._hold(call, None if cost is None else cost.total, tokens)
        line.deployment = route.deployment
        line.plan = {"upstream": {**item.body, "model": route.model}, "effects": [], "tier": route.tier,
                     "held": held, "exact": None, "endpoint": EMBEDDINGS}

    def _call(self, line: Line, wire: Wire, body: Any, model: str, headers: dict[str, str]) -> Call:
        req = line.request
        return Call(request_id=line.id, tenant=req["tenant"], wire=wire, headers=headers, body=body, model=model,
                    stream=False, feature=req.get("feature"), user=req.get("user"), task=req.get("task"),
                    call_site=req.get("call_site"),
                    policy=self.gw.policies.for_call(req["tenant"], req.get("feature"), model))

    async def _front(self, call: Call, exact: dict[str, Any]) -> Answer | None:
        """The caches, then routing and body preparation; raises LineParked where the provider would
        be called (the usual case), or returns a cache's answer. `exact` gets the exact cache's
        key and ttl when the line's answer is to be stored there.

        The semantic cache is the flow's own stage: a hit answers the line; on a miss the line's
        answer is not stored there (its store runs on the way back of an interactive call)."""
        gw = self.gw
        policy = call.policy.exact_cache
        decision = None if policy is None else gw.exact_cache.decide(call.body, call.headers, policy)
        if decision is not None and decision.active:
            key = gw.exact_cache.key(call.tenant, call.wire, call.body, policy)
            if decision.read:
                try:
                    entry = await gw.exact_cache.lookup(key)
                except CacheUnavailable as exc:
                    log.warning("batch lane: exact cache unavailable, line goes to the provider: %s", exc)
                    entry = None
                if entry is not None:
                    return served_from_cache(call, entry, "exact")
            if decision.write:
                exact.update(key=key, ttl_s=decision.ttl_s)
        semantic = self._stages.get("semantic_cache")
        if semantic is not None and call.policy.semantic_cache:
            return await semantic(call, self._routed)
        return await self._route(call, _park)

    async def _routed(self, call: Call) -> Answer:
        return await self._route(call, _park)

    async def _reserve(self, call: Call) -> dict[str, Any] | None:
        """Hold the line's worst case at the batch price until its result (None: no budget applies)."""
        enforcer = self.gw.budgets
        scopes = CallScopes.of(call)
        if not enforcer.has_limits(scopes):
            return None
        route, body = call.route, call.upstream_body
        assert route is not None and body is not None
        est = self._estimator.estimate(body, route.provider.wire, route.model, route.price_provider)
        if not est.capped and enforcer.config.estimate.enforce_output_cap and enforcer.needs_bound(scopes):
            cap = call.reserved_output_cap = self._estimator.default_cap(route.model)
            call.upstream_body = route.provider.wire.with_output_cap(body, cap)
        usd = est.usd
        card = self.gw.prices.card(route.model, route.price_provider)
        if usd is not None and card is not None and self._apis(route.provider) is not None:
            usd = usd * card.batch_discount
        return await self._hold(call, usd, est.tokens)

    async def _hold(self, call: Call, usd: Decimal | None, tokens: int) -> dict[str, Any] | None:
        """Hold `usd` / `tokens` on the call's budgets until the line's result arrives."""
        enforcer = self.gw.budgets
        scopes = CallScopes.of(call)
        if not enforcer.has_limits(scopes):
            return None
        r = await enforcer.reserve(scopes, usd, tokens, hold_s=self.config.completion_window_s + 3600,
                                   rate_limits=False)
        if r.downgrade:
            await enforcer.settle_held(enforcer.held(r), ZERO, 0)
            i = next(i for i, a in enumerate(r.applied) if a.budget.name in r.downgraded_by)
            raise enforcer.exceeded(r, i, reason="has no room for this batch line")
        return enforcer.held(r) if r.holds else None

    def _cache_effect_for_lane(self, call: Call, lane: str) -> None:
        """A hit on a client's own batch line saves what the line would have cost at the batch
        price: entries keep the interactive baseline, so it is scaled by the model's batch discount."""
        if lane != "batch":
            return
        for i, e in enumerate(call.effects):
            if isinstance(e, AnsweredFromCache) and e.baseline_usd is not None:
                card = self.gw.prices.card(call.model)
                factor = card.batch_discount if card is not None else Decimal(1)
                call.effects[i] = AnsweredFromCache(e.lever, e.baseline_usd * factor, e.estimated)

    # -- the worker ------------------------------------------------------------------------------

    async def tick(self) -> None:
        """Submit what is due, look up submissions a crash left unrecorded, poll, expire."""
        now = time.time()
        await self._recover_submitting(now)
        await self._submit_due(now)
        await self._poll_due(now)
        await self._expire(now)

    async def _submit_due(self, now: float) -> None:
        for deployment, count, first_due in await self.store.run(self.store.queued_groups):
            if first_due > now and count < self.config.flush_lines:
                continue
            route = self.gw.deployments.get(deployment)
            if route is None:  # the deployment left the config since: the lines cannot go anywhere
                await self._fail_queued(deployment, NotFound(f"deployment {deployment!r} is no longer configured"))
                continue
            api = self._apis(route.provider)
            if api is None:
                await self._run_interactive(deployment, now)
                continue
            lines = await self.store.run(self.store.queued, deployment, api.max_lines)
            endpoint = _endpoint_of(lines[0]) if lines else ""
            lines = [ln for ln in lines if _endpoint_of(ln) == endpoint]  # one endpoint per provider batch
            await self._submit(route, api, _within_bytes(lines, api.max_bytes))

    async def _submit(self, route: Any, api: BatchAPI, lines: list[Line]) -> None:
        if not lines:
            return
        now = time.time()
        sub = Submission(id="thrsub_" + self.gw.new_request_id()[4:], deployment=route.deployment,
                         provider=route.provider.name, state="submitting", lines=len(lines), created_at=now,
                         next_poll_at=now + self.config.poll_min_s, poll_interval_s=self.config.poll_min_s,
                         info={"endpoint": _endpoint_of(lines[0])})
        await self.store.run(self.store.add_submission, sub, [ln.id for ln in lines])
        self._busy.add(sub.id)
        try:
            await self._send(sub, api, lines)
        finally:
            self._busy.discard(sub.id)

    async def _send(self, sub: Submission, api: BatchAPI, lines: Sequence[Line]) -> None:
        batch = [BatchLine(ln.id, (ln.plan or {})["upstream"]) for ln in lines]
        try:
            provider_id = await api.submit(batch, submission_id=sub.id, endpoint=sub.info.get("endpoint", ""))
        except GatewayError as err:
            if err.status < 500 and err.status not in (408, 409, 429):
                # Refused as a whole (a 4xx): nothing was created, and sending it again would be
                # refused again. Every line fails with the provider's reason.
                log.error("batch lane: %s refused submission %s: %s", sub.provider, sub.id, err.message)
                await self._fail_lines(lines, err)
                await self.store.run(self.store.set_submission, sub.id, state="done")
                return
            # Maybe created: left `submitting`, looked up by its id before it is ever sent again.
            log.warning("batch lane: submission %s to %s failed (%s); it is looked up before any resend",
                        sub.id, sub.provider, err.message)
            return
        await self.store.run(self.store.set_submission, sub.id, state="submitted", provider_batch_id=provider_id)
        log.info("batch lane: %d line(s) submitted to %s as %s", len(lines), sub.provider, provider_id)

    async def _recover_submitting(self, now: float) -> None:
        """Submissions recorded as `submitting` but not sent by this process now: a crash (or a
        failed send) between asking the provider and recording its answer. Found at the provider
        by their id: recorded; not found: sent now; more than one candidate: left for an operator."""
        for sub in await self.store.run(self.store.submissions, "submitting"):
            if sub.id in self._busy or now - sub.created_at < 2 * self.config.tick_s:
                continue
            route = self.gw.deployments.get(sub.deployment)
            api = None if route is None else self._apis(route.provider)
            if api is None:
                continue
            known = await self.store.run(self.store.provider_batch_ids, sub.provider)
            try:
                found = await api.find(sub.id, since=sub.created_at, line_count=sub.lines, exclude=known)
            except BatchAmbiguous as exc:
                log.error("batch lane: submission %s: %s; not sent again - set it by hand", sub.id, exc)
                await self.store.run(self.store.set_submission, sub.id, state="ambiguous", info={**sub.info,
                                                                                               "why": str(exc)})
                continue
            except GatewayError as err:
                log.warning("batch lane: could not look up submission %s at %s: %s", sub.id, sub.provider,
                            err.message)
                continue
            if found is not None:
                log.warning("batch lane: submission %s was created at %s as %s before a crash; recorded now",
                            sub.id, sub.provider, found)
                await self.store.run(self.store.set_submission, sub.id, state="submitted", provider_batch_id=found)
                continue
            lines = await self.store.run(self.store.lines_of_submission, sub.id, "submitted")
            self._busy.add(sub.id)
            try:
                await self._send(sub, api, lines)
            finally:
                self._busy.discard(sub.id)

    async def _poll_due(self, now: float) -> None:
        for sub in await self.store.run(self.store.submissions, "submitted"):
            if sub.next_poll_at > now or sub.provider_batch_id is None:
                continue
            route = self.gw.deployments.get(sub.deployment)
            api = None if route is None else self._apis(route.provider)
            if api is None:
                continue
            try:
                status = await api.poll(sub.provider_batch_id)
            except GatewayError as err:
                log.warning("batch lane: polling %s failed: %s", sub.provider_batch_id, err.message)
                status = None
            if status is None or not status.done:
                interval = min(sub.poll_interval_s * 2, self.config.poll_max_s)
                await self.store.run(self.store.set_submission, sub.id, next_poll_at=now + interval,
                                     poll_interval_s=interval)
                continue
            await self._collect(sub, route, api)

    async def _collect(self, sub: Submission, route: Any, api: BatchAPI) -> None:
        """Map a finished provider batch's results back to its lines (idempotent: a line already
        final is skipped, so reading the results again after a crash changes nothing)."""
        assert sub.provider_batch_id is not None
        chunk: list[LineResult] = []
        seen = 0
        async for result in api.results(sub.provider_batch_id):
            chunk.append(result)
            if len(chunk) >= 500:
                seen += await self._apply(chunk, route)
                chunk = []
        if chunk:
            seen += await self._apply(chunk, route)
        # Lines the provider said nothing of (it should not happen): expired, never billed.
        missing = await self.store.run(self.store.lines_of_submission, sub.id, "submitted")
        if missing:
            log.error("batch lane: %s returned no result for %d line(s); recorded as expired",
                      sub.provider_batch_id, len(missing))
            await self._apply([LineResult(ln.id, "expired", None, {"code": _EXPIRED[0], "message": _EXPIRED[1]},
                                          None) for ln in missing], route)
        await self.store.run(self.store.set_submission, sub.id, state="done")
        for job_id in await self.store.run(self.store.jobs_of_submission, sub.id):
            await self._maybe_end(job_id)

    async def _apply(self, results: Sequence[LineResult], route: Any) -> int:
        lines = {ln.id: ln for ln in await self.store.run(self.store.lines, [r.custom_id for r in results])}
        jobs: dict[str, Job | None] = {}
        done: list[tuple[str, str, dict[str, Any]]] = []
        after: list[tuple[Line, Job, Answer | None, Call | None, dict[str, Any]]] = []
        for r in results:
            line = lines.get(r.custom_id)
            if line is None or line.state in FINAL:
                continue
            if line.job_id not in jobs:
                jobs[line.job_id] = await self.store.run(self.store.get_job, line.job_id)
            job = jobs[line.job_id]
            if job is None:
                continue
            answer, call, result = self._outcome(line, job, r, route)
            done.append((line.id, result["outcome"], result))
            after.append((line, job, answer, call, result))
        # The ledger rows first (journaled, so durable once record() returns), the lines' final state
        # after: a crash in between leaves the lines open, their results are read again at the next
        # poll, and recording them again changes nothing (a ledger row is written once per request
        # id, a settled hold settles no more, a cache entry is overwritten with the same answer).
        # The other order could lose a billed line's row.
        for line, job, answer, call, result in after:
            await self._settle(line, answer, call, job, result)
        changed = await self.store.run(self.store.finish, done)
        return len(changed)

    def _outcome(self, line: Line, job: Job, r: LineResult, route: Any
                 ) -> tuple[Answer | None, Call | None, dict[str, Any]]:
        wire = wire_named(line.request["wire"])
        if r.outcome == "succeeded" and r.body is not None:
            try:
                body, usage = client_answer(wire, route.provider.wire, r.body, route.model)
            except Exception as exc:  # an answer we cannot read: the provider billed it, say so
                log.exception("batch lane: line %s: unreadable answer", line.id)
                err = UpstreamError(f"the provider's answer could not be read: {type(exc).__name__}")
                return None, None, _error_result(wire, err, line.id)
            cost = self.gw.prices.cost(route.model, usage, provider=route.price_provider, batch=True)
            answer = Answer(body=body, usage=usage, cost=None if cost is None else cost.total, complete=True)
            call = self._rebuilt_call(line, wire, route)
            effects = [*call.effects]
            if job.lane == "deferred":
                effects.append(Batched("batch"))  # innermost: the provider billed the batch price
            answer.accounting = self.gw.accountant.account(
                effects, model=route.model, provider=route.price_provider, usage=usage, actual=answer.cost,
                batch_priced=job.lane == "batch")
            return answer, call, {"outcome": "succeeded", "status_code": 200, "body": body, "request_id": line.id,
                                  "cost_usd": "unknown" if answer.cost is None else format(answer.cost, "f")}
        if r.outcome in ("expired", "cancelled"):
            code, message = _EXPIRED if r.outcome == "expired" else _CANCELLED
            err: GatewayError = UpstreamError(message, status=504 if r.outcome == "expired" else 409, code=code)
            return None, None, _error_result(wire, err, line.id, r.outcome)
        error = r.error or {}
        message = str(error.get("message") or "the provider refused this request")
        err = error_for_status(r.status_code or 400, route.provider.upstream_message(message))
        return None, None, _error_result(wire, err, line.id)

    def _rebuilt_call(self, line: Line, wire: Wire, route: Any) -> Call:
        req, plan = line.request, line.plan or {}
        call = Call(request_id=line.id, tenant=req["tenant"], wire=wire, headers=dict(req.get("headers") or {}),
                    body=req["body"], model=req["body"].get("model", ""), stream=False,
                    feature=req.get("feature"), user=req.get("user"), task=req.get("task"),
                    call_site=req.get("call_site"), route=route, tier=plan.get("tier"),
                    upstream_body=plan.get("upstream"))
        call.effects = _effects_from(plan.get("effects") or [])
        return call

    async def _settle(self, line: Line, answer: Answer | None, call: Call | None, job: Job,
                      result: dict[str, Any]) -> None:
        """A line just became final: its ledger row, its budget hold settled, the caches filled."""
        plan = line.plan or {}
        held = plan.get("held")
        if held:
            usd = answer.cost if answer is not None else ZERO
            tokens = used_tokens(answer.usage) if answer is not None else 0
            await self.gw.budgets.settle_held(held, usd, tokens)
        self._record(line, job, answer, call, result)
        if answer is not None and call is not None:
            await self._fill_caches(line, call, answer)

    def _record(self, line: Line, job: Job, answer: Answer | None, call: Call | None,
                result: dict[str, Any]) -> None:
        req = line.request
        now = time.time()
        ex = Exchange(request_id=line.id, started_at=job.created_at, tenant=req["tenant"],
                      surface=req["wire"], feature=req.get("feature"), user=req.get("user"), task=req.get("task"),
                      call_site=req.get("call_site"), requested_model=_model_of(req["body"]), stream=False,
                      status=int(result.get("status_code") or 0), lane=job.lane, finished_at=now,
                      latency_ms=(now - job.created_at) * 1000.0)
        if result["outcome"] != "succeeded":
            ex.error_type = str(result.get("code") or "batch_error")
            # Refused up front, failed, expired or cancelled: no provider bills such a line (OpenAI
            # and Anthropic bill the requests of a batch that succeeded). A line that failed on the
            # interactive path is priced as any interactive call is.
            ex.not_billed = not result.get("interactive")
        if call is None and line.deployment is not None:
            route = self.gw.deployments.get(line.deployment)
            if route is not None:
                call = Call(request_id=line.id, tenant=req["tenant"], wire=wire_named(req["wire"]), headers={},
                            body={}, model=ex.requested_model or "", stream=False, route=route,
                            tier=(line.plan or {}).get("tier"))
        self.gw.recorder.record(ex, call, answer)

    def _record_cached(self, line: Line, job: Job) -> None:
        plan = line.plan or {}
        req = line.request
        wire = wire_named(req["wire"])
        call = Call(request_id=line.id, tenant=req["tenant"], wire=wire, headers={}, body=req["body"],
                    model=_model_of(req["body"]) or "", stream=False)
        call.effects = _effects_from(plan.get("effects") or [])
        answer = Answer(body=(line.result or {}).get("body"), cost=ZERO, cache=plan["cached"], complete=True,
                        served_model=plan.get("served_model"), tier=plan.get("tier"))
        self._record(line, job, answer, call, line.result or {})

    async def _fill_caches(self, line: Line, call: Call, answer: Answer) -> None:
        exact = (line.plan or {}).get("exact")
        if not exact or answer.body is None:
            return
        gw, route = self.gw, call.route
        # Entries keep the interactive baseline (what an interactive repeat would have cost).
        cost = gw.prices.cost(route.model, answer.usage, provider=route.price_provider)
        base = gw.accountant.account(call.effects, model=route.model, provider=route.price_provider,
                                     usage=answer.usage, actual=None if cost is None else cost.total)
        entry = gw.exact_cache.entry(call.wire, answer.body, answer.usage, answer.cost, served_model=call.route.model,
                                     tier=call.tier, ttl_s=exact["ttl_s"], baseline_usd=base.baseline_usd)
        try:
            await gw.exact_cache.store(exact["key"], entry, exact["ttl_s"])
        except CacheUnavailable as exc:
            log.warning("batch lane: exact cache unavailable, answer not stored: %s", exc)

    async def _fail_lines(self, lines: Sequence[Line], err: GatewayError) -> None:
        done, by_id = [], {ln.id: ln for ln in lines}
        for ln in lines:
            done.append((ln.id, "errored", _error_result(wire_named(ln.request["wire"]), err, ln.id)))
        changed = set(await self.store.run(self.store.finish, done))
        jobs: dict[str, Job | None] = {}
        for line_id, _, result in done:
            if line_id not in changed:
                continue
            line = by_id[line_id]
            if line.job_id not in jobs:
                jobs[line.job_id] = await self.store.run(self.store.get_job, line.job_id)
            job = jobs[line.job_id]
            if job is not None:
                await self._settle(line, None, None, job, result)
        for job_id in jobs:
            await self._maybe_end(job_id)

    async def _fail_queued(self, deployment: str, err: GatewayError) -> None:
        await self._fail_lines(await self.store.run(self.store.queued, deployment, 100_000), err)

    # -- providers without a batch API -----------------------------------------------------------

    async def _run_interactive(self, deployment: str, now: float) -> None:
        free = self.config.interactive_concurrency * 4 - len(self._running)
        if free <= 0:
            return
        lines = await self.store.run(self.store.queued, deployment, free)
        moved = await self.store.run(self.store.mark, [ln.id for ln in lines], "running")
        if not moved:
            return
        for line in lines:
            task = asyncio.get_running_loop().create_task(self._interactive(line))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _interactive(self, line: Line) -> None:
        """One line through the whole flow, as an interactive call would go (its own budget hold
        replaces the lane's, which is released first)."""
        async with self._gate:
            job = await self.store.run(self.store.get_job, line.job_id)
            if job is None:
                return
            held = (line.plan or {}).get("held")
            if held:
                await self.gw.budgets.settle_held(held, ZERO, 0)
                line.plan = {**(line.plan or {}), "held": None}
            wire = wire_named(line.request["wire"])
            body = line.request["body"]
            call = Call(request_id=line.id, tenant=line.request["tenant"], wire=wire,
                        headers=dict(line.request.get("headers") or {}), body=body, model=_model_of(body) or "",
                        stream=False, feature=line.request.get("feature"), user=line.request.get("user"),
                        task=line.request.get("task"), call_site=line.request.get("call_site"),
                        policy=self.gw.policies.for_call(line.request["tenant"], line.request.get("feature"),
                                                         _model_of(body) or ""))
            try:
                answer = await self.flow(call)
                result = {"outcome": "succeeded", "status_code": 200, "body": answer.body, "request_id": line.id,
                          "cost_usd": "unknown" if answer.cost is None else format(answer.cost, "f"),
                          "cache": answer.cache}
            except GatewayError as err:
                answer, result = None, {**_error_result(wire, err, line.id), "interactive": True}
            except Exception as exc:  # a bug of ours: the line fails, the lane goes on
                log.exception("batch lane: line %s failed on the interactive path", line.id)
                answer, result = None, {**_error_result(
                    wire, UpstreamError(f"internal error: {type(exc).__name__}"), line.id), "interactive": True}
            # Recorded before the line is final, as in _apply: the provider billed this call.
            self._record(line, job, answer, call if answer is not None else None, result)
            await self.store.run(self.store.finish, [(line.id, result["outcome"], result)])
            await self._maybe_end(job.id)

    # -- cancel, expiry, the end of a job --------------------------------------------------------

    async def cancel(self, job: Job) -> Job:
        """Lines not yet sent are cancelled now (their holds released); a provider batch holding
        only this job's lines is cancelled there, and its results say which lines it still ran."""
        if job.status != "in_progress":
            return job
        await self.store.run(self.store.set_job, job.id, cancel_requested=True)
        job.cancel_requested = True
        queued = await self.store.run(self.store.queued_of_job, job.id)
        await self._end_lines(queued, "cancelled", job)
        for sub in await self.store.run(self.store.submissions, "submitted"):
            jobs = await self.store.run(self.store.jobs_of_submission, sub.id)
            if jobs != [job.id] or sub.provider_batch_id is None:
                continue  # shared with other jobs' lines (coalesced deferred calls): it runs on
            route = self.gw.deployments.get(sub.deployment)
            api = None if route is None else self._apis(route.provider)
            if api is not None:
                try:
                    await api.cancel(sub.provider_batch_id)
                except GatewayError as err:
                    log.warning("batch lane: cancelling %s failed: %s", sub.provider_batch_id, err.message)
                await self.store.run(self.store.set_submission, sub.id, next_poll_at=time.time())
        self.wake()
        await self._maybe_end(job.id)
        return await self.store.run(self.store.get_job, job.id) or job

    async def _end_lines(self, lines: Sequence[Line], outcome: str, job: Job) -> None:
        code, message = _EXPIRED if outcome == "expired" else _CANCELLED
        err = UpstreamError(message, status=504 if outcome == "expired" else 409, code=code)
        done = [(ln.id, outcome, _error_result(wire_named(ln.request["wire"]), err, ln.id, outcome)) for ln in lines]
        changed = set(await self.store.run(self.store.finish, done, only_from=("queued",)))
        by_id = {ln.id: ln for ln in lines}
        for line_id, _, result in done:
            if line_id in changed:
                await self._settle(by_id[line_id], None, None, job, result)

    async def _expire(self, now: float) -> None:
        for job in await self.store.run(self.store.expired_jobs, now):
            await self._end_lines(await self.store.run(self.store.queued_of_job, job.id), "expired", job)
            await self._maybe_end(job.id)

    async def _maybe_end(self, job_id: str) -> None:
        counts = await self.store.run(self.store.counts, job_id)
        if any(counts.get(s) for s in ("queued", "running", "submitted")):
            return
        job = await self.store.run(self.store.get_job, job_id)
        if job is None or job.status != "in_progress":
            return
        await self.store.run(self.store.set_job, job_id, status="ended", ended_at=time.time())
        hook = job.info.get("webhook")
        if hook:
            asyncio.get_running_loop().create_task(self._notify(hook, job_id))

    async def _notify(self, url: str, job_id: str) -> None:
        from thrifty.batch.webhook import post_webhook

        job = await self.store.run(self.store.get_job, job_id)
        if job is not None:
            await post_webhook(url, await self.job_view(job))

    # -- reads -----------------------------------------------------------------------------------

    async def job_view(self, job: Job) -> dict[str, Any]:
        """A deferred call's job as `GET /v1/thrifty/jobs/{id}` answers it."""
        lines = await self.store.run(self.store.lines_of_job, job.id)
        line = lines[0] if lines else None
        status = {"queued": "queued", "running": "in_progress", "submitted": "in_progress"}.get(
            line.state if line else "", line.state if line else "unknown")
        result = (line.result if line else None) or {}
        return {"id": job.id, "object": "thrifty.job", "status": "completed" if status == "succeeded" else status,
                "lane": job.lane, "created_at": int(job.created_at),
                "completed_at": None if job.ended_at is None else int(job.ended_at),
                "request_id": None if line is None else line.id,
                "model": None if line is None else _model_of(line.request["body"]),
                "response": result.get("body") if result.get("outcome") == "succeeded" else None,
                "error": result.get("body") if result and result.get("outcome") != "succeeded" else None,
                "cost_usd": result.get("cost_usd")}


def _model_of(body: Any) -> str | None:
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else None


def _endpoint_of(line: Line) -> str:
    """The OpenAI batch `url` of a line: chat, unless the line is an embeddings request."""
    return (line.plan or {}).get("endpoint") or CHAT


def _within_bytes(lines: list[Line], max_bytes: int) -> list[Line]:
    """The longest prefix of `lines` whose upstream bodies fit a provider batch of `max_bytes`
    (with room for each line's envelope)."""
    out, size = [], 0
    for ln in lines:
        size += len(jsonutil.dumps((ln.plan or {}).get("upstream"))) + 200
        if out and size > max_bytes:
            break
        out.append(ln)
    return out

