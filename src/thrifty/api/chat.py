"""One chat call through the gateway, for either surface: identify, parse, run the flow, answer, record.

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
from thrifty.core.gateway import Gateway
from thrifty.core.pipeline import Answer, Call, Next
from thrifty.errors import GatewayError, InvalidRequest, UpstreamError
from thrifty.ledger import LedgerRow

log = logging.getLogger("thrifty.api")

_SERVED_FROM_CACHE = ("exact", "semantic")


def new_request_id() -> str:
    return "thr_" + os.urandom(12).hex()


def request_hash(body: dict[str, Any]) -> str:
    """SHA-256 of the request as canonical JSON (keys sorted, no insignificant whitespace)."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def format_usd(amount: Decimal | None) -> str:
    return "unknown" if amount is None else format(amount, "f")


async def handle_chat(gw: Gateway, flow: Next, surface: Surface, scope: Scope, receive: Receive,
                      send: Send, headers: dict[str, str]) -> None:
    started = time.time()
    clock0 = time.perf_counter()
    rid = new_request_id()
    try:
        tenant = await gw.tenant_for(surface.api_key(headers))
    except GatewayError as err:
        # No valid key: answered, but not recorded (there is no tenant to charge it to).
        await send_response(send, err.status, surface.error_body(err, rid), {"x-thrifty-request-id": rid})
        return

    row = LedgerRow(request_id=rid, started_at=started, finished_at=started, tenant=tenant,
                    feature=headers.get("x-thrifty-feature"), user=headers.get("x-thrifty-user"),
                    task=headers.get("x-thrifty-task"), call_site=headers.get("x-thrifty-call-site"),
                    surface=surface.name, provider=None, requested_model=None, served_model=None,
                    tier=None, status=0, error_type=None)
    exchange = _Exchange(gw, surface, send, row, clock0)
    try:
        call = await exchange.read_call(receive, headers, tenant)
        await exchange.answer(call, await flow(call))
    except GatewayError as err:
        await exchange.fail(err)
    except Exception as exc:  # a bug of ours: answer cleanly and keep the ledger row
        log.exception("unhandled error in request %s", rid)
        await exchange.fail(UpstreamError(f"internal gateway error: {type(exc).__name__}", status=500))
    finally:
        row.finished_at = time.time()
        row.latency_ms = (time.perf_counter() - clock0) * 1000.0
        gw.ledger.record(row)


class _Exchange:
    """The HTTP side of one call: reading the request, sending the answer, filling the row."""

    __slots__ = ("gw", "surface", "send", "row", "clock0", "streaming", "extra")

    def __init__(self, gw: Gateway, surface: Surface, send: Send, row: LedgerRow, clock0: float) -> None:
        self.gw, self.surface, self.send, self.row, self.clock0 = gw, surface, send, row, clock0
        self.streaming = False  # True once the 200 and the first bytes of a stream are sent
        self.extra: dict[str, str] = {}  # headers the stages added (budget state, ...)

    async def read_call(self, receive: Receive, headers: dict[str, str], tenant: str) -> Call:
        gw, row = self.gw, self.row
        raw = await read_body(receive, headers, gw.config.server.max_body_bytes)
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
        call = Call(request_id=row.request_id, tenant=tenant, surface=self.surface, headers=headers,
                    body=body, model=model, stream=stream, row=row,
                    policy=gw.policies.for_call(tenant, row.feature, model))
        self.extra = call.extra_headers
        return call

    def _headers(self, cost: str) -> dict[str, str]:
        row = self.row
        return {"x-thrifty-request-id": row.request_id, "x-thrifty-cost-usd": cost,
                "x-thrifty-model": row.served_model or "", "x-thrifty-tier": row.tier or "",
                "x-thrifty-cache": row.cache if row.cache in _SERVED_FROM_CACHE else "miss", **self.extra}

    async def answer(self, call: Call, answer: Answer) -> None:
        self.row.cache = answer.cache
        if answer.body is not None:
            self._record(call, answer)
            payload = jsonutil.dumps(answer.body)
            if self.gw.config.ledger.store_bodies:
                self.row.response_body = payload.decode("utf-8", "replace")
            self.row.status = 200
            await send_response(self.send, 200, payload, self._headers(format_usd(self.row.cost_usd)))
            return
        assert answer.events is not None
        encode, send = self.surface.encode_event, self.send
        async for event in answer.events:
            if not self.streaming:
                # The cost of a stream is known only at its end; the ledger row has it.
                await start_stream(send, self._headers("pending"))
                self.streaming = True
                self.row.ttft_ms = (time.perf_counter() - self.clock0) * 1000.0
            await stream_chunk(send, encode(event))
        if not self.streaming:
            await start_stream(send, self._headers("pending"))
            self.streaming = True
        self._record(call, answer)
        self.row.status = 200
        await end_stream(send, self.surface.stream_end)

    def _record(self, call: Call, answer: Answer) -> None:
        row, usage = self.row, answer.usage
        row.prompt_tokens = usage.input_tokens
        row.cached_tokens = usage.cache_read_tokens
        row.cache_write_tokens = usage.cache_write_tokens
        row.cache_write_1h_tokens = usage.cache_write_1h_tokens
        row.completion_tokens = usage.output_tokens
        row.reasoning_tokens = usage.reasoning_tokens
        row.cost_usd = answer.cost
        saved = call.saved
        row.saved_prompt_cache_usd = saved.get("prompt_cache")
        row.saved_response_cache_usd = saved.get("response_cache")
        if answer.cost is not None:
            row.baseline_cost_usd = answer.cost + sum(saved.values(), Decimal(0))

    async def fail(self, err: GatewayError) -> None:
        row = self.row
        row.status, row.error_type = err.status, err.kind
        if self.streaming:
            # Headers are gone: end the stream with the protocol's error event instead.
            await end_stream(self.send, self.surface.stream_error(err))
            return
        headers = self._headers("0")
        if err.retry_after:
            headers["retry-after"] = err.retry_after
        await send_response(self.send, err.status, self.surface.error_body(err, row.request_id), headers)
