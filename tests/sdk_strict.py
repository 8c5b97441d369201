"""Validate Anthropic answers (the emulator's and the gateway's) against the anthropic SDK's pydantic types, strictly.

The SDK's models accept unknown keys (`extra="allow"`), so a validated answer can still carry
fields the API never sends. After validating (pydantic strict mode, from the raw JSON text), the
JSON is walked alongside the validated object: the object says which union branch each part
matched, and every JSON key must be a field of that branch's model. This is the counterpart of
`additionalProperties` in the OpenAPI checks of tests/openapi_util.py.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, TypeAdapter


def unknown_keys(data: Any, value: Any, path: str = "$") -> list[str]:
    """JSON paths of keys in `data` that the validated SDK object `value` has no field for."""
    if isinstance(value, BaseModel):
        assert isinstance(data, dict), f"{path}: expected an object, got {data!r}"
        fields = {(f.alias or name): name for name, f in type(value).model_fields.items()}
        out: list[str] = []
        for key, sub in data.items():
            name = fields.get(key)
            if name is None:
                out.append(f"{path}.{key}")
            else:
                out += unknown_keys(sub, getattr(value, name), f"{path}.{key}")
        return out
    if isinstance(value, (list, tuple)) and isinstance(data, list):
        return [p for i, (d, v) in enumerate(zip(data, value)) for p in unknown_keys(d, v, f"{path}[{i}]")]
    if isinstance(value, dict) and isinstance(data, dict):  # a typed mapping; free-form dicts hold no models
        return [p for k in data if k in value for p in unknown_keys(data[k], value[k], f"{path}.{k}")]
    return []


def strict(type_: Any, raw: bytes | str) -> Any:
    """`raw` JSON validated as `type_` (a model or a union), with no key outside the SDK's fields."""
    adapter = type_ if isinstance(type_, TypeAdapter) else TypeAdapter(type_)
    value = adapter.validate_json(raw, strict=True)
    extra = unknown_keys(json.loads(raw), value)
    assert not extra, f"keys the SDK type {getattr(type_, '__name__', type_)} does not know: {extra}"
    return value


def sse_frames(text: str) -> list[tuple[str, str]]:
    """(event name, data) of each frame of an Anthropic stream."""
    frames = []
    for frame in text.split("\n\n"):
        if not frame:
            continue
        lines = dict(line.split(": ", 1) for line in frame.split("\n"))
        assert set(lines) == {"event", "data"}, frame
        frames.append((lines["event"], lines["data"]))
    return frames
