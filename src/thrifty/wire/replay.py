"""A complete answer as the stream the client would have received, and back.

`replay_*` turn a stored answer into the chunks/events of its stream, so a streaming request can be
answered from the cache; `assemble_*` rebuild the complete answer from a stream, so a streamed miss
can be stored. `fresh_*_ids` give a cached answer new identities before it is served.

Round trips: ``assemble_openai(replay_openai(c, include_usage=True)) == c`` and
``assemble_anthropic(replay_anthropic(m)) == m``, except for fields that have no form in a stream:
on OpenAI, message `audio` and legacy `function_call` are dropped, a missing message `refusal`
comes back as None and missing `annotations` as []; `usage` comes back only with include_usage;
`obfuscation` is never produced. Anthropic messages round-trip whole (block types the stream
cannot split are sent whole in their `content_block_start`).
"""

from __future__ import annotations

import copy
import os
import time
from typing import Any, Iterable

from thrifty import jsonutil
from thrifty.errors import IncompleteStream

Json = dict[str, Any]
PIECE_CHARS = 64  # text per delta: a few chunks for a short answer, not one per token
_HEAD_FIELDS = ("id", "created", "model", "system_fingerprint", "service_tier")


def _pieces(text: str, size: int = PIECE_CHARS) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


def _token() -> str:
    return os.urandom(12).hex()


# ---------------------------------------------------------------- fresh identities

def fresh_anthropic_ids(response: Json, *, response_id: str | None = None) -> Json:
    """A deep copy of a cached message with a new id and tool-use ids (see `fresh_openai_ids`)."""
    out = jsonutil.loads(jsonutil.dumps(response))  # a deep copy, faster than copy.deepcopy
    out["id"] = response_id or "msg_" + _token()
    renamed: dict[str, str] = {}
    for block in out.get("content") or ():
        if isinstance(block, dict) and isinstance(block.get("id"), str):
            renamed[block["id"]] = block["id"] = _fresh_like(block["id"])
    for block in out.get("content") or ():
        if isinstance(block, dict) and block.get("tool_use_id") in renamed:
            block["tool_use_id"] = renamed[block["tool_use_id"]]
    return out


def fresh_openai_ids(response: Json, *, response_id: str | None = None, now: float | None = None) -> Json:
    """A deep copy of a cached completion with a new response id, tool-call ids and `created`.

    Ids are never reused across requests, so an answer shared through a namespace carries nothing
    that identifies the tenant whose call filled the cache. Tool-call ids get the same prefix as
    before (`call_`, `toolu_`, ...) and stay consistent within the answer.
    """
    out = jsonutil.loads(jsonutil.dumps(response))
    out["id"] = response_id or "chatcmpl-" + _token()
    out["created"] = int(time.time() if now is None else now)
    for choice in out.get("choices") or ():
        for call in ((choice or {}).get("message") or {}).get("tool_calls") or ():
            if isinstance(call, dict) and isinstance(call.get("id"), str):
                call["id"] = _fresh_like(call["id"])
    return out


def _fresh_like(old: str) -> str:
    prefix, sep, _ = old.rpartition("_")
    return (prefix + sep if sep else "call_") + _token()


# ---------------------------------------------------------------- OpenAI

def replay_openai(completion: Json, *, include_usage: bool) -> list[Json]:
    """The `chat.completion.chunk` dicts of a stream of `completion` (as OpenAI sends them).

    With include_usage, every chunk carries `usage: null` and a last chunk with no choices carries
    the completion's usage (left out when the completion has none).
    """
    head: Json = {"id": completion.get("id"), "object": "chat.completion.chunk",
                  "created": completion.get("created"), "model": completion.get("model")}
    for name in ("service_tier", "system_fingerprint"):
        if name in completion:
            head[name] = completion[name]
    if include_usage:
        head["usage"] = None
    chunks: list[Json] = []
    for position, choice in enumerate(completion.get("choices") or ()):
        index = choice.get("index", position)
        chunks.extend({**head, "choices": [{"index": index, "delta": delta, "logprobs": logprobs,
                                            "finish_reason": finish}]}
                      for delta, finish, logprobs in _choice_deltas(choice))
    if include_usage and completion.get("usage"):
        chunks.append({**head, "choices": [], "usage": completion["usage"]})
    return chunks


def _choice_deltas(choice: Json) -> list[tuple[Json, str | None, Any]]:
    """(delta, finish_reason, logprobs) for each chunk of one choice; logprobs ride on the first text."""
    message = choice.get("message") or {}
    content = message.get("content")
    if isinstance(content, list):  # some compatible servers answer with parts
        content = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    out: list[tuple[Json, str | None, Any]] = [
        ({"role": "assistant", "content": None if content is None else "", "refusal": None}, None, None)]
    texts = [("content", p) for p in _pieces(content or "")] + [("refusal", p) for p in
                                                                _pieces(message.get("refusal") or "")]
    logprobs = choice.get("logprobs")
    for field, piece in texts:
        out.append(({field: piece}, None, logprobs))
        logprobs = None
    if message.get("annotations"):
        out.append(({"annotations": message["annotations"]}, None, None))
    for k, call in enumerate(message.get("tool_calls") or ()):
        fn = call.get("function") or {}
        out.append(({"tool_calls": [{"index": k, "id": call.get("id"), "type": call.get("type", "function"),
                                     "function": {"name": fn.get("name"), "arguments": ""}}]}, None, None))
        out += [({"tool_calls": [{"index": k, "function": {"arguments": piece}}]}, None, None)
                for piece in _pieces(fn.get("arguments") or "")]
    out.append(({}, choice.get("finish_reason"), logprobs))
    return out


def assemble_openai(chunks: Iterable[Json]) -> Json:
    """The `chat.completion` a stream of chunks adds up to; raises IncompleteStream if unfinished."""
    head: Json = {}
    usage: Any = None
    choices: dict[int, Json] = {}
    for chunk in chunks:
        if chunk.get("error") is not None and not chunk.get("choices"):
            raise IncompleteStream("the stream ended with an error")
        for name in _HEAD_FIELDS:
            if name in chunk and name not in head:
                head[name] = chunk[name]
        if chunk.get("usage"):
            usage = chunk["usage"]
        for part in chunk.get("choices") or ():
            _add_openai_delta(choices, part)
    if not choices or any(c["finish_reason"] is None for c in choices.values()):
        raise IncompleteStream("the stream ended before every choice finished")
    out: Json = {"id": head.get("id"), "object": "chat.completion", "created": head.get("created"),
                 "model": head.get("model"), "choices": [_openai_choice(choices[i]) for i in sorted(choices)]}
    for name in ("service_tier", "system_fingerprint"):
        if name in head:
            out[name] = head[name]
    if usage is not None:
        out["usage"] = usage
    return out


def _add_openai_delta(choices: dict[int, Json], part: Json) -> None:
    index = part.get("index", 0)
    acc = choices.get(index)
    if acc is None:
        acc = choices[index] = {"index": index, "content": None, "refusal": None, "annotations": [],
                                "calls": {}, "logprobs": None, "finish_reason": None}
    delta = part.get("delta") or {}
    if isinstance(delta.get("content"), str):
        acc["content"] = (acc["content"] or "") + delta["content"]
    if isinstance(delta.get("refusal"), str):
        acc["refusal"] = (acc["refusal"] or "") + delta["refusal"]
    acc["annotations"].extend(delta.get("annotations") or ())
    for call in delta.get("tool_calls") or ():
        slot = acc["calls"].setdefault(call.get("index", 0), {"id": None, "type": "function",
                                                               "name": "", "arguments": ""})
        fn = call.get("function") or {}
        slot["id"] = call.get("id") or slot["id"]
        slot["type"] = call.get("type") or slot["type"]
        slot["name"] += fn.get("name") or ""
        slot["arguments"] += fn.get("arguments") or ""
    if part.get("logprobs"):
        acc["logprobs"] = _merge_logprobs(acc["logprobs"], part["logprobs"])
    if part.get("finish_reason"):
        acc["finish_reason"] = part["finish_reason"]


def _merge_logprobs(have: Json | None, more: Json) -> Json:
    if have is None:
        return copy.deepcopy(more)
    for name in ("content", "refusal"):
        if more.get(name):
            have[name] = (have.get(name) or []) + list(more[name])
    return have


def _openai_choice(acc: Json) -> Json:
    message: Json = {"role": "assistant", "content": acc["content"], "refusal": acc["refusal"],
                     "annotations": acc["annotations"]}
    if acc["calls"]:
        message["tool_calls"] = [{"id": c["id"], "type": c["type"],
                                  "function": {"name": c["name"], "arguments": c["arguments"]}}
                                 for _, c in sorted(acc["calls"].items())]
    return {"index": acc["index"], "message": message, "logprobs": acc["logprobs"],
            "finish_reason": acc["finish_reason"]}


# ---------------------------------------------------------------- Anthropic

def replay_anthropic(message: Json) -> list[tuple[str, Json]]:
    """The `(event name, data)` pairs of a Messages API stream of `message`.

    `message_start` carries the input-side usage with output_tokens 0; `message_delta` carries the
    whole final usage, as the API's cumulative counts do.
    """
    usage = dict(message.get("usage") or {})
    start = {k: v for k, v in message.items() if k not in ("content", "stop_reason", "stop_sequence", "usage")}
    start.update(content=[], stop_reason=None, stop_sequence=None, usage={**usage, "output_tokens": 0})
    events: list[tuple[str, Json]] = [("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(message.get("content") or ()):
        events.extend(_block_events(index, block))
    events.append(("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": message.get("stop_reason"),
                                               "stop_sequence": message.get("stop_sequence")},
                                     "usage": usage}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _block_events(index: int, block: Json) -> list[tuple[str, Json]]:
    kind = block.get("type")
    deltas: list[Json] = []
    if kind == "text":
        opening = {**block, "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in _pieces(block.get("text") or "")]
        if block.get("citations"):
            opening["citations"] = []
            deltas += [{"type": "citations_delta", "citation": c} for c in block["citations"]]
    elif kind == "tool_use" or kind == "server_tool_use":
        opening = {**block, "input": {}}
        arguments = jsonutil.dumps(block.get("input") or {}).decode()
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in _pieces(arguments)]
    elif kind == "thinking":
        opening = {**block, "thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": p} for p in _pieces(block.get("thinking") or "")]
        if block.get("signature"):
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
    else:
        opening = block  # redacted thinking, tool results: sent whole, as the API does
    out = [("content_block_start", {"type": "content_block_start", "index": index, "content_block": opening})]
    out += [("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas]
    out.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    return out


def assemble_anthropic(events: Iterable[Json | tuple[str, Json]]) -> Json:
    """The `message` a stream of events adds up to; raises IncompleteStream if unfinished.

    Takes the events' data dicts, or `(name, data)` pairs as `replay_anthropic` returns them.
    """
    message: Json | None = None
    blocks: dict[int, Json] = {}
    buffers: dict[int, str] = {}
    finished = False
    for item in events:
        event = item[1] if isinstance(item, tuple) else item
        kind = event.get("type")
        if kind == "message_start":
            message = copy.deepcopy(event.get("message") or {})
        elif kind == "content_block_start":
            blocks[event.get("index", 0)] = copy.deepcopy(event.get("content_block") or {})
        elif kind == "content_block_delta":
            _add_anthropic_delta(blocks, buffers, event)
        elif kind == "message_delta" and message is not None:
            message.update((k, v) for k, v in (event.get("delta") or {}).items())
            usage = message.setdefault("usage", {})
            usage.update((k, v) for k, v in (event.get("usage") or {}).items() if v is not None)
        elif kind == "message_stop":
            finished = True
        elif kind == "error":
            raise IncompleteStream("the stream ended with an error")
    if message is None or not finished:
        raise IncompleteStream("the stream ended before message_stop")
    for index, text in buffers.items():
        if text:
            try:
                blocks[index]["input"] = jsonutil.loads(text)
            except ValueError:
                raise IncompleteStream(f"tool input of content block {index} is not valid JSON") from None
    message["content"] = [blocks[i] for i in sorted(blocks)]
    return message


def _add_anthropic_delta(blocks: dict[int, Json], buffers: dict[int, str], event: Json) -> None:
    index = event.get("index", 0)
    block = blocks.get(index)
    if block is None:
        raise IncompleteStream(f"delta for content block {index}, which was never started")
    delta = event.get("delta") or {}
    kind = delta.get("type")
    if kind == "text_delta":
        block["text"] = (block.get("text") or "") + (delta.get("text") or "")
    elif kind == "input_json_delta":
        buffers[index] = buffers.get(index, "") + (delta.get("partial_json") or "")
    elif kind == "thinking_delta":
        block["thinking"] = (block.get("thinking") or "") + (delta.get("thinking") or "")
    elif kind == "signature_delta":
        block["signature"] = delta.get("signature") or ""
    elif kind == "citations_delta":
        block.setdefault("citations", [])
        if block["citations"] is None:
            block["citations"] = []
        block["citations"].append(delta.get("citation"))


# ---------------------------------------------------------------- SSE framing

def openai_sse(chunks: Iterable[Json]) -> bytes:
    """Chunks framed as OpenAI's SSE body, ending with `data: [DONE]`."""
    return b"".join(b"data: " + jsonutil.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def anthropic_sse(events: Iterable[tuple[str, Json]]) -> bytes:
    """Events framed as the Messages API's SSE body (`event:` + `data:` lines)."""
    return b"".join(b"event: " + name.encode() + b"\ndata: " + jsonutil.dumps(data) + b"\n\n"
                    for name, data in events)
