"""`POST /v1/embeddings` (OpenAI's shape): validated, exact-cached per input, forwarded, priced, recorded.

Each input (a string, or a list of token ids) is cached on its own, keyed by the tenant (or the
route's shared namespace), the model asked for, `dimensions`, `encoding_format` and the input
itself. A request with some inputs cached sends only the others upstream; the answer is put back
together in the client's order, with the usage of every input (what the client would have been
told had it sent them all). The ledger row has what the provider billed (the inputs sent
upstream) and the saving of the cached ones as the `exact_cache` lever, priced at the model's
input rate; a request answered wholly from the cache is a `cache: exact` row of cost 0.

The per-input token count a cache entry keeps is the provider's when the input went upstream
alone, otherwise the gateway's count with cl100k_base (the text-embedding-3 models' tokenizer).
Deterministic by nature, embeddings are cached without the chat cache's temperature rule;
`x-thrifty-cache-control` (no-cache, no-store, ttl=N) and the route's exact-cache switch apply.
Budgets hold the worst case of the inputs sent upstream and settle at the provider's count (a
soft budget without room refuses: embeddings have no cheaper tier).

Upstream failures get chat's reliability policy (`providers.reliability`: retries with backoff,
breakers, the deadline, 429 cool-downs), with one difference in where a call may move: only to
another deployment of the same model (OpenAI's and Azure's `text-embedding-3-small`, say), since
vectors of different models are not comparable. `reliability.fallback: off` keeps every call on
its deployment; `fallback_max_price_ratio` applies as for chat. An attempt cut after it reached the
provider is reported as a discarded attempt (its own ledger row, cost unknown).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import orjson

from thrifty import jsonutil
from thrifty.api import attribution
from thrifty.api.asgi import Receive, Scope, Send, parse_json, read_body, send_response
from thrifty.api.chat import (
    ATTRIBUTION_HEADERS,
    check_attribution,
    format_usd,
    request_hash,
)
from thrifty.budgets.scopes import CallScopes
from thrifty.cache.keys import CACHE_CONTROL_HEADER, parse_cache_control
from thrifty.contract import Answer, Attempt, Call, LeverSaving, Usage
from thrifty.core.gateway import Gateway
from thrifty.core.recorder import Exchange
from thrifty.errors import (
    UPSTREAM_INTERRUPTED,
    CacheUnavailable,
    GatewayError,
    GiveUp,
    InvalidRequest,
    UpstreamError,
)
from thrifty.pricing import Accounting
from thrifty.providers.deployments import Route
from thrifty.providers.reliability import RetryPlan, deadline_error
from thrifty.wire import OPENAI_CHAT, Wire
from thrifty.wire.embeddings import (  # noqa: F401 (parse_request re-exported for callers of this module)
    EmbeddingRequest, is_int as _is_int, local_tokens, parse_request,
)

log = logging.getLogger("thrifty.api")

SURFACE = "openai.embeddings"
# Which providers serve embeddings, and where (a path under their base_url).
EMBEDDINGS_PATH: dict[Wire, str] = {OPENAI_CHAT: "/embeddings"}
KEY_VERSION = "e1"
ZERO = Decimal(0)


def cache_key(scope: tuple[str, str], req: EmbeddingRequest, one: str | list[int]) -> str:
    doc = (KEY_VERSION, scope, req.model, req.dimensions, req.encoding_format or "float", one)
    return "x1:emb:" + hashlib.sha256(orjson.dumps(doc)).hexdigest()


async def handle_embeddings(gw: Gateway, scope: Scope, receive: Receive, send: Send,
                            headers: dict[str, str]) -> None:
    wire = OPENAI_CHAT
    started, clock0 = time.time(), time.perf_counter()
    rid = gw.new_request_id()
    try:
        tenant = await gw.tenant_for(wire.api_key(headers))
    except GatewayError as err:  # no valid key: answered, not recorded (no tenant to charge)
        await send_response(send, err.status, wire.error_body(err, rid), {"x-thrifty-request-id": rid})
        return
    cap = gw.config.server.max_attribution_chars
    clip = {name: (v[:cap] if (v := headers.get(name)) is not None else None) for name in ATTRIBUTION_HEADERS}
    ex = Exchange(request_id=rid, started_at=started, tenant=tenant, surface=SURFACE,
                  feature=clip["x-thrifty-feature"], user=clip["x-thrifty-user"], task=_clipped(attribution.header_task(headers), cap),
                  call_site=clip["x-thrifty-call-site"])
    gw.recorder.begin(ex)
    call: Call | None = None
    answer: Answer | None = None
    try:
        check_attribution(headers, cap)
        server = gw.config.server
        raw = await read_body(receive, headers, server.max_body_bytes, server.body_timeout_s)
        body = parse_json(raw, server.max_json_depth)
        req = parse_request(body)
        ex.requested_model, ex.request_hash = req.model, request_hash(body)
        if ex.user is None and req.user is not None:
            ex.user = req.user[:cap]
        route = gw.deployments.route(req.model)
        if route.provider.wire not in EMBEDDINGS_PATH:
            raise InvalidRequest(f"model {req.model!r} is served by {route.provider.name}, which has no "
                                 "embeddings endpoint", param="model", code="model_not_supported")
        call = Call(request_id=rid, tenant=tenant, wire=wire, headers=headers, body=body, model=req.model,
                    stream=False, feature=ex.feature, user=ex.user, task=ex.task, call_site=ex.call_site,
                    policy=gw.policies.for_call(tenant, ex.feature, req.model), route=route)
        answer = await _embed(gw, call, req)
        route = call.route  # the deployment that served it, after any fallback
        ex.status = 200
        extra = {"x-thrifty-request-id": rid, "x-thrifty-cost-usd": format_usd(answer.cost),
                 "x-thrifty-saved-usd": format_usd(_saved(answer)), "x-thrifty-model": route.model,
                 "x-thrifty-tier": route.tier or "", "x-thrifty-cache": answer.cache, **call.extra_headers}
        payload = jsonutil.dumps(answer.body)
        _record(gw, ex, clock0, call, answer)
        await send_response(send, 200, payload, extra)
    except GatewayError as err:
        await _fail(gw, send, ex, clock0, call, answer, err)
    except Exception as exc:  # a bug of ours: answer cleanly and keep the ledger row
        log.exception("unhandled error in request %s", rid)
        await _fail(gw, send, ex, clock0, call, answer,
                    UpstreamError(f"internal gateway error: {type(exc).__name__}", status=500))


def _clipped(value: str | None, cap: int) -> str | None:
    return value if value is None else value[:cap]


def _saved(answer: Answer) -> Decimal | None:
    a = answer.accounting
    if a is None or a.baseline_usd is None or answer.cost is None:
        return None
    return a.baseline_usd - answer.cost


def _record(gw: Gateway, ex: Exchange, clock0: float, call: Call | None, answer: Answer | None) -> None:
    ex.finished_at = time.time()
    ex.latency_ms = (time.perf_counter() - clock0) * 1000.0
    gw.recorder.record(ex, call, answer)


async def _fail(gw: Gateway, send: Send, ex: Exchange, clock0: float, call: Call | None, answer: Answer | None,
                err: GatewayError) -> None:
    ex.status, ex.error_type = err.status, err.kind
    _record(gw, ex, clock0, call, answer)
    headers = {"x-thrifty-request-id": ex.request_id, "x-thrifty-cost-usd": "0", "x-thrifty-saved-usd": "0"}
    if err.retry_after:
        headers["retry-after"] = err.retry_after
    await send_response(send, err.status, OPENAI_CHAT.error_body(err, ex.request_id), headers)


async def _embed(gw: Gateway, call: Call, req: EmbeddingRequest) -> Answer:
    route = call.route
    policy = call.policy.exact_cache
    control = parse_cache_control(call.headers.get(CACHE_CONTROL_HEADER))
    ttl = 0 if policy is None else (policy.ttl_s if control.ttl_s is None else min(control.ttl_s, policy.max_ttl_s))
    use_cache = policy is not None
    read = use_cache and not control.no_cache
    write = use_cache and not control.no_store and ttl > 0
    scope = ("tenant", call.tenant) if policy is None or policy.namespace is None else ("shared", policy.namespace)
    keys = [cache_key(scope, req, one) for one in req.inputs]
    found: dict[int, tuple[Any, int]] = {}  # input index -> (embedding as served, its tokens)
    cache_state = "miss" if use_cache else "bypass"
    if read:
        try:
            for i, key in enumerate(keys):
                hit = await gw.exact_cache.backend.get(key)
                if hit is not None:
                    entry = orjson.loads(hit)
                    found[i] = (entry["embedding"], int(entry["tokens"]))
        except CacheUnavailable as exc:  # fail open: everything goes upstream
            log.warning("exact cache unavailable, embedding upstream: %s", exc)
            found, cache_state, write = {}, "unavailable", False
        except (ValueError, KeyError, TypeError):
            log.warning("exact cache: ignoring a corrupt embedding entry")
            found = {}
    missing = [i for i in range(len(req.inputs)) if i not in found]
    served: dict[int, tuple[Any, int]] = dict(found)
    upstream_tokens, model_name = 0, route.model
    if missing:
        body: dict[str, Any] = {"model": route.model, "input": [req.inputs[i] for i in missing]}
        for k in ("encoding_format", "dimensions", "user"):
            v = getattr(req, k)
            if v is not None:
                body[k] = v
        resp = await _budgeted(gw, call, lambda: _upstream(gw, call, body),
                               sum(local_tokens(req.inputs[i]) for i in missing))
        route = call.route  # another deployment of the model when the first one failed
        provider = route.provider
        data, usage = resp.get("data"), resp.get("usage") or {}
        if not isinstance(data, list) or len(data) != len(missing):
            raise UpstreamError(f"{provider.name}: the embeddings answer has {len(data or [])} embeddings "
                                f"for {len(missing)} inputs")
        upstream_tokens = usage.get("prompt_tokens") if _is_int(usage.get("prompt_tokens")) else 0
        model_name = resp.get("model") or route.model
        for item in data:
            j = item.get("index") if isinstance(item, dict) else None
            if not _is_int(j) or not 0 <= j < len(missing) or "embedding" not in item:
                raise UpstreamError(f"{provider.name}: an embedding in its answer has no valid index")
            i = missing[j]
            tokens = upstream_tokens if len(missing) == 1 else local_tokens(req.inputs[i])
            served[i] = (item["embedding"], tokens)
        if write:
            try:
                for i in missing:
                    emb, tokens = served[i]
                    await gw.exact_cache.backend.set(keys[i], orjson.dumps({"embedding": emb, "tokens": tokens}), ttl)
            except CacheUnavailable as exc:
                log.warning("exact cache unavailable, embeddings not stored: %s", exc)
    cached_tokens = sum(t for _, t in found.values())
    total_tokens = upstream_tokens + cached_tokens
    out = {"object": "list",
           "data": [{"object": "embedding", "index": i, "embedding": served[i][0]} for i in range(len(req.inputs))],
           "model": model_name, "usage": {"prompt_tokens": total_tokens, "total_tokens": total_tokens}}
    cost = _price(gw, route, upstream_tokens) if missing else ZERO
    baseline = _price(gw, route, total_tokens)
    levers: tuple[LeverSaving, ...] = ()
    if found:
        levers = (LeverSaving("exact_cache", None if baseline is None or cost is None else baseline - cost),)
    answer = Answer(body=out, usage=Usage(input_tokens=upstream_tokens), cost=cost,
                    cache="exact" if not missing else cache_state,
                    served_model=route.model if not missing else None, tier=route.tier if not missing else None)
    answer.accounting = Accounting(baseline, route.model, levers, ZERO)
    return answer


async def _upstream(gw: Gateway, call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """The provider's answer, through the reliability policy; `call.route` ends as the deployment
    that answered (see the module docstring for where a retry may go)."""
    rel = gw.reliability
    if not rel.config.enabled:
        return await _post(call.route, body, call.headers, None, rel.config.deadline_s)
    started = rel.clock()
    plan: RetryPlan | None = None
    if not rel.breakers.allow(call.route.deployment):
        plan = _plan(gw, call.route, started)
        call.route = gw.deployments.routes[plan.start()]
    deadline = rel.deadline_from(started)
    while True:
        route, sent_at = call.route, time.time()
        try:
            resp = await _post(route, body, call.headers, deadline, rel.config.deadline_s, rel.clock)
        except GatewayError as err:
            plan = plan or _plan(gw, route, started)
            try:
                name, delay = plan.after(err)
            except GiveUp:
                raise err from None
            if err.code == UPSTREAM_INTERRUPTED:  # it reached the provider, which may bill it
                call.discarded.append(Attempt(why=f"retried: {err.message}"[:500], deployment=route, tier=route.tier,
                                              usage=Usage(), cost=None, started_at=sent_at, finished_at=time.time(),
                                              retries=call.retries, status=err.status))
            if delay > 0:
                await rel.sleep(delay)
            call.route = gw.deployments.routes[name]
            call.retries += 1
            continue
        rel.breakers.success(route.deployment)
        return resp


def _plan(gw: Gateway, route: Route, started: float) -> RetryPlan:
    """Retries for a call on `route`: its peers are the other deployments of the same model that
    serve embeddings, cheapest first (the client named the model, and it stays that model)."""
    peers: dict[str, Route] = {}
    for r in gw.deployments.routes.values():  # aliases point at the same Route objects
        if r.model == route.model and r.provider.wire in EMBEDDINGS_PATH:
            peers.setdefault(r.deployment, r)
    price_of = {name: _price(gw, r, 1_000_000) for name, r in peers.items()}
    ranked = sorted(peers, key=lambda n: (price_of[n] is None, price_of[n] or ZERO, n))
    return gw.reliability.plan(route.deployment, ranked, started, routed=True, price_of=price_of)


async def _post(route: Route, body: dict[str, Any], headers: dict[str, str], deadline: float | None,
                deadline_s: float | None, clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """One attempt on `route`, cut at the call's deadline."""
    provider = route.provider
    url = provider.endpoint(EMBEDDINGS_PATH[provider.wire], model=route.model)
    if deadline is None:
        return await provider.post_json(url, body, headers)
    left = deadline - clock()
    if left <= 0:
        raise deadline_error(route.deployment, deadline_s)
    try:
        async with asyncio.timeout(left):
            return await provider.post_json(url, body, headers)
    except TimeoutError:
        raise deadline_error(route.deployment, deadline_s) from None


async def _budgeted(gw: Gateway, call: Call, send: Callable[[], Awaitable[dict[str, Any]]],
                    worst_tokens: int) -> dict[str, Any]:
    """The upstream answer, sent within the call's budgets: its worst case (the inputs sent, counted
    with cl100k_base) is held first, and settled at what the provider reported (`usage`)."""
    enforcer, scopes = gw.budgets, CallScopes.of(call)
    if not enforcer.has_limits(scopes):
        return await send()
    r = await enforcer.reserve(scopes, _price(gw, call.route, worst_tokens), worst_tokens)
    if r.downgrade:  # a soft budget with no room: embeddings have no cheaper tier to move to
        await enforcer.release(r)
        i = next(i for i, a in enumerate(r.applied) if a.budget.name in r.downgraded_by)
        raise enforcer.exceeded(r, i, reason="has no room for this call and it has no cheaper tier")
    call.extra_headers.update(r.headers())
    try:
        resp = await send()
    except BaseException as exc:
        if getattr(exc, "code", None) == UPSTREAM_INTERRUPTED:  # reached the provider: maybe billed
            await enforcer.settle(r, r.worst_usd, r.worst_tokens)
        else:
            await enforcer.release(r)
        raise
    tokens = (resp.get("usage") or {}).get("prompt_tokens")
    tokens = tokens if _is_int(tokens) else worst_tokens
    await enforcer.settle(r, _price(gw, call.route, tokens), tokens)
    return resp


def _price(gw: Gateway, route: Any, tokens: int) -> Decimal | None:
    cost = gw.prices.cost(route.model, Usage(input_tokens=tokens), provider=route.price_provider)
    return None if cost is None else cost.total
