"""Emulator models of different quality: known prompts get each model's recorded answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from thrifty.routing.checks import check_refusal
from thrifty.tokens import get_encoding
from thrifty_emulator.errors import EmulatorConfigError
from thrifty_emulator.models import config_from_dict, load_config
from thrifty_emulator.recorded import WEAK_ANSWER, last_user_text, prompt_key

HARD = "Which planet has the longest day? Answer with one word."
EASY = "What is 2 + 2? Answer with a number."
STRONG_TEXT = "Venus. A day on Venus lasts about 243 Earth days, longer than its year."

OUTCOMES = [
    {"prompt": HARD, "cohort": "arc", "outcomes": {
        "weak-model": {"score": 0.0, "cost_usd": 0.00001},
        "strong-model": {"score": 1.0, "cost_usd": 0.001, "answer": STRONG_TEXT}}},
    {"prompt": EASY, "cohort": "arc", "outcomes": {
        "weak-model": {"score": 1.0, "cost_usd": 0.00001},
        "strong-model": {"score": 1.0, "cost_usd": 0.001, "answer": "4"}}},
]


def write_outcomes(folder: Path, rows=OUTCOMES) -> Path:
    path = folder / "outcomes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_config(folder: Path, outcomes: str = "outcomes.jsonl") -> Path:
    write_outcomes(folder)
    cfg = folder / "emulator.yaml"
    cfg.write_text(json.dumps({"latency_scale": 0, "recorded": {
        "path": outcomes, "models": {"gpt-4o-mini": "weak-model", "gpt-4o": "strong-model",
                                     "claude-haiku-4-5": "weak-model"}}}), encoding="utf-8")
    return cfg


# --- loading ---------------------------------------------------------------------------------

def test_config_loads_the_file_once_relative_to_the_config(tmp_path):
    config = load_config(write_config(tmp_path))
    rec = config.recorded
    assert rec is not None and len(rec) == 2 and Path(rec.path) == tmp_path / "outcomes.jsonl"
    assert rec.answer("gpt-4o-mini", HARD) == WEAK_ANSWER
    assert rec.answer("gpt-4o", "  Which planet has the longest day?\n Answer   with one word. ") == STRONG_TEXT
    assert rec.answer("gpt-4o-mini", EASY) is None  # a passing score without text: the normal answer
    assert rec.answer("gpt-4o", "an unknown prompt") is None
    assert rec.answer("gpt-5-mini", HARD) is None  # not a recorded model
    assert prompt_key("a  b\n") == prompt_key("a b")


def test_weak_answer_is_caught_by_the_refusal_check():
    assert check_refusal(WEAK_ANSWER) == "model not sure"


@pytest.mark.parametrize("recorded, problem", [
    ({"path": "missing.jsonl", "models": {"gpt-4o": "strong-model"}}, "cannot read"),
    ({"path": "outcomes.jsonl", "models": {"no-such-model": "strong-model"}}, "not a model"),
    ({"path": "outcomes.jsonl", "models": {"gpt-4o": "absent-model"}}, "no outcomes for absent-model"),
    ({"path": "outcomes.jsonl"}, "must map"),
    ({"path": "outcomes.jsonl", "models": {"gpt-4o": "strong-model"}, "extra": 1}, "unknown field"),
    ("outcomes.jsonl", "must be a mapping"),
])
def test_bad_recorded_sections_are_config_errors(tmp_path, recorded, problem):
    write_outcomes(tmp_path)
    with pytest.raises(EmulatorConfigError, match=problem):
        config_from_dict({"recorded": recorded}, path=str(tmp_path / "emulator.yaml"))


def test_bad_outcome_lines_are_config_errors(tmp_path):
    (tmp_path / "outcomes.jsonl").write_text('{"prompt": "x", "outcomes": {"m": {"cost_usd": 1}}}\n')
    with pytest.raises(EmulatorConfigError, match="numeric score"):
        config_from_dict({"recorded": {"path": "outcomes.jsonl", "models": {"gpt-4o": "m"}}},
                         path=str(tmp_path / "emulator.yaml"))
    (tmp_path / "outcomes.jsonl").write_text("not json\n")
    with pytest.raises(EmulatorConfigError, match="not valid JSON"):
        config_from_dict({"recorded": {"path": "outcomes.jsonl", "models": {"gpt-4o": "m"}}},
                         path=str(tmp_path / "emulator.yaml"))


def test_last_user_text():
    assert last_user_text([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]) == "a"
    assert last_user_text([{"role": "user", "content": [{"type": "text", "text": "x"},
                                                        {"type": "text", "text": "y"}]}]) == "x\ny"
    assert last_user_text([{"role": "user", "content": [{"type": "tool_result", "content": "r"}]}]) is None
    assert last_user_text([{"role": "system", "content": "s"}]) is None


# --- served by a real emulator process -------------------------------------------------------

@pytest.fixture(scope="module")
def recorded_emulator(start_emulator, tmp_path_factory):
    return start_emulator("--config", str(write_config(tmp_path_factory.mktemp("recorded"))))


def ask(emu, model: str, prompt: str, **kw):
    with emu.openai() as c:
        return c.chat.completions.create(model=model, messages=[
            {"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt}], **kw)


def test_weak_model_is_not_sure_and_strong_model_answers_the_recorded_text(recorded_emulator):
    weak = ask(recorded_emulator, "gpt-4o-mini", HARD)
    strong = ask(recorded_emulator, "gpt-4o", HARD)
    assert weak.choices[0].message.content.startswith("I'm not sure")
    assert strong.choices[0].message.content == STRONG_TEXT
    enc = get_encoding("o200k_base")
    assert strong.usage.completion_tokens == len(enc.encode(STRONG_TEXT))
    assert weak.usage.completion_tokens == len(enc.encode(WEAK_ANSWER))


def test_known_prompt_with_a_passing_score_and_unknown_prompts_get_normal_answers(recorded_emulator):
    easy = ask(recorded_emulator, "gpt-4o-mini", EASY).choices[0].message.content
    unknown = ask(recorded_emulator, "gpt-4o-mini", "Tell me about the weather.").choices[0].message.content
    for text in (easy, unknown):
        assert text and check_refusal(text) is None and text != WEAK_ANSWER
    assert ask(recorded_emulator, "gpt-4o", EASY).choices[0].message.content == "4"


def test_streamed_and_anthropic_and_cut_answers(recorded_emulator):
    with recorded_emulator.openai() as c:
        stream = c.chat.completions.create(model="gpt-4o", stream=True,
                                           messages=[{"role": "user", "content": HARD}])
        text = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
    assert text == STRONG_TEXT
    with recorded_emulator.anthropic() as c:
        msg = c.messages.create(model="claude-haiku-4-5", max_tokens=200,
                                messages=[{"role": "user", "content": [{"type": "text", "text": HARD}]}])
    assert msg.content[0].text == WEAK_ANSWER
    cut = ask(recorded_emulator, "gpt-4o", HARD, max_tokens=2)
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 2
    assert STRONG_TEXT.startswith(cut.choices[0].message.content)

