"""One chat call through the gateway, for either surface: identify, parse, route, call, price, record.

Every call that arrives with a valid virtual key leaves exactly one ledger row, whatever happens
after that (bad JSON, unknown model, upstream failure, broken stream).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from decimal import Decimal
from typing import Any

import orjson

from thrifty import jsonutil
from thrifty.api.asgi import Receive, Scope, Send, end_stream, read_body, send_response, start_stream, stream_chunk
from thrifty.api.surfaces import Surface
from thrifty.core.gateway import Gateway, Route
from thrifty.core.usage import Usage
from thrifty.errors import GatewayError, InvalidRequest, UpstreamError
from thrifty.ledger import LedgerRow

log = logging.getLogger("thrifty.api")


def new_request_id() -> str:
    return "thr_" + os.urandom(12).hex()


def request_hash(body: dict[str, Any]) -> str:
    """SHA-256 of the request as canonical JSON (keys sorted, no insignificant whitespace)."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def format_usd(amount: Decimal | None) -> str:
    return "unknown" if amount is None else format(amount, "f")


def _answer_headers(request_id: str, route: Route | None, cost: str) -> dict[str, str]:
    return {
        "x-thrifty-request-id": request_id,
        "x-thrifty-cost-usd": cost,
        "x-thrifty-model": route.model if route else "",
        "x-thrifty-tier": route.tier if route else "",
        "x-thrifty-cache": "miss",
    }


async def handle_chat(gw: Gateway, surface: Surface, scope: Scope, receive: Receive, send: Send,
                      headers: dict[str, str]) -> None:
    started = time.time()
    clock0 = time.perf_counter()
    rid = new_request_id()
    try:
        tenant = gw.tenant_for(surface.api_key(headers))
    except GatewayError as err:
        # No valid key: answered, but not recorded (there is no tenant to charge it to).
        await send_response(send, err.status, surface.error_body(err, rid), {"x-thrifty-request-id": rid})
        return

    row = LedgerRow(request_id=rid, started_at=started, finished_at=started, tenant=tenant,
                    feature=headers.get("x-thrifty-feature"), user=headers.get("x-thrifty-user"),
                    task=headers.get("x-thrifty-task"), call_site=headers.get("x-thrifty-call-site"),
                    surface=surface.name, provider=None, requested_model=None, served_model=None,
                    tier=None, status=0, error_type=None)
    call = _Call(gw, surface, send, headers, row, clock0)
    try:
        await call.run(receive)
    except GatewayError as err:
        await call.fail(err)
    except Exception as exc:  # a bug of ours: answer cleanly and keep the ledger row
        log.exception("unhandled error in request %s", rid)
        await call.fail(UpstreamError(f"internal gateway error: {type(exc).__name__}", status=500))
    finally:
        row.finished_at = time.time()
        row.latency_ms = (time.perf_counter() - clock0) * 1000.0
        gw.ledger.record(row)


class _Call:
    __slots__ = ("gw", "surface", "send", "headers", "row", "clock0", "route", "streaming")

    def __init__(self, gw: Gateway, surface: Surface, send: Send, headers: dict[str, str],
                 row: LedgerRow, clock0: float) -> None:
        self.gw, self.surface, self.send, self.headers, self.row = gw, surface, send, headers, row
        self.clock0 = clock0
        self.route: Route | None = None
        self.streaming = False  # True once the 200 and the first bytes of a stream are sent

    async def run(self, receive: Receive) -> None:
        gw, row = self.gw, self.row
        raw = await read_body(receive, self.headers, gw.config.server.max_body_bytes)
        try:
            body = jsonutil.loads(raw)
        except ValueError:
            raise InvalidRequest("the request body is not valid JSON") from None
        if gw.config.ledger.store_bodies:
            row.request_body = raw.decode("utf-8", "replace")
        model, stream = self.surface.check(body)
        row.requested_model, row.stream = model, stream
        if row.user is None:
            row.user = self.surface.user(body)
        row.request_hash = request_hash(body)
        route = self.route = gw.route(model)
        row.provider, row.served_model, row.tier = route.provider.name, route.model, route.tier
        upstream = self.surface.upstream_body(body, route.provider.wire, route.model,
                                              gw.config.defaults.anthropic_max_tokens)
        if stream:
            await self._stream(body, upstream, route)
        else:
            await self._complete(upstream, route)

    def _price(self, usage: Usage) -> str:
        row, route = self.row, self.route
        assert route is not None
        row.prompt_tokens = usage.input_tokens
        row.cached_tokens = usage.cache_read_tokens
        row.cache_write_tokens = usage.cache_write_tokens
        row.cache_write_1h_tokens = usage.cache_write_1h_tokens
        row.completion_tokens = usage.output_tokens
        row.reasoning_tokens = usage.reasoning_tokens
        cost = self.gw.prices.cost(route.model, usage, provider=route.price_provider)
        row.cost_usd = cost.total if cost is not None else None
        return format_usd(row.cost_usd)

    async def _complete(self, upstream: dict[str, Any], route: Route) -> None:
        resp = await route.provider.complete(upstream, self.headers)
        out, usage = self.surface.client_response(resp, route.provider.wire, route.model)
        cost = self._price(usage)
        payload = jsonutil.dumps(out)
        if self.gw.config.ledger.store_bodies:
            self.row.response_body = payload.decode("utf-8", "replace")
        self.row.status = 200
        await send_response(self.send, 200, payload, _answer_headers(self.row.request_id, route, cost))

    async def _stream(self, body: dict[str, Any], upstream: dict[str, Any], route: Route) -> None:
        translator = self.surface.stream_translator(body, route.provider.wire, route.model)
        send = self.send
        # A stream that breaks off is recorded with an unknown cost: what the provider bills
        # for a half-finished generation is not visible from here.
        async for event in route.provider.stream(upstream, self.headers):
            data = translator.feed(event)
            if not data:
                continue
            if not self.streaming:
                # The cost is known only at the end of a stream; the ledger row has it.
                await start_stream(send, _answer_headers(self.row.request_id, route, "pending"))
                self.streaming = True
                self.row.ttft_ms = (time.perf_counter() - self.clock0) * 1000.0
            await stream_chunk(send, data)
        self._price(translator.usage)
        tail = translator.close()
        if not self.streaming:
            await start_stream(send, _answer_headers(self.row.request_id, route, "pending"))
            self.streaming = True
        self.row.status = 200
        await end_stream(send, tail)

    async def fail(self, err: GatewayError) -> None:
        row = self.row
        row.status, row.error_type = err.status, err.kind
        if self.streaming:
            # Headers are gone: end the stream with the protocol's error event instead.
            await end_stream(self.send, self.surface.stream_error(err))
            return
        headers = _answer_headers(row.request_id, self.route, "0")
        if err.retry_after:
            headers["retry-after"] = err.retry_after
        await send_response(self.send, err.status, self.surface.error_body(err, row.request_id), headers)
