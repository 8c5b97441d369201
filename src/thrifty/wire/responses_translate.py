"""OpenAI Responses API <-> the canonical Chat Completions form: requests, answers and events.

The Responses surface is served by translation: a request becomes a chat completion request (so
every lever and either provider kind can serve it), and the completion (whole or streamed) is
written back as a Response object or the Responses API's typed SSE events. Shapes follow the OpenAI
API reference ("Responses", "Streaming events") and are checked against the `openai` SDK's types.

Lossy on purpose, in these ways:

* `instructions` becomes a leading system message; input `reasoning` items are dropped (chat
  completions have no form for them), so are `include`, `truncation` and `reasoning.summary`; no
  reasoning item is produced (reasoning tokens are reported in usage).
* Function tools are sent as chat tools, and so are the functions of a `namespace` tool (by their
  own names; a streamed call names its namespace again). Hosted tools (web search, file search,
  code interpreter...) are left out, since nothing here runs them; other tool types (custom,
  shell...) are refused with a 400, and so are `conversation`, `background` and prompt
  templates. `previous_response_id` is resolved before translation when the gateway stores
  responses (`thrifty.api.responses_store`); this module refuses it, as it does when they are off.
* A whole (non-streamed) answer does not echo the request's parameters (`tools`, `instructions`,
  `tool_choice`...): they are defaults there. A streamed one does.
* A chat refusal is written as output text.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

from thrifty.contract.usage import Usage
from thrifty.errors import InvalidRequest
from thrifty.wire.openai_chat import usage_from_openai

Json = dict[str, Any]

# Request fields copied to the chat completion unchanged (the Responses and chat names agree).
_SAME = ("temperature", "top_p", "parallel_tool_calls", "user", "safety_identifier", "prompt_cache_key",
         "service_tier", "top_logprobs", "stop")
_REFUSED = {"previous_response_id": "previous_response_id needs stored responses, and this gateway does not "
                                    "store them (responses.store is off): set responses.store: true in the "
                                    "gateway config, or send the whole conversation in 'input'",
            "conversation": "conversations are not stored by this gateway: send the whole conversation in 'input'",
            "prompt": "prompt templates are not supported by this gateway",
            "background": "background responses are not supported by this gateway"}
# Tools the provider runs itself on OpenAI's Responses API; a chat completion has no form for
# them, so they are left out (the model answers without searching, say) rather than refused.
HOSTED_TOOLS = frozenset({"web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11",
                          "file_search", "code_interpreter", "image_generation", "computer_use_preview", "mcp"})
# Echoed in a streamed Response from the request, with the API's defaults. `user` only when the
# request has one: OpenAI's OpenAPI spec types it a string, not nullable.
_ECHO = {"instructions": None, "max_output_tokens": None, "metadata": {}, "parallel_tool_calls": True,
         "previous_response_id": None, "temperature": None, "tool_choice": "auto", "tools": [], "top_p": None,
         "truncation": "disabled"}


def new_id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


# ---------------------------------------------------------------- requests

def refused_field(body: Json) -> InvalidRequest | None:
    for name, why in _REFUSED.items():
        if body.get(name) not in (None, False):
            return InvalidRequest(why, param=name, code="unsupported_parameter")
    return None


def request_to_chat(body: Json, model: str) -> Json:
    """A Responses request as a chat completion request for `model`."""
    messages: list[Json] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        messages.append({"role": "system", "content": body["instructions"]})
    items = body.get("input")
    if isinstance(items, str):
        messages.append({"role": "user", "content": items})
    else:
        for i, item in enumerate(items or ()):
            _item(item, i, messages)
    out: Json = {"model": model, "messages": messages}
    for name in _SAME:
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("max_output_tokens") is not None:
        out["max_completion_tokens"] = body["max_output_tokens"]
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort"):
        out["reasoning_effort"] = reasoning["effort"]
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "description", "schema", "strict") if fmt.get(k) is not None}
        out["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        out["response_format"] = {"type": "json_object"}
    tools = [fn for j, t in enumerate(body.get("tools") or ()) for fn in _tools(t, j)]
    if tools:
        out["tools"] = tools
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        out["tool_choice"] = choice
    elif isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif choice is not None:
        raise InvalidRequest("tool_choice must be 'auto', 'none', 'required' or a function", param="tool_choice")
    if body.get("stream") is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _tools(tool: Any, j: int) -> list[Json]:
    """A Responses tool as chat function tools: a function as one, a namespace as its functions
    (see `namespaces`), a hosted tool as none."""
    kind = tool.get("type") if isinstance(tool, dict) else None
    if kind == "function" and isinstance(tool.get("name"), str):
        fn = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
        return [{"type": "function", "function": fn}]
    if kind == "namespace" and isinstance(tool.get("tools"), list):
        return [fn for inner in tool["tools"] for fn in _tools(inner, j)]
    if kind in HOSTED_TOOLS:
        return []  # nothing here runs it: the model answers without it
    raise InvalidRequest(f"tools[{j}]: tools of type {kind!r} are not supported by this gateway",
                         param=f"tools[{j}].type", code="unsupported_tool")


def namespaces(body: Json | None) -> dict[str, str]:
    """Function name -> the namespace tool it was declared in (calls name it again)."""
    out: dict[str, str] = {}
    for tool in (body or {}).get("tools") or ():
        if isinstance(tool, dict) and tool.get("type") == "namespace" and isinstance(tool.get("name"), str):
            for inner in tool.get("tools") or ():
                if isinstance(inner, dict) and isinstance(inner.get("name"), str):
                    out[inner["name"]] = tool["name"]
    return out


def _item(item: Any, i: int, messages: list[Json]) -> None:
    if not isinstance(item, dict):
        raise InvalidRequest(f"input[{i}] must be an object", param=f"input[{i}]")
    kind = item.get("type") or "message"
    if kind == "message":
        role = item.get("role")
        if role not in ("user", "assistant", "system", "developer"):
            raise InvalidRequest(f"input[{i}].role must be user, assistant, system or developer",
                                 param=f"input[{i}].role")
        content = item.get("content")
        if isinstance(content, list):
            parts = [_part(p, i, k) for k, p in enumerate(content)]
            if role == "assistant" or all(p.get("type") == "text" for p in parts) and role != "user":
                content = "".join(p.get("text", "") for p in parts)
            else:
                content = parts
        elif not isinstance(content, str):
            raise InvalidRequest(f"input[{i}].content must be a string or an array", param=f"input[{i}].content")
        messages.append({"role": role, "content": content})
    elif kind == "function_call":
        call = {"id": item.get("call_id"), "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments") or ""}}
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
            if last.get("content") == "":
                last["content"] = None
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        if isinstance(output, list):
            output = "".join(p.get("text", "") for p in output if isinstance(p, dict))
        messages.append({"role": "tool", "tool_call_id": item.get("call_id"),
                         "content": output if isinstance(output, str) else ""})
    elif kind == "reasoning":
        return  # no chat form; the model reasons afresh
    else:
        raise InvalidRequest(f"input[{i}]: items of type {kind!r} are not supported by this gateway",
                             param=f"input[{i}].type", code="unsupported_input_item")


def _part(part: Any, i: int, k: int) -> Json:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": part.get("text") or ""}
    if kind == "refusal":
        return {"type": "text", "text": part.get("refusal") or ""}
    if kind == "input_image" and isinstance(part.get("image_url"), str):
        return {"type": "image_url", "image_url": {"url": part["image_url"], "detail": part.get("detail") or "auto"}}
    if kind == "input_file" and (part.get("file_data") or part.get("file_id")):
        f = {k2: part[k2] for k2 in ("file_data", "file_id", "filename") if part.get(k2)}
        return {"type": "file", "file": f}
    raise InvalidRequest(f"input[{i}].content[{k}]: parts of type {kind!r} are not supported by this gateway",
                         param=f"input[{i}].content[{k}].type", code="unsupported_content")


# ---------------------------------------------------------------- usage

def usage_from_responses(u: Any) -> Usage:
    if not isinstance(u, dict):
        return Usage()
    details = u.get("input_tokens_details") or {}
    cached, written = int(details.get("cached_tokens") or 0), int(details.get("cache_write_tokens") or 0)
    reasoning = int((u.get("output_tokens_details") or {}).get("reasoning_tokens") or 0)
    return Usage(input_tokens=int(u.get("input_tokens") or 0) - cached - written, cache_read_tokens=cached,
                 cache_write_5m_tokens=written, output_tokens=int(u.get("output_tokens") or 0),
                 reasoning_tokens=reasoning)


def usage_to_responses(u: Usage) -> Json:
    return {"input_tokens": u.prompt_tokens, "input_tokens_details": {"cached_tokens": u.cache_read_tokens,
                                                                  "cache_write_tokens": u.cache_write_tokens},
            "output_tokens": u.output_tokens, "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
            "total_tokens": u.prompt_tokens + u.output_tokens}


# ---------------------------------------------------------------- answers and events

def response_head(body: Json | None, model: str) -> Json:
    """The fields of a Response that echo its request (the API's defaults without one)."""
    body = body or {}
    head: Json = {"id": new_id("resp_"), "object": "response", "created_at": int(time.time()),
                  "status": "in_progress", "error": None, "incomplete_details": None, "model": model,
                  "output": []}
    for name, default in _ECHO.items():
        v = body.get(name)
        head[name] = default if v is None else v
    if isinstance(body.get("user"), str):
        head["user"] = body["user"]
    reasoning = body.get("reasoning")
    head["reasoning"] = {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")} \
        if isinstance(reasoning, dict) else {"effort": None, "summary": None}
    text = body.get("text")
    head["text"] = {"format": (text.get("format") if isinstance(text, dict) else None) or {"type": "text"}}
    head["usage"] = None
    return head


class ResponsesEmitter:
    """Canonical chat chunks in, Responses stream events out; `response` is the whole answer."""

    def __init__(self, head: Json, namespaces: dict[str, str] | None = None) -> None:
        self.response = {**head, "output": []}
        self._namespaces = namespaces or {}
        self.usage = Usage()
        self._seq = 0
        self._started = False
        self._open: int | None = None  # output index of the item still open
        self._calls: dict[int, int] = {}  # chat tool_calls index -> output index
        self._finish: str | None = None
        self._closed = False

    def _event(self, kind: str, **fields: Any) -> Json:
        event = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return event

    def _snapshot(self) -> Json:
        return {**self.response, "output": [dict(item) for item in self.response["output"]]}

    def feed(self, chunk: Json) -> list[Json]:
        if self._closed:
            return []
        out: list[Json] = []
        if not self._started:
            self._start(chunk, out)
        if chunk.get("usage"):
            self.usage = usage_from_openai(chunk["usage"])
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            for text in (delta.get("content"), delta.get("refusal")):
                if text:
                    self._text(text, out)
            for call in delta.get("tool_calls") or ():
                self._call(call, out)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return out

    def close(self) -> list[Json]:
        if self._closed:
            return []
        out: list[Json] = []
        if not self._started:
            self._start({}, out)
        self._close_item(out)
        self._closed = True
        r = self.response
        r["usage"] = usage_to_responses(self.usage)
        if self._finish in ("length", "content_filter"):
            r["status"] = "incomplete"
            r["incomplete_details"] = {"reason": "max_output_tokens" if self._finish == "length" else "content_filter"}
            out.append(self._event("response.incomplete", response=self._snapshot()))
        else:
            r["status"] = "completed"
            out.append(self._event("response.completed", response=self._snapshot()))
        return out

    def _start(self, chunk: Json, out: list[Json]) -> None:
        self._started = True
        if isinstance(chunk.get("created"), int):
            self.response["created_at"] = chunk["created"]
        out.append(self._event("response.created", response=self._snapshot()))
        out.append(self._event("response.in_progress", response=self._snapshot()))

    def _add(self, item: Json, out: list[Json]) -> int:
        self._close_item(out)
        index = self._open = len(self.response["output"])
        self.response["output"].append(item)
        out.append(self._event("response.output_item.added", output_index=index, item=dict(item)))
        return index

    def _text(self, text: str, out: list[Json]) -> None:
        item = self.response["output"][self._open] if self._open is not None else None
        if item is None or item["type"] != "message":
            item = {"id": new_id("msg_"), "type": "message", "status": "in_progress", "role": "assistant",
                    "content": []}
            index = self._add(item, out)
            item["content"] = [{"type": "output_text", "text": "", "annotations": [], "logprobs": []}]
            out.append(self._event("response.content_part.added", item_id=item["id"], output_index=index,
                                   content_index=0, part={"type": "output_text", "text": "", "annotations": [],
                                                          "logprobs": []}))
        part = item["content"][0]
        part["text"] += text
        out.append(self._event("response.output_text.delta", item_id=item["id"], output_index=self._open,
                               content_index=0, delta=text, logprobs=[]))

    def _call(self, call: Json, out: list[Json]) -> None:
        fn = call.get("function") or {}
        position = call.get("index", 0)
        index = self._calls.get(position)
        if index is None:
            item = {"id": new_id("fc_"), "type": "function_call", "status": "in_progress",
                    "call_id": call.get("id") or new_id("call_"), "name": fn.get("name") or "", "arguments": ""}
            if item["name"] in self._namespaces:
                item["namespace"] = self._namespaces[item["name"]]
            index = self._calls[position] = self._add(item, out)
        item = self.response["output"][index]
        if fragment := fn.get("arguments"):
            item["arguments"] += fragment
            out.append(self._event("response.function_call_arguments.delta", item_id=item["id"],
                                   output_index=index, delta=fragment))

    def _close_item(self, out: list[Json]) -> None:
        if self._open is None:
            return
        index, self._open = self._open, None
        item = self.response["output"][index]
        item["status"] = "completed"
        if item["type"] == "message":
            part = item["content"][0]
            out.append(self._event("response.output_text.done", item_id=item["id"], output_index=index,
                                   content_index=0, text=part["text"], logprobs=[]))
            out.append(self._event("response.content_part.done", item_id=item["id"], output_index=index,
                                   content_index=0, part=dict(part)))
        else:
            out.append(self._event("response.function_call_arguments.done", item_id=item["id"],
                                   output_index=index, arguments=item["arguments"]))
        out.append(self._event("response.output_item.done", output_index=index, item=_copy_item(item)))


def _copy_item(item: Json) -> Json:
    out = dict(item)
    if "content" in out:
        out["content"] = [dict(p) for p in out["content"]]
    return out


def completion_chunks(completion: Json) -> list[Json]:
    """A whole chat completion as the canonical chunks of its stream (first choice only)."""
    choice = (completion.get("choices") or [{}])[0] or {}
    msg = choice.get("message") or {}
    delta: Json = {"role": "assistant", "content": msg.get("content") or msg.get("refusal")}
    calls = [{"index": i, "id": c.get("id"), "type": "function", "function": c.get("function") or {}}
             for i, c in enumerate(msg.get("tool_calls") or ())]
    if calls:
        delta["tool_calls"] = calls
    head = {"id": completion.get("id"), "created": completion.get("created"), "object": "chat.completion.chunk"}
    return [{**head, "choices": [{"index": 0, "delta": delta, "finish_reason": choice.get("finish_reason")}]},
            {**head, "choices": [], "usage": completion.get("usage")}]


def response_chunks(response: Json) -> list[Json]:
    """A Response object as canonical chunks (what replays it through a `ResponsesEmitter`)."""
    text, calls = "", []
    for item in response.get("output") or ():
        if item.get("type") == "message":
            text += "".join(p.get("text") or p.get("refusal") or "" for p in item.get("content") or ())
        elif item.get("type") == "function_call":
            calls.append({"index": len(calls), "id": item.get("call_id"), "type": "function",
                          "function": {"name": item.get("name"), "arguments": item.get("arguments") or ""}})
    reason = (response.get("incomplete_details") or {}).get("reason")
    finish = "length" if reason == "max_output_tokens" else "content_filter" if reason else (
        "tool_calls" if calls else "stop")
    delta: Json = {"content": text or None}
    if calls:
        delta["tool_calls"] = calls
    usage = response.get("usage")
    u = usage_from_responses(usage)
    chat_usage = {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.output_tokens,
                  "prompt_tokens_details": {"cached_tokens": u.cache_read_tokens},
                  "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens}} if usage else None
    return [{"created": response.get("created_at"), "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]},
            {"choices": [], "usage": chat_usage}]


def run(emitter: ResponsesEmitter, chunks: Iterable[Json]) -> list[Json]:
    return [event for chunk in chunks for event in emitter.feed(chunk)] + emitter.close()
