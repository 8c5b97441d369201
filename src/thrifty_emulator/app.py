"""The emulator's ASGI app: routes, auth, faults, latency, streaming and billing.

Everything provider-specific sits behind `Wire` (openai_wire, anthropic_wire); this module only
runs the steps every chat request goes through, in order: authenticate, parse, find the model,
maybe fault, apply the prompt cache, generate, wait as the model would, answer, bill.
"""

from __future__ import annotations

import hashlib
import random
import time
from functools import partial
from typing import Any, Awaitable, Callable

from thrifty_emulator import jsonutil
from thrifty_emulator.anthropic_wire import AnthropicWire
from thrifty_emulator.asgi import (SSE, DisconnectWatch, Receive, Scope, Send, header_map, raw_headers, read_body,
                                   send_body)
from thrifty_emulator.billing import Billing
from thrifty_emulator.errors import BodyTooLarge
from thrifty_emulator.faults import BadFaultHeader, Fault, fault_from_headers, roll_fault
from thrifty_emulator.generate import ChatRequest, Completion, IdMaker, Model
from thrifty_emulator.models import EmulatorConfig, ModelSpec
from thrifty_emulator.openai_wire import OpenAIWire
from thrifty_emulator.prompt import Tokenizer
from thrifty_emulator.prompt_cache import Clock
from thrifty_emulator.tokens import ensure_tiktoken_cache
from thrifty_emulator.wire import Wire, WireError

Handler = Callable[[Receive, Send, dict[str, str]], Awaitable[None]]

_MESSAGE_IDS = {"openai": ("chatcmpl-", 29), "anthropic": ("msg_01", 22)}


class EmulatorApp:
    def __init__(self, config: EmulatorConfig, *, clock: Clock = time.monotonic) -> None:
        ensure_tiktoken_cache()
        self.config = config
        tokenizer = Tokenizer()
        self._ids = IdMaker()
        self._model = Model(config, tokenizer, self._ids)
        self._fault_dice: dict[str, random.Random] = {}
        self.billing = Billing()
        self.openai = OpenAIWire(tokenizer, clock, config.openai_cache_ttl_s)
        self.anthropic = AnthropicWire(tokenizer, clock)
        self._routes: dict[tuple[str, str], tuple[Wire, Handler]] = {
            ("POST", "/v1/chat/completions"): (self.openai, partial(self._chat, self.openai)),
            ("POST", "/v1/messages"): (self.anthropic, partial(self._chat, self.anthropic)),
            ("POST", "/v1/messages/count_tokens"): (self.anthropic, self._count_tokens),
            ("GET", "/v1/models"): (self.openai, self._models),
            ("GET", "/health"): (self.openai, self._health),
            ("GET", "/_emulator/billing"): (self.openai, self._billing),
            ("POST", "/_emulator/reset"): (self.openai, self._reset),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"].rstrip("/") or "/"
        route = self._routes.get((scope["method"], path))
        headers = header_map(scope)
        if route is None:
            wire = self.anthropic if path.startswith("/v1/messages") else self.openai
            if scope["method"] == "GET" and path.startswith("/v1/models/"):
                route = (wire, partial(self._model_info, path[len("/v1/models/"):]))
            else:
                known = any(p == path for _, p in self._routes)
                err = WireError(405 if known else 404, "invalid_request" if known else "not_found",
                                f"{'Method not allowed' if known else 'Unknown request URL'}: "
                                f"{scope['method']} {scope['path']}")
                await self._error(wire, err, send)
                return
        wire, handler = route
        try:
            await handler(receive, send, headers)
        except WireError as err:
            await self._error(wire, err, send)

    async def _error(self, wire: Wire, err: WireError, send: Send) -> None:
        request_id = self._ids.make("req_", 24)
        headers = {**err.headers, wire.request_id_header: request_id}
        await send_body(send, err.status, jsonutil.dumps(wire.error_body(err, request_id)), headers)

    async def _json_body(self, wire: Wire, receive: Receive) -> Any:
        try:
            raw = await read_body(receive, {}, self.config.max_body_bytes)
        except BodyTooLarge as exc:
            raise WireError(413, "invalid_request", str(exc)) from None
        try:
            return jsonutil.loads(raw)
        except jsonutil.JSONDecodeError:
            return None  # each wire rejects a non-object body with its own message

    def _spec(self, wire: Wire, model: str) -> ModelSpec:
        spec = self.config.find(wire.name, model)
        if spec is None:
            raise wire.unknown_model(model)
        return spec

    def _fault(self, headers: dict[str, str], spec: ModelSpec, wire: Wire) -> Fault | None:
        try:
            fault = fault_from_headers(headers, self.config.fault_delay_s)
        except BadFaultHeader as exc:
            raise wire.invalid(str(exc)) from None
        if fault is None and spec.faults:
            fault = roll_fault(spec.faults, self._dice(spec.name), self.config.fault_delay_s)
        return fault

    def _dice(self, model: str) -> random.Random:
        # One seeded stream per model, so a model's fault sequence does not depend on other traffic.
        dice = self._fault_dice.get(model)
        if dice is None:
            seed = hashlib.blake2b(f"{self.config.seed}:{model}".encode(), digest_size=8).digest()
            dice = self._fault_dice[model] = random.Random(seed)
        return dice

    # --- chat -----------------------------------------------------------------------------

    async def _chat(self, wire: Wire, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        denied = wire.authenticate(headers)
        if denied is not None:
            raise denied
        req = wire.parse(await self._json_body(wire, receive))
        spec = self._spec(wire, req.model)
        fault = self._fault(headers, spec, wire)
        if fault is not None and fault.status is not None:
            self.billing.fault(spec.name)
            raise wire.fault_error(fault.status, req.model, self.config.retry_after_s)
        completion = self._complete(wire, req, spec)
        watch = DisconnectWatch(receive)
        try:
            if fault is not None and fault.kind == "timeout" and await watch.sleep(fault.delay_s):
                self.billing.fault(spec.name)
                return
            dropping = fault is not None and fault.kind == "drop"
            send_answer = self._stream if req.stream else self._whole
            outcome = await send_answer(wire, completion, send, watch, dropping)
        finally:
            watch.close()
        if outcome == "dropped":
            self.billing.dropped(spec.name)
        elif outcome == "cancelled":
            self.billing.cancelled(spec.name)
        elif fault is not None:  # a timeout fault that was waited out: answered, but not billed
            self.billing.fault(spec.name)
        else:
            self.billing.charge(spec.name, completion.usage)

    def _complete(self, wire: Wire, req: ChatRequest, spec: ModelSpec) -> Completion:
        usage = wire.input_usage(req, spec)
        choices = self._model.choices(req, spec, wire.tool_id)
        usage.output_tokens = sum(c.output_tokens for c in choices)
        usage.reasoning_tokens = sum(c.reasoning_tokens for c in choices)
        return Completion(self._ids.make(*_MESSAGE_IDS[wire.name]), int(time.time()), spec, req, usage, choices)

    def _answer_headers(self, wire: Wire) -> dict[str, str]:
        return {wire.request_id_header: self._ids.make("req_", 24)}

    async def _whole(self, wire: Wire, c: Completion, send: Send, watch: DisconnectWatch, dropping: bool) -> str:
        scale = self.config.latency_scale
        if scale > 0:
            longest = max(ch.output_tokens for ch in c.choices)  # n choices are generated side by side
            seconds = (c.spec.ttft_ms / 1000 + longest / c.spec.tokens_per_s) * scale
            if await watch.sleep(seconds):
                return "cancelled"
        body = jsonutil.dumps(wire.render(c))
        await send_body(send, 200, body, self._answer_headers(wire), complete=not dropping)
        return "dropped" if dropping else "ok"

    async def _stream(self, wire: Wire, c: Completion, send: Send, watch: DisconnectWatch, dropping: bool) -> str:
        events = wire.stream(c, self.config.stream_chunk_tokens)
        if dropping:
            events = events[:max(1, len(events) // 2)]
        scale = self.config.latency_scale
        if scale > 0:
            # Hidden reasoning happens before the first visible token.
            thinking = max(ch.reasoning_tokens for ch in c.choices) / c.spec.tokens_per_s
            if await watch.sleep((c.spec.ttft_ms / 1000 + thinking) * scale):
                return "cancelled"
        headers = raw_headers(SSE, {**self._answer_headers(wire), "cache-control": "no-cache"})
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if scale == 0:
            # Unpaced: one write for the whole stream; the SSE framing the client parses is unchanged.
            await send({"type": "http.response.body", "body": b"".join(e for e, _ in events),
                        "more_body": dropping})
        else:
            # Events of n choices interleave; the choices are generated side by side.
            per_token = scale / (c.spec.tokens_per_s * len(c.choices))
            for event, tokens in events:
                if tokens and await watch.sleep(tokens * per_token):
                    return "cancelled"
                await send({"type": "http.response.body", "body": event, "more_body": True})
            if not dropping:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        # Returning with the body unfinished makes the server close the connection mid-answer.
        return "dropped" if dropping else "ok"

    # --- the rest -------------------------------------------------------------------------

    async def _count_tokens(self, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        denied = self.anthropic.authenticate(headers)
        if denied is not None:
            raise denied
        req = self.anthropic.parse(await self._json_body(self.anthropic, receive), need_max_tokens=False)
        self._spec(self.anthropic, req.model)
        await send_body(send, 200, jsonutil.dumps({"input_tokens": req.prompt.tokens}))

    def _listing_wire(self, headers: dict[str, str]) -> Wire:
        # One path, two providers: the Anthropic SDK always sends anthropic-version.
        return self.anthropic if "anthropic-version" in headers else self.openai

    async def _models(self, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        wire = self._listing_wire(headers)
        denied = wire.authenticate(headers)
        if denied is not None:
            raise denied
        await send_body(send, 200, jsonutil.dumps(wire.models_body(self.config.models.values())))

    async def _model_info(self, name: str, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        wire = self._listing_wire(headers)
        denied = wire.authenticate(headers)
        if denied is not None:
            raise denied
        spec = self._spec(wire, name)
        body = wire.models_body([spec])
        await send_body(send, 200, jsonutil.dumps(body["data"][0]))

    async def _health(self, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        await send_body(send, 200, jsonutil.dumps({"status": "ok", "models": sorted(self.config.models),
                                                   "latency_scale": self.config.latency_scale}))

    async def _billing(self, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        await send_body(send, 200, jsonutil.dumps(self.billing.snapshot()))

    async def _reset(self, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        self.billing.reset()
        self.openai.reset()
        self.anthropic.reset()
        self._fault_dice.clear()
        await send_body(send, 200, jsonutil.dumps({"status": "ok"}))


def build_app(config: EmulatorConfig | None = None, *, clock: Clock = time.monotonic) -> EmulatorApp:
    """The emulator as an ASGI app. `clock` drives prompt-cache expiry (tests pass a fake one)."""
    from thrifty_emulator.models import default_config

    return EmulatorApp(config or default_config(), clock=clock)
