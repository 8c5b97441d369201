"""The exact-cache key: its documented canonical form, what changes it and what does not."""

from __future__ import annotations

import copy
import hashlib

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thrifty.cache import CachePolicy, cache_key, canonical_request
from thrifty.cache.keys import PREFIXED_ID, _normalize_lines, normalize_whitespace
from thrifty.wire import ANTHROPIC_MESSAGES, OPENAI_CHAT

POLICY = CachePolicy()


def body(**over):
    b = {"model": "gpt-4o-mini", "temperature": 0,
         "messages": [{"role": "system", "content": "You are terse."},
                      {"role": "user", "content": "What is the capital of France?"}]}
    b.update(over)
    return b


def key(b, *, tenant="acme", surface=OPENAI_CHAT, policy=POLICY, **kw):
    return cache_key(tenant, surface, b, policy, **kw)


def with_user(text, **over):
    return body(messages=[{"role": "user", "content": text}], **over)


def test_key_is_the_documented_hash_of_the_canonical_form():
    b = body(stream=True, user="u1", max_tokens=50)
    doc = [1, "openai", ["tenant", "acme"], "gpt-4o-mini",
           {"temperature": 0, "max_completion_tokens": 50,
            "messages": [{"role": "system", "content": "You are terse."},
                         {"role": "user", "content": "What is the capital of France?"}]}]
    expected = "x1:" + hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()
    assert key(b) == expected


def test_shared_namespace_scope_is_in_the_documented_form():
    doc = [1, "anthropic", ["shared", "faq"], "claude-x", {"temperature": 0, "max_tokens": 10,
                                                            "messages": [{"role": "user", "content": "hi"}]}]
    expected = "x1:" + hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()
    b = {"model": "claude-x", "max_tokens": 10, "temperature": 0, "messages": [{"role": "user", "content": "hi"}]}
    assert key(b, surface=ANTHROPIC_MESSAGES, policy=CachePolicy(namespace="faq")) == expected


def test_canonical_request_does_not_modify_the_body():
    b = body(tools=[{"type": "function", "function": {"name": "f"}, "cache_control": {"type": "ephemeral"}}],
             messages=[{"role": "user", "content": [{"type": "text", "text": " hi  there ",
                                                     "cache_control": {"type": "ephemeral"}}]}])
    before = copy.deepcopy(b)
    canonical_request(OPENAI_CHAT, b, POLICY)
    assert b == before


# -- what does not change the key ---------------------------------------------------------------

@pytest.mark.parametrize("a, b", [
    ("What is  the capital\tof France?", "What is the capital of France?"),
    ("  What is the capital of France?\n\n", "What is the capital of France?"),
    ("line one   \r\nline two", "line one\nline two"),
    ("para one\n\n\n\n\npara two", "para one\n\npara two"),
    ("a\n   \nb", "a\n\nb"),
    ("non\u00a0breaking\u2003space", "non breaking space"),
    ("def f():\n    return  1", "def f():\n    return 1"),
])
def test_whitespace_differences_do_not_change_the_key(a, b):
    assert key(with_user(a)) == key(with_user(b))


@pytest.mark.parametrize("a, b", [
    ("Now: 2024-05-01T12:34:56Z. Hello", "Now: 2025-11-30T01:02:03.123+02:00. Hello"),
    ("Now: 2024-05-01 12:34. Hello", "Now: 1999-01-01 00:00:59. Hello"),
    ("trace 550e8400-e29b-41d4-a716-446655440000 hi", "trace 123e4567-E89B-12d3-a456-426614174000 hi"),
    ("request id 9f8e7d6c5b4a3210fedc hi", "request id 0123456789abcdef0123 hi"),
    ("id req_01HZX9K2M4N5P6Q7R8 hi", "id req_7Y6X5W4V3U2T1S0R9Q hi"),
])
def test_volatile_fields_do_not_change_the_key(a, b):
    assert key(with_user(a)) == key(with_user(b))


def test_volatile_fields_count_when_patterns_are_turned_off():
    strict = CachePolicy(volatile_patterns=())
    a, b = with_user("at 2024-05-01T12:34:56Z"), with_user("at 2024-05-02T12:34:56Z")
    assert key(a, policy=strict) != key(b, policy=strict)


def test_custom_volatile_pattern():
    policy = CachePolicy(volatile_patterns=(r"ticket #\d+",))
    assert key(with_user("see ticket #123 please"), policy=policy) == key(with_user("see ticket #98765 please"),
                                                                        policy=policy)
    # the defaults are replaced, not extended
    assert key(with_user("at 2024-05-01T12:34:56Z"), policy=policy) != key(
        with_user("at 2024-05-02T12:34:56Z"), policy=policy)


def test_invalid_volatile_pattern_fails_at_start_up():
    with pytest.raises(ValueError, match=r"volatile_patterns\[1\]"):
        CachePolicy(volatile_patterns=(r"ok", r"(unclosed"))


def test_plain_numbers_and_dates_are_not_volatile():
    assert key(with_user("order 1234567890123456")) != key(with_user("order 6543210987654321"))
    assert key(with_user("on 2024-05-01, what happened?")) != key(with_user("on 2024-05-02, what happened?"))
    assert key(with_user("the word deadbeefcafebabe")) != key(with_user("the word cafebabedeadbeef"))  # no digit


def test_parameter_order_does_not_change_the_key():
    a = {"model": "m", "temperature": 0, "seed": 1, "messages": [{"role": "user", "content": "x"}]}
    b = {"messages": [{"content": "x", "role": "user"}], "seed": 1, "temperature": 0, "model": "m"}
    assert key(a) == key(b)


@pytest.mark.parametrize("extra", [
    {"user": "someone"}, {"stream": True}, {"stream": False}, {"stream_options": {"include_usage": True}},
    {"metadata": {"user_id": "u-9"}}, {"store": True}, {"service_tier": "flex"}, {"n": 1},
    {"prompt_cache_key": "pck"}, {"safety_identifier": "sid"}, {"temperature": 0.0},
])
def test_parameters_that_do_not_change_the_answer_do_not_change_the_key(extra):
    assert key(body(**extra)) == key(body())


def test_max_tokens_and_max_completion_tokens_are_the_same_on_openai():
    assert key(body(max_tokens=100)) == key(body(max_completion_tokens=100))
    assert key(body(max_tokens=100)) != key(body(max_completion_tokens=101))
    a = {"model": "c", "max_tokens": 100, "messages": [{"role": "user", "content": "x"}]}
    assert key(a, surface=ANTHROPIC_MESSAGES) != key({**a, "max_completion_tokens": 100, "max_tokens": 1},
                                              surface=ANTHROPIC_MESSAGES)


def test_cache_control_markers_and_single_text_parts_do_not_change_the_key():
    plain = {"model": "c", "max_tokens": 9, "temperature": 0, "system": "Be brief.",
             "tools": [{"name": "f", "input_schema": {"type": "object"}}],
             "messages": [{"role": "user", "content": "hello"}]}
    marked = {"model": "c", "max_tokens": 9, "temperature": 0,
              "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
              "tools": [{"name": "f", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}],
              "messages": [{"role": "user", "content": [{"type": "text", "text": "hello",
                                                         "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}],
              "cache_control": {"type": "ephemeral"}}
    assert key(plain, surface=ANTHROPIC_MESSAGES) == key(marked, surface=ANTHROPIC_MESSAGES)


def openai_tool_turn(first_id, second_id, first_result="15C", second_result="20C"):
    return body(messages=[
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": first_id, "type": "function", "function": {"name": "w", "arguments": '{"city":"Paris"}'}},
            {"id": second_id, "type": "function", "function": {"name": "w", "arguments": '{"city":"Rome"}'}}]},
        {"role": "tool", "tool_call_id": first_id, "content": first_result},
        {"role": "tool", "tool_call_id": second_id, "content": second_result}])


def test_tool_call_ids_minted_by_the_provider_do_not_change_the_key():
    assert key(openai_tool_turn("call_AAA", "call_BBB")) == key(openai_tool_turn("call_XYZ", "call_QRS"))


def test_tool_results_paired_differently_change_the_key():
    a = openai_tool_turn("call_A", "call_B")
    b = openai_tool_turn("call_A", "call_B")
    b["messages"][2], b["messages"][3] = (  # results listed in the other order, each still with its own call
        {"role": "tool", "tool_call_id": "call_B", "content": "15C"},
        {"role": "tool", "tool_call_id": "call_A", "content": "20C"})
    assert key(a) != key(b)


def test_anthropic_tool_use_ids_do_not_change_the_key():
    def turn(tid):
        return {"model": "c", "max_tokens": 5, "temperature": 0, "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": tid, "name": "w", "input": {"c": "Oslo"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tid, "content": "cold"}]}]}
    assert key(turn("toolu_01A"), surface=ANTHROPIC_MESSAGES) == key(turn("toolu_99Z"), surface=ANTHROPIC_MESSAGES)


# -- what changes the key -------------------------------------------------------------------------

@pytest.mark.parametrize("extra", [
    {"temperature": 0.7}, {"top_p": 0.5}, {"seed": 7}, {"max_tokens": 10}, {"max_completion_tokens": 10},
    {"stop": ["\n\n"]}, {"stop": "END"}, {"n": 2}, {"presence_penalty": 0.5}, {"logprobs": True},
    {"response_format": {"type": "json_object"}},
    {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}},
    {"tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]},
    {"tool_choice": "required"}, {"parallel_tool_calls": False}, {"reasoning_effort": "high"},
    {"some_future_parameter": 1},
])
def test_parameters_that_change_the_answer_change_the_key(extra):
    assert key(body(**extra)) != key(body())


def test_different_values_of_a_parameter_give_different_keys():
    assert key(body(seed=1)) != key(body(seed=2))
    assert key(body(stop=["a"])) != key(body(stop=["b"]))
    assert key(body(stop=["\n\n"])) != key(body(stop=["\n"]))  # stop strings are exact, not normalised
    tools = [{"type": "function", "function": {"name": "a"}}]
    assert key(body(tools=tools)) != key(body(tools=[{"type": "function", "function": {"name": "b"}}]))


def test_model_surface_and_content_change_the_key():
    assert key(body()) != key(body(model="gpt-4o"))
    assert key(body()) != key(body(), surface=ANTHROPIC_MESSAGES)
    assert key(body()) != key(with_user("What is the capital of Spain?"))
    assert key(with_user("hi")) != key(body(messages=[{"role": "system", "content": "hi"}]))
    assert key(body(), model="tier:small") != key(body())
    assert key(body(), model="gpt-4o-mini") == key(body())


def test_indentation_and_data_are_not_normalised():
    assert key(with_user("def f():\n    return 1")) != key(with_user("def f():\n  return 1"))
    img = "https://img.example/550e8400-e29b-41d4-a716-446655440000.png"
    other = "https://img.example/123e4567-e89b-12d3-a456-426614174000.png"
    part = lambda url: body(messages=[{"role": "user", "content": [  # noqa: E731
        {"type": "text", "text": "describe"}, {"type": "image_url", "image_url": {"url": url}}]}])
    assert key(part(img)) != key(part(other))
    call = lambda args: body(messages=[{"role": "assistant", "content": None, "tool_calls": [  # noqa: E731
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": args}}]}])
    assert key(call('{"a": "x  y"}')) != key(call('{"a": "x y"}'))


def test_key_format():
    k = key(body())
    assert k.startswith("x1:") and len(k) == 67 and int(k[3:], 16) >= 0


def test_a_key_needs_a_tenant():
    with pytest.raises(ValueError):
        key(body(), tenant="")


def test_prefixed_id_pattern_matches_request_ids_only():
    import re

    rx = re.compile(PREFIXED_ID)
    assert rx.search("req_01HZX9K2M4N5P6Q7R8") and rx.search("trace-4bf92f3577b34da6")
    assert not rx.search("request_handler") and not rx.search("spanish_lesson_plan")


# -- whitespace normalisation, property-tested -----------------------------------------------------

texts = st.text(alphabet=st.sampled_from(list("ab \t\n\r\u00a0\x0b\x1cxyz.")), max_size=40)


@settings(max_examples=400, deadline=None)
@given(texts)
def test_whitespace_normalisation_is_idempotent(text):
    once = normalize_whitespace(text)
    assert normalize_whitespace(once) == once


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab \t\n\r\x0b\x0c\x1c\x1dz.")), max_size=40))
def test_fast_path_agrees_with_the_full_rules(text):
    assert normalize_whitespace(text) == _normalize_lines(text)


def test_memo_gives_the_same_key_and_stays_bounded():
    policy = CachePolicy(memo_chars=200)
    long_text = "Current time 2024-05-01T12:34:56Z.  " * 3
    first = key(with_user(long_text), policy=policy)
    assert key(with_user(long_text), policy=policy) == first == key(with_user(long_text))
    for i in range(50):
        key(with_user(f"message number {i} with some padding text"), policy=policy)
    assert policy.text_memo.chars <= 200
    assert key(with_user("x" * 500), policy=policy)  # larger than the memo: computed, not kept
    assert "x" * 500 not in policy.text_memo.items


def test_patterns_with_global_flags_are_refused_with_a_hint():
    with pytest.raises(ValueError, match="scoped flags"):
        CachePolicy(volatile_patterns=(r"abc", r"(?i)session=\w+"))
    policy = CachePolicy(volatile_patterns=(r"(?i:session)=\w+",))
    assert key(with_user("SESSION=abc ok"), policy=policy) == key(with_user("session=xyz ok"), policy=policy)
