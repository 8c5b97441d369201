"""Escalation checks: pure functions over an answer that return a reason when it is not good enough."""

from __future__ import annotations

import json

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thrifty.routing import checks as c
from thrifty.routing.checks import CheckSettings, first_failure
from thrifty.wire import ANTHROPIC_MESSAGES, OPENAI_CHAT, AnswerView


def test_empty_short_and_truncated():
    assert c.check_empty("") == "empty answer" and c.check_empty(" \n") == "empty answer"
    assert c.check_empty("ok") is None
    assert c.check_too_short("ok", 5).startswith("answer too short") and c.check_too_short("fine.", 5) is None
    assert c.check_truncated("length") and c.check_truncated("max_tokens")
    assert c.check_truncated("stop") is None and c.check_truncated(None) is None


@pytest.mark.parametrize("text, reason", [
    ("I'm sorry, but I can't help with that request.", "refusal"),
    ("I cannot assist with creating malware.", "refusal"),
    ("As an AI language model, I do not have opinions.", "refusal"),
    ("I'm not sure which of these is correct.", "model not sure"),
    ("I don't know the answer to that.", "model not sure"),
    ("There is not enough information to decide.", "model not sure"),
    ("The capital of France is Paris.", None),
    ("Sure! Here is the summary you asked for.", None),
    ("Step 1: " + "x " * 400 + " I'm not sure this matters.", None),  # only the start is looked at
])
def test_refusal_and_not_sure(text, reason):
    assert c.check_refusal(text) == reason


SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "kind": {"enum": ["a", "b"]},
        "address": {"$ref": "#/$defs/address"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
    "$defs": {"address": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                          "additionalProperties": False}},
}


@pytest.mark.parametrize("answer, problem", [
    ('{"name": "Ada", "age": 36}', None),
    ('```json\n{"name": "Ada", "age": 36, "tags": ["x"], "kind": "a", "note": null}\n```', None),
    ('{"name": "Ada", "age": 36, "address": {"city": "London"}}', None),
    ('{"name": "Ada"}', "missing required property 'age'"),
    ('{"name": "Ada", "age": -1}', "age: -1 is out of range"),
    ('{"name": "Ada", "age": 3.5}', "age: expected integer"),
    ('{"name": "Ada", "age": true}', "age: expected integer"),
    ('{"name": "Ada", "age": 1, "extra": 1}', "extra: unexpected property"),
    ('{"name": "Ada", "age": 1, "tags": ["a", 2]}', "tags: [1]: expected string"),
    ('{"name": "Ada", "age": 1, "tags": ["a", "b", "c", "d"]}', "tags: 4 items"),
    ('{"name": "Ada", "age": 1, "kind": "c"}', "kind: 'c' is not one of"),
    ('{"name": "Ada", "age": 1, "address": {}}', "address: missing required property 'city'"),
    ('{"name": "", "age": 1}', "name: string of length 0"),
    ("[1, 2]", "expected object"),
    ("not json at all", "not valid JSON"),
])
def test_schema_fast_path(answer, problem):
    reason = c.check_schema(answer, SCHEMA)
    if problem is None:
        assert reason is None
    else:
        assert reason is not None and problem in reason, reason


def test_schema_with_other_keywords_falls_back_to_jsonschema():
    schema = {"type": "object", "properties": {"n": {"oneOf": [{"type": "integer"}, {"type": "string"}]}},
              "required": ["n"], "allOf": [{"required": ["n"]}]}
    assert c.check_schema('{"n": 1}', schema) is None
    reason = c.check_schema('{"n": [1]}', schema)
    assert reason is not None and reason.startswith("structured output does not match the schema: $.n")


def test_schemas_are_compiled_once():
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert c.compile_schema(schema) is c.compile_schema(schema)
    assert c.compile_schema(schema) is c.compile_schema(json.loads(json.dumps(schema)))


def test_recursive_ref():
    tree = {"$ref": "#/$defs/node", "$defs": {"node": {"type": "object", "properties": {
        "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}, "additionalProperties": False}}}
    assert c.check_schema('{"children": [{"children": []}]}', tree) is None
    assert "unexpected property" in c.check_schema('{"children": [{"kids": []}]}', tree)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-200, 200) | st.floats(-1e3, 1e3, allow_nan=False) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["name", "age", "tags", "kind", "address", "note", "city", "x"]), inner, max_size=5),
    max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_fast_path_agrees_with_jsonschema(value):
    expected = jsonschema.Draft202012Validator(SCHEMA).is_valid(value)
    assert (c.compile_schema(SCHEMA)(value) is None) == expected


def test_confidence_field_round_trip():
    schema = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"],
              "additionalProperties": False}
    with_conf = c.add_confidence_field(schema)
    assert with_conf["required"] == ["label", "confidence"] and "confidence" not in schema["properties"]
    assert c.check_schema('{"label": "spam", "confidence": 0.4}', with_conf) is None
    assert c.check_schema('{"label": "spam", "confidence": 1.4}', with_conf) is not None
    text, conf = c.strip_confidence('{"label": "spam", "confidence": 0.4}')
    assert json.loads(text) == {"label": "spam"} and conf == 0.4
    assert c.check_schema(text, schema) is None
    assert c.strip_confidence('{"label": "x"}') == ('{"label": "x"}', None)
    assert c.strip_confidence("no json") == ("no json", None)
    assert c.strip_confidence({"label": "x", "confidence": 1}) == ({"label": "x"}, 1.0)
    assert c.check_confidence(0.4, 0.6) == "self-reported confidence 0.40 below 0.60"
    assert c.check_confidence(0.9, 0.6) is None and c.check_confidence(None, 0.6) == "no self-reported confidence"
    with pytest.raises(c.SchemaError):
        c.add_confidence_field({"type": "string"})
    with pytest.raises(c.SchemaError):
        c.add_confidence_field(with_conf)


def test_request_and_answer_helpers_for_both_protocols():
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    body = {"model": "m", "messages": [], "response_format": {"type": "json_schema",
                                                              "json_schema": {"name": "x", "schema": schema}}}
    asked = c.request_confidence(body, OPENAI_CHAT)
    assert "confidence" in asked["response_format"]["json_schema"]["schema"]["properties"]
    assert "confidence" not in body["response_format"]["json_schema"]["schema"]["properties"]
    assert c.request_confidence({"messages": []}, OPENAI_CHAT) is None
    assert OPENAI_CHAT.requested_schema(body) is schema and OPENAI_CHAT.requested_schema({"messages": []}) is None
    tool = {"name": "t", "input_schema": schema}
    an = c.request_confidence({"tools": [tool], "tool_choice": {"type": "tool", "name": "t"}}, ANTHROPIC_MESSAGES)
    assert "confidence" in an["tools"][0]["input_schema"]["properties"]
    forced = {"tools": [tool], "tool_choice": {"type": "tool", "name": "t"}}
    assert ANTHROPIC_MESSAGES.requested_schema(forced) is schema
    assert ANTHROPIC_MESSAGES.requested_schema({"output_format": {"type": "json_schema", "schema": schema}}) is schema

    answer = {"choices": [{"message": {"role": "assistant", "content": '{"a": "x", "confidence": 0.8}'},
                           "finish_reason": "stop"}]}
    stripped, conf = c.strip_confidence_from_answer(answer, OPENAI_CHAT)
    assert conf == 0.8 and json.loads(stripped["choices"][0]["message"]["content"]) == {"a": "x"}
    assert "confidence" in answer["choices"][0]["message"]["content"]  # the original is untouched
    tool_answer = {"content": [{"type": "tool_use", "id": "1", "name": "t", "input": {"a": "x", "confidence": 0.3}}],
                   "stop_reason": "tool_use"}
    stripped, conf = c.strip_confidence_from_answer(tool_answer, ANTHROPIC_MESSAGES)
    assert conf == 0.3 and stripped["content"][0]["input"] == {"a": "x"}


def test_answer_view():
    oa = OPENAI_CHAT.answer_view({"choices": [{"message": {"content": "hi"}, "finish_reason": "length"}]})
    assert oa == AnswerView("hi", "length")
    call = OPENAI_CHAT.answer_view({"choices": [{"message": {"content": None, "tool_calls": [
        {"function": {"name": "f", "arguments": '{"x": 1}'}}]}, "finish_reason": "tool_calls"}]})
    assert call.text == '{"x": 1}' and call.tool_call
    an = ANTHROPIC_MESSAGES.answer_view({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                        "stop_reason": "max_tokens"})
    assert an == AnswerView("ab", "length")


@pytest.mark.parametrize("a, b, kw, agree", [
    ("B", "(B) because...", {"choices": 4}, True),
    ("\\boxed{C}\n\nThe answer is C.", "C", {"choices": 4}, True),
    ("A", "B", {"choices": 4}, False),
    ("The answer is D", "I think so", {"choices": 4}, False),
    ("Paris.", "paris", {}, True),
    ("The meeting is on Monday at 10am", "Meeting: Monday, 10am", {"threshold": 0.4}, True),
    ("The meeting is on Monday", "It was cancelled entirely", {}, False),
    ("Paris", "Paris, France", {"mode": "exact"}, False),
])
def test_consistency(a, b, kw, agree):
    assert (c.check_consistency(a, b, **kw) is None) == agree


def test_first_failure_runs_checks_in_order_and_skips_what_cannot_run():
    view = AnswerView("I'm sorry, but I can't help with that.", "length")
    assert first_failure(view, ("empty", "truncated", "refusal")) == "truncated at the output token limit"
    assert first_failure(view, ("refusal", "truncated")) == "refusal"
    ok = AnswerView('{"a": 1}', "stop")
    assert first_failure(ok, ("schema", "confidence", "consistency")) is None  # nothing to check against
    assert first_failure(ok, ("schema",), schema={"type": "object", "required": ["b"]}) is not None
    assert first_failure(ok, ("confidence",), confidence=None) == "no self-reported confidence"
    assert first_failure(ok, ("confidence",), CheckSettings(confidence_threshold=0.5), confidence=0.7) is None
    assert first_failure(ok, ("consistency",), second='{"a": 2}', choices=0) is not None
    assert first_failure(AnswerView("", "tool_calls", tool_call=True), ("empty", "refusal")) is None
