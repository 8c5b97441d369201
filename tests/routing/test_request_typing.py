"""Request typing on the kinds of prompt that real chat traffic brings (issue 14, item 3).

Constructed prompts, one per failure kind the issue measured on chat-arena prompts: code in a
language or framework the old word list lacked (CSS, React, Vue, C#, Django, TensorFlow, R,
assembly, WordPress), and task words that outranked code ("Write an SQL query to select ...",
"Rewrite this bash script"). The other half are prompts that must NOT become code: prose that
uses a code noun in its everyday sense, FAQ questions, word problems.
"""

from __future__ import annotations

import json

import pytest

from thrifty.cli.eval_typing import TRIVIAL_TYPES, evaluate, format_report, read_labelled
from thrifty.cli.main import main
from thrifty.errors import ThriftyError
from thrifty.routing import features_from_prompt


def kind(text: str) -> str:
    return features_from_prompt(text).request_type


@pytest.mark.parametrize("text", [
    "Write an SQL query to select all customers who ordered more than 3 times last month",
    "Rewrite this bash script so that it stops on the first error:\nfor f in *.log; do gzip $f; done",
    "How do I center a div horizontally and vertically with CSS?",
    "My React component re-renders on every keystroke, how do I stop that?",
    "Write a Vue component that shows a list of todos with a checkbox each",
    "In C#, what is the difference between a struct and a class?",
    "How do I add a custom field to the Django admin for my Order model?",
    "Build a TensorFlow model that classifies images of cats and dogs",
    "How do I plot a histogram in R with ggplot?",
    "Explain what this x86 assembly does: mov eax, 1",
    "Create a WordPress plugin that adds a banner to every post",
    "Translate this Python snippet to JavaScript: print(sorted(xs, key=len))",
    "Summarize what this function does:\n```js\nconst f = xs => xs.map(x => x * 2)\n```",
    "Classify the following code by the design pattern it uses:\nclass Logger:\n    _instance = None",
    "Why does .btn { color: red; } not apply to my button?",
    "git rebase says there are conflicts in main.py, what do I do?",
    "Write a function that returns the n-th Fibonacci number",
    "Fix the bug in my python function",
])
def test_code_prompts_are_code(text):
    assert kind(text) == "code"


@pytest.mark.parametrize("text, expected", [
    ("What is the function of the liver?", "generation"),
    ("Where do I enter my promo code?", "generation"),
    ("Which TV program had the most viewers in 1999?", "generation"),
    ("Write a script for a two-minute video about our new bakery", "generation"),
    ("Create a lesson plan for a history class on the French revolution", "generation"),
    ("How much does an international transfer cost?", "generation"),
    ("How many disposable virtual cards can I have?", "generation"),
    ("Summarize this article about the history of the Python programming language: ...", "summarization"),
    ("Classify this ticket as billing, bug or other: I was charged twice", "classification"),
    ("Determine the sentiment (positive, negative, or neutral) of: the food was cold", "classification"),
    ("Tom has 3 apples and buys 5 more. He gives half to Ann. What does he keep?", "reasoning"),
    ("Julia has twice as many marbles as Ben, who has 12. How many do they have together?", "reasoning"),
    ("Rewrite this email more politely: send me the report now", "rewrite"),
])
def test_prose_stays_prose(text, expected):
    assert kind(text) == expected


def test_few_shot_short_answers_are_classification():
    prompt = ("Decide the direction of each headline.\n\nQ: gold up $7 on nymex\nA: up\n\n"
              "Q: gold falls as dollar firms\nA: down\n\nQ: gold steady in asia\nA:")
    assert kind(prompt) == "classification"


def test_code_is_never_typed_a_cheap_tier_type():
    # Task words of the cheap types, each wrapped around code: the code decides.
    code = "```python\ndef total(xs):\n    return sum(xs)\n```"
    for task in ("Classify", "Extract the function names from", "Rewrite more concisely", "Proofread"):
        assert kind(f"{task}:\n{code}") not in TRIVIAL_TYPES


def test_features_stay_bounded_on_a_long_prompt():
    # Signals are read in the head and tail only: code in the middle of a long essay is not seen.
    prompt = "Tell me a story. " + "x " * 2000 + "def f(): return 1\n" + "y " * 2000
    assert kind(prompt) == "generation"


# ---------------------------------------------------------------- the eval command

def _write(tmp_path, rows):
    path = tmp_path / "labelled.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_eval_typing_confusion_matrix_on_a_known_answer(tmp_path):
    rows = [
        {"prompt": "Write a python function to add two numbers", "type": "code", "source": "s1"},
        {"prompt": "Summarize this: the meeting moved to Monday", "type": "summarization", "source": "s1"},
        {"prompt": "What are your opening hours?", "type": "generation", "source": "s2"},
        # labelled classification, typed generation: one known mistake
        {"prompt": "Tell me about the weather", "type": "classification", "source": "s2"},
    ]
    report = evaluate(read_labelled(str(_write(tmp_path, rows))), errors=5)
    assert report["prompts"] == 4
    assert report["accuracy"] == 0.75
    assert report["confusion"]["classification"]["generation"] == 1
    assert report["confusion"]["code"]["code"] == 1
    assert report["per_type"]["generation"] == {"support": 1, "typed": 2, "precision": 0.5, "recall": 1.0}
    assert report["by_source"] == {"s1": {"prompts": 2, "accuracy": 1.0}, "s2": {"prompts": 2, "accuracy": 0.5}}
    assert report["code_typed_trivial"] == 0
    assert [e["typed"] for e in report["errors"]] == ["generation"]
    assert "confusion (rows: labelled" in format_report(report)


def test_eval_typing_cli_json_and_bad_input(tmp_path, capsys):
    path = _write(tmp_path, [{"prompt": "Solve for x: 2x = 4", "type": "reasoning"}])
    assert main(["eval", "typing", "--data", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["accuracy"] == 1.0 and out["by_source"] == {"-": {"prompts": 1, "accuracy": 1.0}}
    bad = _write(tmp_path, [{"prompt": "hi", "type": "chitchat"}])
    assert main(["eval", "typing", "--data", str(bad)]) == 1
    assert "type must be one of" in capsys.readouterr().err
    with pytest.raises(ThriftyError):
        read_labelled(str(tmp_path / "missing.jsonl"))


# ---------------------------------------------------------------- on the shared prompt sets

@pytest.fixture(scope="module")
def typing_data():
    import importlib.util

    from tests.conftest import DATA_DIR, REPO

    if not (DATA_DIR / "prompts").is_dir() or not (DATA_DIR / "routing").is_dir():
        pytest.skip(f"shared prompt sets not found under {DATA_DIR} (set THRIFTY_DATA_DIR to the shared data folder)")
    spec = importlib.util.spec_from_file_location("typing_data", REPO / "bench" / "typing_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_labelled_splits_are_disjoint_and_cover_every_source(typing_data, monkeypatch):
    from tests.conftest import DATA_DIR

    monkeypatch.setenv("THRIFTY_DATA_DIR", str(DATA_DIR))
    tune, test = typing_data.load("tune"), typing_data.load("test")
    assert not {r["prompt"] for r in tune} & {r["prompt"] for r in test}
    assert {r["source"] for r in tune} == {r["source"] for r in test} == set(typing_data.TUNED)
    heldout = typing_data.load("heldout")
    assert {"routerbench-mbpp", "arena-livecodebench", "arena-wmt19"} <= {r["source"] for r in heldout}


def test_typing_holds_on_the_test_half_and_on_sets_never_tuned_on(typing_data, monkeypatch):
    # Floors a few points under what was measured (test 98.0%, held-out 98.5%), to catch regressions.
    from tests.conftest import DATA_DIR

    monkeypatch.setenv("THRIFTY_DATA_DIR", str(DATA_DIR))
    for split, floor in (("test", 0.95), ("heldout", 0.95)):
        report = evaluate(typing_data.load(split))
        assert report["accuracy"] >= floor, split
        assert report["code_typed_trivial"] == 0, split
        assert report["per_type"]["code"]["recall"] >= 0.98, split


@pytest.mark.parametrize("text, expected", [
    ("How should I react when my manager criticises me in public?", "generation"),
    ("Explain angular momentum to a ten-year-old", "generation"),
    ("How do I get rust off my bike chain?", "generation"),
    ("Why do pandas eat bamboo?", "generation"),
    ("Rust is forming on my car door, what should I do?", "generation"),
    ("why does my Rust program panic on unwrap?", "code"),
    ("In my Angular app the router drops query params", "code"),
    ("How do I group rows by month in pandas and write the result to a csv?", "code"),
])
def test_names_that_are_also_words(text, expected):
    assert kind(text) == expected


def test_the_numbers_of_the_instructions_do_not_make_a_question_a_worked_problem():
    """A support question under a system prompt full of numbers ("three sentences", "500 EUR") is
    a FAQ; the same numbers in the user's own question make it one to work out."""
    from thrifty.routing import features_from_body
    from thrifty.wire import OPENAI_CHAT

    system = ("You are the support assistant. Answer in at most three sentences. Policy 1: refunds "
              "above 500 EUR go to a human agent. Policy 2: cards are replaced within 5 days.")

    def typed(question: str) -> str:
        body = {"model": "m", "messages": [{"role": "system", "content": system},
                                            {"role": "user", "content": question}]}
        return features_from_body(body, OPENAI_CHAT).request_type

    assert typed("How can I top up my account with Apple Pay?") == "generation"
    assert typed("Can I auto top up when I run low?") == "generation"
    assert typed("If I send 120 EUR three times a week, how much do I send in 4 weeks?") == "reasoning"
