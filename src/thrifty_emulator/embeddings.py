"""`POST /v1/embeddings`, OpenAI's shape, for the text-embedding-3 models.

Vectors are deterministic: a unit vector drawn from a generator seeded by a hash of the model and
the input, so the same input always gets the same embedding. `dimensions` shortens it as OpenAI
does (the first N components, scaled back to unit length). `usage.prompt_tokens` is counted with
cl100k_base, the models' tokenizer (token-id inputs count one per id), and billed as input.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import struct
from typing import Any

from thrifty_emulator.tokens import get_encoding
from thrifty_emulator.wire import WireError

# Model -> its full dimension count (OpenAI's embeddings guide).
EMBEDDING_MODELS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072}
MAX_INPUTS = 2048


def _invalid(message: str, param: str) -> WireError:
    return WireError(400, "invalid_request", message, param=param)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse(body: Any) -> tuple[str, list[str | list[int]], str, int | None]:
    """(model, inputs, encoding_format, dimensions) or a 400 naming the field."""
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object.", "body")
    model = body.get("model")
    if not isinstance(model, str):
        raise _invalid("you must provide a model parameter", "model")
    if model not in EMBEDDING_MODELS:
        raise WireError(404, "not_found", f"The model `{model}` does not exist or you do not have access to it.",
                        code="model_not_found")
    raw = body.get("input")
    if isinstance(raw, str) and raw:
        inputs: list[str | list[int]] = [raw]
    elif isinstance(raw, list) and raw and all(_is_int(t) for t in raw):
        inputs = [list(raw)]
    elif isinstance(raw, list) and raw and all(isinstance(s, str) and s for s in raw):
        inputs = list(raw)
    elif isinstance(raw, list) and raw and all(isinstance(x, list) and x and all(_is_int(t) for t in x) for x in raw):
        inputs = [list(x) for x in raw]
    else:
        raise _invalid("'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/"
                       "api-reference.", "input")
    if len(inputs) > MAX_INPUTS:
        raise _invalid(f"'$.input' must have at most {MAX_INPUTS} items.", "input")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise _invalid("'encoding_format' must be 'float' or 'base64'.", "encoding_format")
    dims = body.get("dimensions")
    full = EMBEDDING_MODELS[model]
    if dims is not None and not (_is_int(dims) and 1 <= dims <= full):
        raise _invalid(f"'dimensions' must be an integer from 1 to {full} for {model}.", "dimensions")
    return model, inputs, encoding, dims


def tokens(one: str | list[int]) -> int:
    return len(one) if isinstance(one, list) else len(get_encoding("cl100k_base").encode_ordinary(one))


def vector(model: str, one: str | list[int], dims: int | None) -> list[float]:
    seed = hashlib.blake2b(f"{model}\0{one!r}".encode(), digest_size=8).digest()
    rng = random.Random(int.from_bytes(seed, "big"))
    v = [rng.gauss(0.0, 1.0) for _ in range(EMBEDDING_MODELS[model])][:dims]
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


def encode(v: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":  # little-endian float32, as OpenAI sends it
        return base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode()
    return v


def answer(model: str, inputs: list[str | list[int]], encoding: str, dims: int | None) -> tuple[dict[str, Any], int]:
    """The response body and the input tokens it bills."""
    n = sum(tokens(x) for x in inputs)
    data = [{"object": "embedding", "index": i, "embedding": encode(vector(model, x, dims), encoding)}
            for i, x in enumerate(inputs)]
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": n, "total_tokens": n}}, n
