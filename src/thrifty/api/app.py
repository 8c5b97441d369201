"""The gateway's ASGI application: a fixed route table, no framework on the hot path."""

from __future__ import annotations

import logging

from thrifty import jsonutil
from thrifty.api import openapi, small
from thrifty.api.admin import AdminAPI
from thrifty.api.asgi import Receive, Scope, Send, header_map, read_body, send_response
from thrifty.api.batches import BatchSurfaces
from thrifty.api.chat import handle_chat
from thrifty.api.embeddings import handle_embeddings
from thrifty.api.responses_store import PREFIX as RESPONSES_PREFIX, ResponsesSurface, open_responses_store
from thrifty.wire import ANTHROPIC_MESSAGES, OPENAI_CHAT, Wire
from thrifty.batch import open_lane
from thrifty.core.flow import build_flow
from thrifty.core.gateway import Gateway
from thrifty.errors import GatewayError, InvalidRequest, NotFound

log = logging.getLogger("thrifty.api")

# Routes outside the chat table, by path: the methods they take (405 with Allow for the others).
_OTHER_ROUTES: dict[str, tuple[str, ...]] = {
    "/v1/thrifty/feedback": ("POST",), "/v1/models": ("GET",), "/models": ("GET",),
    "/openapi.json": ("GET",), "/v1/embeddings": ("POST",), "/embeddings": ("POST",),
    "/v1/messages/count_tokens": ("POST",), "/v1/responses": ("POST",),
}


class GatewayApp:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.flow, self.stages = build_flow(gateway)
        # The batch lane (thrifty.batch): /v1/batches, /v1/files, /v1/messages/batches, deferred calls.
        self.lane = open_lane(gateway, self.flow, self.stages)
        self.batches = BatchSurfaces(gateway, self.lane)
        self.admin = AdminAPI(gateway, self.stages)
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
        """`{"request_id": ..., "bad": true}`: a cached answer was wrong. The semantic cache evicts
        it and tightens the namespace it came from. Only the tenant the answer was served to may
        say so; for any other the id is unknown (404), exactly as an id never served."""
        try:
            tenant = await self.gateway.tenant_for(OPENAI_CHAT.api_key(headers))
            try:
                body = jsonutil.loads(await read_body(receive, headers, 64 * 1024))
            except ValueError:
                raise InvalidRequest("the request body is not valid JSON") from None
            if not isinstance(body, dict) or not isinstance(body.get("request_id"), str):
                raise InvalidRequest("'request_id' (the x-thrifty-request-id of the answer) is required",
                                     param="request_id")
            stage = self.stages.get("semantic_cache")
            if stage is None:
                raise InvalidRequest("the semantic cache is not enabled on this gateway")
            result = await stage.feedback(tenant, body["request_id"], bool(body.get("bad", True)))
            if result is None:
                raise NotFound("no answer with this request_id was served from the semantic cache "
                               "to this key's tenant", param="request_id", code="unknown_request_id")
        except GatewayError as err:
            await send_response(send, err.status, OPENAI_CHAT.error_body(err, ""))
            return
        await send_response(send, 200, jsonutil.dumps(result))

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


def _stored_response_id(path: str) -> str:
    """The id in `/v1/responses/{id}`; "" for any other path."""
    rest = path[len(RESPONSES_PREFIX):] if path.startswith(RESPONSES_PREFIX) else ""
    return rest if "/" not in rest else ""
