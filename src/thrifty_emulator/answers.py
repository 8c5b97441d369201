"""Deterministic answers: plausible prose, JSON that satisfies a schema, and the cut at a limit.

Everything is drawn from a `random.Random` seeded by the request, so the same request always
gets the same answer. Prose is ASCII, so any cut on a token boundary decodes cleanly.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from thrifty_emulator.prompt import Tokenizer

_WORDS = (
    "the system request model answer cost cache token budget latency user team service data "
    "value result process policy update review report change feature customer product market "
    "support question example context prompt output input provider price level quality route "
    "small large simple clear useful careful quick better common important several every other "
    "first next last each many most some more less often usually also still only just then "
    "because while when where which that this these those they we you it can will should may "
    "would could must might help make keep take give find show build check track plan save "
    "reduce improve compare measure explain describe choose handle return send store read write "
    "time day week month year number part group case point way step rule goal task idea issue "
    "and or but so if for with from into over under about after before between through within"
).split()
_CLOSERS = (".", ".", ".", "!", "?")

# Default reasoning effort of reasoning models, and the hidden tokens each level tends to spend.
REASONING_TOKENS = {"none": (0, 0), "minimal": (0, 0), "low": (1, 4), "medium": (3, 12), "high": (8, 32)}
_REASONING_UNIT = 64


def prose(rng: random.Random, approx_tokens: int) -> str:
    """Sentences of common words, about `approx_tokens` long (most words are one token)."""
    words = rng.choices(_WORDS, k=max(1, approx_tokens))
    sentences: list[str] = []
    i = 0
    while i < len(words):
        length = 6 + int(rng.random() * 11)  # 6 to 16 words
        part = words[i:i + length]
        i += length
        part[0] = part[0].capitalize()
        sentences.append(" ".join(part) + _CLOSERS[int(rng.random() * len(_CLOSERS))])
    return " ".join(sentences)


def reasoning_tokens(rng: random.Random, effort: str | None) -> int:
    low, high = REASONING_TOKENS.get(effort or "medium", REASONING_TOKENS["medium"])
    return rng.randint(low, high) * _REASONING_UNIT


def thinking_tokens(rng: random.Random, budget: int) -> int:
    """Anthropic extended thinking: the budget is a ceiling the model rarely reaches on ordinary
    prompts ("Claude may not use the entire budget allocated"); 128-1024 tokens, never above it."""
    return min(budget, rng.randint(2, 16) * _REASONING_UNIT)


@dataclass(frozen=True, slots=True)
class Cut:
    text: str
    tokens: int
    reason: str  # "end", "length" or "stop_sequence"
    stop_sequence: str | None = None


def cut(text: str, tok: Tokenizer, max_tokens: int | None, stops: list[str]) -> Cut:
    """Stop the answer where the model would: at the first stop sequence, or at the token limit."""
    reason, matched = "end", None
    first = -1
    for s in stops:
        at = text.find(s) if s else -1
        if at != -1 and (first == -1 or at < first):
            first, matched = at, s
    if matched is not None:
        text, reason = text[:first], "stop_sequence"
    ids = tok.encode(text)
    if max_tokens is not None and len(ids) > max_tokens:
        return Cut(tok.decode(ids[:max_tokens]), max_tokens, "length")
    return Cut(text, len(ids), reason, matched)


# --- values that satisfy a JSON schema -------------------------------------------------------

_MAX_DEPTH = 6


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    seen = 0
    while isinstance(schema, dict) and "$ref" in schema and seen < 32:
        ref = schema["$ref"]
        target: Any = root
        if isinstance(ref, str) and ref.startswith("#"):
            for part in ref[1:].split("/"):
                if part:
                    part = part.replace("~1", "/").replace("~0", "~")
                    target = target.get(part, {}) if isinstance(target, dict) else {}
        else:
            target = {}
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        seen += 1
    return schema if isinstance(schema, dict) else {}


def _string(schema: dict[str, Any], rng: random.Random) -> str:
    fmt = schema.get("format")
    if fmt == "date-time":
        return f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z"
    if fmt == "date":
        return f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if fmt == "email":
        return f"{rng.choice(_WORDS)}@example.com"
    if fmt in ("uri", "url"):
        return f"https://example.com/{rng.choice(_WORDS)}"
    if fmt == "uuid":
        return "%08x-%04x-4%03x-8%03x-%012x" % (rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(12),
                                                rng.getrandbits(12), rng.getrandbits(48))
    lo = int(schema.get("minLength", 0) or 0)
    hi = schema.get("maxLength")
    words = " ".join(rng.choices(_WORDS, k=rng.randint(1, 4)))
    while len(words) < lo:
        words += " " + rng.choice(_WORDS)
    if isinstance(hi, int):
        words = words[:max(hi, lo)]
    return words


def _number(schema: dict[str, Any], rng: random.Random, integer: bool) -> int | float:
    lo = schema.get("minimum", schema.get("exclusiveMinimum", 0))
    hi = schema.get("maximum", schema.get("exclusiveMaximum", lo + 100))
    if "exclusiveMinimum" in schema and isinstance(schema["exclusiveMinimum"], (int, float)):
        lo = schema["exclusiveMinimum"] + (1 if integer else 1e-3)
    if "exclusiveMaximum" in schema and isinstance(schema["exclusiveMaximum"], (int, float)):
        hi = schema["exclusiveMaximum"] - (1 if integer else 1e-3)
    if hi < lo:
        hi = lo
    if integer:
        return rng.randint(math.ceil(lo), max(math.ceil(lo), math.floor(hi)))
    return round(rng.uniform(lo, hi), 2) if hi > lo else lo


def value_for(schema: Any, rng: random.Random, root: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """A value that validates against `schema` (the common subset models are given in practice)."""
    if schema is True or not isinstance(schema, dict):
        return rng.choice(_WORDS)
    root = root if root is not None else schema
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return rng.choice(schema["enum"])
    for combinator in ("anyOf", "oneOf"):
        options = schema.get(combinator)
        if isinstance(options, list) and options:
            # Prefer a non-null option, as a model asked for a value would.
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return value_for(rng.choice(non_null or options), rng, root, depth)
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            part = _resolve(part, root)
            merged = {**merged, **part, "properties": {**merged.get("properties", {}), **part.get("properties", {})},
                      "required": [*merged.get("required", []), *part.get("required", [])]}
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        return value_for({**merged, **rest}, rng, root, depth)
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"] or kind
        kind = kinds[0]
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        props = schema.get("properties") or {}
        if depth >= _MAX_DEPTH:
            props = {k: v for k, v in props.items() if k in (schema.get("required") or [])}
        return {name: value_for(sub, rng, root, depth + 1) for name, sub in props.items()}
    if kind == "array":
        lo = int(schema.get("minItems", 0) or 0)
        hi = int(schema.get("maxItems", lo + 3))
        if depth >= _MAX_DEPTH:
            count = lo
        else:
            count = rng.randint(max(lo, min(1, hi)), max(lo, min(hi, lo + 3)))
        items = schema.get("items", {})
        return [value_for(items, rng, root, depth + 1) for _ in range(count)]
    if kind == "string":
        return _string(schema, rng)
    if kind == "integer":
        return _number(schema, rng, True)
    if kind == "number":
        return _number(schema, rng, False)
    if kind == "boolean":
        return rng.random() < 0.5
    return None
