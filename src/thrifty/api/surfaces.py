"""What differs between the two client-facing APIs: auth header, error shape, validation,
and how a request and its answer cross to a provider of either wire format.

Same wire on both sides passes the body through (only the model name changes), which keeps
features Thrifty does not model (cache_control blocks, new parameters) intact.
"""

from __future__ import annotations

from typing import Any, Mapping

from thrifty import jsonutil
from thrifty.core import translate
from thrifty.core.translate_stream import AnthropicToOpenAIStream, OpenAIToAnthropicStream
from thrifty.core.usage import Usage
from thrifty.errors import GatewayError, InvalidRequest

_OPENAI_TYPES = {
    "invalid_request": "invalid_request_error", "authentication": "authentication_error",
    "permission": "permission_error", "not_found": "invalid_request_error",
    "request_too_large": "invalid_request_error", "rate_limit": "rate_limit_error",
    "upstream": "api_error", "timeout": "timeout_error", "overloaded": "server_error",
    "api_error": "api_error",
}
_ANTHROPIC_TYPES = {
    "invalid_request": "invalid_request_error", "authentication": "authentication_error",
    "permission": "permission_error", "not_found": "not_found_error",
    "request_too_large": "request_too_large", "rate_limit": "rate_limit_error",
    "upstream": "api_error", "timeout": "timeout_error", "overloaded": "overloaded_error",
    "api_error": "api_error",
}


class StreamTranslator:
    """Turns upstream stream events into client protocol events and keeps the call's usage."""

    usage: Usage

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]: ...
    def close(self) -> list[dict[str, Any]]: ...


class Surface:
    name: str

    def api_key(self, headers: Mapping[str, str]) -> str | None:
        auth = headers.get("authorization")
        if auth and auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        return headers.get("x-api-key")

    def check(self, body: Any) -> tuple[str, bool]:
        """Cheap validation; returns (model, stream)."""
        raise NotImplementedError

    def error_body(self, err: GatewayError, request_id: str) -> bytes:
        raise NotImplementedError

    def stream_error(self, err: GatewayError) -> bytes:
        raise NotImplementedError

    def encode_event(self, event: dict[str, Any]) -> bytes:
        """One client protocol event as SSE bytes."""
        raise NotImplementedError

    stream_end: bytes = b""  # what closes a stream after its last event

    def user(self, body: dict[str, Any]) -> str | None:
        raise NotImplementedError

    def upstream_body(self, body: dict[str, Any], wire: str, model: str, default_max_tokens: int) -> dict[str, Any]:
        raise NotImplementedError

    def client_response(self, resp: dict[str, Any], wire: str, model: str) -> tuple[dict[str, Any], Usage]:
        raise NotImplementedError

    def stream_translator(self, body: dict[str, Any], wire: str, model: str) -> StreamTranslator:
        raise NotImplementedError


def _require_model_and_messages(body: Any) -> tuple[str, bool]:
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("you must provide a model parameter", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages")
    return model, body.get("stream") is True


# ---------------------------------------------------------------- OpenAI surface

class OpenAISurface(Surface):
    name = "openai"

    def check(self, body: Any) -> tuple[str, bool]:
        return _require_model_and_messages(body)

    def error_body(self, err: GatewayError, request_id: str) -> bytes:
        return jsonutil.dumps({"error": {"message": err.message, "type": _OPENAI_TYPES.get(err.kind, "api_error"),
                                         "param": err.param, "code": err.code}})

    def stream_error(self, err: GatewayError) -> bytes:
        return b"data: " + self.error_body(err, "") + b"\n\n"

    def encode_event(self, event: dict[str, Any]) -> bytes:
        return b"data: " + jsonutil.dumps(event) + b"\n\n"

    stream_end = b"data: [DONE]\n\n"

    def user(self, body: dict[str, Any]) -> str | None:
        u = body.get("user")
        return u if isinstance(u, str) else None

    def upstream_body(self, body, wire, model, default_max_tokens):
        if wire == "anthropic":
            return translate.openai_request_to_anthropic(body, model=model, default_max_tokens=default_max_tokens)
        out = dict(body)
        out["model"] = model
        if body.get("stream") is True:
            # Usage is needed for the ledger whether or not the client asked for it.
            out["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return out

    def client_response(self, resp, wire, model):
        if wire == "anthropic":
            return translate.anthropic_response_to_openai(resp, model=model), Usage.from_anthropic(resp.get("usage"))
        return resp, Usage.from_openai(resp.get("usage"))

    def stream_translator(self, body, wire, model):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if wire == "anthropic":
            return _AnthropicEventsToOpenAI(model, include_usage)
        return _OpenAIPassThrough(include_usage)


class _OpenAIPassThrough(StreamTranslator):
    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage
        self.usage = Usage()

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        if chunk.get("usage"):
            self.usage = Usage.from_openai(chunk["usage"])
        if not self.include_usage:
            # The gateway always asks upstream for usage; a client that did not gets none.
            if not chunk.get("choices"):
                return []
            chunk.pop("usage", None)
        return [chunk]

    def close(self) -> list[dict[str, Any]]:
        return []


class _AnthropicEventsToOpenAI(StreamTranslator):
    def __init__(self, model: str, include_usage: bool) -> None:
        self._t = AnthropicToOpenAIStream(model=model, include_usage=include_usage)

    @property
    def usage(self) -> Usage:
        return self._t.usage

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        return self._t.feed(event)

    def close(self) -> list[dict[str, Any]]:
        return []


# ---------------------------------------------------------------- Anthropic surface

class AnthropicSurface(Surface):
    name = "anthropic"

    def check(self, body: Any) -> tuple[str, bool]:
        model, stream = _require_model_and_messages(body)
        mt = body.get("max_tokens")
        if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
            raise InvalidRequest("max_tokens: field required (a positive integer)", param="max_tokens")
        return model, stream

    def error_body(self, err: GatewayError, request_id: str) -> bytes:
        return jsonutil.dumps({"type": "error", "error": {"type": _ANTHROPIC_TYPES.get(err.kind, "api_error"),
                                                          "message": err.message},
                               "request_id": request_id})

    def stream_error(self, err: GatewayError) -> bytes:
        return self.encode_event({"type": "error", "error": {
            "type": _ANTHROPIC_TYPES.get(err.kind, "api_error"), "message": err.message}})

    def encode_event(self, event: dict[str, Any]) -> bytes:
        return b"event: " + event["type"].encode() + b"\ndata: " + jsonutil.dumps(event) + b"\n\n"

    def user(self, body: dict[str, Any]) -> str | None:
        meta = body.get("metadata")
        u = meta.get("user_id") if isinstance(meta, dict) else None
        return u if isinstance(u, str) else None

    def upstream_body(self, body, wire, model, default_max_tokens):
        if wire == "openai":
            out = translate.anthropic_request_to_openai(body, model=model)
            if body.get("stream") is True:
                out["stream_options"] = {"include_usage": True}
            return out
        out = dict(body)
        out["model"] = model
        return out

    def client_response(self, resp, wire, model):
        if wire == "openai":
            return translate.openai_response_to_anthropic(resp, model=model), Usage.from_openai(resp.get("usage"))
        return resp, Usage.from_anthropic(resp.get("usage"))

    def stream_translator(self, body, wire, model):
        if wire == "openai":
            return _OpenAIChunksToAnthropic(model)
        return _AnthropicPassThrough()


class _AnthropicPassThrough(StreamTranslator):
    def __init__(self) -> None:
        self.usage = Usage()
        self._start: dict[str, Any] = {}

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type", "")
        if kind == "message_start":
            self._start = (event.get("message") or {}).get("usage") or {}
            self.usage = Usage.from_anthropic(self._start)
        elif kind == "message_delta":
            # message_delta carries cumulative usage; input fields may be absent there.
            delta = {k: v for k, v in (event.get("usage") or {}).items() if v is not None}
            self.usage = Usage.from_anthropic({**self._start, **delta})
        return [event]

    def close(self) -> list[dict[str, Any]]:
        return []


class _OpenAIChunksToAnthropic(StreamTranslator):
    def __init__(self, model: str) -> None:
        self._t = OpenAIToAnthropicStream(model=model)

    @property
    def usage(self) -> Usage:
        return self._t.usage

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        return [data for _, data in self._t.feed(chunk)]

    def close(self) -> list[dict[str, Any]]:
        return [data for _, data in self._t.close()]


OPENAI = OpenAISurface()
ANTHROPIC = AnthropicSurface()
