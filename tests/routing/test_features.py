"""Request features from both client protocols: the same request gives the same features."""

from __future__ import annotations

import pytest

from thrifty.routing import features_from_body, features_from_prompt
from thrifty.wire import ANTHROPIC_MESSAGES, OPENAI_CHAT


def both(text: str, system: str | None = None, **extra):
    oa = {"model": "thrifty/auto", "messages": ([{"role": "system", "content": system}] if system else [])
          + [{"role": "user", "content": text}], **extra}
    an = {"model": "thrifty/auto", "max_tokens": 100, "messages": [{"role": "user", "content": text}]}
    if system:
        an["system"] = system
    return features_from_body(oa, OPENAI_CHAT), features_from_body(an, ANTHROPIC_MESSAGES)


@pytest.mark.parametrize("text, expected", [
    ("Classify the sentiment of this review as positive, negative or neutral: great app", "classification"),
    ("Is this message spam? Answer yes or no: WIN A FREE CRUISE", "classification"),
    ("Extract the invoice number and the total from: Invoice 8812, total $12.40", "extraction"),
    ("Rewrite this more formally: hey can u send it by fri", "rewrite"),
    ("Translate to French: where is the station?", "rewrite"),
    ("Summarize the following meeting notes in three bullet points: ...", "summarization"),
    ("Write a short story about a lighthouse keeper who befriends a seal.", "generation"),
    ("Solve for x: 3x + 7 = 22", "reasoning"),
    ("A train leaves at 3pm at 60 km/h. How many km has it covered by 5:30pm?", "reasoning"),
    ("Write a python function to remove duplicates from a list.", "code"),
    ("Why does this fail?\n```python\ndef f(x):\n    return x +\n```", "code"),
    ("What are your opening hours?", "generation"),
])
def test_request_type_heuristics(text, expected):
    oa, an = both(text)
    assert oa.request_type == expected
    assert an.request_type == expected


def test_the_two_protocols_agree_on_every_feature():
    oa, an = both("Summarize this: " + "Revenue grew. " * 400, system="You are terse.", max_tokens=100)
    assert oa == an
    assert oa.turns == 1 and oa.messages == 1 and oa.request_type == "summarization"


def test_tokens_turns_and_long_context():
    f = features_from_body({"messages": [
        {"role": "system", "content": "x" * 400},
        {"role": "user", "content": "a" * 4000},
        {"role": "assistant", "content": "b" * 800},
        {"role": "user", "content": "c" * 40_000}]}, OPENAI_CHAT)
    assert f.turns == 2 and f.messages == 3
    assert 11_000 < f.input_tokens < 11_400  # characters / 4 plus a little per message
    assert f.long_context and f.prompt_chars == 40_000


def test_multiple_choice_counts_the_final_question_of_a_few_shot_prompt():
    shot = "Q: pick one\nA) red\nB) green\nC) blue\nD) black\nAnswer: B\n\n"
    f = features_from_prompt(shot * 5 + "Q: and now?\nA) yes\nB) no\nPrint only a single choice.\nAnswer:")
    assert f.choices == 2 and f.request_type == "classification"
    assert features_from_prompt("Plain question with no options.").choices == 0


def test_tools_agentic_and_a_forced_single_tool_is_structured_output():
    tool = {"type": "function", "function": {"name": "lookup", "description": "find", "parameters": {}}}
    loop = features_from_body({"tools": [tool, tool], "messages": [
        {"role": "user", "content": "Find my order"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1", "type": "function",
                                                              "function": {"name": "lookup", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "1", "content": "{}"}]}, OPENAI_CHAT)
    assert loop.tools and loop.tool_count == 2 and loop.tool_results == 1 and loop.request_type == "agentic"
    forced = features_from_body({"tools": [tool], "tool_choice": {"type": "function", "function": {"name": "lookup"}},
                                 "messages": [{"role": "user", "content": "Extract the city from: I live in Oslo"}]},
                                OPENAI_CHAT)
    assert not forced.tools and forced.structured_output and forced.request_type == "extraction"
    an = features_from_body({"tools": [{"name": "lookup", "input_schema": {}}] * 2, "max_tokens": 10,
                             "messages": [{"role": "user", "content": "hi"},
                                          {"role": "assistant", "content": [{"type": "tool_use", "id": "1",
                                                                             "name": "lookup", "input": {}}]},
                                          {"role": "user", "content": [{"type": "tool_result",
                                                                        "tool_use_id": "1", "content": "ok"}]}]},
                            ANTHROPIC_MESSAGES)
    assert an.tools and an.tool_results == 1 and an.request_type == "agentic" and an.turns == 1


def test_structured_output_images_and_documents():
    f = features_from_body({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
                            "max_completion_tokens": 50,
                            "messages": [{"role": "user", "content": [
                                {"type": "text", "text": "What is in the picture?"},
                                {"type": "image_url", "image_url": {"url": "data:,"}}]}]}, OPENAI_CHAT)
    assert f.structured_output and f.images and f.max_output_tokens == 50 and f.input_tokens >= 800
    a = features_from_body({"max_tokens": 5, "output_format": {"type": "json_schema", "schema": {}},
                            "messages": [{"role": "user", "content": [
                                {"type": "document", "source": {"type": "text", "data": "d" * 100}},
                                {"type": "text", "text": "Answer from the document."}]}]}, ANTHROPIC_MESSAGES)
    assert a.structured_output and a.retrieved_chunks == 1


def test_retrieved_chunks_are_counted_from_markers():
    docs = "".join(f"<document index='{i}'>text</document>\n" for i in range(5))
    assert features_from_prompt(docs + "Answer the question.").retrieved_chunks == 5
    lines = "\n".join(f"[{i}] passage text" for i in range(1, 4))
    assert features_from_prompt("Context:\n" + lines + "\nQuestion: why?").retrieved_chunks == 3


def test_attribution_and_user_tier():
    headers = {"x-thrifty-feature": "support-chat", "x-thrifty-call-site": "inbox.reply",
               "x-thrifty-user-tier": "free"}
    f = features_from_body({"user": "u1", "messages": [{"role": "user", "content": "hi"}]}, OPENAI_CHAT,
                           headers=headers, tenant="acme")
    assert (f.feature, f.call_site, f.user) == ("support-chat", "inbox.reply", "u1")
    assert (f.user_tier, f.tenant) == ("free", "acme")
    a = features_from_body({"metadata": {"user_id": "u2"}, "max_tokens": 1, "messages": []}, ANTHROPIC_MESSAGES,
                           user_tier="pro")
    assert a.user == "u2" and a.user_tier == "pro" and a.turns == 0


def test_malformed_bodies_do_not_raise():
    for body in ({}, {"messages": "nope"}, {"messages": [None, 3, {"role": "user", "content": 5}]},
                 {"tools": "x", "messages": []}):
        features_from_body(body, OPENAI_CHAT)
        features_from_body(body, ANTHROPIC_MESSAGES)


def test_a_code_word_without_code_loses_to_an_explicit_task():
    def kind(text):
        body = {"model": "m", "messages": [{"role": "user", "content": text}]}
        return features_from_body(body, OPENAI_CHAT).request_type

    assert kind("Classify this ticket as billing, bug or other: I was charged twice") == "classification"
    assert kind("Fix the bug in my python function") == "code"
    assert kind("Classify this snippet:\n```python\ndef f(x):\n    return x\n```") == "code"
