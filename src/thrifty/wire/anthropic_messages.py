"""Anthropic Messages (`/v1/messages`).

Translation to and from the canonical form lives in `anthropic_translate` (requests, whole
answers) and `anthropic_stream` (events); usage in `anthropic_usage`.
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson

from thrifty import jsonutil
from thrifty.contract.usage import Usage
from thrifty.errors import GatewayError
from thrifty.wire import replay
from thrifty.wire.anthropic_stream import AnthropicToOpenAIStream, OpenAIToAnthropicStream
from thrifty.wire.anthropic_translate import (
    anthropic_request_to_openai, anthropic_response_to_openai, openai_request_to_anthropic,
    openai_response_to_anthropic,
)
from thrifty.wire.anthropic_usage import usage_from_anthropic, usage_to_anthropic
from thrifty.wire.base import (
    AnswerMap, AnswerView, Json, RequestView, StreamTranslator, TokenCounter, Wire, tools_chars,
)
from thrifty.wire.fields import ANTHROPIC_CHECK

_ERROR_TYPES = {
    "invalid_request": "invalid_request_error", "authentication": "authentication_error",
    "permission": "permission_error", "not_found": "not_found_error",
    "request_too_large": "request_too_large", "rate_limit": "rate_limit_error",
    "upstream": "api_error", "timeout": "timeout_error", "overloaded": "overloaded_error",
    "api_error": "api_error",
}
_ATTACHMENTS = {"image", "document", "container_upload"}


class _EventsKept(StreamTranslator):
    """Anthropic events to an Anthropic client, unchanged; usage from message_start + message_delta."""

    def __init__(self) -> None:
        self.usage = Usage()
        self._start: Json = {}

    def feed(self, event: Json) -> list[Json]:
        kind = event.get("type", "")
        if kind == "message_start":
            self._start = (event.get("message") or {}).get("usage") or {}
            self.usage = usage_from_anthropic(self._start)
        elif kind == "message_delta":
            # message_delta carries cumulative usage; input fields may be absent there.
            delta = {k: v for k, v in (event.get("usage") or {}).items() if v is not None}
            self.usage = usage_from_anthropic({**self._start, **delta})
        return [event]


class _ToCanonical(StreamTranslator):
    def __init__(self, model: str) -> None:
        self._t = AnthropicToOpenAIStream(model=model, include_usage=True)

    @property
    def usage(self) -> Usage:  # type: ignore[override]
        return self._t.usage

    def feed(self, event: Json) -> list[Json]:
        return self._t.feed(event)


class _FromCanonical(StreamTranslator):
    def __init__(self, model: str) -> None:
        self._t = OpenAIToAnthropicStream(model=model)

    @property
    def usage(self) -> Usage:  # type: ignore[override]
        return self._t.usage

    def feed(self, chunk: Json) -> list[Json]:
        return [data for _, data in self._t.feed(chunk)]

    def close(self) -> list[Json]:
        return [data for _, data in self._t.close()]


class AnthropicMessages(Wire):
    name = "anthropic"
    prompt_caching = "breakpoints"

    # --- the client's request -------------------------------------------------------------

    def check(self, body: Any) -> tuple[str, bool]:
        return ANTHROPIC_CHECK.check(body)

    def user(self, body: Json) -> str | None:
        meta = body.get("metadata")
        u = meta.get("user_id") if isinstance(meta, dict) else None
        return u if isinstance(u, str) else None

    # --- errors and framing ---------------------------------------------------------------

    def error_body(self, err: GatewayError, request_id: str) -> bytes:
        return jsonutil.dumps({"type": "error", "error": {"type": _ERROR_TYPES.get(err.kind, "api_error"),
                                                          "message": err.message},
                               "request_id": request_id})

    def stream_error(self, err: GatewayError) -> bytes:
        return self.encode_event({"type": "error", "error": {
            "type": _ERROR_TYPES.get(err.kind, "api_error"), "message": err.message}})

    def encode_event(self, event: Json) -> bytes:
        return b"event: " + event["type"].encode() + b"\ndata: " + jsonutil.dumps(event) + b"\n\n"

    # --- usage ----------------------------------------------------------------------------

    def usage_of(self, usage: Mapping[str, Any] | None) -> Usage:
        return usage_from_anthropic(usage)

    def usage_body(self, usage: Usage) -> Json:
        return usage_to_anthropic(usage)

    # --- translation ----------------------------------------------------------------------

    def passthrough_request(self, body: Json, model: str) -> Json:
        out = dict(body)
        out["model"] = model
        return out

    def request_to_canonical(self, body: Json, model: str) -> Json:
        out = anthropic_request_to_openai(body, model=model)
        if body.get("stream") is True:
            out["stream_options"] = {"include_usage": True}
        return out

    def request_from_canonical(self, body: Json, model: str, default_max_tokens: int) -> Json:
        return openai_request_to_anthropic(body, model=model, default_max_tokens=default_max_tokens)

    def response_to_canonical(self, resp: Json, model: str) -> Json:
        return anthropic_response_to_openai(resp, model=model)

    def response_from_canonical(self, resp: Json, model: str) -> Json:
        return openai_response_to_anthropic(resp, model=model)

    def passthrough_stream(self, body: Json) -> StreamTranslator:
        return _EventsKept()

    def stream_to_canonical(self, model: str) -> StreamTranslator:
        return _ToCanonical(model)

    def stream_from_canonical(self, body: Json, model: str) -> StreamTranslator:
        return _FromCanonical(model)

    # --- whole answers and streams --------------------------------------------------------

    def assemble(self, events: list[Json]) -> Json:
        return replay.assemble_anthropic(events)

    def replay(self, answer: Json, *, include_usage: bool) -> list[Json]:
        return [event for _, event in replay.replay_anthropic(answer)]

    def with_fresh_ids(self, answer: Json, *, response_id: str | None = None, now: float | None = None) -> Json:
        return replay.fresh_anthropic_ids(answer, response_id=response_id)

    # --- fields levers change -------------------------------------------------------------

    def output_cap(self, body: Json) -> int | None:
        v = body.get("max_tokens")
        return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None

    def with_output_cap(self, body: Json, cap: int) -> Json:
        return {**body, "max_tokens": cap}

    def stops(self, body: Json) -> Any:
        return body.get("stop_sequences")

    def with_stops(self, body: Json, stops: list[str]) -> Json:
        return {**body, "stop_sequences": stops}

    def cache_ttls(self, body: Json) -> frozenset[str]:
        ttls: set[str] = set()

        def see(holder: Any) -> None:
            cc = holder.get("cache_control") if isinstance(holder, dict) else None
            if isinstance(cc, dict):
                ttls.add(cc.get("ttl") or "5m")

        see(body)
        for t in body.get("tools") or ():
            see(t)
        system = body.get("system")
        for block in system if isinstance(system, list) else ():
            see(block)
        for m in body.get("messages") or ():
            content = m.get("content") if isinstance(m, dict) else None
            for block in content if isinstance(content, list) else ():
                see(block)
        return frozenset(ttls)

    # --- views ----------------------------------------------------------------------------

    def request_view(self, body: Mapping[str, Any]) -> RequestView:
        v = RequestView()
        system = body.get("system")
        if isinstance(system, str):
            v.system = system
        elif isinstance(system, list):
            v.system = "\n".join(b.get("text", "") for b in system if isinstance(b, dict)
                                 and isinstance(b.get("text"), str))
        msgs = body.get("messages")
        if isinstance(msgs, list):
            v.messages = len(msgs)
            for m in msgs:
                if not isinstance(m, dict):
                    continue
                text, tool_results = _content_text(m.get("content"), v)
                if m.get("role") == "user" and not (tool_results and not text):
                    v.user_texts.append(text)
                else:
                    v.other_chars += len(text)
                v.tool_results += tool_results
        tools = body.get("tools")
        if isinstance(tools, list):
            v.tool_count = len(tools)
            v.tool_chars = tools_chars(tools)
            choice = body.get("tool_choice")
            v.forced_single_tool = (len(tools) == 1 and isinstance(choice, dict)
                                    and choice.get("type") in ("tool", "any"))
        fmt = body.get("output_format")
        v.structured = isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json")
        mt = body.get("max_tokens")
        v.max_output_tokens = mt if isinstance(mt, int) else None
        return v

    def answer_view(self, answer: Mapping[str, Any]) -> AnswerView:
        texts, tool = [], False
        for block in answer.get("content") or ():
            if isinstance(block, dict) and block.get("type") == "text":
                texts.append(block.get("text") or "")
            elif isinstance(block, dict) and block.get("type") == "tool_use" and not texts:
                texts.append(orjson.dumps(block.get("input") or {}).decode())
                tool = True
        stop = answer.get("stop_reason")
        return AnswerView("".join(texts), "length" if stop == "max_tokens" else stop, tool)

    def requested_schema(self, body: Mapping[str, Any]) -> Json | None:
        """`output_format`'s schema, or a single forced tool's input schema."""
        fmt = body.get("output_format")
        if isinstance(fmt, dict) and isinstance(fmt.get("schema"), dict):
            return fmt["schema"]
        tools = body.get("tools")
        if isinstance(tools, list) and len(tools) == 1 and isinstance(body.get("tool_choice"), dict) \
                and isinstance(tools[0], dict) and isinstance(tools[0].get("input_schema"), dict):
            return tools[0]["input_schema"]
        return None

    def with_requested_schema(self, body: Mapping[str, Any], schema: Json) -> Json | None:
        fmt = body.get("output_format")
        if isinstance(fmt, dict) and isinstance(fmt.get("schema"), dict):
            return {**body, "output_format": {**fmt, "schema": schema}}
        tools = body.get("tools")
        if isinstance(tools, list) and len(tools) == 1 and isinstance(body.get("tool_choice"), dict):
            return {**body, "tools": [{**tools[0], "input_schema": schema}]}
        return None

    def map_structured_answer(self, answer: Json, fn: AnswerMap) -> tuple[Json, Any]:
        content = []
        found = None
        done = False
        for block in answer.get("content") or ():
            if not done and isinstance(block, dict) and block.get("type") == "text":
                text, found = fn(block.get("text") or "")
                block, done = {**block, "text": text}, found is not None
            elif not done and isinstance(block, dict) and block.get("type") == "tool_use":
                value, found = fn(block.get("input") or {})
                block, done = {**block, "input": value}, found is not None
            content.append(block)
        return {**answer, "content": content}, found

    # --- the worst case -------------------------------------------------------------------

    def input_tokens(self, body: Json, counter: TokenCounter) -> int:
        c = counter
        tools = body.get("tools") or ()
        n = c.texts(tools) + c.per_message * len(tools) + (c.tools_tokens if tools else 0)
        system = body.get("system")
        if isinstance(system, list):
            n += _blocks_tokens(system, c)
        else:
            n += c.texts((system,)) + c.per_message
        fmt = body.get("output_format") or (body.get("output_config") or {}).get("format")
        if fmt is not None:
            n += c.texts((fmt,)) + c.per_message
        for m in body.get("messages") or ():
            n += c.per_message
            content = m.get("content") if isinstance(m, dict) else m
            if isinstance(content, list):
                n += _blocks_tokens(content, c)
            else:
                n += c.texts((content,))
        return n


def _content_text(content: Any, v: RequestView) -> tuple[str, int]:
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        return "", 0
    parts, results = [], 0
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append(block["text"])
        elif kind == "tool_result":
            results += 1
            inner = block.get("content")
            v.other_chars += len(inner) if isinstance(inner, str) else 200
        elif kind == "tool_use":
            v.other_chars += 60
        elif kind == "image":
            v.images += 1
        elif kind in ("document", "search_result"):
            v.documents += 1
            src = block.get("source")
            data = src.get("data") if isinstance(src, dict) else None
            v.other_chars += len(data) if isinstance(data, str) else 2000
    return "\n".join(parts), results


def _blocks_tokens(blocks: list[Any], c: TokenCounter) -> int:
    n = c.per_message * len(blocks)
    for b in blocks:
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "text" and isinstance(b.get("text"), str):
            n += c.count(b["text"])
        elif kind == "document" and isinstance(b.get("source"), dict) and b["source"].get("type") == "text":
            n += c.texts((b["source"].get("data"),))
        elif kind in _ATTACHMENTS:
            n += c.attachment_tokens
        elif kind == "tool_result":
            inner = b.get("content")
            n += c.texts((b.get("tool_use_id"),))
            n += _blocks_tokens(inner, c) if isinstance(inner, list) else c.texts((inner,))
        else:  # tool_use, thinking, server tool blocks...: the block as JSON
            n += c.texts(({k: v for k, v in b.items() if k != "signature"} if isinstance(b, dict) else b,))
    return n
