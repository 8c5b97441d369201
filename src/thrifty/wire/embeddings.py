"""OpenAI's embeddings request (`POST /v1/embeddings`): read and validated once, for the
interactive surface (thrifty.api.embeddings) and the batch lane's `/v1/embeddings` lines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from thrifty.errors import InvalidRequest
from thrifty.tokens import count_text_tokens

ENCODINGS = ("float", "base64")
MAX_INPUTS = 2048  # OpenAI's limit per request


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    model: str
    inputs: list[str | list[int]]  # one per embedding, in the client's order
    encoding_format: str | None
    dimensions: int | None
    user: str | None


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse_request(body: Any) -> EmbeddingRequest:
    """The request, or InvalidRequest (400) naming the field that is wrong."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required and must be a string", param="model")
    raw = body.get("input")
    bad = InvalidRequest("'input' must be a non-empty string, a list of non-empty strings, a list of token ids "
                         f"or a list of lists of token ids (at most {MAX_INPUTS} inputs)", param="input")
    inputs: list[str | list[int]]
    if isinstance(raw, str):
        inputs = [raw]
    elif isinstance(raw, list) and raw and all(is_int(t) for t in raw):
        inputs = [list(raw)]
    elif isinstance(raw, list) and raw and all(isinstance(s, str) for s in raw):
        inputs = list(raw)
    elif isinstance(raw, list) and raw and all(isinstance(x, list) and x and all(is_int(t) for t in x) for x in raw):
        inputs = [list(x) for x in raw]
    else:
        raise bad
    if len(inputs) > MAX_INPUTS or any(isinstance(x, str) and not x for x in inputs):
        raise bad
    if any(isinstance(x, list) and any(t < 0 for t in x) for x in inputs):
        raise InvalidRequest("'input': token ids must not be negative", param="input")
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ENCODINGS:
        raise InvalidRequest(f"'encoding_format' must be one of {', '.join(ENCODINGS)}", param="encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and not (is_int(dimensions) and dimensions > 0):
        raise InvalidRequest("'dimensions' must be a positive integer", param="dimensions")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest("'user' must be a string", param="user")
    return EmbeddingRequest(model, inputs, encoding, dimensions, user)


def local_tokens(one: str | list[int]) -> int:
    return len(one) if isinstance(one, list) else count_text_tokens(one, "cl100k_base")
