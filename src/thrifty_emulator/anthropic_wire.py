"""Anthropic messages, as the API validates, caches, bills and streams them.

Prompt order for caching is tools, then system, then messages; a `cache_control` breakpoint may
sit on any tool, system block or message content block (or at the top level, which puts it on
the last block: automatic caching).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from thrifty_emulator.generate import ChatRequest, Completion, Tool
from thrifty_emulator.models import ModelSpec
from thrifty_emulator.prompt import PromptBuilder, Tokenizer
from thrifty_emulator.prompt_cache import BreakpointCache, Clock
from thrifty_emulator.recorded import last_user_text
from thrifty_emulator.usage import TokenCounts, anthropic_stream_usage, anthropic_usage
from thrifty_emulator.validation import (ANTHROPIC_PARAMS, COUNT_TOKENS_PARAMS, anthropic_known,
                                         anthropic_model_rules, thinking_budget)
from thrifty_emulator.wire import Wire, WireError, canonical, pieces, sse

MAX_BREAKPOINTS = 4
IMAGE_TOKENS = 1_500  # a ~1 megapixel image: width * height / 750
DOCUMENT_TOKENS = 1_500
STOP_REASON = {"end": "end_turn", "length": "max_tokens", "stop_sequence": "stop_sequence", "tool_use": "tool_use"}
_TYPE_BY_KIND = {"invalid_request": "invalid_request_error", "authentication": "authentication_error",
                 "not_found": "not_found_error", "rate_limit": "rate_limit_error",
                 "rate_limit_tokens": "rate_limit_error", "api_error": "api_error",
                 "unavailable": "api_error", "overloaded": "overloaded_error", "bad_gateway": "api_error"}
_FAULT_MESSAGES = {429: "Number of request tokens has exceeded your per-minute rate limit "
                        "(https://docs.claude.com/en/api/rate-limits); see the response headers for current usage.",
                   500: "Internal server error", 502: "Bad gateway", 503: "Service unavailable", 529: "Overloaded"}


def _has_image(blocks: Any) -> bool:
    return isinstance(blocks, list) and any(
        isinstance(b, dict) and (b.get("type") == "image" or _has_image(b.get("content"))) for b in blocks)


def message_cache_scope(body: dict[str, Any], tool_choice: str, forced: str | None) -> str:
    """What the message-level cache depends on besides the prompt itself (prompt caching docs, "What
    invalidates the cache"): `tool_choice`, the thinking parameters, and whether any image is present.
    Tools and system are not affected by these; a change of tools already changes every later hash."""
    images = any(isinstance(m, dict) and _has_image(m.get("content")) for m in body.get("messages") or ())
    return canonical({"tool_choice": [tool_choice, forced], "thinking": body.get("thinking"), "images": images})


class AnthropicWire(Wire):
    name = "anthropic"
    tool_id = ("toolu_01", 22)
    request_id_header = "request-id"

    def __init__(self, tokenizer: Tokenizer, clock: Clock) -> None:
        super().__init__(tokenizer)
        self.cache = BreakpointCache(clock)

    # --- requests -------------------------------------------------------------------------

    def credential(self, headers: Mapping[str, str]) -> str | None:
        key = headers.get("x-api-key", "").strip()
        if key:
            return key
        scheme, _, token = headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def missing_key(self) -> WireError:
        return WireError(401, "authentication", "x-api-key header is required")

    def bad_key(self, key: str) -> WireError:
        return WireError(401, "authentication", "invalid x-api-key")

    def parse(self, body: Any, *, need_max_tokens: bool = True) -> ChatRequest:
        if not isinstance(body, dict):
            raise self.invalid("Request body must be a JSON object")
        anthropic_known(body, ANTHROPIC_PARAMS if need_max_tokens else COUNT_TOKENS_PARAMS)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise self.invalid("model: Field required")
        max_tokens = body.get("max_tokens")
        if max_tokens is None and need_max_tokens:
            raise self.invalid("max_tokens: Field required")
        if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)
                                       or max_tokens < 1):
            raise self.invalid("max_tokens: Input should be greater than or equal to 1")
        messages = body.get("messages")
        if not isinstance(messages, list):
            raise self.invalid("messages: Field required" if messages is None
                               else "messages: Input should be a valid list")
        if not messages:
            raise self.invalid("messages: at least one message is required")
        temperature = body.get("temperature")
        if temperature is not None and (not isinstance(temperature, (int, float)) or isinstance(temperature, bool)
                                        or not 0 <= temperature <= 1):
            raise self.invalid("temperature: Input should be less than or equal to 1")
        stops = body.get("stop_sequences") or []
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise self.invalid("stop_sequences: Input should be a valid list of strings")
        tools = self._tools(body.get("tools"))
        tool_choice, forced = self._tool_choice(body.get("tool_choice"), tools)
        builder = PromptBuilder(self.tok)
        ttls: list[str] = []
        for tool in body.get("tools") or ():
            builder.text("# tool\n" + canonical({k: v for k, v in tool.items() if k != "cache_control"}))
            builder.end_block(self._ttl(tool, ttls))
        self._system(builder, body.get("system"), ttls)
        builder.salt(message_cache_scope(body, tool_choice, forced))
        for i, message in enumerate(messages):
            self._message(builder, message, i, ttls)
        if body.get("cache_control") is not None:
            ttl = self._ttl(body, ttls)
            if ttl:
                builder.set_last_ttl(ttl)
        self._check_breakpoints(ttls)
        last = messages[-1]
        after_tool = isinstance(last, dict) and last.get("role") == "user" and isinstance(last.get("content"), list) \
            and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in last["content"])
        for name, high in (("top_p", 1), ("top_k", None)):
            v = body.get(name)
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0
                                  or (high is not None and v > high) or (high is None and not isinstance(v, int))):
                raise self.invalid(f"{name}: Input should be a valid {'integer' if high is None else 'number'}"
                                   + (f" between 0 and {high}" if high is not None else " >= 0"))
        return ChatRequest(model=model, prompt=builder.build(), stream=bool(body.get("stream")),
                           max_tokens=max_tokens, stops=[s for s in stops if s], tools=tools,
                           tool_choice=tool_choice, forced_tool=forced, after_tool_result=after_tool,
                           json_schema=self._output_schema(body), user_text=last_user_text(messages),
                           thinking_budget=thinking_budget(body), body=body)

    def check(self, req: ChatRequest, spec: ModelSpec, headers: Mapping[str, str]) -> None:
        anthropic_model_rules(req, spec, headers)

    def rate_need(self, req: ChatRequest, spec: ModelSpec, input_tokens: int) -> dict[str, int]:
        # Cache reads do not count towards ITPM; OTPM is estimated from max_tokens (Rate limits docs).
        return {"requests": 1, "input_tokens": input_tokens, "output_tokens": req.max_tokens or 0}

    def rate_limited(self, model: str, dimension: str, limit: int, used: int, requested: int,
                     retry_after_s: int | None) -> WireError:
        what = {"requests": "requests", "input_tokens": "input tokens", "output_tokens": "output tokens"}[dimension]
        message = (f"This request would exceed your organization's rate limit of {limit:,} {what} per minute "
                   f"(org: emulator, model: {model}). For details, refer to: "
                   "https://docs.claude.com/en/api/rate-limits. "
                   "You can see the response headers for current usage. Please reduce the prompt length or the "
                   "maximum tokens requested, or try again later.")
        headers = {"retry-after": str(retry_after_s)} if retry_after_s is not None else None
        return WireError(429, "rate_limit" if dimension == "requests" else "rate_limit_tokens", message,
                         headers=headers)

    def _ttl(self, holder: Any, ttls: list[str]) -> str | None:
        cc = holder.get("cache_control") if isinstance(holder, dict) else None
        if cc is None:
            return None
        if not isinstance(cc, dict) or cc.get("type") != "ephemeral":
            raise self.invalid("cache_control.type: Input should be 'ephemeral'")
        ttl = cc.get("ttl", "5m")
        if ttl not in ("5m", "1h"):
            raise self.invalid("cache_control.ttl: Input should be '5m' or '1h'")
        ttls.append(ttl)
        return ttl

    def _check_breakpoints(self, ttls: list[str]) -> None:
        if len(ttls) > MAX_BREAKPOINTS:
            raise self.invalid(f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
                               f"Found {len(ttls)}.")
        if "5m" in ttls and "1h" in ttls[ttls.index("5m"):]:
            raise self.invalid("a ttl='1h' cache_control block must not come after a ttl='5m' cache_control "
                               "block. Note that blocks are processed in the following order: `tools`, "
                               "`system`, `messages`.")

    def _tools(self, raw: Any) -> list[Tool]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise self.invalid("tools: Input should be a valid list")
        tools = []
        for i, t in enumerate(raw):
            if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not t["name"]:
                raise self.invalid(f"tools.{i}.name: Field required")
            schema = t.get("input_schema")
            if t.get("type") in (None, "custom") and not isinstance(schema, dict):
                raise self.invalid(f"tools.{i}.custom.input_schema: Field required")
            tools.append(Tool(t["name"], schema if isinstance(schema, dict) else {}))
        return tools

    def _tool_choice(self, raw: Any, tools: list[Tool]) -> tuple[str, str | None]:
        if raw is None:
            return ("auto" if tools else "none"), None
        kind = raw.get("type") if isinstance(raw, dict) else None
        if kind in ("auto", "none"):
            return kind, None
        if kind == "any":
            return "required", None
        if kind == "tool":
            name = raw.get("name")
            if name not in {t.name for t in tools}:
                raise self.invalid(f"tool_choice: tool '{name}' not found in tools")
            return "tool", name
        raise self.invalid("tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', "
                           "'tool', 'none'")

    @staticmethod
    def _output_schema(body: dict[str, Any]) -> dict[str, Any] | None:
        fmt = body.get("output_format") or (body.get("output_config") or {}).get("format")
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            schema = fmt.get("schema")
            return schema if isinstance(schema, dict) else {}
        return None

    def _system(self, b: PromptBuilder, system: Any, ttls: list[str]) -> None:
        if system is None:
            return
        if isinstance(system, str):
            b.text("# system\n" + system).end_block()
            return
        if not isinstance(system, list):
            raise self.invalid("system: Input should be a valid string or list of text blocks")
        for i, block in enumerate(system):
            if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
                raise self.invalid(f"system.{i}: Input should be a text block")
            b.text(("# system\n" if i == 0 else "") + block["text"]).end_block(self._ttl(block, ttls))

    def _message(self, b: PromptBuilder, m: Any, i: int, ttls: list[str]) -> None:
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("user", "assistant"):
            raise self.invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = m.get("content")
        b.text(f"\n\n{role.capitalize()}: ")
        if isinstance(content, str):
            b.text(content).end_block()
            return
        if not isinstance(content, list):
            raise self.invalid(f"messages.{i}.content: Input should be a valid string or list of content blocks")
        if not content:
            b.end_block()
        for j, block in enumerate(content):
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                raise self.invalid(f"messages.{i}.content.{j}: Input should be a content block object")
            self._block(b, block)
            b.end_block(self._ttl(block, ttls))

    def _block(self, b: PromptBuilder, block: dict[str, Any]) -> None:
        kind = block["type"]
        if kind == "text":
            b.text(str(block.get("text", "")))
        elif kind == "image":
            b.opaque(canonical(block.get("source")).encode(), IMAGE_TOKENS)
        elif kind == "document":
            source = block.get("source") or {}
            if isinstance(source, dict) and source.get("type") == "text":
                b.text(str(source.get("data", "")))
            else:
                b.opaque(canonical(source).encode(), DOCUMENT_TOKENS)
        elif kind == "tool_result":
            b.text(f"[tool result {block.get('tool_use_id', '')}] ")
            inner = block.get("content")
            if isinstance(inner, list):
                for sub in inner:
                    if isinstance(sub, dict) and isinstance(sub.get("type"), str):
                        self._block(b, sub)
            elif inner is not None:
                b.text(str(inner))
        else:  # tool_use, thinking, and whatever else: the block as the model would read it
            b.text(canonical({k: v for k, v in block.items() if k not in ("cache_control", "signature")}))

    def input_usage(self, req: ChatRequest, spec: ModelSpec) -> TokenCounts:
        total = req.prompt.tokens
        if not spec.prompt_caching:
            return TokenCounts(input_tokens=total)
        use = self.cache.apply(spec.name, req.prompt.blocks, spec.cache_min_tokens)
        return TokenCounts(input_tokens=total - use.read - use.written, cache_read_tokens=use.read,
                     cache_write_5m_tokens=use.write_5m, cache_write_1h_tokens=use.write_1h)

    def reset(self) -> None:
        self.cache.clear()

    # --- responses ------------------------------------------------------------------------

    @staticmethod
    def _content(c: Completion) -> list[dict[str, Any]]:
        choice = c.choices[0]
        thinking = ([{"type": "thinking", "thinking": choice.thinking, "signature": choice.signature}]
                    if choice.thinking is not None else [])
        if choice.tool_calls:
            return thinking + [{"type": "tool_use", "id": t.id, "name": t.name, "input": t.arguments}
                               for t in choice.tool_calls]
        return thinking + [{"type": "text", "text": choice.text or ""}]

    def render(self, c: Completion) -> dict[str, Any]:
        choice = c.choices[0]
        return {"id": c.id, "type": "message", "role": "assistant", "model": c.spec.response_model,
                "content": self._content(c), "stop_reason": STOP_REASON[choice.finish],
                "stop_sequence": choice.stop_sequence, "usage": anthropic_usage(c.usage)}

    def _deltas(self, block: dict[str, Any], per_piece: int) -> tuple[dict[str, Any], list[tuple[dict[str, Any], int]]]:
        """A text or thinking block as content_block_start opens it, and its deltas (with their output tokens)."""
        if block["type"] == "thinking":
            deltas = [({"type": "thinking_delta", "thinking": t}, n)
                      for t, n in pieces(block["thinking"], self.tok, per_piece)]
            return ({"type": "thinking", "thinking": "", "signature": ""},
                    deltas + [({"type": "signature_delta", "signature": block["signature"]}, 0)])
        return ({"type": "text", "text": ""},
                [({"type": "text_delta", "text": t}, n) for t, n in pieces(block["text"], self.tok, per_piece)])

    def stream(self, c: Completion, per_piece: int) -> list[tuple[bytes, int]]:
        choice = c.choices[0]
        start_usage, delta_usage = anthropic_stream_usage(c.usage)
        start = {"id": c.id, "type": "message", "role": "assistant", "model": c.spec.response_model,
                 "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}
        events = [(sse({"type": "message_start", "message": start}, "message_start"), 0)]
        calls = iter(choice.tool_calls)
        for index, block in enumerate(self._content(c)):
            if block["type"] == "tool_use":  # the arguments exactly as generated (and counted)
                call = next(calls)
                opened = {**block, "input": {}}
                deltas = [({"type": "input_json_delta", "partial_json": t}, n)
                          for t, n in pieces(call.arguments_json, self.tok, per_piece)]
            else:
                opened, deltas = self._deltas(block, per_piece)
            events.append((sse({"type": "content_block_start", "index": index, "content_block": opened},
                               "content_block_start"), 0))
            if index == 0:
                events.append((sse({"type": "ping"}, "ping"), 0))
            for delta, n in deltas:
                events.append((sse({"type": "content_block_delta", "index": index, "delta": delta},
                                   "content_block_delta"), n))
            events.append((sse({"type": "content_block_stop", "index": index}, "content_block_stop"), 0))
        events.append((sse({"type": "message_delta",
                            "delta": {"stop_reason": STOP_REASON[choice.finish], "stop_sequence": choice.stop_sequence},
                            "usage": delta_usage}, "message_delta"), 0))
        events.append((sse({"type": "message_stop"}, "message_stop"), 0))
        return events

    # --- errors and listings --------------------------------------------------------------

    def error_body(self, err: WireError, request_id: str) -> dict[str, Any]:
        # The API repeats the request-id header in the body (Messages API reference, "Errors").
        return {"type": "error", "error": {"type": _TYPE_BY_KIND.get(err.kind, "api_error"), "message": err.message},
                "request_id": request_id}

    def fault_error(self, status: int, model: str, retry_after_s: int) -> WireError:
        kind = {429: "rate_limit", 502: "bad_gateway", 503: "unavailable", 529: "overloaded"}.get(status, "api_error")
        headers = {"retry-after": str(retry_after_s)} if status == 429 else None
        return WireError(status, kind, _FAULT_MESSAGES.get(status, _FAULT_MESSAGES[500]), headers=headers)

    def unknown_model(self, model: str) -> WireError:
        return WireError(404, "not_found", f"model: {model}")

    def models_body(self, specs: Iterable[ModelSpec]) -> dict[str, Any]:
        data = [{"type": "model", "id": s.response_model, "display_name": s.name,
                 "created_at": "2025-09-29T00:00:00Z", "lifecycle": "active"} for s in specs if s.wire == self.name]
        return {"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None}
