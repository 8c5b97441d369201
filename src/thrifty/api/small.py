"""The small surfaces: one model by id, Anthropic's token counting, and 405 on a wrong method.

- `GET /v1/models` and `GET /v1/models/{id}`: the configured deployments and aliases, in OpenAI's
  shape, or in Anthropic's when the request carries `anthropic-version` or authenticates with
  `x-api-key` alone (what the Anthropic SDK sends): `{type: "model", id, display_name, created_at,
  lifecycle}`, the list paged as Anthropic pages it (`limit` 1-1000, default 20; `after_id` / `before_id`;
  `has_more`, `first_id`, `last_id`; Anthropic API reference, "List Models"). An unknown id is 404
  in that protocol's error shape.
- `POST /v1/messages/count_tokens`: counted by the deployment's provider. An Anthropic-wire
  provider counts it itself (the request is forwarded, its answer returned); for a model on an
  OpenAI-wire provider, which has no such endpoint, the gateway counts locally with its tokenizer
  (o200k_base, the OpenAI models' own). The answer's `x-thrifty-token-count` header says which:
  `provider` or `local`. Counting is free at the provider, so it is not recorded in the ledger.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

from thrifty import jsonutil
from thrifty.api.asgi import Receive, Send, parse_json, read_body, send_response
from thrifty.core.gateway import Gateway
from thrifty.errors import (
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    UpstreamError,
)
from thrifty.tokens import count_text_tokens
from thrifty.wire import ANTHROPIC_MESSAGES, OPENAI_CHAT, Wire

MODELS_PREFIX = "/v1/models/"
# Which providers count tokens themselves, and where (a path under their base_url).
COUNT_TOKENS_PATH: dict[Wire, str] = {ANTHROPIC_MESSAGES: "/v1/messages/count_tokens"}
_CREATED_AT = "2025-01-01T00:00:00Z"  # Anthropic's model objects carry a release date; ours is nominal


def protocol_of(path: str) -> Wire:
    """The protocol whose error shape a path answers in: Anthropic's under /v1/messages, else OpenAI's."""
    return ANTHROPIC_MESSAGES if path.startswith("/v1/messages") else OPENAI_CHAT


async def method_not_allowed(send: Send, method: str, path: str, allowed: Iterable[str], rid: str) -> None:
    allow = ", ".join(sorted(set(allowed)))
    err = MethodNotAllowed(f"{method} is not allowed on {path} (allowed: {allow})", code="method_not_allowed")
    await send_response(send, 405, protocol_of(path).error_body(err, rid), {"allow": allow})


def _listing_wire(headers: dict[str, str]) -> Wire:
    anthropic = "anthropic-version" in headers or ("x-api-key" in headers and "authorization" not in headers)
    return ANTHROPIC_MESSAGES if anthropic else OPENAI_CHAT


def _anthropic_model(model_id: str) -> dict[str, Any]:
    # `lifecycle` is required by the anthropic SDK's ModelInfo (2.x): every served model is active.
    return {"type": "model", "id": model_id, "display_name": model_id, "created_at": _CREATED_AT,
            "lifecycle": "active"}


def _anthropic_page(ids: list[str], query: dict[str, list[str]]) -> dict[str, Any]:
    """One page of `ids` as Anthropic's list endpoints page: after `after_id` (or the `limit`
    just before `before_id`), at most `limit`."""
    raw = (query.get("limit") or ["20"])[-1]
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise InvalidRequest("limit: must be an integer between 1 and 1000", param="limit")
    limit = int(raw)
    after, before = (query.get("after_id") or [None])[-1], (query.get("before_id") or [None])[-1]
    for name, value in (("after_id", after), ("before_id", before)):
        if value is not None and value not in ids:
            raise InvalidRequest(f"{name}: {value!r} is not a model id of this list", param=name)
    if before is not None:
        end = ids.index(before)
        page, has_more = ids[max(0, end - limit):end], end - limit > 0
    else:
        start = ids.index(after) + 1 if after is not None else 0
        page, has_more = ids[start:start + limit], start + limit < len(ids)
    return {"data": [_anthropic_model(i) for i in page], "has_more": has_more,
            "first_id": page[0] if page else None, "last_id": page[-1] if page else None}


async def list_models(gw: Gateway, send: Send, headers: dict[str, str], query_string: bytes = b"") -> None:
    wire = _listing_wire(headers)
    try:
        await gw.tenant_for(wire.api_key(headers))
        if wire is ANTHROPIC_MESSAGES:
            body = _anthropic_page([name for name, _ in gw.deployments], parse_qs(query_string.decode("latin-1")))
        else:
            created = int(time.time())
            body = {"object": "list", "data": [
                {"id": name, "object": "model", "created": created, "owned_by": f"thrifty:{route.provider.name}"}
                for name, route in gw.deployments]}
    except GatewayError as err:
        await send_response(send, err.status, wire.error_body(err, ""))
        return
    await send_response(send, 200, jsonutil.dumps(body))


async def retrieve_model(gw: Gateway, send: Send, headers: dict[str, str], model_id: str) -> None:
    wire = _listing_wire(headers)
    try:
        await gw.tenant_for(wire.api_key(headers))
        route = gw.deployments.get(model_id)
        if route is None:
            raise NotFound(f"model {model_id!r} is not served by this gateway", param="model",
                           code="model_not_found")
    except GatewayError as err:
        await send_response(send, err.status, wire.error_body(err, ""))
        return
    if wire is ANTHROPIC_MESSAGES:
        body: dict[str, Any] = _anthropic_model(model_id)
    else:
        body = {"id": model_id, "object": "model", "created": int(time.time()),
                "owned_by": f"thrifty:{route.provider.name}"}
    await send_response(send, 200, jsonutil.dumps(body))


class _ExactCounter:
    """A `thrifty.wire.TokenCounter` that counts exactly (o200k_base), for local token counting."""

    per_message = 3  # OpenAI's chat format: role and separators, per message
    tools_tokens = 0
    attachment_tokens = 1600

    def count(self, text: str) -> int:
        return count_text_tokens(text)

    def texts(self, values: Iterable[Any]) -> int:
        return sum(self.count(v if isinstance(v, str) else jsonutil.dumps(v).decode())
                   for v in values if v is not None)


async def count_tokens(gw: Gateway, receive: Receive, send: Send, headers: dict[str, str]) -> None:
    wire = ANTHROPIC_MESSAGES
    rid = gw.new_request_id()
    try:
        await gw.tenant_for(wire.api_key(headers))
        server = gw.config.server
        body = parse_json(await read_body(receive, headers, server.max_body_bytes, server.body_timeout_s),
                          server.max_json_depth)
        if not isinstance(body, dict):
            raise InvalidRequest("the request body must be a JSON object")
        # The messages request's own checks; count_tokens takes no max_tokens.
        model, _ = wire.check({**body, "max_tokens": 1, "stream": False})
        route = gw.deployments.route(model)
        path = COUNT_TOKENS_PATH.get(route.provider.wire)
        if path is not None:
            upstream = {k: v for k, v in body.items() if k not in ("max_tokens", "stream")}
            upstream["model"] = route.model
            answer = await route.provider.post_json(route.provider.endpoint(path), upstream, headers)
            n, how = answer.get("input_tokens"), "provider"
            if not isinstance(n, int):
                raise UpstreamError(f"{route.provider.name}: count_tokens answered without input_tokens")
        else:
            n, how = wire.input_tokens(body, _ExactCounter()), "local"
    except GatewayError as err:
        await send_response(send, err.status, wire.error_body(err, rid), {"x-thrifty-request-id": rid})
        return
    await send_response(send, 200, jsonutil.dumps({"input_tokens": n}),
                        {"x-thrifty-request-id": rid, "x-thrifty-token-count": how})
