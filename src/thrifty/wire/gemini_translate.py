"""Google Gemini `generateContent` <-> the canonical form (OpenAI Chat Completions), and its usage.

Shapes from the Gemini API reference ("Generating content", `GenerateContentResponse`,
`UsageMetadata`): a request has `contents` (each `{role: user|model, parts}`; a part is `text`,
`functionCall {name, args}` or `functionResponse {name, response}`), `systemInstruction`,
`tools[].functionDeclarations`, `toolConfig.functionCallingConfig` and `generationConfig`
(`maxOutputTokens`, `temperature`, `topP`, `stopSequences`, `candidateCount`, `responseMimeType`,
`responseSchema`). An answer has `candidates[].content.parts` and `finishReason`.

Usage: `promptTokenCount` counts every input token, `cachedContentTokenCount` (context caching)
included; `candidatesTokenCount` is the visible output and `thoughtsTokenCount` the thinking,
billed as output, outside `candidatesTokenCount`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Mapping

import orjson

from thrifty.contract.usage import Usage
from thrifty.wire.openai_chat import usage_to_openai

Json = dict[str, Any]

# Where the gateway keeps the model it routed to in an upstream body: Gemini names the model in
# the URL, so the provider takes this key off before sending (providers/gemini.py).
MODEL_KEY = "model"
FILTERED = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"})
_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}


def usage_from_gemini(u: Mapping[str, Any] | None) -> Usage:
    if not u:
        return Usage()
    prompt = int(u.get("promptTokenCount") or 0) + int(u.get("toolUsePromptTokenCount") or 0)
    cached = int(u.get("cachedContentTokenCount") or 0)
    thoughts = int(u.get("thoughtsTokenCount") or 0)
    return Usage(input_tokens=prompt - cached, cache_read_tokens=cached,
                 output_tokens=int(u.get("candidatesTokenCount") or 0) + thoughts, reasoning_tokens=thoughts)


def usage_to_gemini(u: Usage) -> Json:
    out: Json = {"promptTokenCount": u.prompt_tokens, "candidatesTokenCount": u.output_tokens - u.reasoning_tokens,
                 "totalTokenCount": u.prompt_tokens + u.output_tokens}
    if u.cache_read_tokens:
        out["cachedContentTokenCount"] = u.cache_read_tokens
    if u.reasoning_tokens:
        out["thoughtsTokenCount"] = u.reasoning_tokens
    return out


def finish_reason_for(reason: str | None, tool_call: bool) -> str | None:
    if reason is None:
        return None
    if reason == "MAX_TOKENS":
        return "length"
    if reason in FILTERED:
        return "content_filter"
    return "tool_calls" if tool_call else "stop"


# --- requests ---------------------------------------------------------------------------------

def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _arguments(raw: Any) -> Any:
    try:
        return orjson.loads(raw) if isinstance(raw, str) and raw else (raw or {})
    except orjson.JSONDecodeError:
        return {"arguments": raw}


def _response(raw: Any) -> Json:
    """A tool result as `functionResponse.response` (an object): JSON objects as they are."""
    text = _text(raw)
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    return value if isinstance(value, dict) else {"content": text}


def request_to_gemini(body: Json, model: str) -> Json:
    """A canonical request as Gemini's `generateContent` takes it (plus `MODEL_KEY`)."""
    system: list[str] = []
    contents: list[Json] = []
    names: dict[str, str] = {}  # tool call id -> function name (a functionResponse names the function)
    for m in body.get("messages") or ():
        role = m.get("role")
        if role in ("system", "developer"):
            system.append(_text(m.get("content")))
            continue
        if role == "assistant":
            parts: list[Json] = [{"text": t} for t in (_text(m.get("content")),) if t]
            for call in m.get("tool_calls") or ():
                fn = call.get("function") or {}
                names[call.get("id") or ""] = fn.get("name") or ""
                parts.append({"functionCall": {"name": fn.get("name") or "", "args": _arguments(fn.get("arguments"))}})
            item = {"role": "model", "parts": parts or [{"text": ""}]}
        elif role == "tool":
            name = names.get(m.get("tool_call_id") or "", m.get("name") or "")
            item = {"role": "user", "parts": [{"functionResponse": {"name": name,
                                                                   "response": _response(m.get("content"))}}]}
        else:
            item = {"role": "user", "parts": [{"text": _text(m.get("content"))}]}
        if contents and contents[-1]["role"] == item["role"]:
            contents[-1]["parts"].extend(item["parts"])  # Gemini alternates turns: merge neighbours
        else:
            contents.append(item)
    out: Json = {MODEL_KEY: model, "contents": contents}
    if system:
        out["systemInstruction"] = {"parts": [{"text": "\n".join(system)}]}
    tools = [t.get("function") or {} for t in body.get("tools") or () if isinstance(t, dict)]
    if tools:
        out["tools"] = [{"functionDeclarations": [
            {k: v for k, v in (("name", fn.get("name")), ("description", fn.get("description")),
                               ("parameters", fn.get("parameters"))) if v is not None} for fn in tools]}]
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            out["toolConfig"] = {"functionCallingConfig": {
                "mode": "ANY", "allowedFunctionNames": [(choice.get("function") or {}).get("name")]}}
        elif choice in _MODES:
            out["toolConfig"] = {"functionCallingConfig": {"mode": _MODES[choice]}}
    config: Json = {}
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    if cap:
        config["maxOutputTokens"] = cap
    for src, dst in (("temperature", "temperature"), ("top_p", "topP"), ("n", "candidateCount"),
                     ("seed", "seed")):
        if body.get(src) is not None:
            config[dst] = body[src]
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
            config["responseSchema"] = schema
    if config:
        out["generationConfig"] = config
    return out


# --- answers ----------------------------------------------------------------------------------

def tool_call(fc: Json) -> Json:
    return {"id": fc.get("id") or "call_" + uuid.uuid4().hex[:24], "type": "function",
            "function": {"name": fc.get("name") or "", "arguments": orjson.dumps(fc.get("args") or {}).decode()}}


def visible_parts(candidate: Mapping[str, Any]) -> list[Json]:
    """The parts of a candidate a client sees (thought summaries left out)."""
    parts = (candidate.get("content") or {}).get("parts") or ()
    return [p for p in parts if isinstance(p, dict) and not p.get("thought")]


def response_to_canonical(resp: Json, model: str) -> Json:
    choices = []
    for i, cand in enumerate(resp.get("candidates") or ()):
        parts = visible_parts(cand)
        calls = [tool_call(p["functionCall"]) for p in parts if isinstance(p.get("functionCall"), dict)]
        text = "".join(p["text"] for p in parts if isinstance(p.get("text"), str))
        message: Json = {"role": "assistant", "content": text if text or not calls else None}
        if calls:
            message["tool_calls"] = calls
        choices.append({"index": cand.get("index", i), "message": message, "logprobs": None,
                        "finish_reason": finish_reason_for(cand.get("finishReason") or "STOP", bool(calls))})
    return {"id": "chatcmpl-" + str(resp.get("responseId") or uuid.uuid4().hex), "object": "chat.completion",
            "created": int(time.time()), "model": model, "choices": choices,
            "usage": usage_to_openai(usage_from_gemini(resp.get("usageMetadata")))}


class GeminiToCanonicalStream:
    """`streamGenerateContent?alt=sse` chunks in, canonical chunks out; a usage chunk at close."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.usage = Usage()
        self._id = "chatcmpl-" + uuid.uuid4().hex
        self._created = int(time.time())
        self._started = False
        self._calls = 0

    def _chunk(self, delta: Json, finish: str | None = None) -> Json:
        return {"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], "usage": None}

    def feed(self, event: Json) -> list[Json]:
        if event.get("usageMetadata"):
            self.usage = usage_from_gemini(event["usageMetadata"])  # cumulative: the last one holds
        out: list[Json] = []
        if not self._started:
            self._started = True
            out.append(self._chunk({"role": "assistant", "content": ""}))
        cands = event.get("candidates") or ()
        cand = cands[0] if cands else {}
        for part in visible_parts(cand):
            if isinstance(part.get("text"), str) and part["text"]:
                out.append(self._chunk({"content": part["text"]}))
            elif isinstance(part.get("functionCall"), dict):
                call = {"index": self._calls, **tool_call(part["functionCall"])}
                self._calls += 1
                out.append(self._chunk({"tool_calls": [call]}))
        if cand.get("finishReason"):
            out.append(self._chunk({}, finish_reason_for(cand["finishReason"], self._calls > 0)))
        return out

    def close(self) -> list[Json]:
        return [{"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": self.model,
                 "choices": [], "usage": usage_to_openai(self.usage)}]
