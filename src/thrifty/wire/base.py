"""The interface every dialect implements: one `Wire` object per wire format.

A wire object owns everything that differs between dialects: reading a client's request
(validation, key, user), the error shape, usage in and out, stream events (framing, assembly,
replay), the output-cap and stop fields, the views other levers read (features, answer text,
requested schema), translation to and from the canonical form, and the worst-case input count.
Nothing outside `thrifty.wire` compares against a dialect's name; it asks the wire object.

The canonical form is the OpenAI Chat Completions shape (request, whole answer, stream chunks),
the dialect every provider here can be mapped to and from. A call whose client and provider
speak the same dialect is passed through instead, which keeps fields Thrifty does not model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Protocol

from thrifty.contract.usage import Usage
from thrifty.errors import GatewayError

Json = dict[str, Any]


@dataclass(slots=True)
class RequestView:
    """The dialect-neutral parts of a request that routing features are computed from."""

    system: str = ""
    user_texts: list[str] = field(default_factory=list)  # in order
    other_chars: int = 0  # assistant / tool text
    messages: int = 0
    tool_count: int = 0
    tool_chars: int = 0
    tool_results: int = 0
    forced_single_tool: bool = False
    structured: bool = False
    images: int = 0
    documents: int = 0  # document / search-result blocks
    max_output_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class AnswerView:
    """The text of an answer and why it stopped, whatever the dialect."""

    text: str
    finish_reason: str | None = None  # normalised: stop, length, tool_calls, ...
    tool_call: bool = False  # the text is a tool call's arguments


class TokenCounter(Protocol):
    """What a wire object needs to bound a request's input tokens (see budgets/estimate.py)."""

    per_message: int  # role markers and separators, per message / block / tool
    tools_tokens: int  # the tool-use preamble providers add when tools are sent
    attachment_tokens: int  # per image, audio clip, file or document

    def count(self, text: str) -> int: ...
    def texts(self, values: Iterable[Any]) -> int: ...  # strings counted, anything else as JSON


class StreamTranslator:
    """Fed one upstream stream event at a time; returns the client events it produces."""

    usage: Usage

    def feed(self, event: Json) -> list[Json]:
        raise NotImplementedError

    def close(self) -> list[Json]:
        return []


# A function over a structured answer (JSON text or an object): the new value, and what it found.
AnswerMap = Callable[[Any], tuple[Any, Any]]


class Wire(ABC):
    """One dialect. Instances are stateless and shared; they are found through `thrifty.wire.get`."""

    name: str  # the registry key; also what the ledger's `surface` column stores
    stream_end: bytes = b""  # what closes a stream after its last event
    usage_key: str = "usage"  # the field of a whole answer that holds its usage
    # How the provider's prompt cache is steered on this wire: "breakpoints" (the client marks
    # prefixes, as Anthropic's cache_control) or "cache_key" (automatic prefix caching that a
    # routing key makes likelier, as OpenAI's prompt_cache_key).
    prompt_caching: str = "none"

    # --- the client's request -------------------------------------------------------------

    def api_key(self, headers: Mapping[str, str]) -> str | None:
        auth = headers.get("authorization")
        if auth and auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        return headers.get("x-api-key")

    @abstractmethod
    def check(self, body: Any) -> tuple[str, bool]:
        """Cheap validation of a client request; returns (model, stream)."""

    @abstractmethod
    def user(self, body: Json) -> str | None:
        """The end user the request names, if any."""

    # --- errors and stream framing --------------------------------------------------------

    @abstractmethod
    def error_body(self, err: GatewayError, request_id: str) -> bytes: ...

    @abstractmethod
    def stream_error(self, err: GatewayError) -> bytes: ...

    @abstractmethod
    def encode_event(self, event: Json) -> bytes:
        """One event as SSE bytes."""

    # --- usage ----------------------------------------------------------------------------

    @abstractmethod
    def usage_of(self, usage: Mapping[str, Any] | None) -> Usage:
        """The usage object of an answer in this dialect, normalised."""

    @abstractmethod
    def usage_body(self, usage: Usage) -> Json:
        """`usage` as this dialect writes it in an answer."""

    # --- translation ----------------------------------------------------------------------

    @abstractmethod
    def passthrough_request(self, body: Json, model: str) -> Json:
        """The client's request for a provider of the same dialect (only the model changes,
        plus what the gateway itself needs, such as usage on streams)."""

    @abstractmethod
    def request_to_canonical(self, body: Json, model: str) -> Json: ...

    @abstractmethod
    def request_from_canonical(self, body: Json, model: str, default_max_tokens: int) -> Json: ...

    @abstractmethod
    def response_to_canonical(self, resp: Json, model: str) -> Json: ...

    @abstractmethod
    def response_from_canonical(self, resp: Json, model: str) -> Json: ...

    @abstractmethod
    def passthrough_stream(self, body: Json) -> StreamTranslator:
        """Upstream events of this dialect to a client of this dialect, usage kept."""

    @abstractmethod
    def stream_to_canonical(self, model: str) -> StreamTranslator:
        """Upstream events of this dialect to canonical chunks (with a final usage chunk)."""

    @abstractmethod
    def stream_from_canonical(self, body: Json, model: str) -> StreamTranslator:
        """Canonical chunks to a client of this dialect that sent `body`."""

    # --- whole answers and streams --------------------------------------------------------

    @abstractmethod
    def assemble(self, events: list[Json]) -> Json:
        """The whole answer of a complete stream; raises IncompleteStream otherwise."""

    @abstractmethod
    def replay(self, answer: Json, *, include_usage: bool) -> list[Json]:
        """The stream events a client would have received for `answer`."""

    @abstractmethod
    def with_fresh_ids(self, answer: Json, *, response_id: str | None = None,
                       now: float | None = None) -> Json:
        """A copy of a stored answer with new ids, as served again."""

    def stream_usage_wanted(self, body: Json) -> bool:
        """Whether a streaming client asked for usage in its stream (always, where the dialect
        has no choice)."""
        return True

    # --- fields levers change -------------------------------------------------------------

    @abstractmethod
    def output_cap(self, body: Json) -> int | None:
        """The request's cap on output tokens, if it sets one."""

    @abstractmethod
    def with_output_cap(self, body: Json, cap: int) -> Json:
        """A copy with the output cap set to `cap`."""

    def choices(self, body: Json) -> int:
        """How many answers the request asks for."""
        return 1

    @abstractmethod
    def stops(self, body: Json) -> Any:
        """The request's stop sequences (None or empty when it has none)."""

    @abstractmethod
    def with_stops(self, body: Json, stops: list[str]) -> Json: ...

    def cache_ttls(self, body: Json) -> frozenset[str]:
        """TTLs of the prompt-cache breakpoints in a body (where cache writes can be billed)."""
        return frozenset()

    def cache_key_form(self, canonical: Json) -> Json:
        """Fold equivalent spellings of a request before it is hashed for the exact cache."""
        return canonical

    # --- views ----------------------------------------------------------------------------

    @abstractmethod
    def request_view(self, body: Mapping[str, Any]) -> RequestView: ...

    @abstractmethod
    def answer_view(self, answer: Mapping[str, Any]) -> AnswerView:
        """The first choice / the content of a whole answer."""

    @abstractmethod
    def requested_schema(self, body: Mapping[str, Any]) -> Json | None:
        """The JSON schema the request asks its answer to follow, if any."""

    @abstractmethod
    def with_requested_schema(self, body: Mapping[str, Any], schema: Json) -> Json | None:
        """A copy whose requested schema is `schema`; None when the request asks for none."""

    @abstractmethod
    def map_structured_answer(self, answer: Json, fn: AnswerMap) -> tuple[Json, Any]:
        """A copy of `answer` with `fn` applied to its structured output, and what `fn` found."""

    def last_user_text(self, body: Mapping[str, Any]) -> str:
        texts = self.request_view(body).user_texts
        return texts[-1] if texts else ""

    @abstractmethod
    def input_tokens(self, body: Json, counter: TokenCounter) -> int:
        """An upper bound of the input tokens of `body`, before the per-request overhead."""


def tools_chars(tools: list[Any]) -> int:
    """A rough size of tool definitions, in characters, for either dialect's tool shape."""
    # Descriptions and parameters dominate a tool's tokens; a fixed share per parameter is close
    # enough, and far cheaper than serialising the schemas.
    total = 0
    for t in tools:
        if isinstance(t, dict):
            fn = t.get("function") if isinstance(t.get("function"), dict) else t
            params = fn.get("parameters") or fn.get("input_schema")
            props = params.get("properties") if isinstance(params, dict) else None
            total += 60 + len(str(fn.get("description") or "")) + 80 * (len(props) if isinstance(props, dict) else 0)
    return total


def is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0
