"""The emulator's ASGI app: routes, auth, faults, latency, streaming and billing.

Everything provider-specific sits behind `Wire` (openai_wire, anthropic_wire); this module only
runs the steps every chat request goes through, in order: authenticate, parse, find the model,
maybe fault, apply the prompt cache, generate, wait as the model would, answer, bill.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
import time
from functools import partial
from typing import Any, Awaitable, Callable

from thrifty_emulator import embeddings, jsonutil
from thrifty_emulator.anthropic_wire import AnthropicWire
from thrifty_emulator.asgi import (DisconnectWatch, Receive, Scope, Send, header_map, raw_headers, read_body,
                                   send_body)
from thrifty_emulator.azure import AzureRoutes, AzureWire
from thrifty_emulator.batches import BatchRoutes
from thrifty_emulator.bedrock import BedrockRoutes, BedrockWire
from thrifty_emulator.billing import Billing
from thrifty_emulator.errors import BodyTooLarge
from thrifty_emulator.faults import BadFaultHeader, Fault, fault_from_headers, retry_after, roll_fault
from thrifty_emulator.gemini import GeminiRoutes, GeminiWire
from thrifty_emulator.generate import ChatRequest, Completion, IdMaker, Model
from thrifty_emulator.keys import KeySpec
from thrifty_emulator.models import EmulatorConfig, ModelSpec
from thrifty_emulator.openai_wire import OpenAIWire
from thrifty_emulator.prompt import ClaudeTokenizer, Tokenizer
from thrifty_emulator.prompt_cache import CacheWrites, Clock, deferred_writes
from thrifty_emulator.ratelimit import RateLimiter
from thrifty_emulator.tokens import ensure_tiktoken_cache
from thrifty_emulator.usage import TokenCounts
from thrifty_emulator.vertex import VertexRoutes
from thrifty_emulator.wire import Wire, WireError

Handler = Callable[[Receive, Send, dict[str, str]], Awaitable[None]]

_MESSAGE_IDS = {"openai": ("chatcmpl-", 29), "anthropic": ("msg_01", 22)}


class EmulatorApp:
    def __init__(self, config: EmulatorConfig, *, clock: Clock = time.monotonic) -> None:
        ensure_tiktoken_cache()
        self.config = config
        tokenizer = Tokenizer()  # o200k for OpenAI models; Claude's count is approximated (prompt.py)
        self._ids = IdMaker()
        self._model = Model(config, self._ids)
        self.limiter = RateLimiter(clock)
        self._fault_dice: dict[str, random.Random] = {}
        self.billing = Billing()
        self.openai = OpenAIWire(tokenizer, clock, config.openai_cache_ttl_s)
        self.openai.cache.prefix_rpm = config.openai_cache_prefix_rpm
        self.anthropic = AnthropicWire(ClaudeTokenizer(), clock)
        self.azure = AzureWire(tokenizer, clock, config.openai_cache_ttl_s)  # its own prompt cache
        self.azure.cache.prefix_rpm = config.openai_cache_prefix_rpm
        self._azure = AzureRoutes(self.azure, self._chat, self._embeddings)  # Azure's deployment URLs (azure.py)
        self._gemini = GeminiRoutes(GeminiWire(tokenizer, clock, config.openai_cache_ttl_s), self)  # gemini.py
        self._batches = BatchRoutes(self, clock)  # OpenAI Batch + Files, Anthropic Message Batches (batches.py)
        self._vertex = VertexRoutes(self, tokenizer, clock, config.openai_cache_ttl_s)  # vertex.py
        self._bedrock = BedrockRoutes(BedrockWire(tokenizer, clock, config.openai_cache_ttl_s), self)  # bedrock.py
        self._routes: dict[tuple[str, str], tuple[Wire, Handler]] = {
            ("POST", "/v1/chat/completions"): (self.openai, partial(self._chat, self.openai)),
            ("POST", "/v1/messages"): (self.anthropic, partial(self._chat, self.anthropic)),
            ("POST", "/v1/messages/count_tokens"): (self.anthropic, self._count_tokens),
            ("POST", "/v1/embeddings"): (self.openai, partial(self._embeddings, self.openai)),
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
        query = scope.get("query_string", b"")
        route = (self._routes.get((scope["method"], path)) or self._azure.match(scope["method"], path, query)
                 or self._batches.match(scope["method"], path, query)
                 or self._gemini.match(scope["method"], path, query) or self._vertex.match(scope["method"], path, query)
                 or self._bedrock.match(scope["method"], scope))
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
        key = wire.authenticate(headers, self.config.keys)
        req = wire.parse(await self._json_body(wire, receive))
        spec = self._spec(wire, req.model)
        wire.check(req, spec, headers)
        fault = self._fault(headers, spec, wire)
        if fault is not None and fault.status is not None:
            self.billing.fault(spec.name)
            wait = retry_after(self._dice(f"{spec.name}:retry-after"), self.config.retry_after_s)
            raise wire.fault_error(fault.status, req.model, wait)
        with deferred_writes() as writes:  # cache entries become readable once the answer begins
            completion = self._complete(wire, req, spec)
            self._rate_limit(wire, key, spec, completion)
        watch = DisconnectWatch(receive)
        try:
            if fault is not None and fault.kind == "timeout":
                writes.commit()  # the answer is generated; only its delivery is held
                if await watch.sleep(fault.delay_s):
                    self.billing.charge(spec.name, completion.usage, "timeout")
                    return
            dropping = fault is not None and fault.kind == "drop"
            send_answer = self._stream if req.stream else self._whole
            outcome, generated = await send_answer(wire, completion, send, watch, dropping, writes)
        finally:
            watch.close()
        if outcome == "ok" and fault is not None:  # a timeout fault that was waited out
            outcome = "timeout"
        self.billing.charge(spec.name, _generated(completion.usage, generated), outcome)

    def _complete(self, wire: Wire, req: ChatRequest, spec: ModelSpec) -> Completion:
        usage = wire.input_usage(req, spec)
        choices = self._model.choices(req, spec, wire.tool_id, wire.tok)
        usage.output_tokens = sum(c.output_tokens for c in choices)
        usage.reasoning_tokens = sum(c.reasoning_tokens for c in choices)
        return Completion(self._ids.make(*_MESSAGE_IDS[wire.name]), int(time.time()), spec, req, usage, choices)

    def _rate_limit(self, wire: Wire, key: KeySpec, spec: ModelSpec, c: Completion) -> None:
        """Draw the request from its key's buckets (ratelimit.py), or answer 429 with the limit headers."""
        usage = c.usage
        need = wire.rate_need(c.request, spec, usage.input_tokens + usage.cache_write_tokens)
        refused = self.limiter.acquire(wire.name, key.key, spec.name, key.limits, need)
        if refused is not None:
            err = wire.rate_limited(c.request.model, refused.dimension, refused.limit, refused.used,
                                    refused.requested, refused.retry_after_s)
            err.headers.update(self.limiter.headers(wire.name, key.key, spec.name, key.limits))
            raise err
        # Output buckets are charged what was generated, not the estimate (ratelimit.py).
        out_dim = "tokens" if wire.name == "openai" else "output_tokens"
        actual = usage.output_tokens + (c.request.prompt.tokens if wire.name == "openai" else 0)
        self.limiter.settle(wire.name, key.key, spec.name, key.limits, out_dim, need[out_dim], actual)
        c.headers.update(self.limiter.headers(wire.name, key.key, spec.name, key.limits))

    def _answer_headers(self, wire: Wire, c: Completion) -> dict[str, str]:
        return {wire.request_id_header: self._ids.make("req_", 24), **c.headers}

    # Both answer paths return (outcome, output tokens generated): "ok" | "dropped" | "cancelled".

    async def _whole(self, wire: Wire, c: Completion, send: Send, watch: DisconnectWatch, dropping: bool,
                     writes: CacheWrites) -> tuple[str, int]:
        total = c.usage.output_tokens
        scale = self.config.latency_scale
        if scale > 0:
            if await watch.sleep(c.spec.ttft_ms / 1000 * scale):
                return "cancelled", 0
            writes.commit()  # the first token exists: the prompt's cache entries are readable
            longest = max(ch.output_tokens for ch in c.choices)  # n choices are generated side by side
            seconds = longest / c.spec.tokens_per_s * scale
            started = time.monotonic()
            if await watch.sleep(seconds):
                return "cancelled", _share(total, time.monotonic() - started, seconds)
        writes.commit()
        body = jsonutil.dumps(wire.render(c))
        await send_body(send, 200, body, self._answer_headers(wire, c), complete=not dropping)
        return ("dropped" if dropping else "ok"), total

    async def _stream(self, wire: Wire, c: Completion, send: Send, watch: DisconnectWatch, dropping: bool,
                      writes: CacheWrites) -> tuple[str, int]:
        events = wire.stream(c, self.config.stream_chunk_tokens)
        if dropping:
            events = events[:max(1, len(events) // 2)]
        reasoning = c.usage.reasoning_tokens
        scale = self.config.latency_scale
        if scale > 0:
            # Hidden reasoning happens before the first visible token.
            ttft = c.spec.ttft_ms / 1000 * scale
            thinking = max(ch.reasoning_tokens for ch in c.choices) / c.spec.tokens_per_s * scale
            started = time.monotonic()
            if await watch.sleep(ttft + thinking):
                return "cancelled", _share(reasoning, time.monotonic() - started - ttft, thinking)
        writes.commit()  # the answer begins: the prompt's cache entries are readable
        generated = reasoning
        headers = raw_headers(wire.stream_content_type, {**self._answer_headers(wire, c), "cache-control": "no-cache"})
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if scale == 0:
            # Unpaced: one write for the whole stream; the SSE framing the client parses is unchanged.
            await send({"type": "http.response.body", "body": b"".join(e for e, _ in events),
                        "more_body": dropping})
            generated += sum(n for _, n in events)
        else:
            # Events of n choices interleave; the choices are generated side by side.
            per_token = scale / (c.spec.tokens_per_s * len(c.choices))
            for event, tokens in events:
                generated += tokens  # being generated while the emulator waits
                if tokens and await watch.sleep(tokens * per_token):
                    return "cancelled", generated
                await send({"type": "http.response.body", "body": event, "more_body": True})
            if not dropping:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        # Returning with the body unfinished makes the server close the connection mid-answer.
        return ("dropped", generated) if dropping else ("ok", c.usage.output_tokens)

    # --- the rest -------------------------------------------------------------------------

    async def _embeddings(self, wire: Wire, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        wire.authenticate(headers, self.config.keys)
        model, inputs, encoding, dims = embeddings.parse(await self._json_body(wire, receive))
        try:  # header-chosen error faults only: embedding models have no ModelSpec (nor fault dice)
            fault = fault_from_headers(headers, self.config.fault_delay_s)
        except BadFaultHeader as exc:
            raise wire.invalid(str(exc)) from None
        if fault is not None and fault.status is not None:
            self.billing.fault(model)
            raise wire.fault_error(fault.status, model, retry_after(self._dice(f"{model}:retry-after"),
                                                                    self.config.retry_after_s))
        body, n = embeddings.answer(model, inputs, encoding, dims)
        self.billing.charge(model, TokenCounts(input_tokens=n))
        await send_body(send, 200, jsonutil.dumps(body), {wire.request_id_header: self._ids.make("req_", 24)})

    async def _count_tokens(self, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        self.anthropic.authenticate(headers, self.config.keys)
        req = self.anthropic.parse(await self._json_body(self.anthropic, receive), need_max_tokens=False)
        self._spec(self.anthropic, req.model)
        await send_body(send, 200, jsonutil.dumps({"input_tokens": req.prompt.tokens}))

    def _listing_wire(self, headers: dict[str, str]) -> Wire:
        # One path, two providers: the Anthropic SDK always sends anthropic-version.
        return self.anthropic if "anthropic-version" in headers else self.openai

    async def _models(self, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        wire = self._listing_wire(headers)
        wire.authenticate(headers, self.config.keys)
        await send_body(send, 200, jsonutil.dumps(wire.models_body(self.config.models.values())))

    async def _model_info(self, name: str, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        wire = self._listing_wire(headers)
        wire.authenticate(headers, self.config.keys)
        spec = self._spec(wire, name)
        body = wire.models_body([spec])
        await send_body(send, 200, jsonutil.dumps(body["data"][0]))

    async def _health(self, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        await send_body(send, 200, jsonutil.dumps({"status": "ok", "models": sorted(self.config.models),
                                                   "latency_scale": self.config.latency_scale}))

    async def _billing(self, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        self._batches.advance()  # batch lines due by now have run, and are billed
        await send_body(send, 200, jsonutil.dumps(self.billing.snapshot()))

    async def _reset(self, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        self.billing.reset()
        self.openai.reset()
        self.anthropic.reset()
        self.azure.reset()
        self._vertex.reset()
        self.limiter.reset()
        self._batches.reset()
        self._fault_dice.clear()
        await send_body(send, 200, jsonutil.dumps({"status": "ok"}))


def _share(total: int, elapsed: float, seconds: float) -> int:
    """Tokens of `total` generated after `elapsed` of the `seconds` their generation takes."""
    if seconds <= 0 or elapsed <= 0:
        return 0
    return min(total, math.ceil(total * elapsed / seconds))


def _generated(usage: TokenCounts, output_tokens: int) -> TokenCounts:
    """`usage` with only the output generated so far; reasoning comes first, so it is counted first."""
    output = min(output_tokens, usage.output_tokens)
    return dataclasses.replace(usage, output_tokens=output, reasoning_tokens=min(usage.reasoning_tokens, output))


def build_app(config: EmulatorConfig | None = None, *, clock: Clock = time.monotonic) -> EmulatorApp:
    """The emulator as an ASGI app. `clock` drives prompt-cache expiry (tests pass a fake one)."""
    from thrifty_emulator.models import default_config

    return EmulatorApp(config or default_config(), clock=clock)
