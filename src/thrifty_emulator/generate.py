"""The emulated model: a wire-neutral request in, deterministic choices out.

Each wire format parses its body into a `ChatRequest` and renders a `Completion`; what the model
"says" is decided here, once, for both. The answer is seeded by the model, the whole prompt
(tools, system, messages) and the emulator's seed, so the same request always gets the same answer.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import string
from dataclasses import dataclass, field
from typing import Any

from thrifty_emulator import jsonutil
from thrifty_emulator.answers import cut, prose, reasoning_tokens, thinking_tokens, value_for
from thrifty_emulator.models import EmulatorConfig, ModelSpec
from thrifty_emulator.prompt import Prompt, Tokenizer
from thrifty_emulator.usage import TokenCounts


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    schema: dict[str, Any]


@dataclass(slots=True)
class ChatRequest:
    model: str
    prompt: Prompt
    stream: bool = False
    n: int = 1
    max_tokens: int | None = None
    stops: list[str] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    tool_choice: str = "auto"  # "auto", "none", "required", or "tool" (then forced_tool names it)
    forced_tool: str | None = None
    after_tool_result: bool = False  # the last message hands back a tool's result
    json_schema: dict[str, Any] | None = None  # structured output requested
    json_mode: bool = False  # any JSON object will do
    include_usage: bool = False  # OpenAI stream_options.include_usage
    reasoning_effort: str | None = None
    cache_key: str | None = None  # OpenAI prompt_cache_key
    cache_ttl_s: float | None = None  # OpenAI prompt_cache_retention, when extended
    service_tier: str | None = None
    user_text: str | None = None  # the last user message's text (matched against recorded prompts)
    thinking_budget: int | None = None  # Anthropic extended thinking enabled, with this budget
    body: dict[str, Any] = field(default_factory=dict)  # the request as sent, for model-specific checks


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]
    arguments_json: str


@dataclass(frozen=True, slots=True)
class Choice:
    text: str | None
    tool_calls: tuple[ToolCall, ...]
    finish: str  # "end", "length", "stop_sequence" or "tool_use"
    stop_sequence: str | None
    output_tokens: int  # reasoning included
    reasoning_tokens: int
    thinking: str | None = None  # Anthropic: the thinking block's text, when thinking was enabled
    signature: str | None = None  # ... and its signature


@dataclass(slots=True)
class Completion:
    id: str
    created: int
    spec: ModelSpec
    request: ChatRequest
    usage: TokenCounts
    choices: list[Choice]
    headers: dict[str, str] = field(default_factory=dict)  # extra answer headers (rate limits)


_ALNUM = string.ascii_letters + string.digits


class IdMaker:
    """Random ids shaped like the providers' (chatcmpl-..., msg_01..., call_..., toolu_01...)."""

    def __init__(self) -> None:
        self._rng = random.Random(os.urandom(16))

    def make(self, prefix: str, length: int) -> str:
        return prefix + "".join(self._rng.choices(_ALNUM, k=length))


def request_seed(spec: ModelSpec, prompt: Prompt, seed: int) -> int:
    h = hashlib.blake2b(digest_size=8)
    h.update(spec.name.encode())
    h.update(prompt.digest)
    h.update(seed.to_bytes(8, "little", signed=True))
    return int.from_bytes(h.digest(), "little")


class Model:
    """Decides the choices of one request, counting its output with the wire's tokenizer."""

    def __init__(self, config: EmulatorConfig, ids: IdMaker) -> None:
        self._config = config
        self._ids = ids

    def choices(self, req: ChatRequest, spec: ModelSpec, tool_id: tuple[str, int], tok: Tokenizer) -> list[Choice]:
        base = request_seed(spec, req.prompt, self._config.seed)
        return [self._choice(req, spec, random.Random(base + i), tool_id, tok) for i in range(req.n)]

    @staticmethod
    def _pick_tool(req: ChatRequest, rng: random.Random) -> Tool | None:
        if not req.tools or req.tool_choice == "none":
            return None
        if req.tool_choice == "tool":
            return next((t for t in req.tools if t.name == req.forced_tool), None)
        if req.tool_choice == "auto" and req.after_tool_result:
            return None  # with the tool's result in hand, the model answers in words
        return rng.choice(req.tools)

    @staticmethod
    def _thinking(req: ChatRequest, rng: random.Random, tok: Tokenizer) -> tuple[int, str | None, str | None]:
        """Anthropic extended thinking: (its tokens, the thinking block's text, its signature)."""
        if req.thinking_budget is None:
            return 0, None, None
        n = thinking_tokens(rng, req.thinking_budget)
        if req.max_tokens is not None:
            n = min(n, req.max_tokens)
        text = tok.decode(tok.encode(prose(rng, n + 8))[:n])
        signature = base64.b64encode(rng.randbytes(96)).decode()
        return tok.count(text), text, signature

    def _choice(self, req: ChatRequest, spec: ModelSpec, rng: random.Random, tool_id: tuple[str, int],
                tok: Tokenizer) -> Choice:
        if spec.wire == "anthropic":
            reasoning, thinking, signature = self._thinking(req, rng, tok)
        else:  # OpenAI reasoning models think unseen
            thinking = signature = None
            reasoning = reasoning_tokens(rng, req.reasoning_effort) if spec.reasoning else 0
        budget = None if req.max_tokens is None else req.max_tokens - reasoning
        if budget is not None and budget <= 0:
            # Reasoning ate the whole allowance: an empty answer, cut for length.
            spent = min(reasoning, req.max_tokens or 0)
            return Choice("", (), "length", None, spent, spent, thinking, signature)
        tool = self._pick_tool(req, rng)
        if tool is not None:
            args = value_for(tool.schema or {"type": "object", "properties": {}}, rng)
            if not isinstance(args, dict):
                args = {"value": args}
            args_json = jsonutil.dumps(args).decode()
            call = ToolCall(self._ids.make(*tool_id), tool.name, args, args_json)
            tokens = tok.count(tool.name) + tok.count(args_json) + reasoning
            return Choice(None, (call,), "tool_use", None, tokens, reasoning, thinking, signature)
        if req.json_schema is not None:
            text = jsonutil.dumps(value_for(req.json_schema, rng)).decode()
        elif req.json_mode:
            text = jsonutil.dumps({"answer": prose(rng, rng.randint(8, 40))}).decode()
        else:
            text = self._recorded(req, spec) or prose(
                rng, rng.randint(self._config.min_answer_tokens, self._config.max_answer_tokens))
        c = cut(text, tok, budget, req.stops)
        return Choice(c.text, (), c.reason, c.stop_sequence, c.tokens + reasoning, reasoning, thinking, signature)

    def _recorded(self, req: ChatRequest, spec: ModelSpec) -> str | None:
        recorded = self._config.recorded
        return recorded.answer(spec.name, req.user_text) if recorded is not None else None
