"""One chat call through the gateway, for any dialect: identify, parse, run the flow, answer.

Every call that arrives with a valid virtual key leaves exactly one ledger row, whatever happens
after that (bad JSON, unknown model, upstream failure, broken stream); the row is written by the
recorder (`core.recorder`) from what this module saw and what the stages reported.
"""

from __future__ import annotations

import hashlib
import logging
import time
from decimal import Decimal
from typing import Any, Awaitable, Callable

import orjson

from thrifty import jsonutil
from thrifty.api import attribution
from thrifty.api.batches import DEFER_HEADER, defer_window
from thrifty.api.asgi import (
    Receive, Scope, Send, end_stream, parse_json, read_body, send_response, start_stream, stream_chunk,
)
from thrifty.contract import Answer, Call, Next
from thrifty.core.gateway import Gateway
from thrifty.core.recorder import Exchange, saved_usd
from thrifty.errors import GatewayError, InvalidRequest, UpstreamError
from thrifty.wire import Wire

log = logging.getLogger("thrifty.api")

_SERVED_FROM_CACHE = ("exact", "semantic")
ATTRIBUTION_HEADERS = ("x-thrifty-feature", "x-thrifty-user", "x-thrifty-task", "x-thrifty-call-site")


def request_hash(body: dict[str, Any]) -> str:
    """SHA-256 of the request as canonical JSON (keys sorted, no insignificant whitespace)."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def check_attribution(headers: dict[str, str], cap: int) -> None:
    """Attribution headers longer than `cap` characters are refused (400, naming the header), not
    cut: a cut name could merge two features' spend. The call's ledger row keeps the first `cap`."""
    for name in ATTRIBUTION_HEADERS:
        value = headers.get(name)
        if value is not None and len(value) > cap:
            raise InvalidRequest(f"header {name} is {len(value)} characters long; the limit is {cap} "
                                 "(server.max_attribution_chars)", param=name, code="header_too_long")


def _clip(value: str | None, cap: int) -> str | None:
    return value if value is None or len(value) <= cap else value[:cap]


def format_usd(amount: Decimal | None) -> str:
    return "unknown" if amount is None else format(amount, "f")


# Hands a call that may wait to the batch lane (api.batches.BatchSurfaces.defer): the 202's body.
Deferrer = Callable[[Call, float, dict[str, str]], Awaitable[dict[str, Any]]]


async def handle_chat(gw: Gateway, flow: Next, wire: Wire, scope: Scope, receive: Receive, send: Send,
                      headers: dict[str, str], deferrer: Deferrer | None = None) -> None:
    started = time.time()
    clock0 = time.perf_counter()
    rid = gw.new_request_id()
    try:
        tenant = await gw.tenant_for(wire.api_key(headers))
    except GatewayError as err:
        # No valid key: answered, but not recorded (there is no tenant to charge it to).
        await send_response(send, err.status, wire.error_body(err, rid), {"x-thrifty-request-id": rid})
        return

    cap = gw.config.server.max_attribution_chars
    ex = Exchange(request_id=rid, started_at=started, tenant=tenant, surface=wire.name,
                  feature=_clip(headers.get("x-thrifty-feature"), cap), user=_clip(headers.get("x-thrifty-user"), cap),
                  task=_clip(attribution.header_task(headers), cap),
                  call_site=_clip(headers.get("x-thrifty-call-site"), cap))
    http = _Http(gw, wire, send, ex, clock0)
    try:
        call = await http.read_call(receive, headers, tenant)
        window = defer_window(headers, call.policy.defer and deferrer is not None)
        if window is not None and deferrer is None:  # asked for by the client, but the lane is off
            raise InvalidRequest(f"{DEFER_HEADER}: the batch lane is off on this gateway (batch.enabled: "
                                 "false); send the call without it to be answered now", param=DEFER_HEADER)
        if window is not None and deferrer is not None:
            await http.deferred(await deferrer(call, window, headers))
            return
        # Journaled: a crash from here on leaves the call recorded as interrupted. (A deferred
        # call is not: the batch lane keeps it in its tables and writes its row when answered.)
        gw.recorder.begin(ex)
        await http.answer(call, await flow(call))
    except GatewayError as err:
        await http.fail(err)
    except Exception as exc:  # a bug of ours: answer cleanly and keep the ledger row
        log.exception("unhandled error in request %s", rid)
        await http.fail(UpstreamError(f"internal gateway error: {type(exc).__name__}", status=500))
    finally:
        http.record()  # if not recorded before the answer's last bytes (cancelled, or failed sending)


class _Http:
    """The HTTP side of one call: reading the request and sending the answer."""

    __slots__ = ("gw", "wire", "send", "ex", "clock0", "streaming", "call", "answered", "recorded")

    def __init__(self, gw: Gateway, wire: Wire, send: Send, ex: Exchange, clock0: float) -> None:
        self.gw, self.wire, self.send, self.ex, self.clock0 = gw, wire, send, ex, clock0
        self.streaming = False  # True once the 200 and the first bytes of a stream are sent
        self.call: Call | None = None
        self.answered: Answer | None = None
        self.recorded = False

    def record(self) -> None:
        """Write the call's row, once: before the last bytes of the answer are sent, so that a
        client never has an answer whose row could still be lost (the ledger journals it)."""
        if self.recorded:
            return
        self.recorded = True
        ex = self.ex
        ex.finished_at = time.time()
        ex.latency_ms = (time.perf_counter() - self.clock0) * 1000.0
        self.gw.recorder.record(ex, self.call, self.answered)

    async def read_call(self, receive: Receive, headers: dict[str, str], tenant: str) -> Call:
        gw, ex = self.gw, self.ex
        server = gw.config.server
        check_attribution(headers, server.max_attribution_chars)
        raw = await read_body(receive, headers, server.max_body_bytes, server.body_timeout_s)
        body = parse_json(raw, server.max_json_depth)
        if gw.config.ledger.store_bodies:
            ex.request_body = raw.decode("utf-8", "replace")
        model, stream = self.wire.check(body)
        ex.requested_model, ex.stream = model, stream
        user, task = attribution.attribute(ex.user, ex.task, self.wire.user(body), headers, body)
        ex.user, ex.task = _clip(user, server.max_attribution_chars), _clip(task, server.max_attribution_chars)
        ex.request_hash = request_hash(body)
        self.call = Call(request_id=ex.request_id, tenant=tenant, wire=self.wire, headers=headers, body=body,
                         model=model, stream=stream, feature=ex.feature, user=ex.user, task=ex.task,
                         call_site=ex.call_site, policy=gw.policies.for_call(tenant, ex.feature, model))
        return self.call

    def _headers(self, cost: str, saved: str) -> dict[str, str]:
        call, answer = self.call, self.answered
        model = tier = ""
        cache = "miss"
        if answer is not None and answer.cache in _SERVED_FROM_CACHE:
            model, tier, cache = answer.served_model or "", answer.tier or "", answer.cache
        elif call is not None and call.route is not None:
            model, tier = call.route.model, call.tier or call.route.tier or ""
        extra = call.extra_headers if call is not None else {}
        return {"x-thrifty-request-id": self.ex.request_id, "x-thrifty-cost-usd": cost,
                "x-thrifty-saved-usd": saved, "x-thrifty-model": model, "x-thrifty-tier": tier,
                "x-thrifty-cache": cache, **extra}

    async def answer(self, call: Call, answer: Answer) -> None:
        self.answered = answer
        if answer.body is not None:
            payload = jsonutil.dumps(answer.body)
            if self.gw.config.ledger.store_bodies:
                self.ex.response_body = payload.decode("utf-8", "replace")
            self.ex.status = 200
            accounting = self.gw.accountant.of_call(call, answer)  # the recorder reads the same one
            headers = self._headers(format_usd(answer.cost), format_usd(saved_usd(accounting, answer.cost)))
            self.record()
            await send_response(self.send, 200, payload, headers)
            return
        assert answer.events is not None
        encode, send = self.wire.encode_event, self.send
        async for event in answer.events:
            if not self.streaming:
                # The cost of a stream is known only at its end; the ledger row has it.
                await start_stream(send, self._headers("pending", "pending"))
                self.streaming = True
                self.ex.ttft_ms = (time.perf_counter() - self.clock0) * 1000.0
            await stream_chunk(send, encode(event))
        if not self.streaming:
            await start_stream(send, self._headers("pending", "pending"))
            self.streaming = True
        self.ex.status = 200
        self.record()
        await end_stream(send, self.wire.stream_end)

    async def deferred(self, job: dict[str, Any]) -> None:
        """202 with the job: the batch lane writes the call's ledger row (same request id) when
        its answer arrives, so none is written for the 202 itself."""
        self.recorded = True
        headers = {"x-thrifty-request-id": self.ex.request_id, "x-thrifty-cost-usd": "pending",
                   "x-thrifty-saved-usd": "pending", "x-thrifty-lane": "deferred",
                   "location": f"/v1/thrifty/jobs/{job['id']}"}
        await send_response(self.send, 202, jsonutil.dumps(job), headers)

    async def fail(self, err: GatewayError) -> None:
        ex = self.ex
        ex.status, ex.error_type = err.status, err.kind
        if self.streaming:
            # Headers are gone: end the stream with the protocol's error event instead.
            self.record()
            await end_stream(self.send, self.wire.stream_error(err))
            return
        headers = self._headers("0", "0")
        if err.retry_after:
            headers["retry-after"] = err.retry_after
        self.record()
        await send_response(self.send, err.status, self.wire.error_body(err, ex.request_id), headers)
