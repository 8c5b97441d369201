"""The one interface both emulated wire formats implement, and the error they raise.

A `Wire` turns a provider's request body into a `ChatRequest`, applies that provider's
prompt-caching rules, and renders a `Completion` (whole, or as the provider's stream events)
and errors in the provider's own shapes. The app routes each endpoint to one `Wire` and never
asks which provider it is talking as.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Iterable, Mapping

import orjson

from thrifty_emulator.generate import ChatRequest, Completion
from thrifty_emulator.keys import KeySpec
from thrifty_emulator.models import ModelSpec
from thrifty_emulator.prompt import Tokenizer
from thrifty_emulator.usage import TokenCounts

# Protocol-neutral error kinds; each wire maps them to its own `type` strings.
ERROR_KINDS = ("invalid_request", "authentication", "not_found", "rate_limit", "api_error",
               "unavailable", "overloaded", "bad_gateway")
KIND_BY_STATUS = {400: "invalid_request", 401: "authentication", 404: "not_found", 429: "rate_limit",
                  500: "api_error", 502: "bad_gateway", 503: "unavailable", 529: "overloaded"}


class WireError(Exception):
    """An answer in the wire format's error shape."""

    def __init__(self, status: int, kind: str, message: str, *, param: str | None = None,
                 code: str | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message
        self.param, self.code = param, code
        self.headers = dict(headers or {})


def canonical(obj: Any) -> str:
    """Sorted-key JSON: the same object always serialises (and so tokenises) the same way."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode()


def sse(data: Any, event: str | None = None) -> bytes:
    payload = orjson.dumps(data)
    if event is None:
        return b"data: " + payload + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


def pieces(text: str, tok: Tokenizer, per_piece: int) -> list[tuple[str, int]]:
    """`text` cut into stream deltas of `per_piece` tokens, never splitting a UTF-8 character."""
    ids = tok.encode(text)
    out: list[tuple[str, int]] = []
    pending, count = b"", 0
    for i in range(0, len(ids), per_piece):
        group = ids[i:i + per_piece]
        pending += tok.decode_bytes(group)
        count += len(group)
        try:
            out.append((pending.decode("utf-8"), count))
        except UnicodeDecodeError:
            continue
        pending, count = b"", 0
    if pending:
        out.append((pending.decode("utf-8", "replace"), count))
    return out


class Wire(ABC):
    name: ClassVar[str]
    tool_id: ClassVar[tuple[str, int]]  # prefix and random length of a tool call id
    request_id_header: ClassVar[str]
    stream_content_type: ClassVar[bytes] = b"text/event-stream"  # of `stream`'s events (SSE unless the API frames otherwise)

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tok = tokenizer

    @abstractmethod
    def credential(self, headers: Mapping[str, str]) -> str | None:
        """The API key the request presents, None when it presents none."""

    @abstractmethod
    def missing_key(self) -> WireError:
        """The 401 of a request without a key."""

    @abstractmethod
    def bad_key(self, key: str) -> WireError:
        """The 401 of a key the account does not have."""

    def authenticate(self, headers: Mapping[str, str], keys: Iterable[KeySpec]) -> KeySpec:
        """The configured key the request presents; raises the provider's 401 otherwise."""
        key = self.credential(headers)
        if key is None:
            raise self.missing_key()
        found = next((k for k in keys if k.key == key and k.secret is None), None)  # pairs sign, never bear
        if found is None:
            raise self.bad_key(key)
        return found

    @abstractmethod
    def parse(self, body: Any) -> ChatRequest:
        """The request, validated as the provider validates it; raises WireError (400)."""

    def check(self, req: ChatRequest, spec: ModelSpec, headers: Mapping[str, str]) -> None:
        """The rules of the model the request names (validation.py); raises WireError (400)."""

    def rate_need(self, req: ChatRequest, spec: ModelSpec, input_tokens: int) -> dict[str, int]:
        """What the request draws from its key's rate-limit buckets before the model runs (ratelimit.py)."""
        return {"requests": 1}

    @abstractmethod
    def rate_limited(self, model: str, dimension: str, limit: int, used: int, requested: int,
                     retry_after_s: int | None) -> WireError:
        """The 429 of a request over its key's limit."""

    @abstractmethod
    def input_usage(self, req: ChatRequest, spec: ModelSpec) -> TokenCounts:
        """Input tokens split by cache status, applying (and updating) this provider's prompt cache."""

    @abstractmethod
    def render(self, completion: Completion) -> dict[str, Any]:
        """The non-streaming response body."""

    @abstractmethod
    def stream(self, completion: Completion, per_piece: int) -> list[tuple[bytes, int]]:
        """The SSE events of a streamed answer, each with the output tokens it carries (for pacing)."""

    @abstractmethod
    def error_body(self, err: WireError, request_id: str) -> dict[str, Any]:
        """`request_id` is the one the response's header carries."""

    @abstractmethod
    def fault_error(self, status: int, model: str, retry_after_s: int) -> WireError:
        """The error a provider answers when it is rate limited or failing."""

    @abstractmethod
    def unknown_model(self, model: str) -> WireError:
        ...

    @abstractmethod
    def models_body(self, specs: Iterable[ModelSpec]) -> dict[str, Any]:
        ...

    def invalid(self, message: str, param: str | None = None, code: str | None = None) -> WireError:
        return WireError(400, "invalid_request", message, param=param, code=code)

    def reset(self) -> None:
        """Forget prompt caches."""
