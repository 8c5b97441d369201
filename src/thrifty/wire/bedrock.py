"""AWS Bedrock Converse / ConverseStream as an upstream wire (translation in `bedrock_translate`).

Clients keep the OpenAI and Anthropic surfaces; the gateway translates their requests through
the canonical form into Converse's and the answers back. What only a client-side dialect needs
(reading a client's request, replaying answers to it) is not offered: no endpoint of the gateway
speaks Converse to clients. ConverseStream's events arrive in AWS's binary event-stream framing,
which the provider decodes (providers/bedrock.py) into `{eventType: payload}` dicts, the shape
botocore's own client hands out; this object only ever sees those.
"""

from __future__ import annotations

from typing import Any, Mapping, NoReturn

import orjson

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
from thrifty.wire.bedrock_translate import (
    BedrockToCanonicalStream,
    request_to_bedrock,
    response_to_canonical,
    usage_from_bedrock,
    usage_to_bedrock,
)


def _upstream_only(what: str) -> NoReturn:
    raise NotImplementedError(f"bedrock is an upstream wire only: no client speaks it ({what})")


def _schema_of(body: Mapping[str, Any]) -> Json | None:
    structure = ((body.get("outputConfig") or {}).get("textFormat") or {}).get("structure") or {}
    raw = (structure.get("jsonSchema") or {}).get("schema")
    try:
        schema = orjson.loads(raw) if isinstance(raw, str) else None
    except orjson.JSONDecodeError:
        return None
    return schema if isinstance(schema, dict) else None


class BedrockConverse(Wire):
    name = "bedrock"

    # --- client-side parts: not offered ---------------------------------------------------

    def check(self, body: Any) -> tuple[str, bool]:
        _upstream_only("check")

    def user(self, body: Json) -> str | None:
        return None

    def error_body(self, err: GatewayError, request_id: str) -> bytes:
        return jsonutil.dumps({"message": err.message})  # AWS's JSON error; the type rides a header

    def stream_error(self, err: GatewayError) -> bytes:
        return self.error_body(err, "")

    def encode_event(self, event: Json) -> bytes:
        return jsonutil.dumps(event)

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
        return _schema_of(body)

    def with_requested_schema(self, body: Mapping[str, Any], schema: Json) -> Json | None:
        if _schema_of(body) is None:
            return None
        fmt = body["outputConfig"]["textFormat"]
        json_schema = {**fmt["structure"]["jsonSchema"], "schema": orjson.dumps(schema).decode()}
        return {**body, "outputConfig": {**body["outputConfig"], "textFormat": {
            **fmt, "structure": {**fmt["structure"], "jsonSchema": json_schema}}}}

    def map_structured_answer(self, answer: Json, fn: AnswerMap) -> tuple[Json, Any]:
        _upstream_only("map_structured_answer")

    # --- usage ----------------------------------------------------------------------------

    def usage_of(self, usage: Mapping[str, Any] | None) -> Usage:
        return usage_from_bedrock(usage)

    def usage_body(self, usage: Usage) -> Json:
        return usage_to_bedrock(usage)

    # --- the upstream side ----------------------------------------------------------------

    def request_from_canonical(self, body: Json, model: str, default_max_tokens: int) -> Json:
        return request_to_bedrock(body, model)

    def response_to_canonical(self, resp: Json, model: str) -> Json:
        return response_to_canonical(resp, model)

    def stream_to_canonical(self, model: str) -> StreamTranslator:
        return BedrockToCanonicalStream(model)  # type: ignore[return-value]

    def output_cap(self, body: Json) -> int | None:
        v = (body.get("inferenceConfig") or {}).get("maxTokens")
        return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None

    def with_output_cap(self, body: Json, cap: int) -> Json:
        return {**body, "inferenceConfig": {**(body.get("inferenceConfig") or {}), "maxTokens": cap}}

    def stops(self, body: Json) -> Any:
        return (body.get("inferenceConfig") or {}).get("stopSequences")

    def with_stops(self, body: Json, stops: list[str]) -> Json:
        return {**body, "inferenceConfig": {**(body.get("inferenceConfig") or {}), "stopSequences": stops}}

    def request_view(self, body: Mapping[str, Any]) -> RequestView:
        v = RequestView()
        v.system = "".join(b.get("text") or "" for b in body.get("system") or () if isinstance(b, dict))
        for m in body.get("messages") or ():
            v.messages += 1
            blocks = [b for b in m.get("content") or () if isinstance(b, dict)]
            texts = [b["text"] for b in blocks if isinstance(b.get("text"), str)]
            v.tool_results += sum(1 for b in blocks if "toolResult" in b)
            v.images += sum(1 for b in blocks if "image" in b)
            v.documents += sum(1 for b in blocks if "document" in b)
            if m.get("role") == "user" and texts:
                v.user_texts.append("".join(texts))
            else:
                v.other_chars += sum(len(t) for t in texts)
        tools = (body.get("toolConfig") or {}).get("tools") or ()
        v.tool_count = len(tools)
        v.forced_single_tool = "tool" in ((body.get("toolConfig") or {}).get("toolChoice") or {})
        v.structured = _schema_of(body) is not None
        v.max_output_tokens = self.output_cap(body)
        return v

    def answer_view(self, answer: Mapping[str, Any]) -> AnswerView:
        choice = response_to_canonical(dict(answer), "")["choices"][0]
        message = choice["message"]
        calls = message.get("tool_calls") or ()
        text = message.get("content") or (calls[0]["function"]["arguments"] if calls else "")
        return AnswerView(text, choice.get("finish_reason"), bool(calls) and not message.get("content"))

    def input_tokens(self, body: Json, counter: TokenCounter) -> int:
        c = counter
        tools = (body.get("toolConfig") or {}).get("tools") or ()
        n = c.texts(tools) + (c.tools_tokens if tools else 0)
        n += c.texts(b.get("text") or "" for b in body.get("system") or ()) + c.per_message
        for m in body.get("messages") or ():
            for block in m.get("content") or ():
                n += c.per_message
                if isinstance(block.get("text"), str):
                    n += c.count(block["text"])
                elif "image" in block or "document" in block:
                    n += c.attachment_tokens
                else:
                    n += c.texts((block,))
        return n


__all__ = ["BedrockConverse"]
