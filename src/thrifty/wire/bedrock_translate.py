"""AWS Bedrock Converse <-> the canonical form (OpenAI Chat Completions), and its usage.

Shapes from the Bedrock Runtime API reference (`Converse`, `ConverseStream`, `ContentBlock`,
`TokenUsage`), as botocore's service model for `bedrock-runtime` 2023-09-30 types them: a request
has `messages` (each `{role: user|assistant, content}`; a block is `text`, `image`
`{format, source: {bytes}}`, `toolUse {toolUseId, name, input}` or `toolResult {toolUseId,
content: [{json} | {text}], status}`), `system` (text blocks), `inferenceConfig` (`maxTokens`,
`temperature`, `topP`, `stopSequences`), `toolConfig` (`tools[].toolSpec {name, description,
inputSchema: {json}}`, `toolChoice` `auto` | `any` | `tool {name}`) and `outputConfig.textFormat`
(structured output). The model id is a URI label, not a body field.

Usage: `inputTokens` counts the input that was neither read from nor written to the prompt cache;
`cacheReadInputTokens` and `cacheWriteInputTokens` come on top (`cacheDetails` splits the writes
by TTL, `5m` or `1h`). Converse has no reasoning count: thinking is inside `outputTokens`.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from typing import Any, Mapping

import orjson

from thrifty.contract.usage import Usage
from thrifty.errors import InvalidRequest
from thrifty.wire.openai_chat import usage_to_openai

Json = dict[str, Any]

# Where the gateway keeps the model it routed to in an upstream body: Converse names the model in
# the URL, so the provider takes this key off before sending (providers/bedrock.py).
MODEL_KEY = "modelId"
IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                 "image/webp": "webp"}
# Converse refuses blank text: a text block that is empty or only whitespace ("The text field in
# the ContentBlock object at messages.N.content.M is blank"), and a message without blocks ("The
# content field in the Message object at messages.N is empty"). Blank text is left out, and a turn
# left with nothing is dropped (its neighbours then merge, keeping the turns alternating).
_STOP = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "tool_calls", "max_tokens": "length",
         "model_context_window_exceeded": "length", "guardrail_intervened": "content_filter",
         "content_filtered": "content_filter"}


def usage_from_bedrock(u: Mapping[str, Any] | None) -> Usage:
    if not u:
        return Usage()
    writes = int(u.get("cacheWriteInputTokens") or 0)
    long_writes = sum(int(d.get("inputTokens") or 0) for d in u.get("cacheDetails") or ()
                      if isinstance(d, dict) and d.get("ttl") == "1h")
    long_writes = min(long_writes, writes)
    return Usage(input_tokens=int(u.get("inputTokens") or 0), cache_read_tokens=int(u.get("cacheReadInputTokens") or 0),
                 cache_write_5m_tokens=writes - long_writes, cache_write_1h_tokens=long_writes,
                 output_tokens=int(u.get("outputTokens") or 0))


def usage_to_bedrock(u: Usage) -> Json:
    out: Json = {"inputTokens": u.input_tokens, "outputTokens": u.output_tokens,
                 "totalTokens": u.prompt_tokens + u.output_tokens}
    if u.cache_read_tokens:
        out["cacheReadInputTokens"] = u.cache_read_tokens
    if u.cache_write_tokens:
        out["cacheWriteInputTokens"] = u.cache_write_tokens
        out["cacheDetails"] = [{"ttl": ttl, "inputTokens": n} for ttl, n in
                               (("5m", u.cache_write_5m_tokens), ("1h", u.cache_write_1h_tokens)) if n]
    return out


def finish_reason_for(stop_reason: str | None) -> str | None:
    """A Converse `stopReason` as a canonical finish reason (malformed output ends as `stop`)."""
    if stop_reason is None:
        return None
    return _STOP.get(stop_reason, "stop")


# --- requests ---------------------------------------------------------------------------------

def _blank(text: str) -> bool:
    return not text.strip()


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _image(part: Json, where: str) -> Json:
    """A data-URL image as a Converse image block: Converse takes bytes (or S3), never a URL."""
    url = part.get("image_url")
    url = url.get("url") if isinstance(url, dict) else url
    if not isinstance(url, str) or not url.startswith("data:"):
        raise InvalidRequest("Bedrock Converse takes images as bytes only: send the image as a base64 data URL",
                             param=where)
    head, _, data = url[5:].partition(",")
    media_type = head.split(";")[0].lower()
    fmt = IMAGE_FORMATS.get(media_type)
    if fmt is None or ";base64" not in head:
        raise InvalidRequest(f"unsupported image {media_type!r}: send a base64 png, jpeg, gif or webp", param=where)
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("the image's base64 data is not valid", param=where) from None
    return {"image": {"format": fmt, "source": {"bytes": data}}}


def _user_blocks(content: Any, where: str) -> list[Json]:
    if isinstance(content, str):
        return [] if _blank(content) else [{"text": content}]
    blocks: list[Json] = []
    for k, part in enumerate(content if isinstance(content, list) else ()):
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text" and isinstance(part.get("text"), str) and not _blank(part["text"]):
            blocks.append({"text": part["text"]})
        elif part.get("type") == "image_url":
            blocks.append(_image(part, f"{where}.content[{k}]"))
    return blocks


def _arguments(raw: Any) -> Any:
    try:
        value = orjson.loads(raw) if isinstance(raw, str) and raw else (raw or {})
    except orjson.JSONDecodeError:
        return {"arguments": raw}
    return value if isinstance(value, dict) else {"arguments": value}


def _tool_result(m: Json) -> Json:
    """A tool message as a `toolResult`: a JSON object as `json`, anything else as `text`."""
    text = _text(m.get("content"))
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    if isinstance(value, dict):
        block: Json = {"json": value}
    else:
        block = {"json": {}} if _blank(text) else {"text": text}  # a blank text block would be refused
    return {"toolResult": {"toolUseId": m.get("tool_call_id") or "", "content": [block]}}


def _tool_config(body: Json) -> Json | None:
    tools = [t.get("function") or {} for t in body.get("tools") or () if isinstance(t, dict)]
    if not tools:
        return None
    specs = []
    for fn in tools:
        spec: Json = {"name": fn.get("name") or "",
                      "inputSchema": {"json": fn.get("parameters") or {"type": "object", "properties": {}}}}
        if fn.get("description"):
            spec["description"] = fn["description"]
        specs.append({"toolSpec": spec})
    config: Json = {"tools": specs}
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        config["toolChoice"] = {"tool": {"name": (choice.get("function") or {}).get("name") or ""}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif choice == "auto":
        config["toolChoice"] = {"auto": {}}
    # "none" has no Converse spelling; the tools stay (a history with toolUse blocks needs them).
    return config


def request_to_bedrock(body: Json, model: str) -> Json:
    """A canonical request as Converse takes it (plus `MODEL_KEY`)."""
    if isinstance(body.get("n"), int) and body["n"] > 1:
        raise InvalidRequest("n > 1 is not supported by Bedrock Converse; send n separate requests", param="n")
    system: list[Json] = []
    messages: list[Json] = []
    for i, m in enumerate(body.get("messages") or ()):
        role = m.get("role")
        if role in ("system", "developer"):
            text = _text(m.get("content"))
            if not _blank(text):
                system.append({"text": text})
            continue
        if role == "assistant":
            blocks: list[Json] = [{"text": t} for t in (_text(m.get("content")),) if not _blank(t)]
            for call in m.get("tool_calls") or ():
                fn = call.get("function") or {}
                blocks.append({"toolUse": {"toolUseId": call.get("id") or "", "name": fn.get("name") or "",
                                           "input": _arguments(fn.get("arguments"))}})
            item = {"role": "assistant", "content": blocks}
        elif role == "tool":
            item = {"role": "user", "content": [_tool_result(m)]}
        else:
            item = {"role": "user", "content": _user_blocks(m.get("content"), f"messages[{i}]")}
        if not item["content"]:
            continue
        if messages and messages[-1]["role"] == item["role"]:
            messages[-1]["content"].extend(item["content"])  # Converse alternates turns: merge neighbours
        else:
            messages.append(item)
    out: Json = {MODEL_KEY: model, "messages": messages}
    if system:
        out["system"] = system
    config: Json = {}
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    if cap:
        config["maxTokens"] = cap
    for src, dst in (("temperature", "temperature"), ("top_p", "topP")):
        if body.get(src) is not None:
            config[dst] = body[src]
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if config:
        out["inferenceConfig"] = config
    tools = _tool_config(body)
    if tools:
        out["toolConfig"] = tools
    fmt = body.get("response_format")
    schema = (fmt.get("json_schema") or {}) if isinstance(fmt, dict) and fmt.get("type") == "json_schema" else None
    if schema and isinstance(schema.get("schema"), dict):
        out["outputConfig"] = {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {
            "schema": orjson.dumps(schema["schema"]).decode(), "name": schema.get("name") or "response"}}}}
    return out


# --- answers ----------------------------------------------------------------------------------

def tool_call(use: Json) -> Json:
    return {"id": use.get("toolUseId") or "tooluse_" + uuid.uuid4().hex[:22], "type": "function",
            "function": {"name": use.get("name") or "", "arguments": orjson.dumps(use.get("input") or {}).decode()}}


def response_to_canonical(resp: Json, model: str) -> Json:
    blocks = ((resp.get("output") or {}).get("message") or {}).get("content") or ()
    calls = [tool_call(b["toolUse"]) for b in blocks if isinstance(b, dict) and isinstance(b.get("toolUse"), dict)]
    # Reasoning blocks (`reasoningContent`) are the model's hidden thinking, not the answer.
    text = "".join(b["text"] for b in blocks if isinstance(b, dict) and isinstance(b.get("text"), str))
    message: Json = {"role": "assistant", "content": text if text or not calls else None}
    if calls:
        message["tool_calls"] = calls
    finish = finish_reason_for(resp.get("stopReason") or "end_turn")
    return {"id": "chatcmpl-" + uuid.uuid4().hex, "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": usage_to_openai(usage_from_bedrock(resp.get("usage")))}


class BedrockToCanonicalStream:
    """ConverseStream events (`{eventType: payload}`, as botocore parses them) in, canonical
    chunks out; a usage chunk at close from the `metadata` event."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.usage = Usage()
        self._id = "chatcmpl-" + uuid.uuid4().hex
        self._created = int(time.time())
        self._started = False
        self._calls: dict[int, int] = {}  # contentBlockIndex -> tool call index

    def _chunk(self, delta: Json, finish: str | None = None) -> Json:
        return {"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], "usage": None}

    def feed(self, event: Json) -> list[Json]:
        out: list[Json] = []
        if not self._started:
            self._started = True
            out.append(self._chunk({"role": "assistant", "content": ""}))
        if "contentBlockStart" in event:
            start = event["contentBlockStart"]
            use = (start.get("start") or {}).get("toolUse")
            if isinstance(use, dict):
                index = self._calls.setdefault(int(start.get("contentBlockIndex") or 0), len(self._calls))
                call = tool_call({**use, "input": None})
                call["function"]["arguments"] = ""
                out.append(self._chunk({"tool_calls": [{"index": index, **call}]}))
        elif "contentBlockDelta" in event:
            body = event["contentBlockDelta"]
            delta = body.get("delta") or {}
            if isinstance(delta.get("text"), str) and delta["text"]:
                out.append(self._chunk({"content": delta["text"]}))
            elif isinstance(delta.get("toolUse"), dict):
                index = self._calls.get(int(body.get("contentBlockIndex") or 0))
                if index is not None:
                    out.append(self._chunk({"tool_calls": [{"index": index, "function": {
                        "arguments": delta["toolUse"].get("input") or ""}}]}))
        elif "messageStop" in event:
            out.append(self._chunk({}, finish_reason_for(event["messageStop"].get("stopReason") or "end_turn")))
        elif "metadata" in event:
            self.usage = usage_from_bedrock(event["metadata"].get("usage"))
        return out

    def close(self) -> list[Json]:
        return [{"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": self.model,
                 "choices": [], "usage": usage_to_openai(self.usage)}]
