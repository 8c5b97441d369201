"""OpenAI Chat Completions (`/v1/chat/completions`): the canonical dialect.

Usage: `prompt_tokens` includes cached tokens (`prompt_tokens_details.cached_tokens`);
`completion_tokens` includes reasoning tokens (`completion_tokens_details.reasoning_tokens`).
Source: OpenAI API reference, "The chat completion object".
"""

from __future__ import annotations

from typing import Any, Mapping

from thrifty import jsonutil
from thrifty.contract.usage import Usage
from thrifty.errors import GatewayError
from thrifty.wire import replay
from thrifty.wire.base import (
    AnswerMap, AnswerView, Json, RequestView, StreamTranslator, TokenCounter, Wire, is_count, tools_chars,
)
from thrifty.wire.fields import OPENAI_CHECK

_ERROR_TYPES = {
    "invalid_request": "invalid_request_error", "authentication": "authentication_error",
    "permission": "permission_error", "not_found": "invalid_request_error",
    "request_too_large": "invalid_request_error", "rate_limit": "rate_limit_error",
    "upstream": "api_error", "timeout": "timeout_error", "overloaded": "server_error",
    "api_error": "api_error",
}
_ATTACHMENTS = {"image_url", "input_audio", "file", "input_image", "input_file"}


def usage_from_openai(u: Mapping[str, Any] | None) -> Usage:
    if not u:
        return Usage()
    prompt = int(u.get("prompt_tokens") or 0)
    cached = int((u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    reasoning = int((u.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
    return Usage(input_tokens=prompt - cached, cache_read_tokens=cached,
                 output_tokens=int(u.get("completion_tokens") or 0), reasoning_tokens=reasoning)


def usage_to_openai(u: Usage) -> Json:
    # Cache writes are billed as input on OpenAI's wire: they count in prompt_tokens.
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.prompt_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cache_read_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


class _ChunksOut(StreamTranslator):
    """Canonical chunks to an OpenAI client: the usage chunk only if the client asked for it."""

    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage
        self.usage = Usage()

    def feed(self, chunk: Json) -> list[Json]:
        if chunk.get("usage"):
            self.usage = usage_from_openai(chunk["usage"])
        if not self.include_usage:
            # The gateway always asks upstream for usage; a client that did not gets none.
            if not chunk.get("choices"):
                return []
            chunk.pop("usage", None)
        return [chunk]


class OpenAIChat(Wire):
    name = "openai"
    stream_end = b"data: [DONE]\n\n"
    prompt_caching = "cache_key"

    # --- the client's request -------------------------------------------------------------

    def check(self, body: Any) -> tuple[str, bool]:
        return OPENAI_CHECK.check(body)

    def user(self, body: Json) -> str | None:
        u = body.get("user")
        return u if isinstance(u, str) else None

    # --- errors and framing ---------------------------------------------------------------

    def error_body(self, err: GatewayError, request_id: str) -> bytes:
        return jsonutil.dumps({"error": {"message": err.message, "type": _ERROR_TYPES.get(err.kind, "api_error"),
                                         "param": err.param, "code": err.code}})

    def stream_error(self, err: GatewayError) -> bytes:
        return b"data: " + self.error_body(err, "") + b"\n\n"

    def encode_event(self, event: Json) -> bytes:
        return b"data: " + jsonutil.dumps(event) + b"\n\n"

    # --- usage ----------------------------------------------------------------------------

    def usage_of(self, usage: Mapping[str, Any] | None) -> Usage:
        return usage_from_openai(usage)

    def usage_body(self, usage: Usage) -> Json:
        return usage_to_openai(usage)

    # --- translation: this is the canonical form ------------------------------------------

    def passthrough_request(self, body: Json, model: str) -> Json:
        out = dict(body)
        out["model"] = model
        if body.get("stream") is True:
            # Usage is needed for the ledger whether or not the client asked for it.
            out["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return out

    def request_to_canonical(self, body: Json, model: str) -> Json:
        return {**body, "model": model}

    def request_from_canonical(self, body: Json, model: str, default_max_tokens: int) -> Json:
        return self.passthrough_request(body, model)

    def response_to_canonical(self, resp: Json, model: str) -> Json:
        return resp

    def response_from_canonical(self, resp: Json, model: str) -> Json:
        return resp

    def passthrough_stream(self, body: Json) -> StreamTranslator:
        return _ChunksOut(self.stream_usage_wanted(body))

    def stream_to_canonical(self, model: str) -> StreamTranslator:
        return _ChunksOut(True)

    def stream_from_canonical(self, body: Json, model: str) -> StreamTranslator:
        return _ChunksOut(self.stream_usage_wanted(body))

    def stream_usage_wanted(self, body: Json) -> bool:
        return bool((body.get("stream_options") or {}).get("include_usage"))

    # --- whole answers and streams --------------------------------------------------------

    def assemble(self, events: list[Json]) -> Json:
        return replay.assemble_openai(events)

    def replay(self, answer: Json, *, include_usage: bool) -> list[Json]:
        return replay.replay_openai(answer, include_usage=include_usage)

    def with_fresh_ids(self, answer: Json, *, response_id: str | None = None, now: float | None = None) -> Json:
        return replay.fresh_openai_ids(answer, response_id=response_id, now=now)

    # --- fields levers change -------------------------------------------------------------

    def output_cap(self, body: Json) -> int | None:
        return next((v for k in ("max_completion_tokens", "max_tokens") if is_count(v := body.get(k))), None)

    def with_output_cap(self, body: Json, cap: int) -> Json:
        # max_completion_tokens: every current OpenAI model takes it, reasoning ones included.
        out = dict(body)
        out.pop("max_tokens", None)
        out["max_completion_tokens"] = cap
        return out

    def choices(self, body: Json) -> int:
        n = body.get("n")
        return n if is_count(n) else 1

    def stops(self, body: Json) -> Any:
        return body.get("stop")

    def with_stops(self, body: Json, stops: list[str]) -> Json:
        return {**body, "stop": stops}

    def cache_key_form(self, canonical: Json) -> Json:
        if "max_tokens" in canonical and "max_completion_tokens" not in canonical:
            canonical["max_completion_tokens"] = canonical.pop("max_tokens")
        return canonical

    # --- views ----------------------------------------------------------------------------

    def request_view(self, body: Mapping[str, Any]) -> RequestView:
        v = RequestView()
        msgs = body.get("messages")
        if isinstance(msgs, list):
            system_parts = []
            for m in msgs:
                if not isinstance(m, dict):
                    continue
                role = m.get("role")
                text = _content_text(m.get("content"), v)
                if role not in ("system", "developer"):
                    v.messages += 1  # as Anthropic counts them: the system prompt is not a message
                if role == "user":
                    v.user_texts.append(text)
                elif role in ("system", "developer"):
                    system_parts.append(text)
                else:
                    v.other_chars += len(text)
                    if role in ("tool", "function"):
                        v.tool_results += 1
                    calls = m.get("tool_calls")
                    if isinstance(calls, list):
                        v.other_chars += 60 * len(calls)
            v.system = "\n".join(system_parts)
        tools = body.get("tools") or body.get("functions")
        if isinstance(tools, list):
            v.tool_count = len(tools)
            v.tool_chars = tools_chars(tools)
            choice = body.get("tool_choice") or body.get("function_call")
            v.forced_single_tool = len(tools) == 1 and isinstance(choice, dict)
        rf = body.get("response_format")
        v.structured = isinstance(rf, dict) and rf.get("type") in ("json_schema", "json_object")
        mt = body.get("max_completion_tokens") or body.get("max_tokens")
        v.max_output_tokens = mt if isinstance(mt, int) else None
        return v

    def answer_view(self, answer: Mapping[str, Any]) -> AnswerView:
        choices = answer.get("choices") or [{}]
        choice = choices[0] if isinstance(choices[0], dict) else {}
        msg = choice.get("message") or {}
        text = msg.get("content")
        tool = False
        if not text and msg.get("tool_calls"):
            text = ((msg["tool_calls"][0] or {}).get("function") or {}).get("arguments") or ""
            tool = True
        return AnswerView(text if isinstance(text, str) else "", choice.get("finish_reason"), tool)

    def requested_schema(self, body: Mapping[str, Any]) -> Json | None:
        rf = body.get("response_format")
        if isinstance(rf, dict) and rf.get("type") == "json_schema":
            schema = (rf.get("json_schema") or {}).get("schema")
            return schema if isinstance(schema, dict) else None
        return None

    def with_requested_schema(self, body: Mapping[str, Any], schema: Json) -> Json | None:
        rf = body.get("response_format")
        if not (isinstance(rf, dict) and rf.get("type") == "json_schema"):
            return None
        js = rf.get("json_schema") or {}
        if not isinstance(js.get("schema"), dict):
            return None
        return {**body, "response_format": {**rf, "json_schema": {**js, "schema": schema}}}

    def map_structured_answer(self, answer: Json, fn: AnswerMap) -> tuple[Json, Any]:
        choices = list(answer.get("choices") or ())
        if not choices or not isinstance(choices[0], dict):
            return answer, None
        first = dict(choices[0])
        msg = dict(first.get("message") or {})
        found = None
        if isinstance(msg.get("content"), str):
            msg["content"], found = fn(msg["content"])
        elif msg.get("tool_calls"):
            calls = [dict(c) for c in msg["tool_calls"]]
            call_fn = dict(calls[0].get("function") or {})
            call_fn["arguments"], found = fn(call_fn.get("arguments") or "")
            calls[0]["function"] = call_fn
            msg["tool_calls"] = calls
        first["message"] = msg
        choices[0] = first
        return {**answer, "choices": choices}, found

    # --- the worst case -------------------------------------------------------------------

    def input_tokens(self, body: Json, counter: TokenCounter) -> int:
        c = counter
        tools = [*(body.get("tools") or ()), *(body.get("functions") or ())]
        n = c.texts(tools) + c.per_message * len(tools) + (c.tools_tokens if tools else 0)
        fmt = body.get("response_format")
        if isinstance(fmt, dict):
            n += c.texts((fmt,)) + c.per_message
        for m in body.get("messages") or ():
            n += c.per_message
            if not isinstance(m, dict):
                n += c.texts((m,))
                continue
            for k, v in m.items():
                if k == "role":
                    n += c.count(v) if isinstance(v, str) else 0
                elif k == "content" and isinstance(v, list):
                    n += _parts_tokens(v, c)
                else:
                    n += c.texts((v,))
        return n


def _content_text(content: Any, v: RequestView) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = []
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append(part["text"])
        elif kind in ("image_url", "input_image", "image"):
            v.images += 1
        elif kind in ("file", "input_file"):
            v.documents += 1
    return "\n".join(parts)


def _parts_tokens(parts: list[Any], c: TokenCounter) -> int:
    n = c.per_message * len(parts)
    for p in parts:
        kind = p.get("type") if isinstance(p, dict) else None
        if kind == "text" and isinstance(p.get("text"), str):
            n += c.count(p["text"])
        elif kind in _ATTACHMENTS:
            n += c.attachment_tokens
        else:
            n += c.texts((p,))
    return n
