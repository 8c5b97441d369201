"""Streaming translation between Anthropic message events and OpenAI chat-completion chunks.

Each translator is a small state machine fed one parsed upstream event at a time; it returns the
client-side events that event produces (often none, sometimes several). SSE framing is the
caller's job. Tool-call ids pass through unchanged, as in `translate`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from thrifty.errors import Overloaded, UpstreamError

from thrifty.wire.anthropic_translate import (
    anthropic_id,
    finish_reason_for,
    openai_id,
    stop_reason_for,
    tool_arguments,
)
from thrifty.contract.usage import Usage
from thrifty.wire.anthropic_usage import usage_from_anthropic, usage_to_anthropic, usage_to_anthropic_delta
from thrifty.wire.openai_chat import usage_from_openai, usage_to_openai

__all__ = ["AnthropicToOpenAIStream", "OpenAIToAnthropicStream"]

Json = dict[str, Any]


def _stream_error(error: Any) -> UpstreamError:
    error = error if isinstance(error, dict) else {}
    message = error.get("message") or "the provider reported an error mid-stream"
    if error.get("type") == "overloaded_error":
        return Overloaded(message)
    return UpstreamError(message, code=error.get("type") or error.get("code"))


class AnthropicToOpenAIStream:
    """Anthropic stream events in, OpenAI `chat.completion.chunk` dicts out.

    Chunk ids are `request_id` when given (so they can match the gateway's own id), otherwise
    derived from the upstream message id. With `include_usage`, every chunk carries `usage: null`
    and a last chunk with `choices: []` carries the usage, as OpenAI does.
    """

    def __init__(self, *, model: str, include_usage: bool, request_id: str | None = None) -> None:
        self.model = model
        self.include_usage = include_usage
        self.usage = Usage()
        self.finished = False
        self._id = openai_id(request_id) if request_id else None
        self._created = int(time.time())
        self._raw_usage: Json = {}
        self._tool_index: dict[int, int] = {}  # Anthropic block index -> OpenAI tool_calls index

    def feed(self, event: Json) -> list[Json]:
        kind = event.get("type")
        if kind == "content_block_delta":
            return self._on_delta(event)
        if kind == "content_block_start":
            return self._on_block_start(event)
        if kind == "message_start":
            message = event.get("message") or {}
            if self._id is None:
                self._id = openai_id(message.get("id"))
            self._merge_usage(message.get("usage"))
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "message_delta":
            self._merge_usage(event.get("usage"))
            reason = (event.get("delta") or {}).get("stop_reason")
            return [self._chunk({}, finish_reason_for(reason))]
        if kind == "message_stop":
            self.finished = True
            if not self.include_usage:
                return []
            return [{"id": self._chunk_id(), "object": "chat.completion.chunk", "created": self._created,
                     "model": self.model, "choices": [], "usage": usage_to_openai(self.usage)}]
        if kind == "error":
            raise _stream_error(event.get("error"))
        return []  # ping, content_block_stop, and event types added later

    def _on_block_start(self, event: Json) -> list[Json]:
        block = event.get("content_block") or {}
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            return [self._chunk({"content": text})] if text else []
        if kind != "tool_use":
            return []  # thinking and server-tool blocks have no chat-completion form
        index = self._tool_index[event.get("index", 0)] = len(self._tool_index)
        call = {"index": index, "id": block.get("id"), "type": "function",
                "function": {"name": block.get("name"), "arguments": ""}}
        out = [self._chunk({"tool_calls": [call]})]
        if block.get("input"):
            out.append(self._arguments(index, tool_arguments(block["input"])))
        return out

    def _on_delta(self, event: Json) -> list[Json]:
        delta = event.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            return [self._chunk({"content": text})] if text else []
        if kind == "input_json_delta":
            index = self._tool_index.get(event.get("index", 0))
            fragment = delta.get("partial_json")
            if index is not None and fragment:
                return [self._arguments(index, fragment)]
        return []

    def _arguments(self, index: int, fragment: str) -> Json:
        return self._chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})

    def _chunk(self, delta: Json, finish: str | None = None) -> Json:
        chunk = {"id": self._chunk_id(), "object": "chat.completion.chunk", "created": self._created,
                 "model": self.model,
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def _chunk_id(self) -> str:
        if self._id is None:
            self._id = openai_id(None)
        return self._id

    def _merge_usage(self, usage: Json | None) -> None:
        # message_delta counts are cumulative: a value present there replaces message_start's
        if usage:
            self._raw_usage.update((k, v) for k, v in usage.items() if v is not None)
            self.usage = usage_from_anthropic(self._raw_usage)


class OpenAIToAnthropicStream:
    """OpenAI `chat.completion.chunk` dicts in, Anthropic `(event name, data)` pairs out.

    OpenAI reports usage only in its last chunk, so `message_start` carries zeros and the real
    counts (input, cache and output) go into `message_delta.usage`, which `close()` emits once the
    upstream stream has ended.
    """

    def __init__(self, *, model: str) -> None:
        self.model = model
        self.usage = Usage()
        self.finished = False
        self._started = False
        self._blocks = 0  # Anthropic content blocks started so far
        self._open: int | None = None  # index of the block still open
        self._text_open = False
        self._tool_blocks: dict[int, int] = {}  # OpenAI tool_calls index -> Anthropic block index
        self._stop: tuple[str, str | None] | None = None
        self._refused = False

    def feed(self, chunk: Json) -> list[tuple[str, Json]]:
        if self.finished:
            return []
        if "error" in chunk and not chunk.get("choices"):
            raise _stream_error(chunk["error"])
        if chunk.get("usage"):
            self.usage = usage_from_openai(chunk["usage"])
        out: list[tuple[str, Json]] = []
        if not self._started:
            out.append(self._message_start(chunk.get("id")))
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # an Anthropic message has one answer; n > 1 is refused upstream of here
            delta = choice.get("delta") or {}
            if text := delta.get("content"):
                self._text(text, out)
            if refusal := delta.get("refusal"):
                self._refused = True
                self._text(refusal, out)
            for call in delta.get("tool_calls") or ():
                self._tool_call(call, out)
            if choice.get("finish_reason"):
                self._stop = stop_reason_for(choice["finish_reason"], choice.get("stop_reason"))
        return out

    def close(self) -> list[tuple[str, Json]]:
        if self.finished:
            return []
        self.finished = True
        out: list[tuple[str, Json]] = []
        if not self._started:
            out.append(self._message_start(None))
        self._close_block(out)
        reason, sequence = self._stop or ("end_turn", None)
        if self._refused and reason == "end_turn":
            reason = "refusal"
        out.append(("message_delta", {"type": "message_delta",
                                      "delta": {"stop_reason": reason, "stop_sequence": sequence},
                                      "usage": usage_to_anthropic_delta(self.usage)}))
        out.append(("message_stop", {"type": "message_stop"}))
        return out

    def _message_start(self, upstream_id: str | None) -> tuple[str, Json]:
        self._started = True
        message = {"id": anthropic_id(upstream_id), "type": "message", "role": "assistant",
                   "model": self.model, "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": usage_to_anthropic(self.usage)}
        return "message_start", {"type": "message_start", "message": message}

    def _text(self, text: str, out: list[tuple[str, Json]]) -> None:
        if not self._text_open:
            self._start_block({"type": "text", "text": ""}, out)
            self._text_open = True
        out.append(("content_block_delta", {"type": "content_block_delta", "index": self._open,
                                            "delta": {"type": "text_delta", "text": text}}))

    def _tool_call(self, call: Json, out: list[tuple[str, Json]]) -> None:
        fn = call.get("function") or {}
        position = call.get("index", 0)
        block = self._tool_blocks.get(position)
        if block is None:
            block = self._tool_blocks[position] = self._start_block(
                {"type": "tool_use", "id": call.get("id") or "toolu_" + uuid.uuid4().hex,
                 "name": fn.get("name") or "", "input": {}}, out)
        if fragment := fn.get("arguments"):
            # OpenAI streams tool calls one after another, so `block` is normally the open one
            out.append(("content_block_delta", {"type": "content_block_delta", "index": block,
                                                "delta": {"type": "input_json_delta", "partial_json": fragment}}))

    def _start_block(self, content_block: Json, out: list[tuple[str, Json]]) -> int:
        self._close_block(out)
        index = self._open = self._blocks
        self._blocks += 1
        out.append(("content_block_start", {"type": "content_block_start", "index": index,
                                            "content_block": content_block}))
        return index

    def _close_block(self, out: list[tuple[str, Json]]) -> None:
        if self._open is not None:
            out.append(("content_block_stop", {"type": "content_block_stop", "index": self._open}))
            self._open = None
            self._text_open = False
