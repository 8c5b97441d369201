"""Stored Responses API answers: `GET`/`DELETE /v1/responses/{id}` and `previous_response_id`.

Off unless `responses.store: true` (config), so by default no request or answer body is kept;
then `GET`/`DELETE` answer 404 and `previous_response_id` 400, each saying how to turn it on.
On, every `POST /v1/responses` answered 200 is kept for `responses.ttl_s`, unless its request
says `store: false` (OpenAI's default is to store). What is kept is the conversation so far: the
input items the call was served with (earlier turns included) and the Response object. Entries
live in one of the exact cache's byte stores (memory LRU under `max_bytes`, or Redis), keyed by
the SHA-256 of tenant and id, so a response is visible only to the tenant that created it; for
any other it is unknown (404), exactly as an id never made.

`previous_response_id` is resolved before the call enters the flow: the stored input items and
output items go in front of the new `input` (OpenAI API reference, "Conversation state"; the
earlier `instructions` are not carried over), and the call is served, priced and recorded as that
whole prompt, which is what the provider bills. The request reaches `handle_chat` through the
ASGI receive, so the call leaves its one ledger row whatever happens, an unknown id included.
The answer still names `previous_response_id` (put back into the Response object on its way out).
With storage on, the key is looked up once more here (to scope the store to its tenant), and a
resolved conversation is held to `server.max_body_bytes` like any request body (413 above it).
A store that cannot be reached is a 503 for `GET`/`DELETE` and `previous_response_id`; for a new
answer it only means the answer is not kept (logged), never a failed call.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from thrifty import jsonutil
from thrifty.api.asgi import SSE, Receive, Scope, Send, read_body, send_response
from thrifty.api.chat import Deferrer, handle_chat
from thrifty.cache.backends import CacheBackend, MemoryLRU, RedisStore
from thrifty.config import ResponsesConfig
from thrifty.contract import Next
from thrifty.core.gateway import Gateway
from thrifty.errors import CacheUnavailable, GatewayError, InvalidRequest, NotFound, UpstreamError
from thrifty.wire import OPENAI_RESPONSES

log = logging.getLogger("thrifty.api")

PREFIX = "/v1/responses/"
KEY_VERSION = "r1"
_TURN_ON = "set responses.store: true in the gateway config to keep responses"
# Stream events whose `response` is the Response object (the last two: the whole answer).
_SNAPSHOTS = (b"response.created", b"response.in_progress", b"response.completed", b"response.incomplete")
_FINAL = (b"response.completed", b"response.incomplete")
Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Stored:
    input: list[Any]  # the input items the response was made from, earlier turns included
    response: Json


class ResponsesStore:
    """Tenant-scoped stored responses over a byte store with expiry."""

    def __init__(self, backend: CacheBackend, ttl_s: int, max_response_bytes: int) -> None:
        self.backend, self.ttl_s, self.max_response_bytes = backend, ttl_s, max_response_bytes

    @staticmethod
    def key(tenant: str, response_id: str) -> str:
        doc = jsonutil.dumps([KEY_VERSION, tenant, response_id])
        return "resp:" + hashlib.sha256(doc).hexdigest()

    async def get(self, tenant: str, response_id: str) -> Stored | None:
        raw = await self._call(self.backend.get, self.key(tenant, response_id))
        if raw is None:
            return None
        try:
            doc = jsonutil.loads(raw)
            return Stored(list(doc["input"]), dict(doc["response"]))
        except (ValueError, KeyError, TypeError):
            log.warning("responses store: ignoring a corrupt entry")
            return None

    async def put(self, tenant: str, input_items: list[Any], response: Json) -> bool:
        """Keep one response; False when it is over `max_response_bytes` (it is not kept)."""
        rid = response.get("id")
        if not isinstance(rid, str):
            return False
        value = jsonutil.dumps({"input": input_items, "response": response})
        if len(value) > self.max_response_bytes:
            log.warning("responses store: %s not kept: %d bytes, over responses.max_response_bytes (%d)",
                        rid, len(value), self.max_response_bytes)
            return False
        await self._call(self.backend.set, self.key(tenant, rid), value, self.ttl_s)
        return True

    async def delete(self, tenant: str, response_id: str) -> bool:
        key = self.key(tenant, response_id)
        if await self._call(self.backend.get, key) is None:
            return False
        await self._call(self.backend.delete, key)
        return True

    async def close(self) -> None:
        await self.backend.close()

    @staticmethod
    async def _call(fn: Any, *args: Any) -> Any:
        try:
            return await fn(*args)
        except CacheUnavailable as exc:  # a 503 for the client, who never hears where the store is
            log.warning("responses store: %s", exc)
            raise UpstreamError("the gateway's response store cannot be reached; try again shortly", status=503,
                                code="response_store_unavailable", retry_after="1") from None


def open_responses_store(c: ResponsesConfig) -> ResponsesStore | None:
    """The configured store; None when storing responses is off."""
    if not c.store:
        return None
    backend: CacheBackend = RedisStore(c.redis_url, prefix=c.prefix) if c.backend == "redis" \
        else MemoryLRU(c.max_bytes)
    return ResponsesStore(backend, c.ttl_s, c.max_response_bytes)


def as_items(value: Any) -> list[Any]:
    """A request's `input` as a list of input items (a string is one user message)."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return list(value) if isinstance(value, list) else []


class ResponsesSurface:
    """`/v1/responses` and `/v1/responses/{id}`, with or without a store."""

    def __init__(self, gw: Gateway, store: ResponsesStore | None) -> None:
        self.gw, self.store = gw, store

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()

    # --- POST /v1/responses ---------------------------------------------------------------

    async def create(self, flow: Next, scope: Scope, receive: Receive, send: Send, headers: dict[str, str],
                     deferrer: Deferrer | None = None) -> None:
        if self.store is None:  # nothing to resolve or keep: the wire refuses previous_response_id
            await handle_chat(self.gw, flow, OPENAI_RESPONSES, scope, receive, send, headers, deferrer)
            return
        server = self.gw.config.server
        keeper: _Keeper | None = None
        try:
            raw = await read_body(receive, headers, server.max_body_bytes, server.body_timeout_s)
            body = _object(raw)
            tenant = await self._tenant(headers) if body is not None else None
            if body is not None and tenant is not None:
                body, previous = await self._resolve(tenant, body)
                if previous is not None or body.get("store") is not False:
                    keeper = _Keeper(send, self.store, tenant, as_items(body.get("input")), previous,
                                     keep=body.get("store") is not False)
                raw = jsonutil.dumps(body) if previous is not None else raw
            request: Json | GatewayError = {"type": "http.request", "body": raw, "more_body": False}
        except GatewayError as err:  # handle_chat answers and records it, as its own read would
            request = err
        headers = {k: v for k, v in headers.items() if k != "content-length"}
        await handle_chat(self.gw, flow, OPENAI_RESPONSES, scope, _replay(request),
                          keeper if keeper is not None else send, headers, deferrer)

    async def _tenant(self, headers: dict[str, str]) -> str | None:
        try:
            return await self.gw.tenant_for(OPENAI_RESPONSES.api_key(headers))
        except GatewayError:
            return None  # handle_chat answers the bad key (401), unrecorded as always

    async def _resolve(self, tenant: str, body: Json) -> tuple[Json, str | None]:
        """The body with the earlier conversation in front of its input, and the id it named."""
        previous = body.get("previous_response_id")
        if previous is None:
            return body, None
        if not isinstance(previous, str) or not previous:
            raise InvalidRequest("previous_response_id must be a non-empty string", param="previous_response_id")
        assert self.store is not None
        stored = await self.store.get(tenant, previous)
        if stored is None:
            raise InvalidRequest(f"Previous response with id '{previous}' not found.", param="previous_response_id",
                                 code="previous_response_not_found")
        earlier = stored.input + [item for item in stored.response.get("output") or () if isinstance(item, dict)]
        rest = {k: v for k, v in body.items() if k != "previous_response_id"}
        return {**rest, "input": earlier + as_items(body.get("input"))}, previous

    # --- GET / DELETE /v1/responses/{id} --------------------------------------------------

    async def stored(self, method: str, response_id: str, send: Send, headers: dict[str, str]) -> None:
        rid = self.gw.new_request_id()
        try:
            tenant = await self.gw.tenant_for(OPENAI_RESPONSES.api_key(headers))
            if self.store is None:
                raise NotFound(f"Response with id '{response_id}' not found: this gateway does not store "
                               f"responses ({_TURN_ON})", code="response_storage_off")
            if method == "DELETE":
                found = await self.store.delete(tenant, response_id)
                answer: Json | None = {"id": response_id, "object": "response", "deleted": True} if found else None
            else:
                kept = await self.store.get(tenant, response_id)
                answer = None if kept is None else kept.response
            if answer is None:
                raise NotFound(f"Response with id '{response_id}' not found.", code="response_not_found")
        except GatewayError as err:
            await send_response(send, err.status, OPENAI_RESPONSES.error_body(err, rid), {"x-thrifty-request-id": rid})
            return
        await send_response(send, 200, jsonutil.dumps(answer), {"x-thrifty-request-id": rid})


def _object(raw: bytes) -> Json | None:
    """The body when it is a JSON object; None otherwise (the wire's checks will say why)."""
    try:
        body = jsonutil.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _replay(request: Json | GatewayError) -> Receive:
    """A receive that gives the (resolved) body once, or raises the error that stopped it."""
    sent = False

    async def receive() -> Json:
        nonlocal sent
        if isinstance(request, GatewayError):
            raise request
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return request

    return receive


class _Keeper:
    """The send of a Responses call: keeps its Response once whole (before the client has it, so
    a next turn can name it at once) and puts `previous_response_id` back into it."""

    def __init__(self, send: Send, store: ResponsesStore, tenant: str, input_items: list[Any],
                 previous: str | None, *, keep: bool) -> None:
        self.send, self.store, self.tenant, self.input = send, store, tenant, input_items
        self.previous, self.keep = previous, keep
        self.start: Json | None = None  # a JSON answer's start, held until its body is final
        self.stream = False
        self.ok = False

    async def __call__(self, message: Json) -> None:
        if message["type"] == "http.response.start":
            self.ok = message["status"] == 200
            self.stream = any(k == b"content-type" and v == SSE for k, v in message.get("headers") or ())
            if self.ok and not self.stream:
                self.start = message
                return
        elif message["type"] == "http.response.body" and self.ok:
            message = await (self._event(message) if self.stream else self._whole(message))
        await self.send(message)

    async def _whole(self, message: Json) -> Json:
        assert self.start is not None
        body = message.get("body", b"")
        response = _object(body)
        if response is not None:
            body = await self._kept(response, body)
        headers = [(k, v) for k, v in self.start["headers"] if k != b"content-length"]
        await self.send({**self.start, "headers": headers + [(b"content-length", str(len(body)).encode())]})
        return {**message, "body": body}

    async def _event(self, message: Json) -> Json:
        chunk: bytes = message.get("body", b"")
        name, sep, data = chunk.partition(b"\ndata: ")
        kind = name.removeprefix(b"event: ")
        if not sep or kind not in _SNAPSHOTS:
            return message
        event = _object(data.rstrip(b"\n"))
        if event is None or not isinstance(event.get("response"), dict):
            return message
        if self.previous is not None:
            event["response"]["previous_response_id"] = self.previous
        if kind in _FINAL:
            await self._kept(event["response"], b"")
        if self.previous is None:
            return message
        return {**message, "body": name + sep + jsonutil.dumps(event) + b"\n\n"}

    async def _kept(self, response: Json, body: bytes) -> bytes:
        """Keep `response` (unless its request said store: false); its bytes as the client gets them."""
        if self.previous is not None:
            response["previous_response_id"] = self.previous
            body = jsonutil.dumps(response)
        if self.keep:
            try:
                await self.store.put(self.tenant, self.input, response)
            except GatewayError as exc:  # the answer is still good: it is only not kept
                log.warning("responses store: %s not kept: %s", response.get("id"), exc)
        return body
