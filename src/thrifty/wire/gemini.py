"""Google Gemini `generateContent` as an upstream wire (translation in `gemini_translate`).

Clients keep the OpenAI and Anthropic surfaces; the gateway translates their requests through
the canonical form into Gemini's and the answers back. What only a client-side dialect needs
(reading a client's request, its error shape, replaying answers to it) is not offered here:
no endpoint of the gateway speaks Gemini to clients.
"""

from __future__ import annotations

from typing import Any, Mapping, NoReturn

from thrifty import jsonutil
from thrifty.contract.usage import Usage
from thrifty.errors import GatewayError
from thrifty.wire.base import (
    AnswerMap,
    AnswerView,
    Json,
    RequestView,
    StreamTranslator,
    TokenCounter,
    Wire,
)
from thrifty.wire.gemini_translate import (
    GeminiToCanonicalStream,
    request_to_gemini,
    response_to_canonical,
    usage_from_gemini,
    usage_to_gemini,
    visible_parts,
)


def _upstream_only(what: str) -> NoReturn:
    raise NotImplementedError(f"gemini is an upstream wire only: no client speaks it ({what})")


class GeminiGenerate(Wire):
    name = "gemini"
    usage_key = "usageMetadata"

    # --- client-side parts: not offered ---------------------------------------------------

    def check(self, body: Any) -> tuple[str, bool]:
        _upstream_only("check")

    def user(self, body: Json) -> str | None:
        return None

    def error_body(self, err: GatewayError, request_id: str) -> bytes:
        return jsonutil.dumps({"error": {"code": err.status, "message": err.message, "status": err.kind.upper()}})

    def stream_error(self, err: GatewayError) -> bytes:
        return b"data: " + self.error_body(err, "") + b"\n\n"

    def encode_event(self, event: Json) -> bytes:
        return b"data: " + jsonutil.dumps(event) + b"\n\n"

    def passthrough_request(self, body: Json, model: str) -> Json:
        _upstream_only("passthrough")

    def request_to_canonical(self, body: Json, model: str) -> Json:
        _upstream_only("request_to_canonical")

    def response_from_canonical(self, resp: Json, model: str) -> Json:
        _upstream_only("response_from_canonical")

    def passthrough_stream(self, body: Json) -> StreamTranslator:
        _upstream_only("passthrough")

    def stream_from_canonical(self, body: Json, model: str) -> StreamTranslator:
        _upstream_only("stream_from_canonical")

    def assemble(self, events: list[Json]) -> Json:
        _upstream_only("assemble")

    def replay(self, answer: Json, *, include_usage: bool) -> list[Json]:
        _upstream_only("replay")

    def with_fresh_ids(self, answer: Json, *, response_id: str | None = None, now: float | None = None) -> Json:
        _upstream_only("with_fresh_ids")

    def requested_schema(self, body: Mapping[str, Any]) -> Json | None:
        return (body.get("generationConfig") or {}).get("responseSchema")

    def with_requested_schema(self, body: Mapping[str, Any], schema: Json) -> Json | None:
        config = body.get("generationConfig") or {}
        if not isinstance(config.get("responseSchema"), dict):
            return None
        return {**body, "generationConfig": {**config, "responseSchema": schema}}

    def map_structured_answer(self, answer: Json, fn: AnswerMap) -> tuple[Json, Any]:
        _upstream_only("map_structured_answer")

    # --- usage ----------------------------------------------------------------------------

    def usage_of(self, usage: Mapping[str, Any] | None) -> Usage:
        return usage_from_gemini(usage)

    def usage_body(self, usage: Usage) -> Json:
        return usage_to_gemini(usage)

    # --- the upstream side ----------------------------------------------------------------

    def request_from_canonical(self, body: Json, model: str, default_max_tokens: int) -> Json:
        return request_to_gemini(body, model)

    def response_to_canonical(self, resp: Json, model: str) -> Json:
        return response_to_canonical(resp, model)

    def stream_to_canonical(self, model: str) -> StreamTranslator:
        return GeminiToCanonicalStream(model)  # type: ignore[return-value]

    def output_cap(self, body: Json) -> int | None:
        v = (body.get("generationConfig") or {}).get("maxOutputTokens")
        return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None

    def with_output_cap(self, body: Json, cap: int) -> Json:
        return {**body, "generationConfig": {**(body.get("generationConfig") or {}), "maxOutputTokens": cap}}

    def choices(self, body: Json) -> int:
        n = (body.get("generationConfig") or {}).get("candidateCount")
        return n if isinstance(n, int) and n > 0 else 1

    def stops(self, body: Json) -> Any:
        return (body.get("generationConfig") or {}).get("stopSequences")

    def with_stops(self, body: Json, stops: list[str]) -> Json:
        return {**body, "generationConfig": {**(body.get("generationConfig") or {}), "stopSequences": stops}}

    def request_view(self, body: Mapping[str, Any]) -> RequestView:
        v = RequestView()
        v.system = "".join(p.get("text") or "" for p in (body.get("systemInstruction") or {}).get("parts") or ())
        for c in body.get("contents") or ():
            v.messages += 1
            texts = [p["text"] for p in c.get("parts") or () if isinstance(p.get("text"), str)]
            v.tool_results += sum(1 for p in c.get("parts") or () if "functionResponse" in p)
            if c.get("role") == "user" and texts:
                v.user_texts.append("".join(texts))
            else:
                v.other_chars += sum(len(t) for t in texts)
        decls = [d for t in body.get("tools") or () for d in t.get("functionDeclarations") or ()]
        v.tool_count = len(decls)
        v.structured = self.requested_schema(body) is not None
        v.max_output_tokens = self.output_cap(body)
        return v

    def answer_view(self, answer: Mapping[str, Any]) -> AnswerView:
        cands = answer.get("candidates") or ()
        canonical = response_to_canonical(dict(answer), "") if cands else {"choices": []}
        choice = (canonical["choices"] or [{}])[0]
        message = choice.get("message") or {}
        calls = message.get("tool_calls") or ()
        text = message.get("content") or (calls[0]["function"]["arguments"] if calls else "")
        return AnswerView(text, choice.get("finish_reason"), bool(calls) and not message.get("content"))

    def input_tokens(self, body: Json, counter: TokenCounter) -> int:
        c = counter
        tools = body.get("tools") or ()
        n = c.texts(tools) + (c.tools_tokens if tools else 0)
        n += c.texts((body.get("systemInstruction"),)) + c.per_message
        for content in body.get("contents") or ():
            for part in content.get("parts") or ():
                n += c.per_message + (c.count(part["text"]) if isinstance(part.get("text"), str) else c.texts((part,)))
        return n


__all__ = ["GeminiGenerate", "visible_parts"]
