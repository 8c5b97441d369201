"""The gateway's ASGI application: a fixed route table, no framework on the hot path."""

from __future__ import annotations

import asyncio
import logging

from thrifty import jsonutil
from thrifty.api import openapi, small
from thrifty.api.admin import AdminAPI
from thrifty.api.asgi import Receive, Scope, Send, header_map, read_body, send_response
from thrifty.api.batches import BatchSurfaces
from thrifty.api.dashboard import Dashboard
from thrifty.api.chat import handle_chat
from thrifty.api.embeddings import handle_embeddings
from thrifty.api.responses_store import PREFIX as RESPONSES_PREFIX, ResponsesSurface, open_responses_store
from thrifty.wire import ANTHROPIC_MESSAGES, OPENAI_CHAT, Wire
from thrifty.batch import open_lane
from thrifty.core.flow import build_flow
from thrifty.core.gateway import Gateway
from thrifty.errors import AuthenticationFailed, GatewayError, InvalidRequest, NotFound
from thrifty.ledger import RowFilter
from thrifty.ledger.outcomes import OUTCOMES, record_outcome

log = logging.getLogger("thrifty.api")

# Routes outside the chat table, by path: the methods they take (405 with Allow for the others).
_OTHER_ROUTES: dict[str, tuple[str, ...]] = {
    "/v1/thrifty/feedback": ("POST",), "/v1/models": ("GET",), "/models": ("GET",),
    "/openapi.json": ("GET",), "/v1/embeddings": ("POST",), "/embeddings": ("POST",),
    "/v1/messages/count_tokens": ("POST",), "/v1/responses": ("POST",),
    "/metrics": ("GET",),
}


class GatewayApp:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.flow, self.stages = build_flow(gateway)
        # The batch lane (thrifty.batch): /v1/batches, /v1/files, /v1/messages/batches, deferred calls.
        self.lane = open_lane(gateway, self.flow, self.stages)
        self.batches = BatchSurfaces(gateway, self.lane)
        self.admin = AdminAPI(gateway, self.stages)
        self.dashboard = Dashboard(gateway)
        self._chat: dict[tuple[str, str], Wire] = {
            ("POST", "/v1/chat/completions"): OPENAI_CHAT,
            ("POST", "/chat/completions"): OPENAI_CHAT,
            ("POST", "/v1/messages"): ANTHROPIC_MESSAGES,
        }
        # POST /v1/responses: served by translation to chat, through the response store when on.
        self.responses = ResponsesSurface(gateway, open_responses_store(gateway.config.responses))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        headers = header_map(scope)
        wire = self._chat.get((method, path))
        if wire is not None:
            await handle_chat(self.gateway, self.flow, wire, scope, receive, send, headers,
                              self.batches.defer if self.lane is not None else None)
        elif method == "POST" and path == "/v1/responses":
            await self.responses.create(self.flow, scope, receive, send, headers,
                                        self.batches.defer if self.lane is not None else None)
        elif method in ("GET", "DELETE") and _stored_response_id(path):
            await self.responses.stored(method, _stored_response_id(path), send, headers)
        elif method == "POST" and path == "/v1/thrifty/feedback":
            await self._feedback(receive, send, headers)
        elif method == "GET" and path == "/metrics":
            await self._metrics(scope, send, headers)
        elif path == "/health":
            await send_response(send, 200, b'{"status":"ok"}')
        elif method == "GET" and path in ("/v1/models", "/models"):
            await small.list_models(self.gateway, send, headers, scope.get("query_string", b""))
        elif method == "GET" and path == "/openapi.json":
            await send_response(send, 200, openapi.document())
        elif method == "POST" and path in ("/v1/embeddings", "/embeddings"):
            await handle_embeddings(self.gateway, scope, receive, send, headers)
        elif method == "POST" and path == "/v1/messages/count_tokens":
            await small.count_tokens(self.gateway, receive, send, headers)
        elif method == "GET" and path.startswith(small.MODELS_PREFIX) and len(path) > len(small.MODELS_PREFIX):
            await small.retrieve_model(self.gateway, send, headers, path[len(small.MODELS_PREFIX):])
        elif self.batches.handles(path) and await self.batches(method, path, scope, receive, send, headers):
            pass
        elif path == "/admin" or path.startswith("/admin/"):
            await self.admin(scope, receive, send, headers)
        elif self.dashboard.handles(path):
            await self.dashboard(scope, receive, send, headers)
        elif (allowed := self._allowed(path)):
            await small.method_not_allowed(send, method, path, allowed, self.gateway.new_request_id())
        else:
            wire = small.protocol_of(path)
            err = NotFound(f"no route for {method} {path}")
            await send_response(send, 404, wire.error_body(err, self.gateway.new_request_id()))

    def _allowed(self, path: str) -> tuple[str, ...]:
        """The methods `path` takes, when it is a known path; () when it is not."""
        allowed = [m for m, p in self._chat if p == path] + list(_OTHER_ROUTES.get(path, ()))
        if path.startswith(small.MODELS_PREFIX) and len(path) > len(small.MODELS_PREFIX):
            allowed.append("GET")
        if _stored_response_id(path):
            allowed += ["GET", "DELETE"]
        if self.batches.handles(path):
            allowed += self.batches.allowed(path)
        return tuple(allowed)

    async def _feedback(self, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        """`{"request_id": ..., "outcome": "ok" | "bad", "reason": ...}` (or the older
        `{"bad": true|false}`; neither: bad): the client's verdict on an answer, appended to the
        ledger's `call_outcomes`, which cost per successful output reads (ledger/outcomes.py). On
        an answer served from the semantic cache, bad also evicts it and tightens its namespace.
        Only the tenant the answer was served to may say so; for any other the id is unknown
        (404), exactly as an id never served."""
        try:
            tenant = await self.gateway.tenant_for(OPENAI_CHAT.api_key(headers))
            try:
                body = jsonutil.loads(await read_body(receive, headers, 64 * 1024))
            except ValueError:
                raise InvalidRequest("the request body is not valid JSON") from None
            if not isinstance(body, dict) or not isinstance(body.get("request_id"), str):
                raise InvalidRequest("'request_id' (the x-thrifty-request-id of the answer) is required",
                                     param="request_id")
            rid, outcome, reason = body["request_id"], _outcome(body), body.get("reason")
            if reason is not None and not isinstance(reason, str):
                raise InvalidRequest("'reason' must be a string", param="reason")
            stage = self.stages.get("semantic_cache")
            semantic = await stage.feedback(tenant, rid, outcome == "bad") if stage is not None else None
            if semantic is None and not await self._served_to(tenant, rid):
                raise NotFound("no answer with this request_id was served to this key's tenant",
                               param="request_id", code="unknown_request_id")
            try:
                await asyncio.to_thread(record_outcome, self.gateway.ledger.driver, rid, outcome, reason)
            except ConnectionError as exc:
                raise GatewayError(f"the ledger cannot record feedback now: {exc}", status=503) from None
        except GatewayError as err:
            await send_response(send, err.status, OPENAI_CHAT.error_body(err, ""))
            return
        answer = semantic or {"request_id": rid, "known": True, "evicted": False}
        await send_response(send, 200, jsonutil.dumps({**answer, "outcome": outcome, "recorded": True}))

    async def _served_to(self, tenant: str, request_id: str) -> bool:
        """Whether the ledger holds `request_id` as a call of `tenant` (a row just answered may
        still be queued: flushed once before saying no)."""
        ledger, where = self.gateway.ledger, RowFilter(request_id=request_id, tenant=tenant)
        if await asyncio.to_thread(ledger.count, where):
            return True
        await asyncio.to_thread(ledger.flush, 2.0)
        return bool(await asyncio.to_thread(ledger.count, where))

    async def _metrics(self, scope: Scope, send: Send, headers: dict[str, str]) -> None:
        """Prometheus text format (thrifty.observe.metrics); who may scrape: MetricsConfig."""
        metrics = self.gateway.observe.metrics
        if metrics is None:
            err = NotFound("metrics are disabled: set observe.metrics.enabled in the gateway config")
            await send_response(send, 404, OPENAI_CHAT.error_body(err, ""))
            return
        from thrifty.observe.metrics import CONTENT_TYPE, may_scrape

        client = scope.get("client")
        if not may_scrape(metrics.config, self.gateway.config.admin.key, OPENAI_CHAT.api_key(headers),
                          client[0] if client else None):
            err = AuthenticationFailed("send the metrics key (observe.metrics.key) or the admin key as a "
                                       "Bearer token", code="invalid_metrics_key")
            await send_response(send, 401, OPENAI_CHAT.error_body(err, ""))
            return
        await send_response(send, 200, await metrics.render(), content_type=CONTENT_TYPE.encode())

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.gateway.start()
                except Exception as exc:  # report start-up failures through the protocol
                    log.exception("gateway start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                if self.lane is not None:
                    self.lane.start()  # resumes what a previous process left queued or submitted
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.responses.close()
                if self.lane is not None:
                    await self.lane.close()
                await self.gateway.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _outcome(body: dict) -> str:
    """The verdict of a feedback body: `outcome`, else the older boolean `bad` (default true)."""
    outcome = body.get("outcome")
    if outcome is None:
        return "bad" if body.get("bad", True) else "ok"
    if outcome not in OUTCOMES:
        raise InvalidRequest(f"'outcome' must be one of {', '.join(OUTCOMES)}", param="outcome")
    return outcome


def _stored_response_id(path: str) -> str:
    """The id in `/v1/responses/{id}`; "" for any other path."""
    rest = path[len(RESPONSES_PREFIX):] if path.startswith(RESPONSES_PREFIX) else ""
    return rest if "/" not in rest else ""
