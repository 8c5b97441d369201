"""Deterministic answers: JSON that satisfies schemas, and cutting at stop sequences and token limits."""

from __future__ import annotations

import random

import jsonschema
import pytest

from thrifty_emulator.answers import cut, prose, value_for
from thrifty_emulator.prompt import Tokenizer

SCHEMAS = [
    {"type": "object", "properties": {"a": {"type": "integer", "minimum": 5, "maximum": 9},
                                      "b": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                                      "c": {"type": "boolean"}, "d": {"type": "null"}},
     "required": ["a", "b", "c", "d"], "additionalProperties": False},
    {"type": "array", "items": {"type": "string", "minLength": 12, "maxLength": 20}, "minItems": 2, "maxItems": 2},
    {"type": "object", "properties": {"when": {"type": "string", "format": "date-time"},
                                      "mail": {"type": "string", "format": "email"},
                                      "kind": {"enum": ["x", "y", 3]}, "fixed": {"const": "k"}},
     "required": ["when", "mail", "kind", "fixed"]},
    {"$defs": {"node": {"type": "object", "properties": {"label": {"type": "string"},
                                                         "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
                        "required": ["label", "children"]}},
     "$ref": "#/$defs/node"},
    {"anyOf": [{"type": "null"}, {"type": "object", "properties": {"x": {"type": ["integer", "null"]}},
                                  "required": ["x"]}]},
    {"allOf": [{"type": "object", "properties": {"p": {"type": "string"}}, "required": ["p"]},
               {"properties": {"q": {"type": "integer"}}, "required": ["q"]}]},
    {"type": "object", "properties": {"empty": {"type": "array", "items": {"type": "integer"}, "maxItems": 0}},
     "required": ["empty"]},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_values_satisfy_their_schema(schema):
    for seed in range(25):
        jsonschema.validate(value_for(schema, random.Random(seed)), schema)


def test_values_are_deterministic_per_seed():
    assert value_for(SCHEMAS[3], random.Random(4)) == value_for(SCHEMAS[3], random.Random(4))
    assert len({str(value_for(SCHEMAS[0], random.Random(s))) for s in range(10)}) > 1


def test_prose_and_cut():
    tok = Tokenizer()
    text = prose(random.Random(1), 60)
    assert text.isascii() and text[0].isupper() and text[-1] in ".!?"
    whole = cut(text, tok, None, [])
    assert (whole.text, whole.reason, whole.tokens) == (text, "end", tok.count(text))
    capped = cut(text, tok, 7, [])
    assert capped.reason == "length" and capped.tokens == 7 and text.startswith(capped.text)
    word = text.split()[5]
    stopped = cut(text, tok, None, ["zzz", " " + word])
    assert stopped.reason == "stop_sequence" and stopped.stop_sequence == " " + word
    assert stopped.text == text[:text.index(" " + word)]
    # A stop sequence beyond the token limit does not count: the limit is reached first.
    late = text.split()[-1]
    assert cut(text, tok, 3, [" " + late]).reason == "length"
