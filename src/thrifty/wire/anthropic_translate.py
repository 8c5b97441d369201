"""Translation between OpenAI chat completions and Anthropic messages: requests and whole responses.

Lets either API surface be served by either kind of provider. Everything here is a pure function
over parsed JSON dicts; it runs on the hot path, so no validation models and no deep copies (the
input is never mutated, and the few pieces of it that are reused verbatim, such as JSON schemas,
are shared rather than copied). Streams are translated in `translate_stream`.

Where the two formats do not line up, the translation is deliberately lossy in these ways:

* OpenAI `system`/`developer` messages, wherever they sit, become Anthropic's top-level `system`
  (one text block per text part, in order); Anthropic `system` blocks become one leading OpenAI
  system message, without their `cache_control`.
* OpenAI `response_format` (`json_object` / `json_schema`) has no Anthropic equivalent, so it becomes
  an instruction appended as the last `system` block: answer only with JSON (matching the schema,
  which is embedded in the instruction). The model is asked, not forced.
* `temperature` above 1 is clamped to 1 (Anthropic's range is 0..1, OpenAI's 0..2).
* Knobs with no counterpart are dropped: OpenAI `seed`, `logprobs`, `top_logprobs`, penalties,
  `logit_bias`, `reasoning_effort`, `service_tier`, `store`, `metadata`, `prediction`; Anthropic
  `top_k`, `thinking`, `service_tier`; thinking blocks in either direction.
* What cannot be honoured raises `InvalidRequest`: OpenAI `n` > 1, audio, legacy `functions`,
  custom (grammar) tools; Anthropic server tools, MCP servers, file-id sources.
* Tool-call ids are passed through unchanged both ways, so a client can answer a `call_...` id
  from an Anthropic model (or a `toolu_...` id from an OpenAI model) and it still matches.
* Anthropic requests translated to OpenAI use `max_completion_tokens`, and streaming ones always
  ask for `stream_options.include_usage` because the gateway needs usage to price the call.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from thrifty.errors import InvalidRequest, UpstreamError
from thrifty.jsonutil import dumps, loads

from thrifty.wire.anthropic_usage import usage_from_anthropic, usage_to_anthropic
from thrifty.wire.openai_chat import usage_from_openai, usage_to_openai

__all__ = [
    "anthropic_request_to_openai",
    "anthropic_response_to_openai",
    "openai_request_to_anthropic",
    "openai_response_to_anthropic",
]

Json = dict[str, Any]

ANTHROPIC_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
EMPTY_SCHEMA: Json = {"type": "object", "properties": {}}

FINISH_REASON_BY_STOP_REASON = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
STOP_REASON_BY_FINISH_REASON = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

JSON_ONLY = ("Respond only with {what}. Do not wrap it in Markdown code fences and do not write "
             "anything before or after it.")


# -- helpers shared with translate_stream -----------------------------------------------------

def openai_id(upstream_id: str | None) -> str:
    """A `chatcmpl-` id derived from an upstream (usually `msg_`) id, or a fresh one."""
    if not upstream_id:
        return "chatcmpl-" + uuid.uuid4().hex
    if upstream_id.startswith("chatcmpl-"):
        return upstream_id
    return "chatcmpl-" + upstream_id.removeprefix("msg_")


def anthropic_id(upstream_id: str | None) -> str:
    """A `msg_` id derived from an upstream (usually `chatcmpl-`) id, or a fresh one."""
    if not upstream_id:
        return "msg_" + uuid.uuid4().hex
    if upstream_id.startswith("msg_"):
        return upstream_id
    return "msg_" + upstream_id.removeprefix("chatcmpl-")


def finish_reason_for(stop: str | None) -> str:
    return FINISH_REASON_BY_STOP_REASON.get(stop or "end_turn", "stop")


def stop_reason_for(finish: str | None, matched: Any = None) -> tuple[str, str | None]:
    """Anthropic (stop_reason, stop_sequence) for an OpenAI finish_reason.

    OpenAI does not say which stop sequence ended the text, but vLLM-style servers do, in a
    `stop_reason` field next to `finish_reason`; `matched` is that field when present.
    """
    if finish == "stop" and isinstance(matched, str) and matched:
        return "stop_sequence", matched
    return STOP_REASON_BY_FINISH_REASON.get(finish or "stop", "end_turn"), None


def tool_arguments(value: Any) -> str:
    """OpenAI's `arguments` string for an Anthropic tool `input` object."""
    return dumps(value if value is not None else {}).decode()


# -- OpenAI request -> Anthropic request ------------------------------------------------------

def openai_request_to_anthropic(body: Json, *, model: str, default_max_tokens: int = 4096) -> Json:
    n = body.get("n")
    if n is not None and n != 1:
        raise InvalidRequest("n > 1 is not supported by this model's provider; send n separate requests",
                             param="n")
    if body.get("functions") or body.get("function_call"):
        raise InvalidRequest("legacy `functions`/`function_call` are not supported; use `tools`",
                             param="functions")
    if body.get("audio") or "audio" in (body.get("modalities") or ()):
        raise InvalidRequest("audio output is not supported by this model's provider", param="modalities")

    system, messages = _openai_messages_to_anthropic(body.get("messages"))
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    out: Json = {"model": model, "max_tokens": default_max_tokens if max_tokens is None else max_tokens,
                 "messages": messages}

    instruction = _response_format_instruction(body.get("response_format"))
    if instruction:
        system.append({"type": "text", "text": instruction})
    if system:
        out["system"] = system

    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else [s for s in stop if s]
    if (temperature := body.get("temperature")) is not None:
        if not isinstance(temperature, (int, float)):
            raise InvalidRequest("temperature must be a number", param="temperature")
        out["temperature"] = min(float(temperature), 1.0)
    if (top_p := body.get("top_p")) is not None:
        out["top_p"] = top_p
    if user := body.get("user") or body.get("safety_identifier"):
        out["metadata"] = {"user_id": user}
    if body.get("stream"):
        out["stream"] = True

    tools = body.get("tools")
    if tools:
        out["tools"] = [_openai_tool_to_anthropic(t, i) for i, t in enumerate(tools)]
        choice = _openai_tool_choice_to_anthropic(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice:
            out["tool_choice"] = choice
    return out


def _openai_messages_to_anthropic(messages: Any) -> tuple[list[Json], list[Json]]:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("`messages` must be a non-empty list", param="messages")
    system: list[Json] = []
    out: list[Json] = []
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        where = f"messages[{i}]"
        if role in ("system", "developer"):
            system.extend(_text_blocks(m.get("content"), where + ".content"))
        elif role == "user":
            _append(out, "user", _openai_user_content(m.get("content"), where + ".content"))
        elif role == "assistant":
            _append(out, "assistant", _openai_assistant_blocks(m, where))
        elif role == "tool":
            _append(out, "user", [_openai_tool_result(m, where)])
        elif role == "function":
            raise InvalidRequest("legacy `function` messages are not supported; use `tool` messages",
                                 param=where + ".role")
        else:
            raise InvalidRequest(f"unknown message role {role!r}", param=where + ".role")
    if not out:
        raise InvalidRequest("`messages` must contain at least one user or assistant message",
                             param="messages")
    _strip_prefill(out[-1])
    return system, out


def _append(out: list[Json], role: str, content: str | list[Json]) -> None:
    """Add a message, merging it into the previous one when the role repeats (Anthropic
    requires user and assistant turns to alternate)."""
    if not content:
        return  # Anthropic rejects empty messages; an empty turn carries no meaning
    if not out or out[-1]["role"] != role:
        out.append({"role": role, "content": content})
        return
    prev = out[-1]
    blocks = prev["content"]
    if isinstance(blocks, str):
        blocks = prev["content"] = [{"type": "text", "text": blocks}]
    blocks.extend([{"type": "text", "text": content}] if isinstance(content, str) else content)
    if role == "user":
        # tool_result blocks must open the user turn that answers the tool calls
        blocks.sort(key=lambda b: b.get("type") != "tool_result")


def _strip_prefill(last: Json) -> None:
    """A final assistant turn is a prefill for Anthropic, which rejects trailing whitespace in it."""
    if last["role"] != "assistant":
        return
    blocks = last["content"]
    if blocks and blocks[-1].get("type") == "text":
        text = blocks[-1]["text"].rstrip()
        if text:
            blocks[-1] = {"type": "text", "text": text}
        else:
            blocks.pop()


def _text_blocks(content: Any, where: str) -> list[Json]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest("content must be a string or a list of parts", param=where)
    blocks = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in ("text", "refusal"):
            raise InvalidRequest(f"only text parts are allowed here, got {kind!r}", param=f"{where}[{j}]")
        text = part.get(kind)
        if text:
            blocks.append({"type": "text", "text": text})
    return blocks


def _openai_user_content(content: Any, where: str) -> str | list[Json]:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise InvalidRequest("content must be a string or a list of parts", param=where)
    blocks = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        here = f"{where}[{j}]"
        if kind == "text":
            if part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image_block(part.get("image_url"), here))
        elif kind == "file":
            blocks.append(_document_block(part.get("file") or {}, here))
        elif kind == "input_audio":
            raise InvalidRequest("audio input is not supported by this model's provider", param=here)
        else:
            raise InvalidRequest(f"unsupported content part type {kind!r}", param=here)
    return blocks


def _split_data_url(url: str, where: str) -> tuple[str, str]:
    header, comma, data = url[5:].partition(",")
    if not comma or not header.endswith(";base64"):
        raise InvalidRequest("data URLs must be base64-encoded (data:<type>;base64,<data>)", param=where)
    return header.split(";", 1)[0].lower(), data


def _image_block(image_url: Any, where: str) -> Json:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str) or not url:
        raise InvalidRequest("image_url.url is required", param=where)
    if url.startswith("data:"):
        media_type, data = _split_data_url(url, where)
        if media_type not in ANTHROPIC_IMAGE_TYPES:
            raise InvalidRequest(f"unsupported image type {media_type!r}; use jpeg, png, gif or webp",
                                 param=where)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise InvalidRequest("image_url.url must be an http(s) or data URL", param=where)


def _document_block(file: Json, where: str) -> Json:
    data_url = file.get("file_data")
    if not isinstance(data_url, str) or not data_url.startswith("data:"):
        raise InvalidRequest("only inline `file_data` (a base64 data URL) can be sent to this model's "
                             "provider; `file_id` is not supported", param=where)
    media_type, data = _split_data_url(data_url, where)
    if media_type != "application/pdf":
        raise InvalidRequest(f"unsupported file type {media_type!r}; only PDF is supported", param=where)
    block: Json = {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if file.get("filename"):
        block["title"] = file["filename"]
    return block


def _openai_assistant_blocks(m: Json, where: str) -> list[Json]:
    blocks = _text_blocks(m.get("content"), where + ".content")
    if not blocks and m.get("refusal"):
        blocks.append({"type": "text", "text": m["refusal"]})
    for j, call in enumerate(m.get("tool_calls") or ()):
        here = f"{where}.tool_calls[{j}]"
        if call.get("type", "function") != "function":
            raise InvalidRequest("only function tool calls are supported", param=here + ".type")
        fn = call.get("function") or {}
        args = fn.get("arguments") or "{}"
        try:
            parsed = loads(args)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise InvalidRequest("tool call arguments must be a JSON object", param=here + ".function.arguments")
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": fn.get("name"), "input": parsed})
    return blocks


def _openai_tool_result(m: Json, where: str) -> Json:
    call_id = m.get("tool_call_id")
    if not call_id:
        raise InvalidRequest("tool messages need a `tool_call_id`", param=where + ".tool_call_id")
    block: Json = {"type": "tool_result", "tool_use_id": call_id}
    content = m.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif content:
        block["content"] = _text_blocks(content, where + ".content")
    return block


def _openai_tool_to_anthropic(tool: Json, i: int) -> Json:
    if tool.get("type", "function") != "function":
        raise InvalidRequest(f"tool type {tool.get('type')!r} is not supported; use function tools",
                             param=f"tools[{i}].type")
    fn = tool.get("function") or {}
    if not fn.get("name"):
        raise InvalidRequest("function tools need a name", param=f"tools[{i}].function.name")
    out: Json = {"name": fn["name"], "input_schema": fn.get("parameters") or EMPTY_SCHEMA}
    if fn.get("description"):
        out["description"] = fn["description"]
    return out


def _openai_tool_choice_to_anthropic(choice: Any, parallel: Any) -> Json | None:
    if choice is None or choice == "auto":
        out: Json | None = {"type": "auto"} if choice or parallel is False else None
    elif choice == "none":
        return {"type": "none"}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict) and choice.get("type") == "function" and (choice.get("function") or {}).get("name"):
        out = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise InvalidRequest("tool_choice must be auto, none, required or a named function",
                             param="tool_choice")
    if out is not None and parallel is False:
        out["disable_parallel_tool_use"] = True
    return out


def _response_format_instruction(fmt: Any) -> str | None:
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return JSON_ONLY.format(what="a single valid JSON object")
    if kind == "json_schema":
        spec = fmt.get("json_schema") or {}
        schema = spec.get("schema") or {}
        about = f" ({spec['description']})" if spec.get("description") else ""
        return (JSON_ONLY.format(what="a single valid JSON value that conforms to the JSON Schema below")
                + f"\n\nJSON Schema{about}:\n" + dumps(schema).decode())
    raise InvalidRequest(f"unsupported response_format type {kind!r}", param="response_format.type")


# -- Anthropic request -> OpenAI request ------------------------------------------------------

def anthropic_request_to_openai(body: Json, *, model: str) -> Json:
    if body.get("mcp_servers"):
        raise InvalidRequest("MCP servers are not supported by this model's provider", param="mcp_servers")
    messages: list[Json] = []
    if system := body.get("system"):
        messages.append({"role": "system", "content": _anthropic_system_to_openai(system)})
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("`messages` must be a non-empty list", param="messages")
    for i, m in enumerate(raw):
        role = m.get("role") if isinstance(m, dict) else None
        where = f"messages.{i}"
        if role == "user":
            messages.extend(_anthropic_user_to_openai(m.get("content"), where))
        elif role == "assistant":
            messages.append(_anthropic_assistant_to_openai(m.get("content"), where))
        else:
            raise InvalidRequest(f"unknown message role {role!r}", param=where + ".role")

    out: Json = {"model": model, "messages": messages}
    if (max_tokens := body.get("max_tokens")) is not None:
        out["max_completion_tokens"] = max_tokens
    if stop := body.get("stop_sequences"):
        out["stop"] = list(stop)
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    if user := (body.get("metadata") or {}).get("user_id"):
        out["user"] = user
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    if tools := body.get("tools"):
        out["tools"] = [_anthropic_tool_to_openai(t, i) for i, t in enumerate(tools)]
        _anthropic_tool_choice_to_openai(body.get("tool_choice"), out)
    return out


def _anthropic_system_to_openai(system: Any) -> str | list[Json]:
    if isinstance(system, str):
        return system
    if not isinstance(system, list):
        raise InvalidRequest("system must be a string or a list of text blocks", param="system")
    texts = [b.get("text") or "" for b in system if b.get("type") == "text"]
    return texts[0] if len(texts) == 1 else [{"type": "text", "text": t} for t in texts]


def _anthropic_user_to_openai(content: Any, where: str) -> list[Json]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    if not isinstance(content, list):
        raise InvalidRequest("content must be a string or a list of blocks", param=where + ".content")
    out: list[Json] = []
    parts: list[Json] = []
    for j, block in enumerate(content):
        here = f"{where}.content.{j}"
        if block.get("type") == "tool_result":
            message, images = _anthropic_tool_result_to_openai(block, here)
            out.append(message)
            parts.extend(images)
        else:
            parts.append(_anthropic_block_to_openai_part(block, here))
    if parts:
        only_text = len(parts) == 1 and parts[0]["type"] == "text"
        out.append({"role": "user", "content": parts[0]["text"] if only_text else parts})
    return out


def _anthropic_tool_result_to_openai(block: Json, where: str) -> tuple[Json, list[Json]]:
    """An OpenAI tool message, plus the images it returned: OpenAI tool messages hold text only,
    so images ride in the user message that follows the tool messages."""
    content = block.get("content")
    images: list[Json] = []
    if content is None or isinstance(content, str):
        text: str | list[Json] = content or ""
    else:
        texts = []
        for j, inner in enumerate(content):
            part = _anthropic_block_to_openai_part(inner, f"{where}.content.{j}")
            (texts if part["type"] == "text" else images).append(part)
        text = texts[0]["text"] if len(texts) == 1 else texts
        if images:
            label = f"[images returned by tool call {block.get('tool_use_id')}]"
            images.insert(0, {"type": "text", "text": label})
    if block.get("is_error"):
        text = "Error: " + text if isinstance(text, str) else [{"type": "text", "text": "Error:"}, *text]
    return {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text}, images


def _anthropic_block_to_openai_part(block: Json, where: str) -> Json:
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": block.get("text") or ""}
    source = block.get("source") or {}
    if kind == "image":
        if source.get("type") == "base64":
            url = f"data:{source.get('media_type')};base64,{source.get('data')}"
        elif source.get("type") == "url":
            url = source.get("url")
        else:
            raise InvalidRequest("only base64 and url image sources are supported", param=where + ".source")
        return {"type": "image_url", "image_url": {"url": url}}
    if kind == "document":
        if source.get("type") == "text":
            return {"type": "text", "text": source.get("data") or ""}
        if source.get("type") == "base64":
            data_url = f"data:{source.get('media_type')};base64,{source.get('data')}"
            return {"type": "file", "file": {"filename": block.get("title") or "document.pdf", "file_data": data_url}}
        raise InvalidRequest("only base64 and text document sources are supported", param=where + ".source")
    raise InvalidRequest(f"content block type {kind!r} is not supported by this model's provider",
                         param=where + ".type")


def _anthropic_assistant_to_openai(content: Any, where: str) -> Json:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    if not isinstance(content, list):
        raise InvalidRequest("content must be a string or a list of blocks", param=where + ".content")
    texts: list[str] = []
    calls: list[Json] = []
    for j, block in enumerate(content):
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            calls.append(_openai_tool_call(block))
        elif kind not in ("thinking", "redacted_thinking"):
            raise InvalidRequest(f"content block type {kind!r} is not supported by this model's provider",
                                 param=f"{where}.content.{j}.type")
    message: Json = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _openai_tool_call(tool_use: Json) -> Json:
    return {"id": tool_use.get("id"), "type": "function",
            "function": {"name": tool_use.get("name"), "arguments": tool_arguments(tool_use.get("input"))}}


def _anthropic_tool_to_openai(tool: Json, i: int) -> Json:
    if tool.get("type") not in (None, "custom"):
        raise InvalidRequest(f"server tool {tool.get('type')!r} is not supported by this model's provider",
                             param=f"tools.{i}.type")
    fn: Json = {"name": tool.get("name"), "parameters": tool.get("input_schema") or EMPTY_SCHEMA}
    if tool.get("description"):
        fn["description"] = tool["description"]
    return {"type": "function", "function": fn}


def _anthropic_tool_choice_to_openai(choice: Json | None, out: Json) -> None:
    if not choice:
        return
    kind = choice.get("type")
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    else:
        raise InvalidRequest(f"unknown tool_choice type {kind!r}", param="tool_choice.type")
    if choice.get("disable_parallel_tool_use"):
        out["parallel_tool_calls"] = False


# -- responses --------------------------------------------------------------------------------

def anthropic_response_to_openai(resp: Json, *, model: str) -> Json:
    """An Anthropic Message as an OpenAI `chat.completion`."""
    texts: list[str] = []
    calls: list[Json] = []
    for block in resp.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            calls.append(_openai_tool_call(block))
        # thinking and server-tool blocks have no place in a chat completion
    message: Json = {"role": "assistant", "content": "".join(texts) if texts or not calls else None,
                     "refusal": None, "annotations": []}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": openai_id(resp.get("id")),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": finish_reason_for(resp.get("stop_reason"))}],
        "usage": usage_to_openai(usage_from_anthropic(resp.get("usage"))),
    }


def openai_response_to_anthropic(resp: Json, *, model: str) -> Json:
    """An OpenAI `chat.completion` (its first choice) as an Anthropic Message."""
    choices = resp.get("choices") or [{}]
    choice = choices[0]
    message = choice.get("message") or {}
    content: list[Json] = []
    text = message.get("content")
    if isinstance(text, list):  # some compatible servers answer with parts
        text = "".join(p.get("text") or "" for p in text if isinstance(p, dict))
    if text:
        content.append({"type": "text", "text": text})
    refusal = message.get("refusal")
    if refusal:
        content.append({"type": "text", "text": refusal})
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        try:
            args = loads(fn.get("arguments") or "{}")
        except ValueError:
            args = None
        if not isinstance(args, dict):
            raise UpstreamError(f"the model returned tool arguments that are not a JSON object for "
                                f"{fn.get('name')!r}")
        content.append({"type": "tool_use", "id": call.get("id"), "name": fn.get("name"), "input": args})
    reason, sequence = stop_reason_for(choice.get("finish_reason"), choice.get("stop_reason"))
    if refusal and reason == "end_turn":
        reason = "refusal"
    return {
        "id": anthropic_id(resp.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage_to_anthropic(usage_from_openai(resp.get("usage"))),
    }
