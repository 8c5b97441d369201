"""OpenAI Responses API (`/v1/responses`), served by translation to the canonical chat form.

No provider here speaks it upstream: a call is translated to a chat completion request, served
by any provider kind, and its answer written back as a Response (or its typed stream events).
The translation and its known losses are in `responses_translate`. The client-side views the
levers read (output cap, requested schema, answer text) are over the Responses body itself.
Usage: `input_tokens` includes `input_tokens_details.cached_tokens`, `output_tokens` includes
`output_tokens_details.reasoning_tokens` (OpenAI API reference, "The response object").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from thrifty import jsonutil
from thrifty.contract.usage import Usage
from thrifty.errors import GatewayError, IncompleteStream, InvalidRequest, UpstreamError
from thrifty.wire.base import (
    AnswerMap,
    AnswerView,
    Json,
    RequestView,
    StreamTranslator,
    TokenCounter,
    Wire,
)
from thrifty.wire.fields import Checker
from thrifty.wire.openai_chat import OpenAIChat
from thrifty.wire.responses_translate import (
    ResponsesEmitter,
    completion_chunks,
    namespaces,
    new_id,
    refused_field,
    request_to_chat,
    response_chunks,
    response_head,
    run,
    usage_from_responses,
    usage_to_responses,
)

# Fields of a Responses request the gateway reads or translates (types only; see fields.py).
RESPONSES_FIELDS: dict[str, str] = {
    "model": "string", "input": "string_or_objects", "instructions": "string", "stream": "boolean",
    "max_output_tokens": "positive", "temperature": "number", "top_p": "number", "tools": "objects",
    "tool_choice": "string_or_object", "parallel_tool_calls": "boolean", "reasoning": "object", "text": "object",
    "store": "boolean", "metadata": "object", "user": "string", "safety_identifier": "string",
    "prompt_cache_key": "string", "service_tier": "string", "include": "strings", "truncation": "string",
    "previous_response_id": "string", "top_logprobs": "count",
}
_CHECK = Checker("openai", RESPONSES_FIELDS, ())
_CHAT = OpenAIChat()  # the canonical views, over the translated request


class _ToClient(StreamTranslator):
    def __init__(self, body: Json, model: str) -> None:
        self._e = ResponsesEmitter(response_head(body, model), namespaces(body))

    @property
    def usage(self) -> Usage:  # type: ignore[override]
        return self._e.usage

    def feed(self, chunk: Json) -> list[Json]:
        return self._e.feed(chunk)

    def close(self) -> list[Json]:
        return self._e.close()


def _no_upstream() -> UpstreamError:
    return UpstreamError("no provider kind speaks the Responses API upstream; it is served by translation")


class OpenAIResponses(Wire):
    name = "openai_responses"
    prompt_caching = "cache_key"

    # --- the client's request -------------------------------------------------------------

    def check(self, body: Any) -> tuple[str, bool]:
        if not isinstance(body, dict):
            raise InvalidRequest("the request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _CHECK.fail("model", "you must provide a model parameter (a non-empty string)")
        if body.get("input") in (None, "", []):
            raise _CHECK.fail("input", "you must provide 'input' (a string or an array of input items)")
        _CHECK._fields(body, RESPONSES_FIELDS, ())
        refused = refused_field(body)
        if refused is not None:
            raise refused
        request_to_chat(body, model)  # every item and tool translatable, or a 400 naming it
        return model, body.get("stream") is True

    def user(self, body: Json) -> str | None:
        u = body.get("user") or body.get("safety_identifier")
        return u if isinstance(u, str) else None

    # --- errors and framing ---------------------------------------------------------------

    def error_body(self, err: GatewayError, request_id: str) -> bytes:
        return _CHAT.error_body(err, request_id)

    def stream_error(self, err: GatewayError) -> bytes:
        return self.encode_event({"type": "error", "code": err.code or err.kind, "message": err.message,
                                  "param": err.param, "sequence_number": 0})

    def encode_event(self, event: Json) -> bytes:
        return b"event: " + event["type"].encode() + b"\ndata: " + jsonutil.dumps(event) + b"\n\n"

    # --- usage ----------------------------------------------------------------------------

    def usage_of(self, usage: Mapping[str, Any] | None) -> Usage:
        return usage_from_responses(usage)

    def usage_body(self, usage: Usage) -> Json:
        return usage_to_responses(usage)

    # --- translation ----------------------------------------------------------------------

    def passthrough_request(self, body: Json, model: str) -> Json:
        return {**body, "model": model}

    def request_to_canonical(self, body: Json, model: str) -> Json:
        return request_to_chat(body, model)

    def request_from_canonical(self, body: Json, model: str, default_max_tokens: int) -> Json:
        raise _no_upstream()

    def response_to_canonical(self, resp: Json, model: str) -> Json:
        raise _no_upstream()

    def response_from_canonical(self, resp: Json, model: str) -> Json:
        emitter = ResponsesEmitter(response_head(None, model))
        run(emitter, completion_chunks(resp))
        return emitter.response

    def passthrough_stream(self, body: Json) -> StreamTranslator:
        raise _no_upstream()

    def stream_to_canonical(self, model: str) -> StreamTranslator:
        raise _no_upstream()

    def stream_from_canonical(self, body: Json, model: str) -> StreamTranslator:
        return _ToClient(body, model)

    # --- whole answers and streams --------------------------------------------------------

    def assemble(self, events: list[Json]) -> Json:
        for event in reversed(events):
            if event.get("type") in ("response.completed", "response.incomplete"):
                return event["response"]
        raise IncompleteStream("the stream ended before response.completed")

    def replay(self, answer: Json, *, include_usage: bool) -> list[Json]:
        head = {k: v for k, v in answer.items() if k not in ("output", "usage", "status", "incomplete_details")}
        return run(ResponsesEmitter({**head, "status": "in_progress", "incomplete_details": None, "usage": None}),
                   response_chunks(answer))

    def with_fresh_ids(self, answer: Json, *, response_id: str | None = None, now: float | None = None) -> Json:
        out = jsonutil.loads(jsonutil.dumps(answer))
        out["id"] = response_id or new_id("resp_")
        if now is not None:
            out["created_at"] = int(now)
        for item in out.get("output") or ():
            if isinstance(item, dict):
                item["id"] = new_id("msg_" if item.get("type") == "message" else "fc_")
                if isinstance(item.get("call_id"), str):
                    item["call_id"] = new_id("call_")
        return out

    # --- fields levers change -------------------------------------------------------------

    def output_cap(self, body: Json) -> int | None:
        v = body.get("max_output_tokens")
        return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None

    def with_output_cap(self, body: Json, cap: int) -> Json:
        return {**body, "max_output_tokens": cap}

    def stops(self, body: Json) -> Any:
        return body.get("stop")  # not a Responses field; only a lever sets it (see with_stops)

    def with_stops(self, body: Json, stops: list[str]) -> Json:
        # The Responses API has no stop sequences; the gateway carries them to the chat request.
        return {**body, "stop": stops}

    # --- views ----------------------------------------------------------------------------

    def request_view(self, body: Mapping[str, Any]) -> RequestView:
        try:
            canonical = request_to_chat(dict(body), str(body.get("model") or ""))
        except InvalidRequest:
            return RequestView()
        view = _CHAT.request_view(canonical)
        view.structured = self.requested_schema(body) is not None or view.structured
        return view

    def answer_view(self, answer: Mapping[str, Any]) -> AnswerView:
        text, tool = "", False
        for item in answer.get("output") or ():
            if item.get("type") == "message":
                text += "".join(p.get("text") or "" for p in item.get("content") or ())
            elif item.get("type") == "function_call" and not text and not tool:
                text, tool = item.get("arguments") or "", True
        reason = (answer.get("incomplete_details") or {}).get("reason")
        finish = "length" if reason == "max_output_tokens" else reason or ("tool_calls" if tool else "stop")
        return AnswerView(text, finish, tool)

    def requested_schema(self, body: Mapping[str, Any]) -> Json | None:
        fmt = _format(body)
        return fmt["schema"] if fmt is not None and isinstance(fmt.get("schema"), dict) else None

    def with_requested_schema(self, body: Mapping[str, Any], schema: Json) -> Json | None:
        fmt = _format(body)
        if fmt is None or not isinstance(fmt.get("schema"), dict):
            return None
        return {**body, "text": {**body["text"], "format": {**fmt, "schema": schema}}}

    def map_structured_answer(self, answer: Json, fn: AnswerMap) -> tuple[Json, Any]:
        output, found, done = [], None, False
        for item in answer.get("output") or ():
            if not done and item.get("type") == "message" and item.get("content"):
                parts = [dict(p) for p in item["content"]]
                parts[0]["text"], found = fn(parts[0].get("text") or "")
                item, done = {**item, "content": parts}, True
            elif not done and item.get("type") == "function_call":
                value, found = fn(item.get("arguments") or "")
                item, done = {**item, "arguments": value}, True
            output.append(item)
        return {**answer, "output": output}, found

    def input_tokens(self, body: Json, counter: TokenCounter) -> int:
        return _CHAT.input_tokens(request_to_chat(body, str(body.get("model") or "")), counter)


def _format(body: Mapping[str, Any]) -> Json | None:
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    return fmt if isinstance(fmt, dict) and fmt.get("type") == "json_schema" else None
