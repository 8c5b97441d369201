"""Wire formats: one object per dialect, found by name, and how a call crosses between two.

Built-in dialects register here exactly as a third-party one would (`register`).
"""

from __future__ import annotations

from thrifty.contract.usage import Usage
from thrifty.wire.anthropic_messages import AnthropicMessages
from thrifty.wire.base import AnswerView, Json, RequestView, StreamTranslator, TokenCounter, Wire
from thrifty.wire.bedrock import BedrockConverse
from thrifty.wire.gemini import GeminiGenerate
from thrifty.wire.model_fit import fit_openai_body
from thrifty.wire.openai_chat import OpenAIChat
from thrifty.wire.openai_responses import OpenAIResponses

_REGISTRY: dict[str, Wire] = {}


def register(wire: Wire) -> Wire:
    if wire.name in _REGISTRY and _REGISTRY[wire.name] is not wire:
        raise ValueError(f"a wire format named {wire.name!r} is registered already")
    _REGISTRY[wire.name] = wire
    return wire


def get(name: str) -> Wire:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"unknown wire format {name!r} (known: {known})") from None


def names() -> list[str]:
    return sorted(_REGISTRY)


OPENAI_CHAT = register(OpenAIChat())
ANTHROPIC_MESSAGES = register(AnthropicMessages())
OPENAI_RESPONSES = register(OpenAIResponses())
GEMINI = register(GeminiGenerate())
BEDROCK = register(BedrockConverse())


# --- crossing from the client's dialect to the provider's and back ----------------------------

def upstream_request(client: Wire, upstream: Wire, body: Json, model: str, default_max_tokens: int) -> Json:
    """The client's request as `upstream` takes it, for `model`."""
    if client is upstream:
        out = upstream.passthrough_request(body, model)
        chosen_by_gateway = body.get("model") != model
    else:
        out = upstream.request_from_canonical(client.request_to_canonical(body, model), model, default_max_tokens)
        chosen_by_gateway = True
    if upstream is OPENAI_CHAT and chosen_by_gateway:
        out = fit_openai_body(out, model)  # what the chosen model would refuse (model_fit.py)
    return out


def client_answer(client: Wire, upstream: Wire, resp: Json, model: str) -> tuple[Json, Usage]:
    """The provider's whole answer as the client reads it, and its usage."""
    usage = upstream.usage_of(resp.get(upstream.usage_key))
    if client is upstream:
        return resp, usage
    return client.response_from_canonical(upstream.response_to_canonical(resp, model), model), usage


class _Chained(StreamTranslator):
    """Upstream events -> canonical chunks -> client events; usage as the upstream reported it."""

    def __init__(self, reader: StreamTranslator, writer: StreamTranslator) -> None:
        self.reader, self.writer = reader, writer

    @property
    def usage(self) -> Usage:  # type: ignore[override]
        return self.reader.usage

    def feed(self, event: Json) -> list[Json]:
        return [out for chunk in self.reader.feed(event) for out in self.writer.feed(chunk)]

    def close(self) -> list[Json]:
        out = [o for chunk in self.reader.close() for o in self.writer.feed(chunk)]
        return out + self.writer.close()


def stream_translator(client: Wire, upstream: Wire, body: Json, model: str) -> StreamTranslator:
    if client is upstream:
        return client.passthrough_stream(body)
    return _Chained(upstream.stream_to_canonical(model), client.stream_from_canonical(body, model))


__all__ = [
    "ANTHROPIC_MESSAGES", "BEDROCK", "GEMINI", "OPENAI_CHAT", "OPENAI_RESPONSES", "AnswerView", "RequestView", "StreamTranslator", "TokenCounter", "Wire",
    "client_answer", "get", "names", "register", "stream_translator", "upstream_request",
]
